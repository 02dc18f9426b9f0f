"""Fitting the MMoE teacher (and the single-task baselines) on encoded rows: a plain
GradientTape loop over epochs with per-segment task weights, a validation score after every
epoch (`MMoESettings.select_on`), early stopping with the best epoch's weights restored, and an optional hook that lets
a tuner stop a bad trial early. With `ema_epochs` (default 1) what is validated, kept and saved is
a moving average of the weights (`WeightAverage`); training itself goes on from the raw ones."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from training.ranking.metrics import auc
from training.ranking.mmoe import MMoERanker, MMoESettings
from training.ranking.task import SegmentTaskWeights, per_example_losses

Arrays = dict[str, np.ndarray]
_PREDICT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Labelled:
    """Encoded model inputs with their labels (and user ids, for GAUC)."""

    inputs: Arrays
    click: np.ndarray
    purchase: np.ndarray
    users: np.ndarray

    def __len__(self) -> int:
        return len(self.click)

    def subset(self, mask: np.ndarray) -> Labelled:
        return Labelled({k: v[mask] for k, v in self.inputs.items()}, self.click[mask], self.purchase[mask],
                        self.users[mask])


@dataclass
class FitResult:
    model: MMoERanker
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    # the best epoch's selection score (`MMoESettings.select_on`): validation CTR AUC by default,
    # the mean of CTR AUC and clicked-row CVR AUC with "ctr+cvr"; what tuning compares
    best_val_auc: float = float("nan")
    stopped: str = ""  # why training ended before `epochs`, if it did
    seconds: float = 0.0
    task_weights: dict = field(default_factory=dict)


def predict(model: MMoERanker, inputs: Arrays, batch: int = 8192, logits: bool = False) -> dict[str, np.ndarray]:
    """Probabilities per task: p_ctr, p_cvr and (teacher) p_ctcvr = p_ctr · p_cvr; with
    `logits`, the raw logits per task instead (keys "ctr", "cvr")."""
    call = _PREDICT.get(model)
    if call is None:  # one traced function per model, not one per call (kept off the model, so not saved)
        call = _PREDICT[model] = tf.function(lambda f: model(f, training=False))
    parts: dict[str, list[np.ndarray]] = {}
    n = len(inputs["row_cat"])
    for i in range(0, n, batch):
        out = call({k: tf.constant(v[i:i + batch]) for k, v in inputs.items()})
        for t, logit in out.items():
            parts.setdefault(t, []).append(logit.numpy() if logits else tf.sigmoid(logit).numpy())
    if logits:
        return {t: np.concatenate(v) for t, v in parts.items()}
    probs = {f"p_{t}": np.concatenate(v) if v else np.zeros(0, np.float32) for t, v in parts.items()}
    if "p_ctr" in probs and "p_cvr" in probs:
        probs["p_ctcvr"] = probs["p_ctr"] * probs["p_cvr"]
    return probs


SELECT_ON = ("ctr", "ctr+cvr")


def validation_aucs(probs: dict[str, np.ndarray], data: Labelled) -> dict[str, float]:
    """Per head: "ctr" — CTR AUC on every row; "cvr" — pCVR vs purchase AUC on the clicked rows
    (as evaluation computes it), or on every row for a model without a CTR head (the CVR-only
    baseline, whose validation rows are the clicked ones already)."""
    out = {}
    if "p_ctr" in probs:
        out["ctr"] = auc(data.click, probs["p_ctr"])
    if "p_cvr" in probs:
        rows = data.click == 1 if "p_ctr" in probs else np.ones(len(data), bool)
        out["cvr"] = auc(data.purchase[rows], probs["p_cvr"][rows])
    return out


def selection_score(aucs: dict[str, float], select_on: str = "ctr") -> float:
    """The epoch score: CTR AUC ("ctr"), or the mean of CTR and CVR AUC ("ctr+cvr"); a
    single-task model's own AUC whatever `select_on` says."""
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on {select_on!r}: expected one of {SELECT_ON}")
    if len(aucs) == 1:
        return next(iter(aucs.values()))
    if select_on == "ctr+cvr":
        return (aucs["ctr"] + aucs["cvr"]) / 2
    return aucs["ctr"]


def validation_auc(model: MMoERanker, data: Labelled, select_on: str = "ctr") -> float:
    """The selection score on `data` (see `selection_score`)."""
    return selection_score(validation_aucs(predict(model, data.inputs), data), select_on)


