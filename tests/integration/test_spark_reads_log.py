"""Spark (local mode, real JVM) reads the event log exactly as pandas does."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitrine.config import Home
from vitrine.data.eventlog import EventLog
from vitrine.data.ingest import ingest

pytestmark = pytest.mark.integration


def test_spark_reads_the_event_log(spark, home: Home, tiny_data: Path):
    ingest(home, events=[tiny_data / "events"])
    arrow = EventLog(home.events).read().to_pandas()
    df = spark.read.parquet(str(home.events))
    assert df.count() == len(arrow)
    types = dict(df.dtypes)
    assert types["event_time"] == "timestamp" and types["date"] == "date" and types["position"] == "bigint"
    by_type = {r["event_type"]: r["count"] for r in df.groupBy("event_type").count().collect()}
    assert by_type == arrow["event_type"].value_counts().to_dict()
    # microsecond timestamps survive the round trip (session time zone is UTC)
    first = df.orderBy("event_time", "event_id").first()
    expected = arrow.sort_values(["event_time", "event_id"]).iloc[0]
    assert first["event_id"] == expected["event_id"]
    assert first["event_time"] == expected["event_time"].tz_convert(None).to_pydatetime()
