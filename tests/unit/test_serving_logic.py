"""Serving logic without services: A/B buckets, diversity, validation, real-time updates,
the hot/new fallback, settings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serving.config import ServingConfig, Strategy
from serving.features import UserFeatures
from serving.items import ItemCache
from serving.pipeline import bucket_of, strategy_for
from serving.realtime import realtime_row
from serving.scoring import diversify, fuse
from serving.validation import InvalidRequest, event_batch, failure_of, recommend_request

CONFIG = ServingConfig()


def test_buckets_are_stable_and_spread():
    users = [f"user-{i}" for i in range(20_000)]
    buckets = np.array([bucket_of(u) for u in users])
    assert [bucket_of(u) for u in users[:50]] == buckets[:50].tolist()  # same user, same bucket
    counts = np.bincount(buckets, minlength=100)
    assert counts.min() > 140 and counts.max() < 260  # 200 expected per bucket
    share = np.mean([strategy_for(CONFIG, u).name == "coarse_only" for u in users])
    assert share == pytest.approx(0.10, abs=0.01)


def test_diversify_keeps_sorted_scores_and_spreads_merchants():
    # scores 1.0, 0.9, 0.8 from merchant A, 0.7 from B; decays 0.5 (merchant), 1.0 (category):
    # picks: A1 (1.0), then A2 = 0.9·0.5 = 0.45 vs B = 0.7 → B, then A2 0.45 vs A3 0.4 → A2, A3 0.8·0.25 = 0.2
    scores = np.array([1.0, 0.9, 0.8, 0.7])
    merchants = np.array(["A", "A", "A", "B"], dtype=object)
    cats = np.array(["c", "c", "c", "c"], dtype=object)
    picks, adjusted = diversify(scores, merchants, cats, 4, 0.5, 1.0)
    assert picks.tolist() == [0, 3, 1, 2]
    assert adjusted.tolist() == pytest.approx([1.0, 0.7, 0.45, 0.2])
    rng = np.random.default_rng(0)
    s = rng.random(300)
    picks, adjusted = diversify(s, rng.integers(0, 5, 300).astype(str), rng.integers(0, 9, 300).astype(str), 50,
                                0.6, 0.85)
    assert len(set(picks.tolist())) == 50 and np.all(np.diff(adjusted) <= 0)


def test_recommend_request_validation_messages():
    ok = recommend_request(CONFIG, user_id=" u1 ", k=5, device="IOS", exclude=["a", "a"])
    assert ok.user_id == "u1" and ok.device == "ios" and ok.exclude == frozenset({"a"}) and ok.request_id
    for kwargs, message in [({"user_id": "  ", "k": 1}, "user_id is required"),
                            ({"user_id": "x" * 200, "k": 1}, "at most 128"),
                            ({"user_id": "u", "k": 201}, "between 1 and 200"),
                            ({"user_id": "u", "k": 3, "scene": "moon"}, "context.scene 'moon'"),
                            ({"user_id": "u", "k": 3, "request_unix_s": -1}, "request_unix_s")]:
        with pytest.raises(InvalidRequest, match=message):
            recommend_request(CONFIG, **kwargs)


def test_event_batch_shape():
    with pytest.raises(InvalidRequest, match="at most 500"):
        event_batch(CONFIG, [{}] * 501)
    with pytest.raises(InvalidRequest, match=r"events\[1\] has unknown fields \['colour'\]"):
        event_batch(CONFIG, [{"user_id": "u"}, {"colour": "red"}])
    with pytest.raises(InvalidRequest, match=r"events\[0\] must be an object"):
        event_batch(CONFIG, ["click"])


def _events(rows):
    """(epoch µs, item, type) from (ISO time, item, type), oldest first."""
    return [(pd.Timestamp(t).value // 1000, item, kind) for t, item, kind in rows]


def test_realtime_row_counts_recent_and_bought():
    stored = UserFeatures({"user_realtime__rt_clicks": 2, "user_realtime__rt_purchases": 0,
                           "user_realtime__rt_last_event_at": pd.Timestamp("2024-05-02T10:00Z").to_pydatetime(),
                           "user_realtime__rt_recent_items": ["a", "b"], "user_realtime__rt_bought_items": ["z"]},
                          {"user_realtime": 1_714_644_000_000_000,  # 2024-05-02T10:00Z
                           "user_behaviour": 1_714_608_000_000_000})  # snapshot 2024-05-02T00:00Z
    events = _events([("2024-05-02T11:00Z", "b", "click"), ("2024-05-02T11:01Z", "c", "impression"),
                      ("2024-05-02T11:02Z", "c", "purchase")])
    row = realtime_row("u", stored, events, now_us=1_714_648_000_000_000, recent_max=3, bought_max=5)
    assert row["rt_clicks"] == 3 and row["rt_impressions"] == 1 and row["rt_purchases"] == 1
    assert row["rt_recent_items"] == ["c", "b", "a"]  # newest first, impressions are not engagement
    assert row["rt_bought_items"] == ["c", "z"]
    assert row["rt_last_event_at"] == pd.Timestamp("2024-05-02T11:02Z")
    assert row["event_timestamp"] == pd.Timestamp(1_714_648_000_000_000, unit="us", tz="UTC")


def test_realtime_counters_restart_after_a_newer_snapshot_and_timestamps_increase():
    stored = UserFeatures({"user_realtime__rt_clicks": 7,
                           "user_realtime__rt_last_event_at": pd.Timestamp("2024-05-01T23:00Z").to_pydatetime(),
                           "user_realtime__rt_recent_items": ["a"], "user_realtime__rt_bought_items": ["z"]},
                          {"user_realtime": 2_000_000_000_000_000, "user_behaviour": 1_714_608_000_000_000})
    row = realtime_row("u", stored, _events([("2024-05-02T01:00Z", "b", "click")]), now_us=5,
                           recent_max=3, bought_max=5)
    assert row["rt_clicks"] == 1 and row["rt_recent_items"] == ["b"]  # the snapshot covers the rest
    assert row["rt_bought_items"] == ["z"]  # bought items are kept: never recommend them again
    # the clock went backwards: the row still sorts after the stored one, or Feast would drop it
    assert row["event_timestamp"] == pd.Timestamp(2_000_000_000_000_001, unit="us", tz="UTC")


def _cache() -> ItemCache:
    ids = np.array(["h1", "h2", "h3", "n1", "n2", "off"], dtype=object)
    return ItemCache(ids, {"item_stats__heat": np.array([9.0, 8.0, 7.0, 0.1, 0.2, 100.0]),
                           "item_stats__age_days": np.array([90.0, 90.0, 90.0, 1.0, 2.0, 0.5]),
                           "item_attributes__is_online": np.array([True, True, None, True, True, False],
                                                                  dtype=object)}, marker=())


def test_fallback_interleaves_hot_and_new_and_skips_offline_and_blocked():
    # hot (online, by heat): h1, h3 (no flag = online), n2, n1; new (age <= 7 d): n1, n2;
    # every third slot is new; an item already placed is skipped → 4 distinct items for k = 5
    out = _cache().fallback(5, blocked={"h2"})
    assert [(i, r) for i, _, r in out] == [("h1", "hot"), ("h3", "hot"), ("n1", "new"), ("n2", "hot")]
    scores = [s for _, s, _ in out]
    assert scores == sorted(scores, reverse=True)


def test_config_from_json(tmp_path):
    path = tmp_path / "serving.json"
    path.write_text(json.dumps({"recall_k": 300, "strategies": [{"name": "a", "share": 100}]}))
    config = ServingConfig.from_json(path, port=1234)
    assert config.recall_k == 300 and config.port == 1234 and config.strategies == (Strategy("a", 100),)
    path.write_text(json.dumps({"recal_k": 3}))
    with pytest.raises(ValueError, match="unknown serving settings"):
        ServingConfig.from_json(path)
    with pytest.raises(ValueError, match="add up to 100"):
        ServingConfig(strategies=(Strategy("a", 50),))


def test_fuse_keeps_the_ranker_alone_at_share_one_and_mixes_normalised_scores_below():
    recall, ranker = np.array([3.0, 2.0, 1.0]), np.array([0.1, 0.3, 0.2])
    assert fuse(recall, ranker, 1.0) is ranker  # unchanged: the pipeline as it always ran
    # min-max: recall → 1, 0.5, 0; ranker → 0, 1, 0.5; at 0.25: 0.75·recall + 0.25·ranker
    assert fuse(recall, ranker, 0.25).tolist() == pytest.approx([0.75, 0.625, 0.125])
    assert fuse(recall, np.ones(3), 0.5).tolist() == pytest.approx([0.5, 0.25, 0.0])  # flat ranker: 0


def test_one_failure_map_for_both_transports():
    bad = failure_of(InvalidRequest("k must be between 1 and 500"))
    assert (bad.code, int(bad.http), bad.message, bad.internal) == (
        "INVALID_ARGUMENT", 400, "k must be between 1 and 500", False)
    boom = failure_of(KeyError("secret detail"))
    assert (boom.code, int(boom.http), boom.internal) == ("INTERNAL", 500, True)
    assert "secret" not in boom.message
