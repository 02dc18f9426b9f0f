"""Reading the home's event log and catalogues into Spark, writing feature tables, and the
as-of clock: every job's time is the log's latest event unless told otherwise, so a log
from years ago computes the same features today as on the day it was written."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from vitrine.config import Home
from vitrine.errors import VitrineError

POSITIVE_TYPES = ("click", "add_to_cart", "purchase")


class NoEvents(VitrineError):
    pass


def read_events(spark, home: Home):
    from pyspark.sql import functions as F

    if not any(home.events.glob("date=*/*.parquet")):
        raise NoEvents(f"the event log in {home.events} is empty: run `vitrine ingest --events ...` first")
    df = spark.read.parquet(str(home.events))
    return df.withColumn("day", F.to_date("event_time"))


def read_exposures(spark, home: Home):
    """The exposure log (what `Recommend` answered, one row per item shown), or None when the
    home has none."""
    from pyspark.sql import functions as F

    if not any(home.exposures.glob("date=*/*.parquet")):
        return None
    df = spark.read.parquet(str(home.exposures))
    return df.withColumn("day", F.to_date("served_at"))


def read_catalog(spark, home: Home, table: str, history: bool = False):
    """The current table (or every accepted version), or None when the home has none."""
    path = home.catalog / (f"{table}_history" if history else f"{table}.parquet")
    if not path.exists():
        return None
    return spark.read.parquet(str(path))


def write_table(df, path: Path, partitions: int = 1) -> Path:
    """Replace one feature table (a directory of Parquet parts with microsecond timestamps).

    Spark writes beside it (`.staging-<table>-<id>`); only a complete table is renamed into
    place, so a job killed mid-run never leaves a half-written table where readers (Feast,
    training, serving) look — at worst the previous one, put back by `recover_tables`."""
    staging = path.parent / f".staging-{path.name}-{uuid.uuid4().hex[:8]}"
    df.coalesce(partitions).write.mode("overwrite").parquet(str(staging))
    publish_dir(staging, path)
    return path


def publish_dir(staging: Path, path: Path) -> None:
    """Swap a complete directory into `path`: the old one moves aside, the new one in (two
    renames; a crash between them is undone by `recover_tables`), then the old one goes."""
    old = path.parent / f".old-{path.name}-{uuid.uuid4().hex[:8]}"
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def recover_tables(directory: Path) -> list[str]:
    """After a killed run: a table moved aside and not replaced is put back; half-written
    staging directories are removed. Returns the tables put back."""
    restored = []
    if not directory.exists():
        return restored
    for old in sorted(directory.glob(".old-*")):
        live = directory / old.name[len(".old-"):].rsplit("-", 1)[0]
        if live.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, live)
            restored.append(live.name)
    for staging in directory.glob(".staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    return restored


@dataclass(frozen=True)
class Clock:
    """Feature snapshots: one per day boundary after the first log day, up to the as-of day.

    A snapshot stamped D 00:00 UTC is computed from events strictly before D, so a label at
    any time t joins (point in time) with a snapshot built only from events before t.
    """

    as_of: datetime  # the latest event considered (inclusive)
    snapshots: tuple[date, ...]
    # how far back a snapshot looks for relations, samples, recent items and which users and
    # items get rows at all: derived from the log (`lookback_for`), at least the 30-day window
    lookback_days: int = 30

    @property
    def last(self) -> date:
        return self.snapshots[-1]


# the look-back grows until it holds this many positive events (or the whole log)
LOOKBACK_POSITIVES = 2_000_000
MIN_LOOKBACK_DAYS, MAX_LOOKBACK_DAYS = 30, 365


def lookback_for(daily_positives: dict[date, int], last: date, target: int = LOOKBACK_POSITIVES) -> int:
    """Days of look-back before snapshot `last`: the fewest that hold `target` positive events
    (a dense platform log: the 30-day floor; a sparse or small one: its whole span, so a
    7-month rating log is not cut to its last month), within [30, 365]."""
    days, total = 0, 0
    for day in sorted((d for d in daily_positives if d < last), reverse=True):
        days = (last - day).days
        total += daily_positives[day]
        if total >= target:
            break
    return int(min(max(days, MIN_LOOKBACK_DAYS), MAX_LOOKBACK_DAYS))


def make_clock(events, as_of: datetime | None = None, snapshot_days: int | None = None,
               lookback_days: int | None = None) -> Clock:
    from pyspark.sql import functions as F

    row = events.agg(F.min("event_time").alias("first"), F.max("event_time").alias("last")).first()
    if row["last"] is None:
        raise NoEvents("the event log has no events")
    first = row["first"].replace(tzinfo=UTC) if row["first"].tzinfo is None else row["first"]
    last = row["last"].replace(tzinfo=UTC) if row["last"].tzinfo is None else row["last"]
    as_of = as_of or last
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    end = as_of.date() + timedelta(days=1)
    start = first.date() + timedelta(days=1)
    days = [start + timedelta(days=k) for k in range((end - start).days + 1)]
    if not days:
        days = [end]
    if snapshot_days is not None:
        days = days[-snapshot_days:]
    if lookback_days is None:
        daily = (events.where(F.col("event_type").isin(*POSITIVE_TYPES) & (F.col("event_time") <= F.lit(as_of)))
                 .groupBy(F.to_date("event_time").alias("d")).count().collect())
        lookback_days = lookback_for({r["d"]: r["count"] for r in daily}, days[-1])
    return Clock(as_of=as_of, snapshots=tuple(days), lookback_days=lookback_days)
