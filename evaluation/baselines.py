"""Baselines every retrieval evaluation reports beside the routes: global popularity and a
classic item-KNN (cosine item-item similarity over the whole training interaction matrix,
a user's score for an item = sum of similarities to everything they interacted with).
Both see exactly the training interactions, nothing after the split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _top_unblocked(scores: np.ndarray, blocked: np.ndarray, k: int) -> np.ndarray:
    scores = np.where(blocked, -np.inf, scores)
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.empty(0, np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


class Popularity:
    """Most interacted-with items in the training window (distinct users per item)."""

    name = "popularity"

    def __init__(self, interactions: pd.DataFrame, n_items: int) -> None:
        counts = interactions.drop_duplicates(["user", "item"]).groupby("item").size()
        self.scores = np.zeros(n_items)
        self.scores[counts.index.to_numpy()] = counts.to_numpy()

    def recommend(self, user_rows: Sequence[int], blocked: np.ndarray, k: int) -> np.ndarray:
        return _top_unblocked(self.scores, blocked, k)


class ItemKNN:
    """Item-item cosine similarity on the binary user × item matrix, `neighbours` kept per item."""

    name = "item_knn"

    def __init__(self, interactions: pd.DataFrame, n_items: int, neighbours: int = 200) -> None:
        from scipy import sparse

        pairs = interactions.drop_duplicates(["user", "item"])
        users = pd.factorize(pairs["user"])[0]
        x = sparse.csr_matrix((np.ones(len(pairs), np.float32), (users, pairs["item"].to_numpy())),
                              shape=(users.max() + 1 if len(users) else 0, n_items))
        co = (x.T @ x).tocsr()
        norms = np.sqrt(np.asarray(co.diagonal(), np.float64))
        co.setdiag(0)
        co.eliminate_zeros()
        co = co.tocoo()
        sims = co.data / (norms[co.row] * norms[co.col])
        frame = pd.DataFrame({"a": co.row, "b": co.col, "s": sims})
        frame = frame.sort_values(["a", "s"], ascending=[True, False]).groupby("a").head(neighbours)
        self.sim = sparse.csr_matrix((frame["s"].to_numpy(), (frame["a"].to_numpy(), frame["b"].to_numpy())),
                                     shape=(n_items, n_items))

    def recommend(self, user_rows: Sequence[int], blocked: np.ndarray, k: int) -> np.ndarray:
        if len(user_rows) == 0:
            return np.empty(0, np.int64)
        scores = np.asarray(self.sim[np.asarray(user_rows)].sum(axis=0)).ravel()
        scores[scores <= 0] = -np.inf  # only items similar to something the user touched
        return _top_unblocked(scores, blocked, k)
