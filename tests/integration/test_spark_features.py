"""Spark feature jobs (real Spark, local mode) against values computed by hand on a small,
fixed event set."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from spark_jobs.run import run_features
from tests.integration.conftest import EVENTS, ITEMS
from vitrine.config import Home
from vitrine.data.ingest import ingest

pytestmark = pytest.mark.integration

def table(home: Home, name: str) -> pd.DataFrame:
    return pd.read_parquet(home.features / name)


def row(df: pd.DataFrame, key: str, value: str, snap: str) -> pd.Series:
    hit = df[(df[key] == value) & (df["event_timestamp"] == pd.Timestamp(snap, tz="UTC"))]
    assert len(hit) == 1, (value, snap, df[[key, "event_timestamp"]])
    return hit.iloc[0]


def test_snapshots_default_to_the_logs_clock_not_the_wall_clock(small_home: Home):
    import json

    manifest = json.loads((small_home.features / "manifest.json").read_text())
    assert manifest["as_of"] == "2024-05-03T12:00:10+00:00"
    assert manifest["snapshots"] == ["2024-05-02", "2024-05-03", "2024-05-04"]


def test_user_behaviour_windows_rates_recency(small_home: Home):
    ub = table(small_home, "user_behaviour")
    prefs = table(small_home, "user_preferences")
    assert "recent_items" not in ub.columns  # lists live in their own table
    ub = ub.merge(prefs, on=["user_id", "event_timestamp"], how="left")
    u1 = row(ub, "user_id", "u1", "2024-05-04")
    # 1-day window = 05-03 only; 7 days = everything
    assert (u1.impressions_1d, u1.clicks_1d, u1.carts_1d, u1.purchases_1d) == (1, 1, 0, 0)
    assert (u1.impressions_7d, u1.clicks_7d, u1.carts_7d, u1.purchases_7d) == (3, 3, 1, 1)
    assert u1.spend_30d == pytest.approx(40.0)  # 2 × 20
    # priors at this snapshot: CTR 4 clicks / 5 impressions, CVR 1 purchase / 4 clicks
    assert u1.ctr_30d == pytest.approx((3 + 20 * 0.8) / (3 + 20))
    assert u1.cvr_30d == pytest.approx((1 + 20 * 0.25) / (3 + 20))
    last = datetime(2024, 5, 4, tzinfo=UTC) - datetime(2024, 5, 3, 9, 0, 5, tzinfo=UTC)
    assert u1.days_since_last_event == pytest.approx(last.total_seconds() / 86400)
    assert u1.days_since_last_purchase == pytest.approx((2 * 86400 + 13 * 3600 + 55 * 60) / 86400)
    assert u1.segment == "potential"  # one purchase; high_value needs two
    assert u1.price_level == pytest.approx(20.0)  # geometric mean of 10, 20, 20, 40
    assert list(u1.recent_items) == ["i3", "i2", "i1"]
    assert list(u1.bought_items) == ["i2"]
    # decayed preferences (half-life 7 days, ages 3 and 1 days, weights click 1 cart 3 buy 5)
    d3, d1 = math.exp(-math.log(2) / 7 * 2.5), math.exp(-math.log(2) / 7 * 0.5)
    scores = {"a/y": 9 * d3, "b/z": 1 * d1, "a/x": 1 * d3}
    total = sum(scores.values())
    assert list(u1.top_categorys) == ["a/y", "b/z", "a/x"]
    assert list(u1.top_category_weights) == pytest.approx([scores[c] / total for c in u1.top_categorys],
                                                          rel=1e-5)
    assert list(u1.top_brands) == ["B2", "B1"]

    early = row(ub, "user_id", "u1", "2024-05-02")
    assert (early.impressions_1d, early.clicks_1d, early.carts_1d, early.purchases_1d) == (2, 2, 1, 1)
    u2 = row(ub, "user_id", "u2", "2024-05-04")
    assert u2.segment == "normal" and u2.clicks_1d == 1
    # nothing from the future: u2 has no row before its first event
    assert not ((ub.user_id == "u2") & (ub.event_timestamp < pd.Timestamp("2024-05-04", tz="UTC"))).any()


def test_item_stats_bayesian_rates_heat_freshness(small_home: Home):
    st = table(small_home, "item_stats")
    i1 = row(st, "item_id", "i1", "2024-05-04")
    assert (i1.impressions_30d, i1.clicks_30d, i1.purchases_30d) == (2, 2, 0)
    assert i1.ctr_30d == pytest.approx((2 + 100 * 0.8) / (2 + 100))
    h = lambda age: math.exp(-math.log(2) / 2 * (age - 0.5))  # noqa: E731
    assert i1.heat == pytest.approx(1.05 * h(3) + 1.05 * h(1))
    assert i1.age_days == pytest.approx(124.0)  # 2024-01-01 → 2024-05-04 (leap year)
    # items with no events still get a row (zeros), so new items are visible
    i3_early = row(st, "item_id", "i3", "2024-05-02")
    assert i3_early.impressions_30d == 0 and i3_early.heat == 0


def test_item_cf_and_samples(small_home: Home):
    cf = table(small_home, "item_cf").set_index("item_id")
    # baskets: s1 {i1, i2}, s3 {i1}: co(i1, i2) = 1, n(i1) = 2, n(i2) = 1 → 1 / sqrt(2)
    assert list(cf.loc["i1", "cf_neighbours"]) == ["i2"]
    assert cf.loc["i1", "cf_scores"][0] == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert cf.loc["i1", "event_timestamp"] == pd.Timestamp("2024-05-04", tz="UTC")
    assert "i3" not in cf.index  # alone in its session

    s = table(small_home, "samples").set_index(["user_id", "item_id"])
    assert len(s) == 5
    assert s.loc[("u1", "i2"), ["label_click", "label_purchase"]].tolist() == [1, 1]
    assert s.loc[("u1", "i1"), ["label_click", "label_purchase"]].tolist() == [1, 0]
    assert s.loc[("u2", "i2"), ["label_click", "label_purchase"]].tolist() == [0, 0]
    assert s.loc[("u2", "i2"), "event_timestamp"] == pd.Timestamp("2024-05-03T12:00:10Z")


def test_click_only_logs_get_sampled_negatives(tmp_path: Path, spark):
    clicks = "\n".join(line for line in EVENTS.splitlines() if ",impression," not in line)
    (tmp_path / "events.csv").write_text(clicks + "\n")
    home = Home(tmp_path / "home")
    ingest(home, events=[tmp_path / "events.csv"])
    run_features(home, spark, only=["samples", "user_behaviour"])
    s = table(home, "samples")
    positives = s[~s.sampled]
    assert len(positives) == 4 and (positives.label_click == 1).all()  # u1: i1, i2, i3; u2: i1
    negatives = s[s.sampled]
    assert len(negatives) > 0 and (negatives.label_click == 0).all()
    # a sampled negative is never something the user engaged with in that session
    pos_keys = set(zip(positives.user_id, positives.item_id, positives.session_id, strict=True))
    assert not set(zip(negatives.user_id, negatives.item_id, negatives.session_id, strict=True)) & pos_keys
    ub = table(home, "user_behaviour")
    assert ub.ctr_30d.isna().all()  # no impressions, no CTR — not a made-up number


def test_our_exposures_are_impressions_labelled_by_the_events_naming_them(tmp_path: Path, spark):
    """An answer (request r1) showed i1 and i2 to u1; u1 clicked i1 naming r1. The samples get
    one row per item shown, at the time served and its position, labelled by that click; the
    click labels only the exposure; an answer after the feature clock is left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from serving.exposures import SCHEMA

    header, *lines = EVENTS.strip().splitlines()
    csv = "\n".join([header + ",request_id", *(line + "," for line in lines),
                      "2024-05-03T09:30:00Z,u1,i1,click,s2,10,,r1"]) + "\n"
    (tmp_path / "events.csv").write_text(csv)
    (tmp_path / "items.csv").write_text(ITEMS)
    home = Home(tmp_path / "home")
    ingest(home, items=[tmp_path / "items.csv"], events=[tmp_path / "events.csv"])

    def shown(request: str, at: str, item: str, position: int) -> dict:
        return {"request_id": request, "served_at": datetime.fromisoformat(at), "user_id": "u1", "item_id": item,
                "position": position, "arm": "control", "degraded": False}

    rows = [shown("r1", "2024-05-03T09:20:00+00:00", "i1", 0), shown("r1", "2024-05-03T09:20:00+00:00", "i2", 1),
            shown("r2", "2024-05-03T13:00:00+00:00", "i3", 0)]  # after the clock (12:00:10)
    (home.exposures / "date=2024-05-03").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{n: r.get(n) for n in SCHEMA.names} for r in rows], schema=SCHEMA),
                   home.exposures / "date=2024-05-03" / "part-0.parquet")
    run_features(home, spark, only=["samples"])
    s = table(home, "samples")
    served = s[s.event_timestamp == pd.Timestamp("2024-05-03T09:20:00Z")].set_index("item_id")
    assert served.loc["i1", ["label_click", "position", "merchant_id"]].tolist() == [1, 0, "m1"]
    assert served.loc["i2", ["label_click", "label_purchase", "position"]].tolist() == [0, 0, 1]
    assert not served.sampled.any() and served.session_id.isna().all()
    assert len(s) == 5 + 2  # the log's five impressions, the two items shown; r2 and the click are no rows


