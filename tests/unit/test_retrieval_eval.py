"""Retrieval evaluation pieces against hand values: the hold-out split, the baselines, the
report's verdict, feature-table reads as of a time."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from evaluation.baselines import ItemKNN, Popularity
from evaluation.holdout import split_holdout
from evaluation.retrieval import RetrievalReport
from retrieval.tables import latest_rows


def _positives(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_time"])
    df["event_time"] = pd.to_datetime(df["event_time"], utc=True, format="ISO8601")
    return df


def test_split_holds_out_each_users_new_items_after_the_last_day():
    df = _positives([
        ("u1", "a", "click", "2024-05-01T10:00Z"), ("u1", "b", "click", "2024-05-02T10:00Z"),
        ("u1", "a", "purchase", "2024-05-03T09:00Z"),  # re-engagement: not a new item
        ("u1", "c", "click", "2024-05-03T10:00Z"),
        ("u2", "a", "click", "2024-05-02T23:59:59Z"), ("u3", "d", "click", "2024-05-03T00:00Z"),
    ])
    h = split_holdout(df, days=1)
    assert h.split == datetime(2024, 5, 3, tzinfo=UTC)
    assert h.test == {"u1": {"c"}, "u3": {"d"}}
    assert (h.train["event_time"] < pd.Timestamp(h.split)).all() and len(h.train) == 3
    assert split_holdout(df, days=2).split == datetime(2024, 5, 2, tzinfo=UTC)
    # sessions spilling a few minutes past the last midnight do not make a 20-minute hold-out
    late = pd.concat([df, _positives([("u4", "e", "click", "2024-05-04T00:20Z")])])
    assert split_holdout(late, days=1).split == datetime(2024, 5, 3, tzinfo=UTC)


def test_split_needs_history_before_the_split():
    with pytest.raises(Exception, match="nothing before the split"):
        split_holdout(_positives([("u1", "a", "click", "2024-05-03T10:00Z")]))


def test_popularity_counts_distinct_users_and_skips_blocked():
    inter = pd.DataFrame({"user": ["u1", "u1", "u2", "u3", "u2"], "item": [0, 0, 0, 1, 1]})
    pop = Popularity(inter, 4)
    assert pop.scores.tolist() == [2, 2, 0, 0]
    blocked = np.array([True, False, False, False])
    assert pop.recommend([], blocked, 2).tolist()[0] == 1


def test_item_knn_cosine_by_hand():
    # u1: {0, 1}, u2: {0, 2}, u3: {0}
    inter = pd.DataFrame({"user": ["u1", "u1", "u2", "u2", "u3"], "item": [0, 1, 0, 2, 0]})
    knn = ItemKNN(inter, 4)
    sim = knn.sim.toarray()
    assert sim[0, 1] == pytest.approx(1 / np.sqrt(3 * 1))  # co-occur once; |0| = 3 users, |1| = 1
    assert sim[1, 2] == 0 and sim[0, 0] == 0
    got = knn.recommend([1], np.array([False, True, False, False]), 3)
    assert got.tolist() == [0]  # item 1 blocked (seen); only item 0 is similar to it
    assert knn.recommend([], np.zeros(4, bool), 3).tolist() == []


def test_report_verdict_needs_merged_strictly_best():
    def m(r):
        return {"recall@100": r, "ndcg@100": r / 2, "coverage@100": 0.1}

    report = RetrievalReport("2024-05-03", 10, 100, (100,), {"merged": m(0.3), "hot": m(0.2), "item_knn": m(0.25)})
    assert report.merged_wins(100)
    assert report.table().index[0] == "merged"
    assert "| merged | 0.3000 | 0.1500 | 0.1000 |" in report.markdown()
    report.metrics["hot"] = m(0.3)
    assert not report.merged_wins(100)


def test_latest_rows_as_of(tmp_path):
    df = pd.DataFrame({"item_id": ["a", "a", "b"], "heat": [1.0, 2.0, 3.0],
                       "event_timestamp": pd.to_datetime(["2024-05-01", "2024-05-03", "2024-05-02"], utc=True)})
    df.to_parquet(tmp_path / "t.parquet")
    got = latest_rows(tmp_path / "t.parquet", "item_id", datetime(2024, 5, 2, tzinfo=UTC))
    assert dict(zip(got["item_id"], got["heat"], strict=True)) == {"a": 1.0, "b": 3.0}
    assert len(latest_rows(tmp_path / "t.parquet", "item_id")) == 2
