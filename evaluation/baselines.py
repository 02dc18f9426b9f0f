"""Baselines every offline evaluation reports beside our own answers: popularity, item-KNN,
EASE and implicit ALS. Each sees exactly the training interactions (nothing after the cut),
answers under the same filters as serving (blocked rows never come back), and has a small
grid of settings that the pipeline evaluation tunes on its validation cut (`GRIDS`).

    interactions: DataFrame with `user`, `item` (catalogue row) and optionally `t` (UTC time)
    model.recommend(user_rows, blocked, k) -> catalogue rows, best first
"""

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


def _binary_matrix(interactions: pd.DataFrame, n_items: int):
    """(users × items CSR of 0/1, user id → row) over distinct (user, item) pairs."""
    from scipy import sparse

    pairs = interactions.drop_duplicates(["user", "item"])
    codes, uniques = pd.factorize(pairs["user"])
    x = sparse.csr_matrix((np.ones(len(pairs), np.float32), (codes, pairs["item"].to_numpy())),
                          shape=(len(uniques), n_items))
    return x, {u: i for i, u in enumerate(uniques)}


class Popularity:
    """Most interacted-with items (distinct users per item), over the last `window_days` of
    the training interactions when set (needs a `t` column), else over all of them."""

    name = "popularity"

    def __init__(self, interactions: pd.DataFrame, n_items: int, window_days: float | None = None) -> None:
        if window_days is not None and "t" in interactions and len(interactions):
            start = interactions["t"].max() - pd.Timedelta(days=window_days)
            interactions = interactions[interactions["t"] >= start]
        counts = interactions.drop_duplicates(["user", "item"]).groupby("item").size()
        self.scores = np.zeros(n_items)
        self.scores[counts.index.to_numpy()] = counts.to_numpy()

    def recommend(self, user_rows: Sequence[int], blocked: np.ndarray, k: int) -> np.ndarray:
        return _top_unblocked(self.scores, blocked, k)


class CategoryPopularity:
    """The most popular items of the categories the user engaged with, in proportion to how
    often they did (a side-information baseline: the only one here that reads the catalogue,
    as our category and content routes do). Popularity over `window_days` as in `Popularity`."""

    name = "category_popularity"
    uses_categories = True

    def __init__(self, interactions: pd.DataFrame, n_items: int, categories: np.ndarray,
                 window_days: float | None = None) -> None:
        self.popularity = Popularity(interactions, n_items, window_days).scores
        self.codes = pd.factorize(pd.Series(categories).fillna("").astype(str))[0]
        top = self.popularity.max() or 1.0
        self.within = self.popularity / top  # in [0, 1]: breaks ties inside a category

    def recommend(self, user_rows: Sequence[int], blocked: np.ndarray, k: int) -> np.ndarray:
        if len(user_rows) == 0:
            return np.empty(0, np.int64)
        share = np.bincount(self.codes[np.asarray(user_rows, np.int64)], minlength=self.codes.max() + 1)
        scores = share[self.codes].astype(np.float64) + self.within
        scores[share[self.codes] == 0] = -np.inf  # only the user's categories
        return _top_unblocked(scores, blocked, k)


class ItemKNN:
    """Item-item cosine similarity on the binary user × item matrix, `neighbours` kept per item."""

    name = "item_knn"

    def __init__(self, interactions: pd.DataFrame, n_items: int, neighbours: int = 200) -> None:
        from scipy import sparse

        x, _ = _binary_matrix(interactions, n_items)
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


