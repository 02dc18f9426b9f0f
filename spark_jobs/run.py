"""Run every feature job for a home: event log + catalogues → feature Parquet (Feast's
offline store) under `<home>/features/`, with a manifest of what was computed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from vitrine.config import Home

# table name → what it holds; the Feast definitions in feature_repo/ read these
TABLES = {
    "user_behaviour": "user behaviour windows, rates, recency, price level, segment (per snapshot)",
    "user_preferences": "decayed category/brand preferences and recent items (per snapshot; lists)",
    "user_profile": "user profile from the users catalogue (per version)",
    "item_stats": "item windows, Bayesian CTR/CVR, heat, freshness (per snapshot)",
    "item_attributes": "item catalogue attributes (per version, point in time)",
    "merchant_stats": "merchant windows, rates, listed items, rating (per snapshot)",
    "item_cf": "item-CF neighbours: top-K session co-occurrence lists",
    "content_neighbours": "content neighbours: top-K Word2Vec + LSH lists",
    "als_user_factors": "ALS user factors",
    "als_item_factors": "ALS item factors",
    "samples": "labelled ranking samples (entity rows + labels)",
}


# list-valued columns live in their own table: Feast's file store (dask) hashes every column
# of a source on each historical join, and lists make that ~50x slower for the scalars too
# (split-off table, its key columns, the columns it takes)
SPLITS = {"user_behaviour": ("user_preferences", ["user_id", "event_timestamp"],
                             ["top_categorys", "top_category_weights", "top_brands", "top_brand_weights",
                              "recent_items", "bought_items"])}

# schemas of the tables whose input may be absent from a home
EMPTY_SCHEMAS = {
    "user_profile": "user_id string, event_timestamp timestamp, age_band string, gender string, "
                    "region string, member_level bigint, signup_at timestamp",
    "item_attributes": "item_id string, event_timestamp timestamp, merchant_id string, category string, "
                       "top_category string, brand string, price double, rating double, title string, "
                       "tags string, is_online boolean, created_at timestamp",
    "merchant_stats": "merchant_id string, event_timestamp timestamp, impressions_30d bigint, clicks_30d bigint, "
                      "purchases_30d bigint, revenue_30d double, ctr_30d double, cvr_30d double, "
                      "listed_items bigint, merchant_rating double",
    "content_neighbours": "item_id string, content_neighbours array<string>, content_scores array<float>, "
                          "event_timestamp timestamp",
    "als_user_factors": "user_id string, user_als_factors array<float>, event_timestamp timestamp",
    "als_item_factors": "item_id string, item_als_factors array<float>, event_timestamp timestamp",
}


@dataclass
class FeatureRun:
    home: str
    as_of: str
    snapshots: list[str]
    lookback_days: int = 30
    tables: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    def render(self) -> str:
        lines = [f"features as of {self.as_of} ({len(self.snapshots)} snapshots "
                 f"{self.snapshots[0]} .. {self.snapshots[-1]}, {self.lookback_days}-day look-back) "
                 f"in {self.seconds:.1f}s"]
        for name, t in self.tables.items():
            lines.append(f"  {name:<20}{t['rows']:>12,} rows  {t['seconds']:>6.1f}s")
        return "\n".join(lines)


def manifest_path(home: Home) -> Path:
    return home.features / "manifest.json"


def run_features(home: Home, spark, *, as_of: datetime | None = None, snapshot_days: int | None = None,
                 only: list[str] | None = None, progress: Callable[[str], None] | None = None) -> FeatureRun:
    """Compute the feature tables. `as_of` defaults to the log's latest event."""
    from pyspark.sql import functions as F

    from spark_jobs import item_features, relations, samples, user_features
    from spark_jobs.io import make_clock, read_catalog, read_events, read_exposures, recover_tables, write_table

    unknown = set(only or ()) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown feature tables {sorted(unknown)}; known: {', '.join(TABLES)}")
    started = time.perf_counter()
    recover_tables(home.features)  # a run killed before: its tables whole again, its leftovers gone
    events = read_events(spark, home)
    clock = make_clock(events, as_of, snapshot_days)
    events = events.where(F.col("event_time") <= F.lit(clock.as_of)).cache()
    items = read_catalog(spark, home, "items")
    items_history = read_catalog(spark, home, "items", history=True)
    users = read_catalog(spark, home, "users")
    merchants = read_catalog(spark, home, "merchants")
    run = FeatureRun(home=str(home.root), as_of=clock.as_of.isoformat(),
                     snapshots=[d.isoformat() for d in clock.snapshots], lookback_days=clock.lookback_days)

    als: dict[str, object] = {}

    def als_part(k: str):
        if not als:
            als["als_user_factors"], als["als_item_factors"] = relations.als_factors(events, clock, spark)
        return als[k]

    jobs = {
        "user_behaviour": lambda: user_features.user_behaviour(events, items, clock, spark),
        "user_profile": lambda: user_features.user_profile(users),
        "item_stats": lambda: item_features.item_stats(events, items, clock, spark),
        "item_attributes": lambda: item_features.item_attributes(items_history),
        "merchant_stats": lambda: item_features.merchant_stats(events, items, merchants, clock, spark),
        "item_cf": lambda: relations.item_cf(events, clock),
        "content_neighbours": lambda: relations.content_neighbours(items, clock),
        "als_user_factors": lambda: als_part("als_user_factors"),
        "als_item_factors": lambda: als_part("als_item_factors"),
        "samples": lambda: samples.labelled_samples(events, clock, items, exposures=read_exposures(spark, home)),
    }
    home.features.mkdir(parents=True, exist_ok=True)
    for name, job in jobs.items():
        if only and name not in only:
            continue
        if progress:
            progress(name)
        t = time.perf_counter()
        df = job()
        if df is None:  # an input is missing (e.g. no users catalogue): an empty table keeps
            df = spark.createDataFrame([], EMPTY_SCHEMAS[name])  # Feast's sources valid
        outputs = {name: df}
        if name in SPLITS:
            other, keys, columns = SPLITS[name]
            df = df.cache()
            outputs = {name: df.drop(*columns),
                       other: df.select(*keys, *columns).where(F.coalesce(*[F.size(c) for c in columns]) > 0)}
        for table, frame in outputs.items():
            path = write_table(frame, home.features / table, partitions=_partitions(table))
            rows = spark.read.parquet(str(path)).count()
            run.tables[table] = {"rows": rows, "seconds": round(time.perf_counter() - t, 2)}
        if name in SPLITS:
            df.unpersist()
    events.unpersist()
    run.seconds = time.perf_counter() - started
    manifest_path(home).write_text(json.dumps(run.__dict__, indent=2) + "\n")
    return run


def _partitions(name: str) -> int:
    return 4 if name == "samples" else 1
