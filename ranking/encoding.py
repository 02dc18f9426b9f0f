"""Encoding primitives shared by the rankers: values as strings or floats whatever container
they come in (pandas columns, NumPy arrays, Feast's Python values), the user's preference bags
padded to a fixed width, vocabularies (index 0 = unknown) and numeric statistics (signed log1p,
standardisation, quantile buckets). `ranking.features` says which column feeds which input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BAG_WIDTH = 3  # a user's top categories / brands, padded
CLIP = 5.0
BUCKETS = 32          # quantile buckets per numeric column (a learnt embedding each)
SLOTS = BUCKETS + 1   # ids per column: 0 missing, 1..BUCKETS


def as_strings(values: Any, n: int) -> np.ndarray:
    """Object array of `n` strings or None: numbers as their integer text when integral."""
    if values is None:
        return np.full(n, None, dtype=object)
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.ravel() if arr.dtype != object or arr.ndim == 0 else np.asarray(list(values), dtype=object)
    if len(arr) == 1 and n != 1:
        arr = np.repeat(arr, n)
    if arr.dtype.kind in "iu":  # fast paths: integer codes, floats that hold integers
        return arr.astype(str).astype(object)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr)
        if np.all(arr[ok] == np.round(arr[ok])):
            out = np.full(len(arr), None, dtype=object)
            out[ok] = arr[ok].astype(np.int64).astype(str)
            return out
    if arr.dtype.kind in "US":
        return arr.astype(str).astype(object)
    arr = arr.astype(object)
    kinds = set(map(type, arr))  # strings (and missing values) as they come from pandas: nothing to convert
    if kinds <= {str}:
        return arr
    if kinds <= {str, type(None)}:
        return arr.copy()
    out = np.empty(len(arr), dtype=object)
    for i, v in enumerate(arr):
        if v is None or (isinstance(v, float) and not np.isfinite(v)) or v is np.nan:
            out[i] = None
        elif isinstance(v, (bool, np.bool_)):
            out[i] = str(bool(v))
        elif isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer()):
            out[i] = str(int(v))
        else:
            out[i] = str(v)
    return out


def as_floats(values: Any, n: int) -> np.ndarray:
    """float64 array of `n` values; None, strings and non-finite values become NaN."""
    if values is None:
        return np.full(n, np.nan)
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([to_float(v) for v in arr.ravel()], dtype=np.float64)
    arr = arr.astype(np.float64, copy=False).ravel()
    if len(arr) == 1 and n != 1:
        arr = np.repeat(arr, n)
    return np.where(np.isfinite(arr), arr, np.nan)


def to_float(v: Any) -> float:
    try:
        return float(v) if v is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


_HASH_MASK = (1 << 64) - 1


def value_codes(strings: Any) -> np.ndarray:
    """A uint64 code per value of `as_strings`' output, 0 for None: equal strings, equal codes
    (a 64-bit hash, so comparing codes of 500 candidates with a user's 3 preferences costs a few
    integer comparisons instead of string ones). Python salts string hashes per process: codes
    are only compared within the process that made them — an item table and its requests."""
    return np.fromiter((value_code(s) for s in strings), dtype=np.uint64, count=len(strings))


def value_code(s: str | None) -> int:
    """`value_codes` of one value."""
    return 0 if s is None else (hash(s) & _HASH_MASK) or 1


def signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def bag_entries(names: Any, weights: Any) -> list[tuple[str | None, float]]:
    """One user's bag as (name, weight) pairs: at most `BAG_WIDTH`, names as strings, weights
    equal when missing, non-finite weights 0."""
    if names is None or isinstance(names, float):
        return []
    names = list(names)[:BAG_WIDTH]
    weights = [1.0 / len(names)] * len(names) if weights is None or isinstance(weights, float) \
        else list(weights)[:len(names)]
    out = []
    for name, w in zip(names, weights, strict=False):
        w = to_float(w)
        out.append((None if name is None else str(name), w if np.isfinite(w) else 0.0))
    return out


def pad_bag(lists: Any, weights: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(strings [n, 3] with None padding, float weights [n, 3] with 0 padding)."""
    names = np.full((n, BAG_WIDTH), None, dtype=object)
    wts = np.zeros((n, BAG_WIDTH), dtype=np.float64)
    lists = [None] * n if lists is None else list(lists)
    weights = [None] * n if weights is None else list(weights)
    for i, (ls, ws) in enumerate(zip(lists, weights, strict=True)):
        for j, (name, w) in enumerate(bag_entries(ls, ws)):
            names[i, j] = name
            wts[i, j] = w
    return names, wts


