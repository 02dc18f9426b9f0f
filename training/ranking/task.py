"""Ranking losses: the multi-task (ESMM) loss with per-segment dynamic task weights, and the
distillation loss of the FM student. Models compute logits; these own the losses.

CVR is learnt ESMM-style on the impression space: the CVR tower's pCVR is never fitted to
purchases directly; pCTCVR = pCTR × pCVR is fitted to the purchase label of *every*
impression (a purchase implies a click), next to pCTR fitted to the click label. Training
and serving then see the same population (impressions), and the sparse purchase signal is
shared with the CTR task through the experts — no click-space sample selection bias.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

TASKS = ("ctr", "ctcvr")


def _log_sigmoid(x: tf.Tensor) -> tf.Tensor:
    return -tf.nn.softplus(-x)


def per_example_losses(logits: dict[str, tf.Tensor], click: tf.Tensor, purchase: tf.Tensor,
                       detach_ctr: bool = False) -> tf.Tensor:
    """[n, 2] losses: (CTR, CTCVR) for the teacher; a single-task model fills one column.
    A CVR-only model (no CTR logit) is the click-space baseline: BCE(purchase, pCVR).
    `detach_ctr`: pCTR enters pCTCVR as a constant (stop-gradient), so the CTCVR loss trains
    the CVR side only and the CTR logit learns from the click loss alone."""
    click = tf.cast(click, tf.float32)
    purchase = tf.cast(purchase, tf.float32)
    zeros = tf.zeros_like(click)
    ctr = zeros
    if "ctr" in logits:
        ctr = tf.nn.sigmoid_cross_entropy_with_logits(labels=click, logits=logits["ctr"])
    conv = zeros
    if "cvr" in logits and "ctr" in logits:
        ctr_logit = tf.stop_gradient(logits["ctr"]) if detach_ctr else logits["ctr"]
        log_p = tf.minimum(_log_sigmoid(ctr_logit) + _log_sigmoid(logits["cvr"]), -1e-7)  # log pCTCVR
        log_not = tf.math.log(-tf.math.expm1(log_p))
        conv = -(purchase * log_p + (1.0 - purchase) * log_not)
    elif "cvr" in logits:
        conv = tf.nn.sigmoid_cross_entropy_with_logits(labels=purchase, logits=logits["cvr"])
    return tf.stack([ctr, conv], axis=1)


class SegmentTaskWeights:
    """Loss weight of each task per user behaviour segment, optionally adapted each epoch.

    `base[s, t]` comes from configuration (by segment name; "" is users without a segment,
    vocabulary index 0), the CTCVR column times `ctcvr_scale`. With `adapt`, after every epoch
    each segment's weights become base · K·softmax(r / T), r_t = L_t(epoch) / L_t(epoch − 1) —
    dynamic weight average: a task whose loss stopped falling in a segment gets more weight there.
    """

    def __init__(self, segment_vocabulary: Sequence[str], configured: Sequence[tuple[str, float, float]],
                 adapt: bool, temperature: float = 2.0, ctcvr_scale: float = 1.0):
        index = {name: i + 1 for i, name in enumerate(segment_vocabulary)}
        index[""] = 0
        self.names = ["", *segment_vocabulary]
        self.base = np.ones((len(self.names), len(TASKS)), dtype=np.float32)
        for name, w_ctr, w_conv in configured:
            if name in index:
                self.base[index[name]] = (w_ctr, w_conv)
        self.base[:, 1] *= ctcvr_scale
        self.adapt = adapt
        self.temperature = temperature
        self.variable = tf.Variable(self.base, trainable=False, name="segment_task_weights")
        self.epoch_losses: list[np.ndarray] = []  # [S, 2] mean loss per segment and task, per epoch

    def weighted(self, losses: tf.Tensor, segment: tf.Tensor) -> tf.Tensor:
        """Mean over the batch of Σ_t w[segment, t] · loss_t."""
        w = tf.gather(self.variable, segment)
        return tf.reduce_mean(tf.reduce_sum(w * losses, axis=1))

    def end_epoch(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        mean = sums / np.maximum(counts, 1.0)[:, None]
        self.epoch_losses.append(mean)
        if self.adapt and len(self.epoch_losses) >= 2:
            prev = self.epoch_losses[-2]
            ratio = np.where((prev > 0) & (counts[:, None] > 0), mean / np.maximum(prev, 1e-12), 1.0)
            z = np.exp(ratio / self.temperature)
            dwa = len(TASKS) * z / z.sum(axis=1, keepdims=True)
            self.variable.assign((self.base * dwa).astype(np.float32))
        return self.variable.numpy()

    def as_json(self) -> dict[str, list[float]]:
        return {name or "unknown": [float(v) for v in row] for name, row in zip(self.names, self.variable.numpy(),
                                                                                 strict=True)}


def distillation_loss(labels: tf.Tensor, teacher_logits: tf.Tensor, student_logits: tf.Tensor,
                      alpha: float, temperature: float) -> tf.Tensor:
    """α · BCE(label, σ(s)) + (1 − α) · T² · BCE(σ(t / T), σ(s / T)), averaged over the batch.

    The soft term is the cross-entropy against the teacher's tempered probability (the KL
    divergence plus the teacher's entropy, a constant); T² keeps its gradients on the scale of
    the hard term as T grows (Hinton et al.)."""
    y = tf.cast(labels, tf.float32)
    hard = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=student_logits)
    soft_target = tf.sigmoid(tf.cast(teacher_logits, tf.float32) / temperature)
    soft = tf.nn.sigmoid_cross_entropy_with_logits(labels=soft_target, logits=student_logits / temperature)
    return tf.reduce_mean(alpha * hard + (1.0 - alpha) * temperature ** 2 * soft)
