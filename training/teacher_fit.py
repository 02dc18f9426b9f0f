"""Fitting the MMoE teacher (and the single-task baselines) on encoded rows: a plain
GradientTape loop over epochs with per-segment task weights, validation AUC after every
epoch, early stopping with the best epoch's weights restored, and an optional hook that lets
a tuner stop a bad trial early."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from training.mmoe import MMoERanker, MMoESettings
from training.ranking_metrics import auc
from training.ranking_task import SegmentTaskWeights, per_example_losses

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


def validation_auc(model: MMoERanker, data: Labelled) -> float:
    """CTR AUC for models with a CTR head, else (the CVR-only baseline) purchase AUC."""
    probs = predict(model, data.inputs)
    return auc(data.click, probs["p_ctr"]) if "p_ctr" in probs else auc(data.purchase, probs["p_cvr"])


def fit(model: MMoERanker, train: Labelled, val: Labelled, settings: MMoESettings, segments: list[str], *,
        progress: bool = False, keep_going: Callable[[int, float], bool] | None = None) -> FitResult:
    """Train `model` for up to `settings.epochs`, keeping the epoch with the best validation AUC.
    `keep_going(epoch, val_auc)` returning False stops the run (a tuner's early stop)."""
    started = time.perf_counter()
    tf.keras.utils.set_random_seed(settings.seed)
    weights = SegmentTaskWeights(segments, settings.segment_weights, settings.adapt_weights,
                                 settings.adapt_temperature, settings.ctcvr_weight)
    optimizer = tf.keras.optimizers.Adam(settings.learning_rate)
    n_segments = len(weights.names)
    data = {**train.inputs, "click": train.click.astype(np.float32), "purchase": train.purchase.astype(np.float32)}
    ds = (tf.data.Dataset.from_tensor_slices(data).shuffle(min(len(train), 200_000), seed=settings.seed)
          .batch(settings.batch_size).prefetch(2))

    @tf.function
    def step(batch):
        segment = batch["user_cat"][:, 0]
        with tf.GradientTape() as tape:
            logits = model(batch, training=True)
            losses = per_example_losses(logits, batch["click"], batch["purchase"], settings.detach_ctr_in_ctcvr)
            loss = weights.weighted(losses, segment) + tf.add_n(model.losses or [tf.constant(0.0)])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return (loss, tf.math.unsorted_segment_sum(losses, segment, n_segments),
                tf.math.unsorted_segment_sum(tf.ones_like(batch["click"]), segment, n_segments))

    result = FitResult(model)
    best_weights = None
    steps = -(-len(train) // settings.batch_size)
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
        val_auc = validation_auc(model, val)
        result.history.append({"epoch": epoch, "train_loss": total / steps, "val_auc": val_auc,
                               "task_weights": task_w.round(4).tolist(),
                               "segment_losses": (sums / np.maximum(counts, 1)[:, None]).round(5).tolist()})
        if best_weights is None or val_auc > result.best_val_auc:
            result.best_epoch, result.best_val_auc, best_weights = epoch, val_auc, model.get_weights()
        elif epoch - result.best_epoch >= settings.patience:
            result.stopped = f"no better validation AUC for {settings.patience} epoch(s)"
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


def _bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="teacher", unit="batch", leave=False)