@dataclass
class Vocabulary:
    """Index 0 is unknown / missing; values 1..len."""

    values: list[str]
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {v: i + 1 for i, v in enumerate(self.values)}

    def __len__(self) -> int:
        return len(self.values) + 1

    def lookup(self, strings: np.ndarray) -> np.ndarray:
        get = self._index.get
        flat = strings.ravel()
        return np.fromiter((get(s, 0) for s in flat), dtype=np.int64, count=len(flat)).reshape(strings.shape)


def fit_vocabulary(*arrays: np.ndarray, min_count: int = 1) -> Vocabulary:
    counts = Counter(v for a in arrays for v in a.ravel() if v is not None)
    return Vocabulary(sorted(v for v, c in counts.items() if c >= min_count))


@dataclass
class NumericStats:
    """Standardisation (mean, std of signed log1p) and quantile bucket edges per column."""

    mean: list[float]
    std: list[float]
    edges: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:  # as arrays once, not per call (a request encodes 1 + n rows)
        self._mean, self._std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        self._edges = [np.asarray(e, dtype=np.float64) for e in self.edges]
        # the same edges as one NaN-padded matrix [F, max edges]: a few rows are bucketed in one
        # comparison instead of one searchsorted per column (NaN <= x is never true)
        width = max((len(e) for e in self.edges), default=0)
        self._edge_matrix = np.full((len(self.edges), width), np.nan)
        for j, e in enumerate(self._edges):
            self._edge_matrix[j, :len(e)] = e

    @classmethod
    def fit(cls, x: np.ndarray, buckets: int = BUCKETS) -> NumericStats:
        t = signed_log(x)
        mean = np.nanmean(t, axis=0) if len(t) else np.zeros(x.shape[1])
        std = np.nanstd(t, axis=0) if len(t) else np.ones(x.shape[1])
        mean = np.nan_to_num(mean)
        std = np.where(np.nan_to_num(std) > 1e-6, np.nan_to_num(std), 1.0)
        qs = np.linspace(0, 1, buckets + 1)[1:-1]
        edges = []
        for j in range(t.shape[1]):
            col = t[:, j][~np.isnan(t[:, j])]
            edges.append([float(v) for v in np.unique(np.quantile(col, qs))] if len(col) else [])
        return cls([float(v) for v in mean], [float(v) for v in std], edges)

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std, "edges": self.edges}

    def apply(self, x: np.ndarray, columns: Sequence[int] | None = None) -> np.ndarray:
        """Standardised values of `x`'s columns (all, or the fitted `columns` `x` holds, in order)."""
        cols = slice(None) if columns is None else list(columns)
        z = (signed_log(x) - self._mean[cols]) / self._std[cols]
        return np.clip(np.nan_to_num(z, nan=0.0), -CLIP, CLIP).astype(np.float32)

    def buckets(self, x: np.ndarray, columns: Sequence[int] | None = None) -> np.ndarray:
        """Global bucket ids [n, F]: column j's bucket b is j · SLOTS + b; b = 0 is missing.
        `columns`: as for `apply`."""
        t = signed_log(x)
        cols = np.arange(len(self._edges)) if columns is None else np.asarray(columns, dtype=np.int64)
        if t.size * self._edge_matrix.shape[1] <= 200_000:  # small (a request): one broadcast comparison
            with np.errstate(invalid="ignore"):
                b = (self._edge_matrix[cols] <= t[..., None]).sum(axis=-1) + 1  # = searchsorted(side="right")+1
            return np.where(np.isnan(t), 0, b) + cols * SLOTS
        out = np.empty(t.shape, dtype=np.int64)
        for i, j in enumerate(cols.tolist()):
            b = np.searchsorted(self._edges[j], t[:, i], side="right") + 1
            out[:, i] = j * SLOTS + np.where(np.isnan(t[:, i]), 0, b)
        return out