def test_segment_thresholds_rise_with_the_log_and_never_fall_below_their_floors(spark):
    from datetime import date

    from spark_jobs.io import Clock
    from spark_jobs.user_features import UserFeatureSettings, segment_thresholds

    last, earlier = date(2024, 5, 3), date(2024, 5, 2)
    clock = Clock(as_of=datetime(2024, 5, 3, tzinfo=UTC), snapshots=(earlier, last), lookback_days=30)
    # at the last snapshot, 20 active users buying 0..19 times and clicking 10..48 times (even),
    # one idle user (no clicks) and an older snapshot with huge counts: neither may count
    rows = [(last, 10 + 2 * i, i) for i in range(20)] + [(last, 0, 500), (earlier, 999, 999)]
    sums = spark.createDataFrame(rows, "snap_day date, clicks_30d long, purchases_30d long")
    high_value, potential = segment_thresholds(sums, clock, UserFeatureSettings())
    assert high_value == 17  # the 90th percentile of 0..19 (approxQuantile: the 18th of 20 values)
    assert potential in (28, 30)  # the median active user's clicks (approximate quantile)
    quiet = spark.createDataFrame([(last, 1, 0), (last, 2, 1)], "snap_day date, clicks_30d long, purchases_30d long")
    assert segment_thresholds(quiet, clock, UserFeatureSettings()) == (2, 5)  # the floors hold
