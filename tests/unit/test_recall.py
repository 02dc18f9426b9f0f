"""Recall routes and the merger: hand-checked scores, quotas per segment, filters, dedupe."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.index import make_index
from retrieval.merger import Merger
from retrieval.routes import (
    Catalogue,
    CategoryRoute,
    EmbeddingRoute,
    HotRoute,
    NeighbourRoute,
    NewRoute,
    UserState,
    new_expiry_days,
)


@pytest.fixture
def catalogue() -> Catalogue:
    n = 12
    return Catalogue(
        ids=np.array([f"i{k}" for k in range(n)], dtype=object),
        category=np.array(["a"] * 6 + ["b"] * 6, dtype=object),
        brand=np.array(["x", "y"] * 6, dtype=object),
        online=np.array([True] * 11 + [False]),  # i11 is offline
        heat=np.arange(n, 0, -1, dtype=float),  # i0 hottest
        age_days=np.array([100, 100, 100, 1, 100, 100, 100, 100, 2, 100, 100, 0.5]),
    )


def test_neighbour_route_sums_similarity_times_recency(catalogue):
    # i0's neighbours: i1 (0.5), i2 (0.4); i3's: i2 (1.0)
    neighbours = {0: (np.array([1, 2]), np.array([0.5, 0.4])), 3: (np.array([2]), np.array([1.0]))}
    route = NeighbourRoute("item_cf", catalogue, neighbours, decay=0.5)
    got = route.recall(UserState("u", recent_items=["i0", "i3"]), 5)
    # i2 = 1.0·0.4 + 0.5·1.0 = 0.9; i1 = 1.0·0.5 = 0.5
    assert got.rows.tolist() == [2, 1]
    assert got.scores.tolist() == pytest.approx([0.9, 0.5])


def test_new_route_expires_and_hot_route_orders_by_heat(catalogue):
    new = NewRoute(catalogue, expiry_days=3).recall(UserState("u"), 10)
    assert new.rows.tolist() == [11, 3, 8]  # listed 0.5, 1 and 2 days ago; the rest expired
    assert HotRoute(catalogue).recall(UserState("u"), 3).rows.tolist() == [0, 1, 2]


def test_hot_route_puts_what_is_hot_now_first_for_its_share(catalogue):
    """Live rows (counted from the event stream) take the first `share` of the hot route's
    list, the daily order the rest without repeating them; scores by position. A policy's copy
    of the route, made before the rows arrived, sees them too (one shared holder)."""
    import pandas as pd

    from retrieval.service import Retriever

    route = HotRoute(catalogue)
    tuned = Retriever(catalogue, {"hot": route}, pd.DataFrame()).merger_for({"hot": {"signal": "heat"}})
    copy = next(r for r in tuned.routes if r.name == "hot")
    assert copy is not route
    route.live.set(np.array([7, 1, 9]), 0.5)
    for r in (route, copy):
        got = r.recall(UserState("u"), 6)
        assert got.rows.tolist() == [7, 1, 9, 0, 2, 3]  # round(6 × 0.5) live, then heat order without 1
        assert np.all(np.diff(got.scores) < 0)
    assert route.recall(UserState("u"), 2).rows.tolist() == [7, 0]  # round(2 × 0.5) = 1 live row
    route.live.set(np.array([7, 1, 9]), 0.0)  # share 0: the daily order, its heat as scores
    assert route.recall(UserState("u"), 3).rows.tolist() == [0, 1, 2]
    assert route.recall(UserState("u"), 3).scores.tolist() == [12.0, 11.0, 10.0]


def test_neighbour_route_can_expand_bought_items_beyond_the_recent_ones(catalogue):
    neighbours = {0: (np.array([1]), np.array([0.5])), 4: (np.array([2]), np.array([1.0]))}
    user = UserState("u", recent_items=["i0"], bought={"i4", "i0"})
    recent_only = NeighbourRoute("item_cf", catalogue, neighbours)
    assert recent_only.recall(user, 5).rows.tolist() == [1]  # bought 0: as before
    # i4 is bought and not among the recent items: its neighbour i2 comes in at 0.3 × 1.0;
    # i0 is both, and counts once (as a recent item)
    got = NeighbourRoute("item_cf", catalogue, neighbours, bought=0.3).recall(user, 5)
    assert got.rows.tolist() == [1, 2] and got.scores.tolist() == pytest.approx([0.5, 0.3])


def test_new_expiry_comes_from_the_catalogue():
    fresh = np.array([1.0] * 5 + [100.0] * 95)
    assert new_expiry_days(fresh) == 7.0  # 5 % listed within a week: the floor holds
    old = np.arange(1000.0, 1100.0)  # listed years ago: the newest 5 % still count as new
    assert new_expiry_days(old) == 1004.0
    assert new_expiry_days(np.array([np.nan, np.inf])) == 7.0  # undated items are never new
    cat = Catalogue(ids=np.array([f"i{k}" for k in range(100)], dtype=object), category=np.full(100, "a", object),
                    brand=np.full(100, "x", object), online=np.ones(100, bool), heat=np.ones(100), age_days=old)
    assert NewRoute(cat).recall(UserState("u"), 10).rows.tolist() == [0, 1, 2, 3, 4]


def test_category_route_follows_preferences(catalogue):
    got = CategoryRoute(catalogue).recall(UserState("u", top_categories=["b", "a"], category_weights=[0.75, 0.25]),
                                          4)
    cats = catalogue.category[got.rows]
    assert list(cats).count("b") == 3 and list(cats).count("a") == 1
    assert got.rows[0] == 6  # the hottest item of the preferred category first


def test_embedding_route_uses_the_index(catalogue):
    vectors = np.eye(12, dtype=np.float32)
    route = EmbeddingRoute("two_tower", make_index("exact").build(vectors), rows=np.arange(12))
    got = route.recall(UserState("u", embedding=vectors[5] + 0.1 * vectors[7]), 2)
    assert got.rows.tolist() == [5, 7]
    assert route.recall(UserState("u"), 2).rows.size == 0  # no vector, no items


def routes(catalogue):
    neighbours = {0: (np.array([1, 2, 3, 4]), np.array([0.9, 0.8, 0.7, 0.6]))}
    return [NeighbourRoute("item_cf", catalogue, neighbours), CategoryRoute(catalogue),
            HotRoute(catalogue), NewRoute(catalogue, expiry_days=3)]


def test_bought_seen_offline_and_excluded_items_never_come_back(catalogue):
    merger = Merger(catalogue, routes(catalogue))
    user = UserState("u", segment="high_value", recent_items=["i0"], top_categories=["a"],
                     bought={"i1", "i0"}, seen={"i2"})
    got = merger.recall(user, 7, exclude=["i3"])
    ids = [c.item_id for c in got]
    assert not {"i0", "i1", "i2", "i3", "i11"} & set(ids)
    # deduped, and backfilled to k: exactly the 7 items left once the 5 are filtered out
    assert len(ids) == len(set(ids)) == 7
    assert len(merger.recall(user, 20, exclude=["i3"])) == 7


def test_dedupe_keeps_every_route_label(catalogue):
    merger = Merger(catalogue, routes(catalogue))
    got = merger.recall(UserState("u", segment="potential", recent_items=["i0"], top_categories=["a"]), 10)
    by_id = {c.item_id: c.routes for c in got}
    # i1 is both an item-CF neighbour of i0 and hot (and in category a)
    assert {"item_cf", "hot"} <= set(by_id["i1"])


def test_quotas_depend_on_the_segment(catalogue):
    quotas = {"high_value": {"item_cf": 1.0, "hot": 0.0}, "normal": {"item_cf": 0.0, "hot": 1.0}}
    merger = Merger(catalogue, routes(catalogue), quotas=quotas)
    buyer = merger.recall(UserState("u", segment="high_value", recent_items=["i0"]), 3)
    casual = merger.recall(UserState("v", segment="normal", recent_items=["i0"]), 3)
    assert [c.routes[0] for c in buyer] == ["item_cf"] * 3
    assert [c.item_id for c in casual] == ["i0", "i1", "i2"] and all(c.routes == ["hot"] for c in casual)
    with pytest.raises(ValueError):
        merger.recall(UserState("u"), 0)


def test_weighted_blend_sums_route_scores_and_sorts(catalogue):
    from retrieval.routes import Recalled, RecallRoute

    class Fixed(RecallRoute):
        def __init__(self, name, rows, scores):
            self.name, self.rows, self.scores = name, np.array(rows), np.array(scores, np.float32)

        def recall(self, user, k):
            return Recalled(self.rows[:k], self.scores[:k], self.name)

    cat = catalogue
    a = Fixed("a", [0, 1, 2], [3.0, 2.0, 1.0])  # normalised 1, 0.5, 0
    b = Fixed("b", [2, 1, 3], [10.0, 5.0, 0.0])  # normalised 1, 0.5, 0
    m = Merger(cat, [a, b], {"normal": {"a": 0.5, "b": 0.5}})
    plain = m.recall(UserState("u"), 4)
    assert {c.row: c.score for c in plain} == {0: 1.0, 1: 0.5, 2: 1.0, 3: 0.0}  # best route score
    blended = m.recall(UserState("u"), 4, weights={"a": 1.0, "b": 2.0})
    scores = {c.row: c.score for c in blended}
    assert scores == pytest.approx({0: 1.0, 1: 0.5 + 2 * 0.5, 2: 0.0 + 2 * 1.0, 3: 0.0})
    assert [c.row for c in blended] == [2, 1, 0, 3]
    assert sorted(blended[1].routes) == ["a", "b"]  # row 1: found by both
    # a route missing from the weights adds nothing
    assert {c.row: c.score for c in m.recall(UserState("u"), 4, weights={"a": 1.0})}[2] == 0.0


def test_policy_route_settings_apply_to_copies_only(catalogue):
    import pandas as pd

    from retrieval.service import Retriever

    catalogue.signals["clicks_7d"] = np.arange(catalogue.size, dtype=float)  # i11 "hottest" by clicks
    neighbours = {0: (np.array([1, 2]), np.array([0.5, 0.4])), 3: (np.array([2]), np.array([1.0]))}
    routes = {"item_cf": NeighbourRoute("item_cf", catalogue, neighbours), "hot": HotRoute(catalogue)}
    r = Retriever(catalogue, routes, pd.DataFrame())
    tuned = r.merger_for({"item_cf": {"recent": 1.0, "decay": 1.0}, "hot": {"signal": "clicks_7d"}})
    by_name = {route.name: route for route in tuned.routes}
    assert by_name["item_cf"].recent == 1 and isinstance(by_name["item_cf"].recent, int)
    assert by_name["hot"].recall(UserState("u"), 1).rows.tolist() == [11]
    assert routes["hot"].recall(UserState("u"), 1).rows.tolist() == [0]  # the served route is untouched
    assert routes["item_cf"].recent == 10
    assert r.merger_for({"item_cf": {"recent": 1.0, "decay": 1.0}, "hot": {"signal": "clicks_7d"}}) is tuned
    assert r.merger_for(None) is r.merger
    with pytest.raises(ValueError, match="no tunable setting"):
        r.merger_for({"hot": {"decay": 1.0}})
    with pytest.raises(ValueError, match="unknown popularity signal"):
        r.merger_for({"hot": {"signal": "nope"}})
