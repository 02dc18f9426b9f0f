"""The pipeline evaluation's choices, on a stand-in replay whose answers depend on the policy:
a stage is kept only if validation Recall@20 does not fall; the blend search never ends below
its best start; warnings name a loss to popularity and empty routes."""

from __future__ import annotations

from evaluation.choices import RANKER_SHARES, blend_policy, decide_stages, tune_blend, warnings_for


class FakeRoute:
    def __init__(self, recent=10, decay=0.8, bought=0.0):
        self.recent, self.decay, self.bought = recent, decay, bought


class NeighbourRoute(FakeRoute):  # the blend search looks routes' tunable settings up by class name
    pass


class FakeReplay:
    """Two users; each held-out item is found only under some policies."""

    def __init__(self, good):
        self.good = good  # policy -> bool: whether the answer hits
        self.catalogue = type("C", (), {"size": 100})()
        self.routes = ["hot", "item_cf"]
        self.base = type("B", (), {"retriever": type("R", (), {"routes": {"hot": FakeRoute(),
                                                                          "item_cf": NeighbourRoute()}})()})()
        self.calls = []

    def answer(self, users, policy, k, exclude):
        self.calls.append(policy)
        hit = self.good(policy)
        return {u: ([f"{u}-x"] if hit else []) + [f"filler{i}" for i in range(k)] for u in users}, [1.0], 0


USERS = ["a", "b"]
HELD = {"a": {"a-x"}, "b": {"b-x"}}


def test_a_stage_that_lowers_recall_is_switched_off_and_the_next_compares_to_what_stays():
    # coarse loses (no hit), fine wins only without coarse, diversity neutral
    replay = FakeReplay(lambda p: not p.coarse)
    on, reasons, _, shares = decide_stages(replay, USERS, HELD, {}, (20,), {"hot": 1.0}, True, lambda *_: None)
    assert on == {"coarse": False, "fine": True, "diversity": True}
    assert shares == {"coarse": 1.0, "fine": 1.0}  # ties go to the ranker alone
    assert reasons["coarse"].startswith("off: validation recall@20 0.0000 with it at 1.00 of the stage's score")
    assert "vs 1.0000 for 'recall (tuned blend)'" in reasons["coarse"]
    assert "for 'recall (tuned blend)'" in reasons["fine"]
    assert "for '+ fine (MMoE teacher)'" in reasons["diversity"]
    fine_policy = replay.calls[1 + len(RANKER_SHARES)]  # recall once, coarse at every share
    assert fine_policy.fine and not fine_policy.coarse  # fine was tried on top of recall only


def test_a_ranker_is_judged_at_its_best_share_of_the_stage_score():
    # the coarse stage helps only when it re-orders recall's list at half the score
    replay = FakeReplay(lambda p: p.coarse and p.coarse_weight == 0.5)
    on, reasons, _, shares = decide_stages(replay, USERS, HELD, {}, (20,), {}, True, lambda *_: None)
    assert on["coarse"] and shares["coarse"] == 0.5
    assert "at 0.50 of the stage's score" in reasons["coarse"]
    served = next(p for p in replay.calls if p.fine)
    assert served.coarse and served.coarse_weight == 0.5  # fine is tried on top of the chosen coarse


def test_no_rankers_means_coarse_and_fine_off_with_the_reason():
    replay = FakeReplay(lambda p: True)
    on, reasons, _, _ = decide_stages(replay, USERS, HELD, {}, (20,), {"hot": 1.0}, False, lambda *_: None)
    assert not on["coarse"] and not on["fine"] and "no ranker trained" in reasons["coarse"]


def test_blend_search_never_ends_below_its_best_start():
    # only item_cf alone (hot weight 0) hits: a corner the search must keep
    replay = FakeReplay(lambda p: p.route_weights.get("hot", 0) == 0 and p.route_weights.get("item_cf", 0) > 0)
    params, tried = tune_blend(replay, USERS, HELD, {}, 8, 0, lambda *_: None)
    assert params["hot"] == 0.0 and params["item_cf"] > 0
    assert max(t["score"] for t in tried) == 1.0
    policy = blend_policy(params)
    assert policy.route_params["item_cf"]["recent"] == 10 and policy.route_params["hot"]["signal"] == "heat"


def test_warnings_name_a_loss_to_popularity_and_empty_routes():
    metrics = {"served": {"recall@20": 0.1}, "popularity": {"recall@20": 0.2}}
    routes = {"new": {"users": 0.0, "items": 0}, "hot": {"users": 1.0, "items": 50}}
    w = warnings_for(metrics, routes)
    assert any("loses to popularity" in x for x in w)
    assert any("'new' returns nothing for 100%" in x for x in w) and not any("'hot'" in x for x in w)


def test_objectives():
    import pytest

    from evaluation.choices import objective_of

    m = {"recall@20": 0.2, "ndcg@20": 0.4}
    assert objective_of(m) == 0.2
    assert objective_of(m, "recall+ndcg@20") == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown objective"):
        objective_of(m, "map@20")