def fit(model: MMoERanker, train: Labelled, val: Labelled, settings: MMoESettings, segments: list[str], *,
        progress: bool = False, keep_going: Callable[[int, float], bool] | None = None) -> FitResult:
    """Train `model` for up to `settings.epochs`, keeping the epoch with the best validation
    selection score (`settings.select_on`); early stopping counts epochs without a better one.
    `keep_going(epoch, val_auc)` returning False stops the run (a tuner's early stop)."""
    started = time.perf_counter()
    selection_score({"ctr": 0.5, "cvr": 0.5}, settings.select_on)  # an unknown select_on fails before training
    tf.keras.utils.set_random_seed(settings.seed)
    weights = SegmentTaskWeights(segments, settings.segment_weights, settings.adapt_weights,
                                 settings.adapt_temperature, settings.ctcvr_weight)
    optimizer = tf.keras.optimizers.Adam(settings.learning_rate)
    n_segments = len(weights.names)
    data = {**train.inputs, "click": train.click.astype(np.float32), "purchase": train.purchase.astype(np.float32)}
    ds = (tf.data.Dataset.from_tensor_slices(data).shuffle(min(len(train), 200_000), seed=settings.seed)
          .batch(settings.batch_size).prefetch(2))

    steps = -(-len(train) // settings.batch_size)
    averaged = None
    if settings.ema_epochs:
        if settings.ema_epochs < 0:
            raise ValueError(f"ema_epochs {settings.ema_epochs}: expected 0 (off) or a positive number of epochs")
        model({k: v[:2] for k, v in train.inputs.items()}, training=False)  # create the weights to average
        averaged = WeightAverage(model, 1.0 - 1.0 / max(settings.ema_epochs * steps, 1.0 + 1e-9))

    @tf.function
    def step(batch):
        segment = batch["user_cat"][:, 0]
        with tf.GradientTape() as tape:
            logits = model(batch, training=True)
            losses = per_example_losses(logits, batch["click"], batch["purchase"], settings.detach_ctr_in_ctcvr)
            loss = weights.weighted(losses, segment) + tf.add_n(model.losses or [tf.constant(0.0)])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        if averaged is not None:
            averaged.update()
        return (loss, tf.math.unsorted_segment_sum(losses, segment, n_segments),
                tf.math.unsorted_segment_sum(tf.ones_like(batch["click"]), segment, n_segments))

    result = FitResult(model)
    best_weights = None
    bar = _bar(progress, settings.epochs * steps)
    for epoch in range(1, settings.epochs + 1):
        sums = np.zeros((n_segments, 2))
        counts = np.zeros(n_segments)
        total = 0.0
        for batch in ds:
            loss, seg_sum, seg_count = step(batch)
            sums += seg_sum.numpy()
            counts += seg_count.numpy()
            total += float(loss)
            if bar:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss):.4f}")
        task_w = weights.end_epoch(sums, counts)
        raw = averaged.swap_in() if averaged is not None else None  # validate (and keep) the averaged weights
        aucs = validation_aucs(predict(model, val.inputs), val)
        val_auc = selection_score(aucs, settings.select_on)
        result.history.append({"epoch": epoch, "train_loss": total / steps, "val_auc": val_auc,
                               **{f"val_{t}_auc": v for t, v in aucs.items()},
                               "task_weights": task_w.round(4).tolist(),
                               "segment_losses": (sums / np.maximum(counts, 1)[:, None]).round(5).tolist()})
        if best_weights is None or val_auc > result.best_val_auc:
            result.best_epoch, result.best_val_auc, best_weights = epoch, val_auc, model.get_weights()
        if raw is not None:
            averaged.swap_out(raw)  # training goes on from the raw weights
        if result.best_epoch != epoch and epoch - result.best_epoch >= settings.patience:
            result.stopped = f"no better validation score for {settings.patience} epoch(s)"
            break
        if keep_going is not None and not keep_going(epoch, val_auc):
            result.stopped = "stopped by the tuner"
            break
    if bar:
        bar.close()
    if best_weights is not None:
        model.set_weights(best_weights)
    result.task_weights = weights.as_json()
    result.seconds = time.perf_counter() - started
    return result


class WeightAverage:
    """An exponential moving average of a model's trainable weights, updated after every step,
    bias-corrected as Adam's moments are: after t steps the average is
    Σ_i (1 − d)·d^(t−i)·w_i / (1 − d^t), so the zero start weighs nothing and `decay` sets the
    horizon (~1 / (1 − d) steps) from the first epoch on."""

    def __init__(self, model: tf.keras.Model, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight-average decay {decay}: expected a value in (0, 1)")
        self.variables = model.trainable_variables
        self.decay = decay
        self.steps = tf.Variable(0.0, trainable=False)
        self.shadow = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]

    def update(self) -> None:  # inside the training step's tf.function
        self.steps.assign_add(1.0)
        for v, s in zip(self.variables, self.shadow, strict=True):
            s.assign(self.decay * s + (1.0 - self.decay) * v)

    def swap_in(self) -> list[np.ndarray]:
        """Put the averaged weights in the model; returns the raw ones."""
        raw = [v.numpy() for v in self.variables]
        correction = 1.0 - self.decay ** float(self.steps.numpy())
        for v, s in zip(self.variables, self.shadow, strict=True):
            v.assign(s / correction)
        return raw

    def swap_out(self, raw: list[np.ndarray]) -> None:
        for v, r in zip(self.variables, raw, strict=True):
            v.assign(r)


def _bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="teacher", unit="batch", leave=False)
