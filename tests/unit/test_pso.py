"""PSO and random search: integer and log dimensions decode properly, the budget is exact,
repeats are free, every trial is logged, and PSO finds a known optimum."""

import json

import numpy as np
import pytest

from training.pso import Dimension, MedianStopper, SearchSpace, pso_search, random_search

SPACE = SearchSpace((Dimension("lr", 1e-4, 1e-1, log=True), Dimension("experts", 1, 8, integer=True),
                     Dimension("x", -2.0, 2.0)))


def bowl(params, stopper=None):
    """Maximum 0 at lr = 1e-2, experts = 5, x = 0.5."""
    return -((np.log10(params["lr"]) + 2) ** 2) - (params["experts"] - 5) ** 2 - (params["x"] - 0.5) ** 2


def test_decoding_rounds_integers_and_unlogs():
    d = Dimension("units", 16, 128, integer=True, log=True)
    assert d.bounds() == pytest.approx((np.log10(16), np.log10(128)))
    assert d.decode(np.log10(40.4)) == 40 and isinstance(d.decode(1.7), int)
    assert d.decode(10.0) == 128 and d.decode(-3.0) == 16  # clipped to the bounds
    assert Dimension("experts", 1, 8, integer=True).decode(4.5001) == 5
    assert SPACE.decode([-2.0, 3.4, 0.25]) == {"lr": pytest.approx(0.01), "experts": 3, "x": 0.25}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pso_finds_the_optimum_with_an_integer_dimension(seed):
    result = pso_search(bowl, SPACE, 60, seed=seed)
    best = result.best.params
    assert best["experts"] == 5  # the integer dimension exactly at its optimum
    assert result.best.score > -0.15  # e.g. |log10 lr + 2| and |x − 0.5| both within ~0.27


def test_budget_is_exact_repeats_are_free_and_every_trial_is_logged(tmp_path):
    calls = []

    def objective(params, stopper):
        calls.append(params)
        return -abs(params["a"] - 1) - abs(params["b"] - 2)

    coarse = SearchSpace((Dimension("a", 0, 2, integer=True), Dimension("b", 0, 2, integer=True)))
    log = tmp_path / "trials.jsonl"
    result = pso_search(objective, coarse, 7, seed=0, log_path=log)
    # 9 points exist; the swarm settles on the optimum before spending 7 (revisits are free), no point twice
    assert len(result.trials) == len(calls) <= 7
    assert len({json.dumps(t.params, sort_keys=True) for t in result.trials}) == len(calls)
    assert result.best.params == {"a": 1, "b": 2}
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["number"] for x in lines] == list(range(1, len(calls) + 1)) and all(x["method"] == "pso" for x in lines)
    assert result.best_so_far() == sorted(result.best_so_far())
    assert len(pso_search(bowl, SPACE, 13, seed=0).trials) == 13  # a continuous space spends the budget exactly


def test_random_search_same_budget_and_space(tmp_path):
    result = random_search(bowl, SPACE, 12, seed=3, log_path=tmp_path / "r.jsonl")
    assert len(result.trials) == 12 and result.method == "random"
    assert all(1 <= t.params["experts"] <= 8 and 1e-4 <= t.params["lr"] <= 1e-1 for t in result.trials)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 12


def test_a_start_configuration_is_the_first_trial():
    start = {"lr": 0.003, "experts": 4, "x": 0.0}
    for search in (pso_search, random_search):
        first = search(bowl, SPACE, 4, seed=0, start=start).trials[0].params
        assert first == {"lr": pytest.approx(0.003), "experts": 4, "x": 0.0}
        for budget in (1, 2, 3, 5):  # the start may use up a small budget: no particle is left unscored
            trials = search(bowl, SPACE, budget, seed=0, start=start).trials
            assert len(trials) == budget and trials[0].params["experts"] == 4


def test_trainings_that_reseed_numpy_do_not_change_the_search():
    def reseeding(params, stopper):
        np.random.seed(123)  # what tf.keras.utils.set_random_seed does inside a trial
        return bowl(params)

    a = [t.params for t in pso_search(reseeding, SPACE, 12, seed=5).trials]
    b = [t.params for t in pso_search(bowl, SPACE, 12, seed=5).trials]
    assert a == b


def test_median_stopper():
    s = MedianStopper(min_trials=3)
    assert all(s.keep_going(1, v) for v in (0.70, 0.60, 0.65))  # first three always run
    assert not s.keep_going(1, 0.62)   # below the median 0.65 of earlier trials
    assert s.keep_going(1, 0.66)       # median of (0.60, 0.62, 0.65, 0.70) is 0.635


def test_pso_spread_starts_the_swarm_around_the_start():
    from training.pso import Dimension, SearchSpace, pso_search

    space = SearchSpace((Dimension("x", 0.0, 1.0), Dimension("y", 0.0, 1.0)))
    seen = []

    def objective(params, _stopper):
        seen.append((params["x"], params["y"]))
        return -((params["x"] - 0.9) ** 2 + (params["y"] - 0.1) ** 2)

    pso_search(objective, space, 5, seed=0, particles=4, start={"x": 0.9, "y": 0.1}, spread=0.05)
    first_swarm = seen[1:5]  # after the start
    assert all(abs(x - 0.9) < 0.25 and abs(y - 0.1) < 0.25 for x, y in first_swarm)
