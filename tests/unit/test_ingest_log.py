"""The event log and catalogues: idempotent re-ingest, CSV ≡ Parquet, upsert rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vitrine.config import Home
from vitrine.data.catalog import Catalog
from vitrine.data.eventlog import EventLog
from vitrine.data.ingest import ingest
from vitrine.data.schemas import ITEMS


def log_frame(home: Home) -> pd.DataFrame:
    df = EventLog(home.events).read().to_pandas()
    return df.sort_values("event_id").reset_index(drop=True)


def log_files(home: Home) -> list[Path]:
    return sorted(home.events.rglob("*.parquet"))


def test_reingest_changes_nothing(home: Home, tiny_data: Path):
    kw = dict(merchants=[tiny_data / "merchants.parquet"], items=[tiny_data / "items.parquet"],
              users=[tiny_data / "users.parquet"], events=[tiny_data / "events"])
    first = ingest(home, **kw)
    files, frame = log_files(home), log_frame(home)
    items_before = Catalog(home.catalog, ITEMS).history().num_rows
    second = ingest(home, **kw)

    for name, t in first.tables.items():
        assert t.rejected == 0 and t.duplicate == 0 and t.accepted == t.read > 0, name
        again = second.tables[name]
        assert (again.accepted, again.duplicate) == (0, t.read), name
    assert log_files(home) == files
    pd.testing.assert_frame_equal(log_frame(home), frame)
    assert Catalog(home.catalog, ITEMS).history().num_rows == items_before
    # every event of the generator is in the log exactly once
    manifest_total = sum(pq.read_metadata(f).num_rows for f in (tiny_data / "events").glob("*.parquet"))
    assert len(frame) == manifest_total == frame["event_id"].nunique()


def test_csv_and_parquet_give_the_same_log(tmp_path: Path, tiny_data: Path):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for f in sorted((tiny_data / "events").glob("*.parquet"))[:2]:
        pacsv.write_csv(pq.read_table(f), csv_dir / (f.stem + ".csv"))
    a, b = Home(tmp_path / "a"), Home(tmp_path / "b")
    ingest(a, events=sorted((tiny_data / "events").glob("*.parquet"))[:2])
    ingest(b, events=[csv_dir])
    fa, fb = log_frame(a), log_frame(b)
    assert len(fa) > 1000
    pd.testing.assert_frame_equal(fa, fb)


def test_timestamps_are_microsecond_utc_and_partitioned_by_date(home: Home, tiny_data: Path):
    ingest(home, events=[tiny_data / "events"])
    log = EventLog(home.events)
    assert log.dates()[0] == "2026-10-01" and len(log.dates()) >= 7
    one = next(home.events.glob("date=*/*.parquet"))
    assert pq.read_schema(one).field("event_time").type == pa.timestamp("us", tz="UTC")
    df = log.read(columns=["event_time", "date"]).to_pandas()
    assert (df["event_time"].dt.strftime("%Y-%m-%d") == df["date"].astype(str)).all()


def test_given_event_ids_are_kept_and_duplicates_in_one_file_counted(home: Home, tmp_path: Path):
    path = tmp_path / "e.csv"
    path.write_text("event_id,event_time,user_id,item_id,event_type\n"
                    "e1,2024-05-01T10:00:00Z,u1,i1,click\n"
                    "e1,2024-05-01T10:00:00Z,u1,i1,click\n"
                    "e2,2024-05-02T10:00:00Z,u1,i1,click\n"
                    ",2024-05-02T10:00:00Z,u1,i2,click\n"
                    ",2024-05-02T10:00:00Z,u1,i2,click\n")
    t = ingest(home, events=[path]).tables["events"]
    assert (t.read, t.accepted, t.duplicate) == (5, 3, 2)
    ids = log_frame(home)["event_id"].tolist()
    assert "e1" in ids and "e2" in ids and len(ids) == 3
    derived = [i for i in ids if i not in ("e1", "e2")]
    assert len(derived[0]) == 32


def test_catalogue_upsert_latest_updated_at_wins(home: Home, tmp_path: Path):
    first = tmp_path / "items1.csv"
    first.write_text("item_id,price,updated_at\n"
                     "i1,10,2024-01-02T00:00:00Z\n"
                     "i2,20,2024-01-02T00:00:00Z\n"
                     "i3,30,2024-01-02T00:00:00Z\n")
    second = tmp_path / "items2.csv"
    second.write_text("item_id,price,updated_at\n"
                      "i1,11,2024-01-03T00:00:00Z\n"  # newer: wins
                      "i2,19,2024-01-01T00:00:00Z\n"  # older: history only
                      "i3,31,\n"  # undated: replaces
                      "i4,40,2024-01-01T00:00:00Z\n"  # new
                      "i4,41,2024-01-05T00:00:00Z\n")  # later version in the same file wins
    ingest(home, items=[first])
    report = ingest(home, items=[second]).tables["items"]
    assert (report.inserted, report.updated, report.superseded, report.duplicate) == (1, 2, 2, 0)
    current = Catalog(home.catalog, ITEMS).read().set_index("item_id")["price"].to_dict()
    assert current == {"i1": 11, "i2": 20, "i3": 31, "i4": 41}
    assert Catalog(home.catalog, ITEMS).history().num_rows == 8
    # and the same file again is a no-op
    again = ingest(home, items=[second]).tables["items"]
    assert (again.accepted, again.duplicate) == (0, 5)


def test_derived_event_ids_are_fixed_forever():
    """An event without an id gets a content hash; the values are pinned (ids of logs already
    ingested must hold across versions), including nulls, a pre-1970 time, and floats."""
    from datetime import UTC, datetime

    from vitrine.data.eventlog import derive_event_ids
    from vitrine.data.schemas import EVENTS

    rows = [
        {"event_time": datetime(2026, 10, 1, 12, 30, tzinfo=UTC), "user_id": "u1", "item_id": "i9",
         "event_type": "click", "session_id": "s1", "device": "ios", "region": "north", "scene": "home",
         "position": 3, "price": 12.5, "quantity": 1, "merchant_id": "m2"},
        {"event_time": datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), "user_id": "u2", "item_id": "i1",
         "event_type": "purchase"},
        {"event_time": datetime(2026, 10, 1, 12, 30, tzinfo=UTC), "user_id": "u1", "item_id": "i9",
         "event_type": "click"},
    ]
    table = pa.Table.from_pylist([{c: r.get(c) for c in EVENTS.names} for r in rows], schema=EVENTS.arrow_schema())
    expected = ["a1feb1853aef43d70bce729119b70962", "eec86208fb71a4fa0d6ae2a81123153b",
                "5a2aff4ddf4f1c6a4fc8253312eef028"]
    assert derive_event_ids(table).to_pylist() == expected
    # one row alone hashes as it does among others
    assert [derive_event_ids(table.slice(i, 1)).to_pylist()[0] for i in range(3)] == expected
