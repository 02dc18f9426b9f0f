"""Point-in-time training sets through Feast: `get_historical_features` for one model's
feature service over labelled entity rows (by default the Spark `samples` table).

Each row gets, per feature view, the latest feature row with a timestamp at or before the
row's own `event_timestamp` (and within the view's TTL) — never anything later, so no
label leaks into its features. Feast's file offline store drops rows whose only feature
rows are outside the TTL and collapses duplicate (key, time) rows; the join is therefore
done on the distinct (keys, time, request) rows and merged back, so every input row comes
out once, in order, with nulls where no feature was valid.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from vitrine.config import Home
from vitrine.data.schemas import DEVICES
from vitrine.featurestore.repo import FeastError, feature_store

REQUEST_COLUMNS = ("request_unix_s", "device_code", "candidate_price")


@contextmanager
def _fast_dask_tokens():
    """Feast's file offline store runs on dask, which tokenises every column it touches by
    content; an object column of lists is pickled whole, three times, per tokenisation — a
    5 % demo training set spent minutes there. Within this block, object arrays that are not
    plain strings (lists, or strings with nulls) get an identity token instead: the same
    array always gets the same token and no two live arrays share one, which is all dask
    needs for correct graphs."""
    import weakref

    import numpy as np
    from dask.tokenize import normalize_token

    original = normalize_token.dispatch(np.ndarray)
    tokens: dict[int, str] = {}

    def normalize(x):
        if x.shape and x.dtype.hasobject:
            try:
                "-".join(x.flat)  # plain strings: dask's own fast path is fine
                return original(x)
            except TypeError:
                pass
            key = id(x)
            if key not in tokens:
                tokens[key] = uuid.uuid4().hex
                weakref.finalize(x, tokens.pop, key, None)
            return ("vitrine-object-array", tokens[key], x.shape)
        return original(x)

    normalize_token.register(np.ndarray)(normalize)
    try:
        yield
    finally:
        normalize_token.register(np.ndarray)(original)


@dataclass
class TrainingSet:
    service: str
    frame: pd.DataFrame
    seconds: float
    window: tuple[str, str]

    def render(self) -> str:
        f = self.frame
        return (f"training set for {self.service}: {len(f):,} rows × {f.shape[1]} columns "
                f"({self.window[0]} .. {self.window[1]}) in {self.seconds:.1f}s")


def with_request_columns(entity_df: pd.DataFrame) -> pd.DataFrame:
    """The on-demand context view's request inputs, derived from each row."""
    df = entity_df.copy()
    ts = pd.to_datetime(df["event_timestamp"], utc=True)
    df["event_timestamp"] = ts
    df["request_unix_s"] = ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("int64")
    codes = {d: i for i, d in enumerate(DEVICES)}
    device = df["device"] if "device" in df else pd.Series(None, index=df.index, dtype=object)
    df["device_code"] = device.map(codes).fillna(-1).astype("int64")
    price = df["price"] if "price" in df else pd.Series(np.nan, index=df.index)
    df["candidate_price"] = pd.to_numeric(price, errors="coerce").astype("float64")
    return df


def load_samples(home: Home, start: datetime | None = None, end: datetime | None = None,
                 fraction: float | None = None, seed: int = 0) -> pd.DataFrame:
    path = home.features / "samples"
    if not path.exists():
        raise FeastError(f"no labelled samples in {path}: run `vitrine features` first")
    df = pd.read_parquet(path)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    if start is not None:
        df = df[df["event_timestamp"] >= pd.Timestamp(start)]
    if end is not None:
        df = df[df["event_timestamp"] < pd.Timestamp(end)]
    if fraction is not None and fraction < 1:
        df = df.sample(frac=fraction, random_state=seed)
    return df.sort_values(["event_timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)


def historical_features(store, service_name: str | Sequence, entity_df: pd.DataFrame) -> pd.DataFrame:
    """`entity_df` with the service's features joined point in time, row for row (several
    services: each field once, in the order they list them; a service is a registered name or
    a `FeatureService` object).

    One historical join per feature view (Feast's file store drops a row from a multi-view
    join when any one view has rows for that entity only after the row's time), each on the
    distinct (keys, time) rows of that view and merged back; then the on-demand views are
    applied to the merged frame with Feast's own transformation.
    """
    import pyarrow as pa

    names = [service_name] if isinstance(service_name, str) else list(service_name)
    projections = [p for n in names
                   for p in (store.get_feature_service(n) if isinstance(n, str) else n).feature_view_projections]
    df = with_request_columns(entity_df)
    df = df.reset_index(drop=True)
    on_demand = []
    for projection in projections:
        name = projection.name_to_use()
        features = [f for f in projection.features if f"{name}__{f.name}" not in df.columns]
        if not features:
            continue
        try:
            view = store.get_feature_view(projection.name)
        except Exception:
            on_demand.append(projection)
            continue
        keys = [c.name for c in view.entity_columns]
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise FeastError(f"feature service {service_name} needs entity columns {missing} (for {name})")
        refs = [f"{projection.name}:{f.name}" for f in features]
        distinct = df[[*keys, "event_timestamp"]].drop_duplicates().reset_index(drop=True)
        with _fast_dask_tokens():
            joined = store.get_historical_features(entity_df=distinct, features=refs,
                                                   full_feature_names=True).to_df()
        joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True)
        cols = [f"{name}__{f.name}" for f in features]
        df = df.merge(joined[[*keys, "event_timestamp", *cols]].drop_duplicates([*keys, "event_timestamp"]),
                      on=[*keys, "event_timestamp"], how="left", validate="many_to_one")
    for projection in on_demand:
        odfv = store.get_on_demand_feature_view(projection.name)
        todo = [f"{projection.name_to_use()}__{f.name}" for f in projection.features]
        todo = [c for c in todo if c not in df.columns]
        if not todo:
            continue
        out = odfv.transform_arrow(pa.Table.from_pandas(df, preserve_index=False), full_feature_names=True)
        for column in todo:
            df[column] = out.column(column).to_pandas()
    return df


def build_training_set(home: Home, redis_url: str, service: str | Sequence[str], *,
                       entity_df: pd.DataFrame | None = None, start: datetime | None = None,
                       end: datetime | None = None, fraction: float | None = None,
                       out: Path | None = None) -> TrainingSet:
    started = time.perf_counter()
    store = feature_store(home, redis_url)
    rows = entity_df if entity_df is not None else load_samples(home, start, end, fraction)
    if rows.empty:
        raise FeastError("no entity rows in the requested window")
    frame = historical_features(store, service, rows)
    ts = frame["event_timestamp"]
    result = TrainingSet(service if isinstance(service, str) else "+".join(service), frame,
                         time.perf_counter() - started,
                         (ts.min().isoformat(), ts.max().isoformat()))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
    return result
