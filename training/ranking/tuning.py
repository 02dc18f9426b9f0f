"""Tuning the teacher: the search space (learning rate, experts, expert units, embedding size,
dropout) and the trial — a teacher fitted on a subsample of the training days for a couple
of epochs, scored by validation CTR AUC, stopped early when it trails the median."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ranking.features import TeacherEncoder
from training.pso import Dimension, MedianStopper, Outcome, SearchResult, SearchSpace, pso_search, random_search
from training.ranking.mmoe import MMoERanker, MMoESettings
from training.ranking.teacher_fit import Labelled, fit

SPACE = SearchSpace((
    Dimension("learning_rate", 3e-4, 1e-2, log=True),
    Dimension("experts", 1, 8, integer=True),
    Dimension("expert_units", 16, 128, integer=True, log=True),
    Dimension("embedding_dim", 4, 16, integer=True),
    Dimension("dropout", 0.0, 0.4),
))


class TeacherTrials:
    """Encodes the rows once; each trial builds and fits a fresh teacher on them."""

    def __init__(self, encoder: TeacherEncoder, train: Labelled, val: Labelled, base: MMoESettings, *,
                 subsample: int = 40_000, val_rows: int = 30_000, epochs: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.train = train.subset(np.sort(rng.permutation(len(train))[:subsample])) if len(train) > subsample \
            else train
        self.val = val.subset(np.sort(rng.permutation(len(val))[:val_rows])) if len(val) > val_rows else val
        self.encoder = encoder
        self.base = replace(base, epochs=epochs, patience=epochs)

    def __call__(self, params: dict, stopper: MedianStopper) -> Outcome:
        settings = replace(self.base, **params)
        model = MMoERanker(self.encoder, settings)
        result = fit(model, self.train, self.val, settings, self.encoder.segments,
                     keep_going=stopper.keep_going)
        return Outcome(result.best_val_auc, epochs=len(result.history),
                       stopped=result.stopped == "stopped by the tuner", curve=[h["val_auc"] for h in result.history])


def search(trials: TeacherTrials, method: str, budget: int, *, seed: int = 0, start_from_base: bool = True,
           log_path: Path | None = None) -> SearchResult:
    """PSO or random search; with `start_from_base` the base settings are the first trial of either."""
    start = {d.name: getattr(trials.base, d.name) for d in SPACE.dimensions} if start_from_base else None
    if method == "pso":
        return pso_search(trials, SPACE, budget, seed=seed, start=start, log_path=log_path)
    if method == "random":
        return random_search(trials, SPACE, budget, seed=seed, start=start, log_path=log_path)
    raise ValueError(f"unknown tuning method {method!r}: use 'pso' or 'random'")
