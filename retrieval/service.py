"""The retrieval service: every recall route built from one home's feature tables and its
published two-tower version, behind the merger. Serving holds one `Retriever` and swaps
it whole on reload; the evaluation builds one as of its hold-out split.

    r = Retriever.load(home)
    state = r.user_state("u42", online_features)      # Feast full feature names
    candidates = r.recall(state, 300, exclude=[...])  # Candidate(row, item_id, score, routes)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrieval.index import Index, make_index
from retrieval.merger import DEFAULT_QUOTAS, Candidate, Merger
from retrieval.routes import (
    Catalogue,
    CategoryRoute,
    EmbeddingRoute,
    HotRoute,
    NeighbourRoute,
    NewRoute,
    RecallRoute,
    UserState,
)
from retrieval.tables import catalogue_from, factor_matrix, item_frame, neighbour_lists
from vitrine.config import Home
from vitrine.versions import BadModelVersion, latest

# route settings a policy may override, by route class
TUNABLE = {"NeighbourRoute": ("recent", "decay", "bought"), "HotRoute": ("signal",)}
EXACT_UP_TO = 20_000  # items; above this the two-tower route searches a faiss IVF index
# the user's recent items (the item-CF and content routes' seeds; the user tower reads the same column
# when its service lists it): the daily snapshot's, after the real-time ones
RECENT_ITEMS = "user_preferences__recent_items"


def _index_for(vectors: np.ndarray, kind: str = "auto") -> Index:
    if kind == "auto":
        kind = "exact" if len(vectors) <= EXACT_UP_TO else "ivf"
    params = {"nlist": 1024, "nprobe": 24} if kind == "ivf" else {}
    return make_index(kind, **params).build(vectors)


def _list(value: Any) -> list:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [v for v in list(value) if v is not None]


@dataclass
class Retriever:
    catalogue: Catalogue
    routes: dict[str, RecallRoute]
    items: pd.DataFrame | None  # item features (Feast full names), row-aligned; None when given a catalogue
    two_tower: Any = None  # retrieval.two_tower.TwoTowerArtifact, when a version is published
    quotas: dict[str, dict[str, float]] = field(default_factory=lambda: DEFAULT_QUOTAS)
    merger: Merger = field(init=False)
    _tuned: dict[str, Merger] = field(init=False, default_factory=dict)
    _last: tuple = field(init=False, default=(None, None))

    def __post_init__(self) -> None:
        self.merger = Merger(self.catalogue, list(self.routes.values()), self.quotas)

    def merger_for(self, params: Mapping[str, Mapping[str, float]] | None) -> Merger:
        """The merger with routes' settings overridden (the policy's `route_params`, e.g.
        `{"item_cf": {"recent": 20, "decay": 1.0}}`); built once per distinct setting."""
        if not params:
            return self.merger
        if params is self._last[0]:  # serving passes the same policy's mapping on every request
            return self._last[1]
        key = json.dumps(params, sort_keys=True)
        merger = self._tuned.get(key)
        if merger is None:
            routes = []
            for route in self.routes.values():
                route = copy.copy(route)  # shallow: tables and indices are shared
                for attr, value in (params.get(route.name) or {}).items():
                    if attr not in TUNABLE.get(type(route).__name__, ()):
                        raise ValueError(f"route {route.name!r} has no tunable setting {attr!r}")
                    setattr(route, attr, type(getattr(route, attr))(value))
                routes.append(route)
            if len(self._tuned) >= 64:  # a search tries many; serving uses one
                self._tuned.clear()
            merger = self._tuned[key] = Merger(self.catalogue, routes, self.quotas)
        self._last = (params, merger)
        return merger

    @property
    def version(self) -> str:
        return self.two_tower.directory.name if self.two_tower is not None else "none"

    @classmethod
    def load(cls, home: Home, *, features: Path | None = None, as_of: datetime | None = None,
             two_tower: Path | str | None = "latest", index: str = "auto",
             quotas: dict[str, dict[str, float]] | None = None, catalogue: Catalogue | None = None) -> Retriever:
        """Routes from `<home>/features` (or `features`) as of `as_of`, and the two-tower
        version at `two_tower` ("latest": the published one if any; None: no two-tower route).
        The routes' item table is `catalogue` when given (serving's, from what was
        materialised: `serving.items`), else the feature tables' items as of `as_of`."""
        from retrieval.two_tower import TwoTowerArtifact

        features = features or home.features
        items = None
        if catalogue is None:
            items = item_frame(features, as_of)
            catalogue = catalogue_from(items, as_of)
        if not catalogue.size:
            raise BadModelVersion(f"no items in {features}: run `vitrine features` (and `vitrine materialize`) first")
        routes: dict[str, RecallRoute] = {}
        artifact = None
        if two_tower == "latest":
            try:
                two_tower = latest(home, "two_tower")
            except BadModelVersion:
                two_tower = None
        if two_tower is not None:
            artifact = TwoTowerArtifact.load(Path(two_tower))
            known = [i for i, item in enumerate(artifact.item_ids) if item in catalogue.row_of]
            rows = np.array([catalogue.row_of[artifact.item_ids[i]] for i in known], np.int64)
            vectors = np.ascontiguousarray(artifact.item_embeddings[known], dtype=np.float32)
            routes["two_tower"] = EmbeddingRoute("two_tower", _index_for(vectors, index), rows)
        routes["item_cf"] = NeighbourRoute(
            "item_cf", catalogue, neighbour_lists(features / "item_cf", catalogue, "cf_neighbours", "cf_scores",
                                                  as_of))
        rows, vectors = factor_matrix(features / "als_item_factors", catalogue, "item_als_factors", as_of)
        if len(rows):
            routes["als"] = EmbeddingRoute("als", make_index("exact").build(vectors), rows, attribute="factors")
        routes["content"] = NeighbourRoute(
            "content", catalogue, neighbour_lists(features / "content_neighbours", catalogue, "content_neighbours",
                                                  "content_scores", as_of))
        routes["category"] = CategoryRoute(catalogue)
        routes["hot"] = HotRoute(catalogue)
        routes["new"] = NewRoute(catalogue)
        return cls(catalogue, routes, items, artifact, quotas or DEFAULT_QUOTAS)

    # --- users ---------------------------------------------------------------------------

    def user_state(self, user_id: str, features: Mapping[str, Any], *, extra_recent: Sequence[str] = (),
                   bought: Iterable[str] = (), seen: Iterable[str] | None = None,
                   embedding: np.ndarray | None = None) -> UserState:
        """What recall knows about a user, from their online features (Feast full names;
        missing keys or None = unknown, e.g. a new user). `extra_recent` (newest first, e.g.
        real-time clicks) goes in front of the snapshot's recent items; `bought` adds to the
        snapshot's purchases; `seen` defaults to the recent items."""
        recent = list(dict.fromkeys([*extra_recent, *_list(features.get(RECENT_ITEMS))]))
        factors = features.get("als_user_factors__user_als_factors")
        state = UserState(
            user_id=user_id,
            segment=features.get("user_behaviour__segment") or "normal",
            recent_items=recent,
            top_categories=[str(c) for c in _list(features.get("user_preferences__top_categorys"))],
            category_weights=[float(w) for w in _list(features.get("user_preferences__top_category_weights"))],
            top_brands=[str(b) for b in _list(features.get("user_preferences__top_brands"))],
            bought={*_list(features.get("user_preferences__bought_items")), *bought},
            seen=set(recent) if seen is None else set(seen),
            factors=None if factors is None or len(_list(factors)) == 0 else np.asarray(factors, np.float32),
        )
        if embedding is None and self.two_tower is not None:
            # the training-time embedding while nothing real-time has changed the user's recent
            # items; else the user tower on the current features (~0.5 ms)
            embedding = None if extra_recent else self.two_tower.precomputed(user_id)
            if embedding is None:
                embedding = self.embed([user_id], [{**features, RECENT_ITEMS: recent}])[0]
        state.embedding = embedding
        return state

    def embed(self, user_ids: Sequence[str], features: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Two-tower user embeddings for many users in one call."""
        if self.two_tower is None:
            raise BadModelVersion("no two-tower version loaded")
        return self.two_tower.embed_rows(list(user_ids), list(features))

    # --- recall --------------------------------------------------------------------------

    def recall(self, state: UserState, k: int, exclude: Sequence[str] = (),
               weights: Mapping[str, float] | None = None,
               params: Mapping[str, Mapping[str, float]] | None = None) -> list[Candidate]:
        """Merged candidates; `weights` = the published policy's blend (None: best route score),
        `params` = its route settings (None: the routes' defaults)."""
        return self.merger_for(params).recall(state, k, exclude, weights)

    def fallback(self, k: int, exclude: Sequence[str] = ()) -> list[Candidate]:
        """Hot and new items only (degraded answers): no user features needed."""
        routes = [self.routes["hot"], self.routes["new"]]
        quotas = {"normal": {"hot": 0.8, "new": 0.2}}
        return Merger(self.catalogue, routes, quotas).recall(UserState(""), k, exclude)

    def single_route(self, name: str) -> Merger:
        """A merger over one route (same filters), for evaluating routes on their own."""
        return Merger(self.catalogue, [self.routes[name]], {"normal": {name: 1.0}})
