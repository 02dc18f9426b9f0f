"""Recall routes: each one small implementation of `RecallRoute.recall(user, k)`.

A route returns catalogue rows with scores (higher is better, comparable only within the
route). Routes read what the feature store serves about the user (`UserState`) and
in-memory item tables built from the feature tables (`Catalogue`, neighbour lists).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.index import Index


@dataclass
class Catalogue:
    """Items addressed by row: ids, categories, brands, online flags, heat, listing age."""

    ids: np.ndarray  # object array of item ids
    category: np.ndarray
    brand: np.ndarray
    online: np.ndarray  # bool
    heat: np.ndarray  # float, decayed popularity
    age_days: np.ndarray  # float, days since listed
    # popularity signals the hot route may rank by (name → float per row); "heat" always
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    row_of: dict[str, int] = field(init=False)
    _orders: dict = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.row_of = {item: i for i, item in enumerate(self.ids.tolist())}
        self.signals = {"heat": self.heat, **self.signals}

    def hot_order(self, signal: str = "heat") -> np.ndarray:
        """Every row, hottest first by a popularity signal (computed once per catalogue)."""
        key = ("hot", signal)
        if key not in self._orders:
            if signal not in self.signals:
                raise ValueError(f"unknown popularity signal {signal!r}; known: {sorted(self.signals)}")
            self._orders[key] = np.argsort(-self.signals[signal], kind="stable")
        return self._orders[key]

    def new_order(self, expiry_days: float | None = None) -> tuple[np.ndarray, float]:
        """(rows listed within `expiry_days`, newest first; the expiry used), computed once per
        catalogue; the expiry defaults to `new_expiry_days` of the catalogue's listing ages."""
        if expiry_days is None:
            expiry_days = new_expiry_days(self.age_days)
        key = ("new", float(expiry_days))
        if key not in self._orders:
            fresh = np.flatnonzero(self.age_days <= expiry_days)
            self._orders[key] = fresh[np.argsort(self.age_days[fresh], kind="stable")]
        return self._orders[key], float(expiry_days)

    @property
    def size(self) -> int:
        return len(self.ids)

    def rows(self, items: Sequence[str]) -> np.ndarray:
        return np.array([self.row_of[i] for i in items if i in self.row_of], dtype=np.int64)


@dataclass
class UserState:
    """What recall knows about one user at request time."""

    user_id: str
    segment: str = "normal"
    recent_items: list[str] = field(default_factory=list)  # newest first
    top_categories: list[str] = field(default_factory=list)
    category_weights: list[float] = field(default_factory=list)
    top_brands: list[str] = field(default_factory=list)
    bought: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    embedding: np.ndarray | None = None  # two-tower user vector
    factors: np.ndarray | None = None  # ALS user factors


@dataclass
class Recalled:
    rows: np.ndarray
    scores: np.ndarray
    route: str

    @classmethod
    def empty(cls, route: str) -> Recalled:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), route)


class RecallRoute(ABC):
    name: str

    @abstractmethod
    def recall(self, user: UserState, k: int) -> Recalled: ...


def _top(scores: np.ndarray, rows: np.ndarray, k: int, route: str) -> Recalled:
    if len(rows) == 0:
        return Recalled.empty(route)
    k = min(k, len(rows))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return Recalled(rows[order], scores[order].astype(np.float32), route)


class EmbeddingRoute(RecallRoute):
    """Nearest items to a user vector in an index (two-tower, or ALS factors)."""

    def __init__(self, name: str, index: Index, rows: np.ndarray, attribute: str = "embedding") -> None:
        self.name, self.index, self.attribute = name, index, attribute
        self.rows = rows  # index position → catalogue row

    def recall(self, user: UserState, k: int) -> Recalled:
        vector = getattr(user, self.attribute)
        if vector is None or self.index.size == 0:
            return Recalled.empty(self.name)
        positions, scores = self.index.search(vector, k)
        keep = positions[0] >= 0
        return Recalled(self.rows[positions[0][keep]], scores[0][keep], self.name)


class NeighbourRoute(RecallRoute):
    """Item-to-item lists (item-CF or content) expanded from the user's history; a neighbour's
    score is the sum over the expanded items of similarity × the item's weight: `decay`^i for
    the i-th most recent of the first `recent` items, and `bought` for each bought item beyond
    them (0 by default: recent items only; the user features keep 20 recent and 50 bought
    items, so a heavy user's longer history reaches the route through `bought`)."""

    def __init__(self, name: str, catalogue: Catalogue, neighbours: dict[int, tuple[np.ndarray, np.ndarray]],
                 recent: int = 10, decay: float = 0.8, bought: float = 0.0) -> None:
        self.name, self.catalogue, self.neighbours = name, catalogue, neighbours
        self.recent, self.decay, self.bought = recent, decay, bought

    def recall(self, user: UserState, k: int) -> Recalled:
        total: dict[int, float] = {}
        expanded = user.recent_items[: self.recent]
        history = [(row, self.decay ** pos) for pos, row in enumerate(self.catalogue.rows(expanded))]
        if self.bought > 0 and user.bought:
            older = sorted(set(user.bought).difference(expanded))
            history += [(row, self.bought) for row in self.catalogue.rows(older)]
        for row, weight in history:
            if row not in self.neighbours:
                continue
            rows, sims = self.neighbours[row]
            for r, s in zip(rows.tolist(), sims.tolist(), strict=True):
                total[r] = total.get(r, 0.0) + weight * s
        if not total:
            return Recalled.empty(self.name)
        return _top(np.fromiter(total.values(), float), np.fromiter(total.keys(), np.int64), k, self.name)


