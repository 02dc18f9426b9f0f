"""The serving item catalogue: item (and merchant) features in process memory, consistent
with Feast's online values, and the retriever's `Catalogue` over the same rows.

Items change slowly (~10 % a day, once a day when the feature pipeline runs), and a request
needs the features of hundreds of candidates: reading them from Redis per request through
Feast costs milliseconds (`benchmarks/serving` measures it), a NumPy take costs microseconds.
So the cache holds, per online item view, exactly what materialisation has put in Redis: the
latest row per item with `event_timestamp <= the view's last materialised end` (the interval
recorded in the Feast registry). The marker is that set of ends: `ItemCache.marker_of(store)`
is cheap, and a refresh reloads only when it changed. Merchant features are joined onto the
items through `item_attributes__merchant_id`. A test compares every value with Feast's.

There is one catalogue in serving: the cache's rows are the items of `item_attributes` and
`item_stats` as materialised (`retrieval.tables.catalogue_items`, the evaluation's rule), and
`ItemCache.catalogue` — the recall routes' table, hot and new orders included — is built from
those rows once per load. The served retriever is built on it (`serving.models`), so a
candidate's row is its cache row; the rankers' other item views are joined onto the same ids.
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

from retrieval.routes import Catalogue
from retrieval.tables import ITEM_VIEWS, catalogue_from, catalogue_items
from serving.features import materialised_end

# the services whose item and merchant views the cache holds when no ranker is loaded
DEFAULT_SERVICES = ("coarse_v1", "ranker_v1")  # sorted, as `Core.services` gives them


def _views(store, services: tuple[str, ...]) -> list:
    """The catalogue's item views and the online item and merchant views the services read
    (every field of each: a new service version may read a field the others do not)."""
    names = {p.name for service in services for p in store.get_feature_service(service).feature_view_projections}
    names.update(ITEM_VIEWS)
    return [v for v in sorted(store.list_feature_views(), key=lambda v: v.name)
            if v.name in names and v.online and list(v.entities) in (["item"], ["merchant"])]


def _marker(views: list) -> tuple:
    return tuple((v.name, str(materialised_end(v))) for v in views)


def _latest(view, end: datetime | None) -> pd.DataFrame:
    """The rows materialisation wrote for this view (latest per entity with ts <= end; none
    before the first materialisation), the entity column first, features in Feast full names."""
    key = view.entity_columns[0].name
    ts_col = view.batch_source.timestamp_field
    path = Path(view.batch_source.path)
    names = [f.name for f in view.features]
    renamed = {n: f"{view.name}__{n}" for n in names}
    if end is None or not path.exists() or (path.is_dir() and not any(path.rglob("*.parquet"))):
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in [key, *renamed.values()]})
    data = ds.dataset(path, format="parquet", ignore_prefixes=[".", "_"])
    table = data.to_table(columns=[key, ts_col, *names],
                          filter=ds.field(ts_col) <= pa.scalar(end, pa.timestamp("us", tz="UTC")))
    df = table.to_pandas()
    df = df.sort_values(ts_col, kind="stable").drop_duplicates(key, keep="last")
    return df.drop(columns=[ts_col]).rename(columns=renamed).reset_index(drop=True)


@dataclass
class ItemCache:
    """Feast full names → arrays aligned with `ids` (= `catalogue.ids`); hot/new fallback orders."""

    ids: np.ndarray
    columns: dict[str, np.ndarray]
    marker: tuple
    catalogue: Catalogue | None = None  # built from `columns` when not given
    catalogue_marker: tuple = ()  # the materialised ends of the catalogue's views
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
        if self.catalogue is None:
            self.catalogue = catalogue_from(pd.DataFrame({"item_id": self.ids, **self.columns}))
        catalogue = self.catalogue
        if len(catalogue.ids) != len(self.ids):
            raise ValueError(f"catalogue of {len(catalogue.ids)} items for a cache of {len(self.ids)}")
        self.ids, self.row_of, self.online = catalogue.ids, catalogue.row_of, catalogue.online  # missing flag: online
        hot = catalogue.hot_order("heat")
        self.hot = hot[self.online[hot]]
        new = catalogue.new_order()[0]
        self.new = new[self.online[new]]
        self.merchant_codes, self.category_codes = (
            pd.factorize(pd.Series(self.columns[c]) if c in self.columns else pd.Series([None] * self.size))[0]
            for c in ("item_attributes__merchant_id", "item_attributes__category"))

    @property
    def size(self) -> int:
        return len(self.ids)

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
        return _marker(_views(store, services))

    @classmethod
    def load(cls, store, services: tuple[str, ...] = DEFAULT_SERVICES, reuse: ItemCache | None = None) -> ItemCache:
        """The catalogue's items and the latest materialised rows of the item and merchant views
        `services` read (the loaded rankers' feature services). With `reuse` (the cache being
        replaced) and the catalogue's views not materialised since, its catalogue is kept —
        same object, so the retriever built on it stays valid — and only the other views load."""
        import time

        views = _views(store, services)
        marker = _marker(views)
        catalogue_marker = tuple(m for m in marker if m[0] in ITEM_VIEWS)
        if reuse is not None and reuse.catalogue_marker == catalogue_marker:
            catalogue = reuse.catalogue
            columns = {c: v for c, v in reuse.columns.items() if c.split("__")[0] in ITEM_VIEWS}
        else:
            frames = {v.name: _latest(v, materialised_end(v)) for v in views if v.name in ITEM_VIEWS}
            empty = pd.DataFrame({"item_id": pd.Series([], dtype=object)})
            items = catalogue_items(frames.get("item_attributes", empty), frames.get("item_stats", empty))
            items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
            catalogue = catalogue_from(items)
            columns = {c: items[c].to_numpy() for c in items.columns if c != "item_id"}
        ids = catalogue.ids
        for view in views:
            if view.name in ITEM_VIEWS or list(view.entities) != ["item"]:
                continue
            latest = _latest(view, materialised_end(view)).set_index("item_id").reindex(ids)
            columns.update({c: latest[c].to_numpy() for c in latest.columns})
        merchant_ids = columns.get("item_attributes__merchant_id")
        for view in views:
            if list(view.entities) != ["merchant"]:
                continue
            latest = _latest(view, materialised_end(view)).set_index("merchant_id")
            joined = latest.reindex(merchant_ids if merchant_ids is not None else np.full(len(ids), None))
            columns.update({c: joined[c].to_numpy() for c in latest.columns})
        return cls(ids, columns, marker=marker, catalogue=catalogue, catalogue_marker=catalogue_marker,
                   loaded_at=time.time(), services=services)
