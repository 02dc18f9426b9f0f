"""Each validation rule rejects what it should, with row, field and reason, and keeps the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vitrine.config import Home
from vitrine.data.eventlog import EventLog
from vitrine.data.ingest import ingest
from vitrine.data.readers import InputError

HEADER = "event_time,user_id,item_id,event_type,session_id,device,scene,position,price,quantity"
GOOD = "2024-05-01T10:00:00Z,u1,i1,impression,s1,ios,home,0,9.5,"


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def rejects_of(home: Home, report, table: str = "events") -> pd.DataFrame:
    f = report.tables[table].rejects_file
    return pd.read_csv(f, dtype={"value": str}, keep_default_na=False) if f else pd.DataFrame()


# (bad line, field, words the reason must contain)
BAD_EVENTS = [
    (",u1,i1,click,s1,ios,home,0,9.5,", "event_time", "required value is empty"),
    ("yesterday-ish,u1,i1,click,s1,ios,home,0,9.5,", "event_time", "unparsable timestamp"),
    ("2024-05-01T10:00:00Z,,i1,click,s1,ios,home,0,9.5,", "user_id", "required value is empty"),
    ("2024-05-01T10:00:00Z,u1,,click,s1,ios,home,0,9.5,", "item_id", "required value is empty"),
    ("2024-05-01T10:00:00Z,u1,i1,like,s1,ios,home,0,9.5,", "event_type", "unknown value"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,toaster,home,0,9.5,", "device", "unknown value"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,moon,0,9.5,", "scene", "unknown value"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,home,-1,9.5,", "position", "below the minimum 0"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,home,1.5,9.5,", "position", "not an integer"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,home,0,cheap,", "price", "not a number"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,home,0,-3,", "price", "below the minimum 0"),
    ("2024-05-01T10:00:00Z,u1,i1,purchase,s1,ios,home,0,9.5,0", "quantity", "below the minimum 1"),
    # bounds: times a feature clock must never reach, strings past their cap, integers past int64
    ("2262-04-11T00:00:00Z,u1,i1,click,s1,ios,home,0,9.5,", "event_time", "outside the accepted window"),
    ("1900-01-01T00:00:00Z,u1,i1,click,s1,ios,home,0,9.5,", "event_time", "outside the accepted window"),
    ("2024-05-01T10:00:00Z," + "u" * 300 + ",i1,click,s1,ios,home,0,9.5,", "user_id", "longer than 256"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,home,99999999999999999999,9.5,", "position",
     "outside the 64-bit integer range"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,home,9007199254740993,9.5,", "position", "above the maximum"),
    ("2024-05-01T10:00:00Z,u1,i1,click,s1,ios,home,0,1e12,", "price", "above the maximum"),
]


@pytest.mark.parametrize(("line", "field", "reason"), BAD_EVENTS, ids=[b[1] + ":" + b[2] for b in BAD_EVENTS])
def test_each_event_rule_rejects_only_the_bad_row(home: Home, tmp_path: Path, line, field, reason):
    # rows 1 and 3 are good, row 2 is bad
    path = write(tmp_path, "events.csv", [HEADER, GOOD, line, GOOD.replace("u1", "u2")])
    report = ingest(home, events=[path])
    t = report.tables["events"]
    assert (t.read, t.accepted, t.rejected, t.duplicate) == (3, 2, 1, 0)
    rejects = rejects_of(home, report)
    assert rejects["row"].tolist() == [2]
    assert rejects["field"].tolist() == [field]
    assert reason in rejects["reason"].iloc[0]
    assert rejects["source"].iloc[0] == str(path)
    # the original row travels with the reject so it can be fixed and re-ingested
    record = json.loads(rejects["record"].iloc[0])
    assert set(record) >= {"event_time", "user_id", "item_id", "event_type"}
    assert EventLog(home.events).count() == 2


def test_enum_values_are_case_insensitive_and_blank_optionals_are_fine(home: Home, tmp_path: Path):
    path = write(tmp_path, "events.csv", [HEADER, "2024-05-01T10:00:00+02:00, u1 ,i1,CLICK,,,,,,"])
    report = ingest(home, events=[path])
    assert report.tables["events"].accepted == 1
    row = EventLog(home.events).read().to_pylist()[0]
    assert row["event_type"] == "click" and row["user_id"] == "u1"
    assert row["event_time"].isoformat() == "2024-05-01T08:00:00+00:00"  # offset → UTC
    assert row["position"] is None and row["device"] is None


def test_a_row_with_several_problems_is_reported_once_per_field(home: Home, tmp_path: Path):
    path = write(tmp_path, "events.csv", [HEADER, "nope,,i1,like,s1,ios,home,0,9.5,"])
    report = ingest(home, events=[path])
    rejects = rejects_of(home, report)
    assert report.tables["events"].rejected == 1
    assert sorted(rejects["field"]) == ["event_time", "event_type", "user_id"]


def test_missing_required_column_rejects_every_row_and_loses_none(home: Home, tmp_path: Path):
    path = write(tmp_path, "events.csv", ["event_time,user_id,event_type",
                                          "2024-05-01T10:00:00Z,u1,click", "2024-05-01T11:00:00Z,u2,click"])
    report = ingest(home, events=[path])
    t = report.tables["events"]
    assert (t.accepted, t.rejected) == (0, 2)
    assert set(rejects_of(home, report)["reason"]) == {"required column 'item_id' is missing from the file"}


def test_malformed_csv_row_is_rejected_with_its_row_number(home: Home, tmp_path: Path):
    path = write(tmp_path, "events.csv", [HEADER, GOOD, GOOD + ",extra,fields", GOOD.replace("u1", "u3")])
    report = ingest(home, events=[path])
    t = report.tables["events"]
    assert (t.read, t.accepted, t.rejected) == (3, 2, 1)
    rejects = rejects_of(home, report)
    assert rejects["row"].tolist() == [2]
    assert "malformed CSV row" in rejects["reason"].iloc[0]


def test_event_for_unknown_item_is_rejected_when_a_catalogue_exists(home: Home, tmp_path: Path):
    items = write(tmp_path, "items.csv", ["item_id,price", "i1,10", "i2,20"])
    events = write(tmp_path, "events.csv", [HEADER, GOOD, GOOD.replace("i1", "i9"), GOOD.replace("i1", "i2")])
    report = ingest(home, items=[items], events=[events])
    assert report.tables["events"].accepted == 2
    rejects = rejects_of(home, report)
    assert rejects[["row", "field"]].values.tolist() == [[2, "item_id"]]
    assert "unknown item" in rejects["reason"].iloc[0]


def test_without_a_catalogue_any_item_is_accepted(home: Home, tmp_path: Path):
    events = write(tmp_path, "events.csv", [HEADER, GOOD.replace("i1", "i9")])
    assert ingest(home, events=[events]).tables["events"].accepted == 1


def test_item_rules_and_unknown_merchant(home: Home, tmp_path: Path):
    merchants = write(tmp_path, "merchants.csv", ["merchant_id,name", "m1,Shop"])
    items = write(tmp_path, "items.csv", [
        "item_id,merchant_id,price,rating,status,updated_at",
        "i1,m1,10,4.5,online,2024-01-01T00:00:00Z",
        "i2,m7,10,4.5,online,2024-01-01T00:00:00Z",  # unknown merchant
        "i3,m1,10,7,online,2024-01-01T00:00:00Z",  # rating above 5
        "i4,m1,10,4,sold,2024-01-01T00:00:00Z",  # unknown status
        ",m1,10,4,online,2024-01-01T00:00:00Z",  # no id
    ])
    report = ingest(home, merchants=[merchants], items=[items])
    assert report.tables["items"].accepted == 1
    rejects = rejects_of(home, report, "items")
    assert rejects[["row", "field"]].values.tolist() == [[2, "merchant_id"], [3, "rating"], [4, "status"],
                                                         [5, "item_id"]]


def test_user_rules(home: Home, tmp_path: Path):
    users = write(tmp_path, "users.csv", [
        "user_id,age_band,gender,member_level,signup_at",
        "u1,25-34,F,2,2023-01-01",
        "u2,99,f,2,2023-01-01",
        "u3,25-34,f,9,2023-01-01",
        "u4,25-34,f,2,not a date",
    ])
    report = ingest(home, users=[users])
    assert report.tables["users"].accepted == 1
    assert rejects_of(home, report, "users")[["row", "field"]].values.tolist() == [
        [2, "age_band"], [3, "member_level"], [4, "signup_at"]]


def test_unreadable_inputs_fail_before_anything_is_written(home: Home, tmp_path: Path):
    good = write(tmp_path, "events.csv", [HEADER, GOOD])
    with pytest.raises(InputError, match="no such file"):
        ingest(home, events=[good, tmp_path / "missing.csv"])
    with pytest.raises(InputError, match="unknown format"):
        ingest(home, events=[write(tmp_path, "events.json", ["{}"])])
    assert EventLog(home.events).count() == 0
