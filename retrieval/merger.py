"""Merging recall routes: per-segment quotas, dedupe with route labels, and filters.

Each behaviour segment (high_value / potential / normal) weighs routes differently: a
route's quota is its share × the requested size. Routes are asked for more than their
quota so that filtering (already bought, recently seen, offline, excluded) and dedupe do
not leave holes; unused quota is handed to the remaining routes in order, so the answer is
full whenever the routes together have enough items.

Scores: each route's scores are min-max normalised over what it returned. Without weights a
candidate keeps its best normalised score; with `weights` (the published policy's blend,
tuned on validation) its score is the weighted sum over every route that found it, and the
candidates come back best first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval.routes import Catalogue, Recalled, RecallRoute, UserState

DEFAULT_QUOTAS: dict[str, dict[str, float]] = {
    # buyers: lean on what they bought with and their tastes
    "high_value": {"two_tower": 0.30, "item_cf": 0.25, "als": 0.10, "content": 0.10, "category": 0.15,
                   "hot": 0.05, "new": 0.05},
    # engaged but not yet buying: tastes and neighbours of what they looked at
    "potential": {"two_tower": 0.30, "item_cf": 0.20, "als": 0.10, "content": 0.10, "category": 0.15,
                  "hot": 0.10, "new": 0.05},
    # little signal: more popular and new items
    "normal": {"two_tower": 0.25, "item_cf": 0.10, "als": 0.05, "content": 0.05, "category": 0.15,
               "hot": 0.30, "new": 0.10},
}


@dataclass(slots=True)
class Candidate:
    row: int
    item_id: str
    score: float  # the best normalised route score
    routes: list[str] = field(default_factory=list)


@dataclass
class Merger:
    catalogue: Catalogue
    routes: Sequence[RecallRoute]
    quotas: dict[str, dict[str, float]] = field(default_factory=lambda: DEFAULT_QUOTAS)
    overfetch: float = 2.0

    def _blocked(self, user: UserState, exclude: set[str]) -> np.ndarray:
        blocked = ~self.catalogue.online.copy()
        for items in (user.bought, user.seen, exclude):
            rows = self.catalogue.rows(list(items))
            blocked[rows] = True
        return blocked

    def recall(self, user: UserState, k: int, exclude: Sequence[str] = (),
               weights: Mapping[str, float] | None = None) -> list[Candidate]:
        if k <= 0:
            raise ValueError("k must be positive")
        blend = bool(weights)
        shares = self.quotas.get(user.segment) or self.quotas["normal"]
        active = [r for r in self.routes if shares.get(r.name, 0) > 0]
        total = sum(shares[r.name] for r in active) or 1.0
        blocked = self._blocked(user, set(exclude))
        results: dict[str, Recalled] = {}
        for route in active:
            want = int(np.ceil(k * shares[route.name] / total * self.overfetch)) + len(user.seen) + len(user.bought)
            results[route.name] = route.recall(user, want)

        # position in `out` of each catalogue row taken so far (-1: not taken)
        position = np.full(self.catalogue.size, -1, dtype=np.int64)
        out: list[Candidate] = []
        ids = self.catalogue.ids
        leftover = 0
        for route in active:
            got = results[route.name]
            quota = round(k * shares[route.name] / total) + leftover
            rows, scores = np.asarray(got.rows, dtype=np.int64), got.scores
            norm = (scores - scores.min()) / (np.ptp(scores) or 1.0) if len(scores) else scores
            keep = ~blocked[rows]
            rows, norm = rows[keep], norm[keep]
            first = np.unique(rows, return_index=True)[1]
            if len(first) < len(rows):  # a route listing an item twice: its first place counts
                first.sort()
                rows, norm = rows[first], norm[first]
            at = position[rows]
            taken_before = at >= 0
            w = weights.get(route.name, 0.0) if blend else 1.0
            for j, s in zip(at[taken_before].tolist(), norm[taken_before].tolist(), strict=True):
                c = out[j]  # dedupe: keep every route that found it
                if route.name not in c.routes:
                    c.routes.append(route.name)
                    c.score = c.score + w * s if blend else max(c.score, s)
            new = rows[~taken_before][:quota]
            position[new] = np.arange(len(out), len(out) + len(new))
            out.extend(Candidate(r, str(i), w * s, [route.name]) for r, i, s in
                       zip(new.tolist(), ids[new].tolist(), norm[~taken_before][:quota].tolist(), strict=True))
            leftover = quota - len(new)
        merged = {c.row: c for c in out}
        order = [c.row for c in out]
        if len(order) < k:  # backfill: ask the routes again, past everything filtered out
            deeper = k + int(blocked.sum())
            for route in active:
                if len(order) >= k:
                    break
                for row in route.recall(user, deeper).rows.tolist():
                    if len(order) >= k:
                        break
                    if not blocked[row] and row not in merged:
                        merged[row] = Candidate(row, str(self.catalogue.ids[row]), 0.0, [route.name])
                        order.append(row)
        picked = [merged[r] for r in order[:k]]
        if blend:
            picked.sort(key=lambda c: -c.score)  # stable: ties keep the quota order
        return picked
