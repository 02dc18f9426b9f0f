"""Ranking samples conditioned on recall: positives recall proposed for the user's
point-in-time state, negatives from the rest of the same candidates (never an item engaged in
the basket), at the positive's time and context."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrieval.routes import Catalogue, CategoryRoute, HotRoute
from retrieval.service import Retriever
from training.ranking.negatives import NegativeSettings, logged_parts, recall_samples, resolve_source


@pytest.fixture
def retriever() -> Retriever:
    n = 10
    ids = np.array([f"i{k}" for k in range(n)], dtype=object)
    catalogue = Catalogue(ids=ids, category=np.array(["a"] * 5 + ["b"] * 5, dtype=object),
                          brand=np.array(["x"] * n, dtype=object), online=np.ones(n, bool),
                          heat=np.arange(n, 0, -1, dtype=float), age_days=np.full(n, 100.0))
    items = pd.DataFrame({"item_id": ids, "item_attributes__price": np.arange(n) * 10.0,
                          "item_attributes__merchant_id": [f"m{k % 3}" for k in range(n)]})
    # category "b" users get b items first; the hot route fills up the rest
    routes = {"category": CategoryRoute(catalogue), "hot": HotRoute(catalogue)}
    return Retriever(catalogue, routes, items, quotas={"normal": {"category": 0.5, "hot": 0.5}})


def positives() -> pd.DataFrame:
    t0 = pd.Timestamp("2026-01-05 10:00", tz="UTC")
    return pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2"],
        "item_id": ["i0", "i5", "i1", "i6"],
        "event_timestamp": [t0, t0 + pd.Timedelta(minutes=5), t0 + pd.Timedelta(days=1), t0],
        "session_id": [None, None, None, "s9"],
        "device": ["app", "web", "app", "web"],
        "label_click": 1, "label_purchase": [0, 1, 0, 0],
        "user_preferences__top_categorys": [["b"], ["b"], ["b"], None],
        "user_preferences__recent_items": [["i9"], ["i9"], ["i9", "i0", "i5"], None],
        "user_behaviour__segment": ["normal"] * 4,
    })


def test_positives_recall_missed_are_dropped_and_negatives_come_from_the_same_pool(retriever):
    pos = positives()
    kept, neg, stats = recall_samples(retriever, pos, NegativeSettings(per_positive=2, pool=6, seed=1))
    assert stats["baskets"] == 3  # u1 on two days (no session → the day), u2's session
    # u1 day 1, a "b" user who has seen i9: half category (i5, i6, i7), half hot (i0, i1, i2) —
    # i0 and i5 were proposed; day 2 (seen i9, i0, i5): i6, i7, i8 and i1, i2, i3 — i1 was;
    # u2 (no preferences): hot items only — i6 was not proposed, so that positive goes
    assert kept.tolist() == [True, True, True, False]
    assert stats["positives_recalled"] == 3
    assert (neg["label_click"] == 0).all() and (neg["label_purchase"] == 0).all() and neg["sampled"].all()
    assert set(neg["user_id"]) == {"u1"}  # u2's only positive was dropped: no negatives for it
    day1 = neg[neg["event_timestamp"].dt.day == 5]
    # the pool minus the basket's i0 and i5, each once: 2 positives × 2, without replacement
    assert sorted(day1["item_id"]) == ["i1", "i2", "i6", "i7"]
    assert sorted(day1["device"]) == ["app", "app", "web", "web"]  # each positive's own context
    day2 = neg[neg["event_timestamp"].dt.day == 6]
    assert len(day2) == 2 and not set(day2["item_id"]) & {"i1", "i9", "i0", "i5"}
    row = neg.iloc[0]  # price and merchant are the candidate's own
    assert row["price"] == int(row["item_id"][1:]) * 10.0 and row["merchant_id"] == f"m{int(row['item_id'][1:]) % 3}"


def test_source_is_logged_when_the_samples_are_impressions():
    shown = pd.DataFrame({"sampled": [False, False]})
    drawn = pd.DataFrame({"sampled": [False, True]})
    assert resolve_source(shown, NegativeSettings()) == "logged"
    assert resolve_source(drawn, NegativeSettings()) == "recall"
    assert resolve_source(drawn, NegativeSettings(source="popularity")) == "popularity"
    with pytest.raises(ValueError, match="choose one of"):
        NegativeSettings(source="random")


def test_exposures_nobody_clicked_are_negatives_not_positives_to_condition():
    # a click log's positives, popularity draws, and rows of our own exposures (clicked or not)
    rows = pd.DataFrame({"item_id": ["click", "drawn", "shown-clicked", "shown-ignored"],
                         "sampled": [False, True, False, False], "label_click": [1, 0, 1, 0]})
    positives, shown = logged_parts(rows)
    assert positives["item_id"].tolist() == ["click", "shown-clicked"]
    assert shown["item_id"].tolist() == ["shown-ignored"]
