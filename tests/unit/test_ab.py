"""A/B results from the logs, checked against counts made by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.ab import ab_results, markdown, two_proportion_p, wilson
from serving.exposures import SCHEMA
from vitrine.data.schemas import EVENTS

T = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _write(home):
    shown = [("r1", "control", ["a", "b", "c"]), ("r2", "control", ["a", "b"]),
             ("r3", "coarse_only", ["a", "b", "c", "d"])]
    rows = [{"request_id": r, "served_at": T, "user_id": "u", "arm": arm, "model_version": "m", "degraded": False,
             "degraded_reason": "", "position": i, "item_id": item, "score": 1.0, "p_ctr": 0.1, "p_cvr": 0.1,
             "routes": "hot", "features": None} for r, arm, items in shown for i, item in enumerate(items)]
    (home.exposures / "date=2026-12-01").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), home.exposures / "date=2026-12-01" / "part-1.parquet")
    events = [("e1", "r1", "a", "click", None, None), ("e2", "r1", "a", "click", None, None),  # one click: twice
              ("e3", "r2", "b", "click", None, None), ("e4", "r2", "b", "purchase", 10.0, 2),
              ("e5", "r1", "x", "click", None, None),  # not shown in r1: not counted
              ("e6", None, "a", "click", None, None),  # names no answer
              ("e7", "r3", "c", "click", None, None), ("e8", "r9", "a", "click", None, None)]  # r9: no such answer
    schema = EVENTS.arrow_schema()
    table = pa.Table.from_pylist([
        {"event_id": e, "event_time": T, "user_id": "u", "item_id": item, "event_type": kind, "price": price,
         "quantity": qty, "request_id": r} for e, r, item, kind, price, qty in events], schema=schema)
    (home.events / "date=2026-12-01").mkdir(parents=True)
    pq.write_table(table, home.events / "date=2026-12-01" / "part-new.parquet")
    # a file written before events had a request_id: read with nulls there
    old = table.drop(["request_id"]).slice(0, 1)
    pq.write_table(old, home.events / "date=2026-12-01" / "part-old.parquet")


def test_ab_results_match_hand_counts(home):
    _write(home)
    control, arm = ab_results(home)
    assert (control.arm, control.answers, control.exposures, control.clicks, control.purchases) == (
        "control", 2, 5, 2, 1)
    assert (control.ctr, control.cvr, control.revenue, control.revenue_per_1000) == (0.4, 0.5, 20.0, 4000.0)
    assert (arm.arm, arm.answers, arm.exposures, arm.clicks, arm.purchases, arm.revenue) == (
        "coarse_only", 1, 4, 1, 0, 0.0)
    # Wilson 95 % of 2/5 and the pooled z-test of 1/4 against 2/5, by hand: z = -0.15 / sqrt(1/3 · 2/3 · 0.45)
    assert control.ctr_ci == pytest.approx((0.1176, 0.7693), abs=1e-4)
    assert arm.ctr_p_value == pytest.approx(0.6353, abs=1e-4) and control.ctr_p_value is None
    assert "| coarse_only | 1 | 4 | 1 | 25.00" in markdown([control, arm])
    assert ab_results(home, since=datetime(2026, 12, 2, tzinfo=UTC)) == []


def test_interval_and_test_edges():
    assert wilson(0, 0) == (0.0, 0.0) and wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert two_proportion_p(0, 0, 1, 2) is None and two_proportion_p(0, 5, 0, 5) == 1.0
