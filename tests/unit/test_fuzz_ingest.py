"""Property-based fuzzing of `vitrine ingest` (hypothesis): whatever the rows of an events CSV
hold — unicode, control characters, huge or negative numbers, odd times, wrong types — every
row read is accepted, rejected with a field and a reason, or counted as a duplicate; nothing
raises, nothing is silently dropped."""

from __future__ import annotations

import csv
import io
import itertools

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitrine.config import Home
from vitrine.data.ingest import ingest

HEADER = ["event_time", "user_id", "item_id", "event_type", "session_id", "device", "scene", "position", "price",
          "quantity"]
odd_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
numbers = st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    odd_text)
times = st.one_of(st.sampled_from(["2024-05-01T10:00:00Z", "1677-01-01", "2262-04-11T23:47:16.854775808Z",
                                   "9999-12-31T23:59:59Z", "2024-02-30T00:00:00Z", "2024-05-01 10:00:00+14:00", ""]),
                  st.datetimes().map(lambda d: d.isoformat()), odd_text)
row = st.fixed_dictionaries({
    "event_time": times, "user_id": st.one_of(st.just("u1"), odd_text), "item_id": st.one_of(st.just("i1"), odd_text),
    "event_type": st.one_of(st.sampled_from(["click", "purchase", "impression", "cart"]), odd_text),
    "session_id": odd_text, "device": st.one_of(st.sampled_from(["ios", "android", "web", ""]), odd_text),
    "scene": st.one_of(st.sampled_from(["home", "search", ""]), odd_text),
    "position": numbers, "price": numbers, "quantity": numbers})
counter = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=12))
def test_every_ingested_row_is_accepted_rejected_with_a_reason_or_a_duplicate(tmp_path, rows):
    home = Home(tmp_path / f"home-{next(counter)}")
    text = io.StringIO()
    writer = csv.DictWriter(text, HEADER, lineterminator="\r\n")  # RFC 4180: quotes CR and LF in values
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / f"events-{next(counter)}.csv"
    path.write_bytes(text.getvalue().encode())
    report = ingest(home, events=[path]).tables["events"]
    assert report.accepted + report.rejected + report.duplicate == len(rows) == report.read or (
        report.read < len(rows) and report.rejected >= len(rows) - report.read)  # malformed lines: rejects too
    if report.rejected:
        rejects = pd.read_csv(report.rejects_file, dtype=str, keep_default_na=False)
        assert len(rejects) >= report.rejected and (rejects["reason"] != "").all()
