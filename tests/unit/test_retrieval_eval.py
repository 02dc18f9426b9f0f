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


def test_popularity_window_counts_only_the_last_days():
    t = pd.to_datetime(["2024-05-01", "2024-05-01", "2024-05-09", "2024-05-10"], utc=True)
    inter = pd.DataFrame({"user": ["u1", "u2", "u3", "u4"], "item": [0, 0, 1, 1], "t": t})
    assert Popularity(inter, 2).scores.tolist() == [2, 2]
    assert Popularity(inter, 2, window_days=3).scores.tolist() == [0, 2]


def test_ease_closed_form_by_hand():
    from evaluation.baselines import EASE

    # u1: {0, 1}, u2: {0, 1}, u3: {1, 2}; item 3 never seen
    inter = pd.DataFrame({"user": ["u1", "u1", "u2", "u2", "u3", "u3"], "item": [0, 1, 0, 1, 1, 2]})
    model = EASE(inter, 4, l2=1.0)
    x = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1]], float)
    p = np.linalg.inv(x.T @ x + np.eye(3))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0)
    np.testing.assert_allclose(model.b, b, rtol=1e-5)
    blocked = np.array([True, False, False, False])
    # a user who touched item 0: item 1 is its strongest neighbour; item 3 (no data) never comes back
    assert model.recommend([0], blocked, 3).tolist()[0] == 1
    assert 3 not in model.recommend([0], blocked, 3).tolist()
    assert model.recommend([], blocked, 3).tolist() == []


def test_als_ranks_the_co_consumed_item_first():
    from evaluation.baselines import ALS

    # two blocks of users: {0, 1, 2} and {3, 4, 5}
    users = [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)]
    rows = [(u, i) for u in users[:20] for i in (0, 1, 2)] + [(u, i) for u in users[20:] for i in (3, 4, 5)]
    inter = pd.DataFrame(rows, columns=["user", "item"])
    model = ALS(inter, 6, factors=4, reg=0.1, alpha=10.0, iterations=8)
    blocked = np.zeros(6, bool)
    blocked[[0, 1]] = True
    assert model.recommend([0, 1], blocked, 1).tolist() == [2]
    blocked[:] = False
    blocked[[3, 4]] = True
    assert model.recommend([3, 4], blocked, 1).tolist() == [5]


def test_category_popularity_stays_in_the_users_categories():
    from evaluation.baselines import CategoryPopularity

    # items 0-2 in "a", 3-4 in "b"; popularity: 1 > 2 > 0 in a, 4 > 3 in b
    inter = pd.DataFrame({"user": ["u1", "u2", "u3", "u1", "u2", "u3", "u4"], "item": [1, 1, 1, 2, 2, 4, 0]})
    cats = np.array(["a", "a", "a", "b", "b"], dtype=object)
    model = CategoryPopularity(inter, 5, cats)
    blocked = np.zeros(5, bool)
    blocked[0] = True  # the user's own item
    assert model.recommend([0], blocked, 5).tolist() == [1, 2]  # only category a, by popularity
    # two a's and one b in the history: a's items first
    assert model.recommend([0, 1, 3], np.zeros(5, bool), 5).tolist() == [1, 2, 0, 4, 3]
    assert model.recommend([], blocked, 3).tolist() == []