class CategoryRoute(RecallRoute):
    """The hottest items of the user's preferred categories, in proportion to preference."""

    name = "category"

    def __init__(self, catalogue: Catalogue, per_category: int = 200) -> None:
        self.catalogue = catalogue
        order = np.argsort(-catalogue.heat, kind="stable")
        self.by_category: dict[str, np.ndarray] = {}
        cats = catalogue.category[order]
        for cat in np.unique(catalogue.category):
            self.by_category[cat] = order[cats == cat][:per_category]

    def recall(self, user: UserState, k: int) -> Recalled:
        rows, scores = [], []
        weights = user.category_weights or [1.0] * len(user.top_categories)
        for cat, w in zip(user.top_categories, weights, strict=False):
            items = self.by_category.get(cat)
            if items is None:
                continue
            take = items[: max(1, round(k * w))]
            rows.append(take)
            scores.append(w * (1.0 - np.arange(len(take)) / max(len(take), 1)))
        if not rows:
            return Recalled.empty(self.name)
        return _top(np.concatenate(scores), np.concatenate(rows), k, self.name)


class LiveRows:
    """Rows hottest first by what is happening now (serving counts them from the event stream:
    `serving.trending`), and the share of the hot route's list they take. One holder shared by
    a route and its per-policy copies (`Retriever.merger_for` copies routes shallowly); `set`
    replaces both at once, so a request reads a consistent pair."""

    def __init__(self) -> None:
        self.state: tuple[np.ndarray, float] = (np.zeros(0, dtype=np.int64), 0.0)

    def set(self, rows: np.ndarray, share: float) -> None:
        self.state = (np.asarray(rows, dtype=np.int64), float(share))


class HotRoute(RecallRoute):
    """Globally hottest items: by heat (decayed weighted events) by default, or by another of
    the catalogue's popularity signals (`signal`, e.g. engagement in the last 7 days — what a
    policy tuned on validation picks). With live rows (`live`, set by serving), the first
    `share` of the list is what is hot now and the rest the signal's order; the scores are then
    by position (1 down to 0), since the two orders' signals are not on one scale."""

    name = "hot"

    def __init__(self, catalogue: Catalogue, signal: str = "heat") -> None:
        self.catalogue = catalogue
        self.signal = signal
        self.live = LiveRows()

    @property
    def signal(self) -> str:
        return self._signal

    @signal.setter
    def signal(self, name: str) -> None:
        self.order = self.catalogue.hot_order(name)
        self._signal = name
        self.heat = self.catalogue.signals[name][self.order]

    def recall(self, user: UserState, k: int) -> Recalled:
        live, share = self.live.state
        if share <= 0 or not len(live) or k <= 0:
            return Recalled(self.order[:k], self.heat[:k].astype(np.float32), self.name)
        first = live[:max(1, round(k * share))]
        head = self.order[:k + len(first)]
        rows = np.concatenate([first, head[~np.isin(head, first)]])[:k]
        return Recalled(rows, (1.0 - np.arange(len(rows)) / len(rows)).astype(np.float32), self.name)


NEW_EXPIRY_FLOOR_DAYS = 7.0
NEW_SHARE = 0.05


def new_expiry_days(age_days: np.ndarray, share: float = NEW_SHARE, floor: float = NEW_EXPIRY_FLOOR_DAYS) -> float:
    """How long a listing counts as new, from the catalogue: at least `floor` days, longer
    when fewer than `share` of the dated items are that young (a catalogue listed long ago —
    MovieLens' films by release date — still has its newest 5 % as new arrivals). Items
    without a listing date never count as new."""
    dated = np.asarray(age_days, dtype=np.float64)
    dated = dated[np.isfinite(dated)]
    if not len(dated):
        return floor
    return float(max(floor, np.quantile(dated, share, method="lower")))


class NewRoute(RecallRoute):
    """Items listed within `expiry_days` (default: derived from the catalogue by
    `new_expiry_days`), newest first; older listings expire from the route."""

    name = "new"

    def __init__(self, catalogue: Catalogue, expiry_days: float | None = None) -> None:
        self.rows, self.expiry_days = catalogue.new_order(expiry_days)
        expiry_days = self.expiry_days
        self.scores = (1.0 - catalogue.age_days[self.rows] / expiry_days).astype(np.float32)

    def recall(self, user: UserState, k: int) -> Recalled:
        return Recalled(self.rows[:k], self.scores[:k], self.name)
