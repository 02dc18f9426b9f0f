"""The feature clock's look-back, derived from the log's density."""

from __future__ import annotations

from datetime import date, timedelta

from spark_jobs.io import lookback_for


def _daily(days: int, per_day: int, last: date) -> dict[date, int]:
    return {last - timedelta(days=k): per_day for k in range(1, days + 1)}


def test_dense_log_keeps_the_30_day_floor():
    last = date(2024, 6, 1)
    assert lookback_for(_daily(60, 500_000, last), last) == 30  # 2M positives in 4 days


def test_sparse_log_looks_back_over_its_whole_span():
    last = date(2024, 6, 1)
    assert lookback_for(_daily(215, 450, last), last) == 215  # a 7-month rating log
    assert lookback_for(_daily(90, 1_000, last), last, target=30_000) == 30
    assert lookback_for(_daily(90, 1_000, last), last, target=45_000) == 45


def test_look_back_is_capped_and_ignores_days_after_the_snapshot():
    last = date(2024, 6, 1)
    assert lookback_for(_daily(800, 10, last), last) == 365
    later = {last + timedelta(days=1): 10**9, **_daily(10, 1, last)}
    assert lookback_for(later, last) == 30
