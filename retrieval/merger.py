"""Merging recall routes: per-segment quotas, dedupe with route labels, and filters.

Each behaviour segment (high_value / potential / normal) weighs routes differently: a
route's quota is its share × the requested size. Routes are asked for more than their
quota so that filtering (already bought, recently seen, offline, excluded) and dedupe do
not leave holes; unused quota is handed to the remaining routes in order, so the answer is
full whenever the routes together have enough items.
"""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass
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

    def recall(self, user: UserState, k: int, exclude: Sequence[str] = ()) -> list[Candidate]:
        if k <= 0:
            raise ValueError("k must be positive")
        shares = self.quotas.get(user.segment) or self.quotas["normal"]
        active = [r for r in self.routes if shares.get(r.name, 0) > 0]
        total = sum(shares[r.name] for r in active) or 1.0
        blocked = self._blocked(user, set(exclude))
        results: dict[str, Recalled] = {}
        for route in active:
            want = int(np.ceil(k * shares[route.name] / total * self.overfetch)) + len(user.seen) + len(user.bought)
            results[route.name] = route.recall(user, want)

        merged: dict[int, Candidate] = {}
        order: list[int] = []
        leftover = 0
        for route in active:
            got = results[route.name]
            quota = round(k * shares[route.name] / total) + leftover
            scores = got.scores
            norm = (scores - scores.min()) / (np.ptp(scores) or 1.0) if len(scores) else scores
            taken = 0
            for row, s in zip(got.rows.tolist(), norm.tolist(), strict=True):
                if blocked[row]:
                    continue
                if row in merged:  # dedupe: keep every route that found it
                    if route.name not in merged[row].routes:
                        merged[row].routes.append(route.name)
                        merged[row].score = max(merged[row].score, s)
                    continue
                if taken >= quota:
                    continue
                merged[row] = Candidate(row, str(self.catalogue.ids[row]), s, [route.name])
                order.append(row)
                taken += 1
            leftover = quota - taken
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
        return [merged[r] for r in order[:k]]
