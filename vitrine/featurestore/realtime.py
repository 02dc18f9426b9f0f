"""The real-time user features (Feast push source `user_realtime_push`): their offline table
must exist for Feast to apply and join it, even before the collector has pushed anything."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from vitrine.config import Home

PUSH_SOURCE = "user_realtime_push"
SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ("rt_impressions", pa.int64()),
    ("rt_clicks", pa.int64()),
    ("rt_carts", pa.int64()),
    ("rt_purchases", pa.int64()),
    ("rt_last_event_at", pa.timestamp("us", tz="UTC")),
    ("rt_recent_items", pa.list_(pa.string())),
    ("rt_bought_items", pa.list_(pa.string())),
])


def ensure_table(home: Home) -> None:
    directory = home.features / "user_realtime"
    if directory.exists() and any(directory.glob("*.parquet")):
        return
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(SCHEMA.empty_table(), directory / "part-00000.parquet")
