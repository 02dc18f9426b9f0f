"""Item-side model inputs computed once per item cache, not once per request.

Most of what the FM student and the MMoE teacher read about a candidate depends on the item
alone (category, brand, merchant, statistics): encoding it per request — vocabulary lookups
of strings, quantile buckets, standardisation for 500 and 150 candidates — was about half of
the coarse and fine stages. `prepare` encodes those inputs for every cached item when the
cache or a model is (re)loaded, with one extra row for items the cache does not know; a
request takes its candidates' rows and encodes only what depends on the request (context,
the user's preference crosses). `tests/unit/test_fm.py` and `test_ranking_model.py` check
that the two paths give identical scores.

Entries live in the cache object (a reloaded cache drops them) under the model's identity
(checked through a weak reference; a model that is gone is dropped at the next `prepare`). A
request never computes them: when a table is missing — between a reload and its warm-up — it
encodes its candidates in full, as before.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np

from serving.items import ItemCache

_lock = threading.Lock()


class EncodedItems:
    """One model's `item_part` for every cached item; row `-1` (unknown item) is the last row,
    encoded from missing values."""

    def __init__(self, part: dict[str, np.ndarray]) -> None:
        self.part = {k: _compact(v) for k, v in part.items()}

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)  # -1 indexes the last row: the unknown item
        return {k: v[rows] for k, v in self.part.items()}


def _compact(a: np.ndarray) -> np.ndarray:
    """Indices (vocabulary ids, buckets) as int32: they fit, and the table takes half the memory."""
    return a.astype(np.int32) if a.dtype == np.int64 else a


def _with_missing(col: np.ndarray) -> np.ndarray:
    """The column with one missing value appended (NaN for floats, None otherwise)."""
    if col.dtype.kind in "fc":
        return np.append(col, np.nan)
    out = np.empty(len(col) + 1, dtype=object)
    out[:-1] = col
    out[-1] = None
    return out


def _slot(cache: ItemCache, model: Any) -> Any:
    entry = cache.derived.get(id(model))
    return entry[1] if entry is not None and entry[0]() is model else None


def prepare(cache: ItemCache, models: Iterable[Any]) -> None:
    """Compute for `cache` the encoded item table of each of `models` with an `item_part` (if missing)."""
    columns: dict[str, np.ndarray] | None = None  # the cache's columns with a missing row appended
    for model in models:
        if model is None or _slot(cache, model) is not None:
            continue
        if not hasattr(model, "item_part"):
            continue
        if columns is None:
            columns = {name: _with_missing(col) for name, col in cache.columns.items()}
        value = EncodedItems(model.item_part(columns, cache.size + 1))
        with _lock:
            for key in [k for k, (ref, _) in cache.derived.items() if ref() is None]:
                del cache.derived[key]  # models no longer loaded
            cache.derived[id(model)] = (weakref.ref(model), value)


def encoded(cache: ItemCache, model: Any) -> EncodedItems | None:
    """The table `prepare` computed for `model` and `cache`, or None."""
    return _slot(cache, model)

