"""Item (and merchant) features in process memory, consistent with Feast's online values.

Items change slowly (~10 % a day, once a day when the feature pipeline runs), and a request
needs the features of hundreds of candidates: reading them from Redis per request through
Feast costs milliseconds (`benchmarks/serving` measures it), a NumPy take costs microseconds.
So the cache holds, per online item view, exactly what materialisation has put in Redis: the
latest row per item with `event_timestamp <= the view's last materialised end` (the interval
recorded in the Feast registry). The marker is that set of ends: `ItemCache.marker(store)`
is cheap, and a refresh reloads only when it changed. Merchant features are joined onto the
items through `item_attributes__merchant_id`. A test compares every value with Feast's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from retrieval.routes import new_expiry_days
from serving.features import materialised_end

# the services whose item and merchant views the cache holds when no ranker is loaded
DEFAULT_SERVICES = ("coarse_v1", "ranker_v1")  # sorted, as `Core.services` gives them


def _views(store, services: tuple[str, ...]) -> list:
    """The online item and merchant views the services read (every field of each: a new
    service version may read a field the others do not)."""
    names = {p.name for service in services for p in store.get_feature_service(service).feature_view_projections}
    return [v for v in sorted(store.list_feature_views(), key=lambda v: v.name)
            if v.name in names and v.online and list(v.entities) in (["item"], ["merchant"])]


def _latest(view, end: datetime) -> pd.DataFrame:
    """The rows materialisation wrote for this view: latest per entity with ts <= end."""
    key = view.entity_columns[0].name
    ts_col = view.batch_source.timestamp_field
    path = Path(view.batch_source.path)
    names = [f.name for f in view.features]
    if not path.exists() or (path.is_dir() and not any(path.rglob("*.parquet"))):
        return pd.DataFrame(columns=[key, *names])
    data = ds.dataset(path, format="parquet", ignore_prefixes=[".", "_"])
    table = data.to_table(columns=[key, ts_col, *names],
                          filter=ds.field(ts_col) <= pa.scalar(end, pa.timestamp("us", tz="UTC")))
    df = table.to_pandas()
    df = df.sort_values(ts_col, kind="stable").drop_duplicates(key, keep="last")
    return df.drop(columns=[ts_col]).set_index(key)


@dataclass
class ItemCache:
    """Feast full names → arrays aligned with `ids`; hot/new fallback orders."""

    ids: np.ndarray
    columns: dict[str, np.ndarray]
    marker: tuple
    loaded_at: float = 0.0
    row_of: dict[str, int] = field(init=False)
    hot: np.ndarray = field(init=False)
    new: np.ndarray = field(init=False)
    online: np.ndarray = field(init=False)  # bool per row; computed once per load (was 1.9 ms a request at 100k)
    # integer codes of the merchant and category of each row (-1: missing), for diversity
    merchant_codes: np.ndarray = field(init=False)
    category_codes: np.ndarray = field(init=False)
    # per loaded model, what it needs computed once for this cache (`serving.encoded`)
    derived: dict = field(init=False, default_factory=dict, repr=False, compare=False)
    services: tuple[str, ...] = DEFAULT_SERVICES  # the feature services whose views are loaded

    def __post_init__(self) -> None:
        self.row_of = {item: i for i, item in enumerate(self.ids.tolist())}
        heat = self.numeric("item_stats__heat", 0.0)
        age = self.numeric("item_stats__age_days", np.inf)
        flag = self.columns.get("item_attributes__is_online")
        self.online = online = (np.ones(self.size, dtype=bool) if flag is None else
                                np.array([v is not False for v in flag.tolist()], dtype=bool))  # missing: online
        self.hot = np.flatnonzero(online)[np.argsort(-heat[online], kind="stable")]
        fresh = np.flatnonzero(online & (age <= new_expiry_days(age)))
        self.new = fresh[np.argsort(age[fresh], kind="stable")]
        self.merchant_codes, self.category_codes = (
            pd.factorize(pd.Series(self.columns[c]) if c in self.columns else pd.Series([None] * self.size))[0]
            for c in ("item_attributes__merchant_id", "item_attributes__category"))

    @property
    def size(self) -> int:
        return len(self.ids)

    def numeric(self, name: str, default: float) -> np.ndarray:
        col = self.columns.get(name)
        if col is None:
            return np.full(self.size, default)
        x = pd.to_numeric(pd.Series(col), errors="coerce").to_numpy(dtype=float)
        return np.where(np.isnan(x), default, x)

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Cache rows of `item_ids` (-1 for items the cache does not know)."""
        get = self.row_of.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def codes(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(merchant codes, category codes) of `rows`; -1 for rows of -1 and missing values."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.size:
            return np.full(len(rows), -1), np.full(len(rows), -1)
        known, safe = rows >= 0, np.maximum(rows, 0)
        return (np.where(known, self.merchant_codes[safe], -1), np.where(known, self.category_codes[safe], -1))

    def take(self, rows: np.ndarray, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Feature arrays aligned with `rows` (rows of -1 give missing values): every column, or `names`."""
        rows = np.asarray(rows, dtype=np.int64)
        missing = rows < 0
        safe = np.where(missing, 0, rows)
        out = {}
        columns = self.columns if names is None else {n: self.columns[n] for n in names if n in self.columns}
        for name, col in columns.items():
            values = col[safe] if self.size else np.empty(len(rows), dtype=col.dtype)
            if missing.any():
                values = values.astype(object) if values.dtype.kind not in "fc" else values.copy()
                values[missing] = np.nan if values.dtype.kind in "fc" else None
            out[name] = values
        return out

    def _pick(self, rows: np.ndarray, n: int, blocked: set[str]) -> list[str]:
        out = []
        for r in rows.tolist():
            if len(out) >= n:
                break
            if self.ids[r] not in blocked:
                out.append(self.ids[r])
        return out

    def fallback(self, k: int, blocked: set[str], new_every: int = 3) -> list[tuple[str, float, str]]:
        """Hot items with every `new_every`-th slot a new one, none of `blocked`:
        (item id, score falling with the position, route), best first."""
        hot, new = self._pick(self.hot, 2 * k, blocked), self._pick(self.new, k, blocked)
        out: list[tuple[str, float, str]] = []
        seen: set[str] = set()
        h = n = 0
        while len(out) < k and (h < len(hot) or n < len(new)):
            use_new = n < len(new) and (h >= len(hot) or len(out) % new_every == new_every - 1)
            if use_new:
                item, route, n = new[n], "new", n + 1
            else:
                item, route, h = hot[h], "hot", h + 1
            if item not in seen:
                seen.add(item)
                out.append((item, 1.0 / (1 + len(out)), route))
        return out

    @staticmethod
    def marker_of(store, services: tuple[str, ...] = DEFAULT_SERVICES) -> tuple:
        """What Redis holds for the cached views: each view's last materialised end."""
        return tuple((v.name, str(materialised_end(v))) for v in _views(store, services))

    @classmethod
    def load(cls, store, services: tuple[str, ...] = DEFAULT_SERVICES) -> ItemCache:
        """The latest materialised rows of the item and merchant views `services` read (the
        loaded rankers' feature services)."""
        import time

        views = _views(store, services)
        items: pd.DataFrame | None = None
        merchants: list[pd.DataFrame] = []
        for view in views:
            end = materialised_end(view)
            entity = next(iter(view.entities))
            names = [f.name for f in view.features]
            latest = (_latest(view, end) if end is not None
                      else pd.DataFrame(columns=names, index=pd.Index([], name=view.entity_columns[0].name)))
            latest.columns = [f"{view.name}__{c}" for c in latest.columns]
            if entity == "merchant":
                merchants.append(latest)
            else:
                items = latest if items is None else items.join(latest, how="outer")
        if items is None:
            items = pd.DataFrame()
        items = items.sort_index()
        for latest in merchants:
            merchant_ids = items.get("item_attributes__merchant_id")
            joined = (latest.reindex(merchant_ids.to_numpy()) if merchant_ids is not None
                      else pd.DataFrame(index=items.index, columns=latest.columns))
            for c in latest.columns:
                items[c] = joined[c].to_numpy()
        columns = {c: items[c].to_numpy() for c in items.columns}
        ids = items.index.to_numpy(dtype=object)
        return cls(ids, columns, marker=cls.marker_of(store, services), loaded_at=time.time(), services=services)
