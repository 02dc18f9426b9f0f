"""Hyper-parameter search: particle swarm optimisation (pyswarms' global-best PSO) and a
random-search baseline over the same space and trial budget.

- **Space**: each dimension has bounds, optionally log-scaled (searched in log10) and/or
  integer. Particles move in the continuous box; a position is *decoded* by rounding integer
  dimensions to the nearest integer (bounds inclusive), so a particle can sit between two
  integers but is always evaluated at one. Decoded configurations already evaluated are not
  trained again: the particle gets the recorded score and no budget is spent.
- **Budget**: the number of trainings. PSO runs `particles` (≈√budget, 3..8) per iteration
  until the budget is spent (or, when the swarm only revisits trained points, for at most
  4 × budget / particles iterations — a search can end under budget); particles left over in
  the last iteration get no evaluation (cost +inf, so they cannot become a best).
- **Early stopping of bad trials**: `MedianStopper` — after each epoch a trial whose
  validation score is below the median of earlier trials at the same epoch stops (from the
  third trial on); its best score so far stands.
- **Start**: optionally a known configuration (the defaults) is the first trial of either
  method, so a search never ends below it on the trial objective. For PSO it is not a particle
  (it would pull the swarm towards a point already known).
- **Log**: every trial (method, seed, parameters, score, epochs run, stopped or not, time)
  goes to a JSON-lines file as it finishes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# Clerc & Kennedy's constriction coefficients (inertia 0.7298, c1 = c2 = 1.49618): stable
# convergence without velocity clamping, the usual default
CONSTRICTION = {"c1": 1.49618, "c2": 1.49618, "w": 0.7298}


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float
    high: float
    integer: bool = False
    log: bool = False

    def bounds(self) -> tuple[float, float]:
        return (math.log10(self.low), math.log10(self.high)) if self.log else (self.low, self.high)

    def encode(self, value: float) -> float:
        """The position of a value (inverse of `decode` up to rounding)."""
        return math.log10(value) if self.log else float(value)

    def decode(self, x: float):
        lo, hi = self.bounds()
        v = float(np.clip(x, lo, hi))
        v = 10 ** v if self.log else v
        return int(np.clip(round(v), self.low, self.high)) if self.integer else v


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        b = np.array([d.bounds() for d in self.dimensions], dtype=np.float64)
        return b[:, 0], b[:, 1]

    def decode(self, position: Sequence[float]) -> dict:
        return {d.name: d.decode(x) for d, x in zip(self.dimensions, position, strict=True)}

    def encode(self, params: dict) -> np.ndarray:
        return np.array([d.encode(params[d.name]) for d in self.dimensions], dtype=np.float64)


@dataclass
class Outcome:
    """What an objective returns: the score to maximise, and how the trial went."""

    score: float
    epochs: int = 1
    stopped: bool = False
    curve: list[float] = field(default_factory=list)


@dataclass
class Trial:
    number: int
    method: str
    seed: int
    params: dict
    score: float
    epochs: int
    stopped: bool
    seconds: float
    curve: list[float]


@dataclass
class SearchResult:
    method: str
    seed: int
    trials: list[Trial]

    @property
    def best(self) -> Trial:
        return max(self.trials, key=lambda t: -np.inf if np.isnan(t.score) else t.score)

    def best_so_far(self) -> list[float]:
        return np.maximum.accumulate(np.nan_to_num([t.score for t in self.trials], nan=-np.inf)).tolist()


class MedianStopper:
    """Median stopping rule over the trials of one search."""

    def __init__(self, min_trials: int = 3):
        self.min_trials = min_trials
        self.by_epoch: dict[int, list[float]] = {}

    def keep_going(self, epoch: int, score: float) -> bool:
        earlier = self.by_epoch.setdefault(epoch, [])
        ok = len(earlier) < self.min_trials or score >= float(np.median(earlier))
        earlier.append(score)
        return ok


Objective = Callable[[dict, MedianStopper], Outcome | float]


class _Runner:
    """Evaluates decoded configurations within a budget, caching repeats, logging trials."""

    def __init__(self, objective: Objective, method: str, seed: int, budget: int, log_path: Path | None):
        self.objective, self.method, self.seed, self.budget = objective, method, seed, budget
        self.log_path = log_path
        self.trials: list[Trial] = []
        self.cache: dict[str, float] = {}
        self.stopper = MedianStopper()

    @property
    def spent(self) -> bool:
        return len(self.trials) >= self.budget

    def score(self, params: dict) -> float:
        key = json.dumps(params, sort_keys=True)
        if key in self.cache:
            return self.cache[key]
        if self.spent:
            return float("nan")
        state = np.random.get_state()  # trainings reseed NumPy; the search keeps its own stream
        started = time.perf_counter()
        out = self.objective(params, self.stopper)
        np.random.set_state(state)
        out = out if isinstance(out, Outcome) else Outcome(float(out))
        trial = Trial(len(self.trials) + 1, self.method, self.seed, params, float(out.score), out.epochs, out.stopped,
                      round(time.perf_counter() - started, 2), [float(c) for c in out.curve])
        self.trials.append(trial)
        self.cache[key] = trial.score
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(asdict(trial)) + "\n")
        return trial.score


def pso_search(objective: Objective, space: SearchSpace, budget: int, *, seed: int = 0,
               particles: int | None = None, options: dict | None = None, start: dict | None = None,
               spread: float | None = None, log_path: Path | None = None) -> SearchResult:
    """Maximise `objective` with global-best PSO within `budget` trainings. `start`: a known
    configuration (e.g. the defaults), trained first and counted in the result, but not one of
    the particles: as a particle it became the global best after the first iteration whenever
    the random ones were worse, and a 3-particle swarm then spent most of a 12-trial budget
    around it (docs/benchmarks.md "Tuning"). The particles start uniformly in the box, or, with
    `spread` and a `start`, normally around the start (sd = spread × each dimension's range):
    a local search, for when the start is already good (the pipeline's recall blend starts from
    its best single route)."""
    import pyswarms as ps

    if budget < 1:
        raise ValueError("the tuning budget must be at least 1 trial")
    runner = _Runner(objective, "pso", seed, budget, log_path)
    lo, hi = space.bounds()
    if start is not None:  # scored first, but not a particle: it must not become the swarm's attractor
        runner.score(space.decode(np.clip(space.encode(start), lo, hi)))
        if runner.spent:  # a budget of 1: the start was the search
            return SearchResult("pso", seed, runner.trials)
    n = particles or int(np.clip(round(math.sqrt(budget)), 3, 8))
    n = min(n, budget - len(runner.trials))  # the first iteration must score every particle
    np.random.seed(seed)  # pyswarms draws from NumPy's global generator
    if spread is not None and start is not None:
        centre = np.clip(space.encode(start), lo, hi)
        init = np.clip(centre + np.random.normal(0, spread, (n, len(lo))) * (hi - lo), lo, hi)
    else:
        init = np.random.uniform(lo, hi, size=(n, len(space.dimensions)))
    optimizer = ps.single.GlobalBestPSO(n_particles=n, dimensions=len(space.dimensions),
                                        options=options or CONSTRICTION, bounds=(lo, hi), init_pos=init)

    def cost(positions: np.ndarray) -> np.ndarray:
        scores = np.array([runner.score(space.decode(p)) for p in positions])
        return np.where(np.isnan(scores), np.inf, -scores)

    # repeats are free and particles past the budget are not evaluated, so one `optimize` call
    # with generous iterations ends with the budget spent (later iterations cost nothing)
    optimizer.optimize(cost, iters=4 * -(-budget // n), verbose=False)
    return SearchResult("pso", seed, runner.trials)


def random_search(objective: Objective, space: SearchSpace, budget: int, *, seed: int = 0,
                  start: dict | None = None, log_path: Path | None = None) -> SearchResult:
    """Uniform draws over the same (log-scaled) box, decoded the same way (`start` first)."""
    if budget < 1:
        raise ValueError("the tuning budget must be at least 1 trial")
    runner = _Runner(objective, "random", seed, budget, log_path)
    rng = np.random.default_rng(seed)
    lo, hi = space.bounds()
    if start is not None:
        runner.score(space.decode(np.clip(space.encode(start), lo, hi)))
    for _ in range(50 * budget):
        if runner.spent:
            break
        runner.score(space.decode(rng.uniform(lo, hi)))
    return SearchResult("random", seed, runner.trials)