class EASE:
    """Steck's EASE (WWW 2019): B = -P / diag(P) with P = (XᵀX + λI)⁻¹ and diag(B) = 0; a
    user's scores are their binary history times B. Dense in the items that have training
    interactions (at most `max_items`, the most popular), so it suits catalogues of up to
    ~20k active items."""

    name = "ease"

    def __init__(self, interactions: pd.DataFrame, n_items: int, l2: float = 200.0, max_items: int = 15_000) -> None:
        x, _ = _binary_matrix(interactions, n_items)
        counts = np.asarray(x.sum(axis=0)).ravel()
        active = np.flatnonzero(counts > 0)
        if len(active) > max_items:
            active = active[np.argsort(-counts[active], kind="stable")[:max_items]]
        self.active = np.sort(active)
        self.position = np.full(n_items, -1, np.int64)
        self.position[self.active] = np.arange(len(self.active))
        xa = x[:, self.active]
        gram = (xa.T @ xa).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += l2
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.b = b.astype(np.float32)
        self.n_items = n_items

    def recommend(self, user_rows: Sequence[int], blocked: np.ndarray, k: int) -> np.ndarray:
        pos = self.position[np.asarray(user_rows, np.int64)] if len(user_rows) else np.empty(0, np.int64)
        pos = pos[pos >= 0]
        if len(pos) == 0:
            return np.empty(0, np.int64)
        scores = np.full(self.n_items, -np.inf)
        scores[self.active] = self.b[pos].sum(axis=0)
        return _top_unblocked(scores, blocked, k)


class ALS:
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008): confidence 1 + α for observed pairs,
    exact alternating least squares in NumPy. A user's vector is solved from their history
    at answer time (fold-in), so any user with history gets one."""

    name = "als"

    def __init__(self, interactions: pd.DataFrame, n_items: int, factors: int = 64, reg: float = 0.1,
                 alpha: float = 20.0, iterations: int = 10, seed: int = 0) -> None:
        x, _ = _binary_matrix(interactions, n_items)
        rng = np.random.default_rng(seed)
        self.reg, self.alpha = reg, alpha
        users = rng.normal(0, 0.01, (x.shape[0], factors))
        items = rng.normal(0, 0.01, (n_items, factors))
        xt = x.T.tocsr()
        for _ in range(iterations):
            users = self._solve(x, items)
            items = self._solve(xt, users)
        self.items = items

    def _solve(self, rows, fixed: np.ndarray) -> np.ndarray:
        """Each row's vector given the other side: (YᵀY + α YᵤᵀYᵤ + λI)⁻¹ (1 + α) Yᵤᵀ 1."""
        f = fixed.shape[1]
        base = fixed.T @ fixed + self.reg * np.eye(f)
        out = np.zeros((rows.shape[0], f))
        for r in range(rows.shape[0]):
            idx = rows.indices[rows.indptr[r]:rows.indptr[r + 1]]
            if len(idx):
                y = fixed[idx]
                out[r] = np.linalg.solve(base + self.alpha * y.T @ y, (1 + self.alpha) * y.sum(axis=0))
        return out

    def recommend(self, user_rows: Sequence[int], blocked: np.ndarray, k: int) -> np.ndarray:
        rows = np.unique(np.asarray(user_rows, np.int64))
        if len(rows) == 0:
            return np.empty(0, np.int64)
        f = self.items.shape[1]
        y = self.items[rows]
        base = self.items.T @ self.items + self.reg * np.eye(f)
        user = np.linalg.solve(base + self.alpha * y.T @ y, (1 + self.alpha) * y.sum(axis=0))
        return _top_unblocked(self.items @ user, blocked, k)


# the settings each baseline is tuned over on the validation cut (the same trial budget as
# our own search gets: see evaluation.pipeline)
GRIDS: dict[str, tuple[type, list[dict]]] = {
    "popularity": (Popularity, [{"window_days": d} for d in (None, 90, 60, 45, 30, 21, 14, 10, 7, 5, 3, 2, 1)]),
    "category_popularity": (CategoryPopularity, [{"window_days": d} for d in (None, 30, 14, 7, 3, 1)]),
    "item_knn": (ItemKNN, [{"neighbours": n} for n in (5, 10, 20, 30, 50, 100, 200, 300, 500, 1000)]),
    "ease": (EASE, [{"l2": v} for v in (5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 350.0, 500.0, 750.0, 1000.0, 2500.0,
                                        5000.0)]),
    "als": (ALS, [{"factors": f, "reg": r, "alpha": a} for f in (32, 64) for r in (0.1, 1.0, 10.0)
                  for a in (5.0, 20.0)]),
}
