"""Offline ranking metrics: AUC (ties count half), GAUC (per-user AUC weighted by the user's
rows, over users with both classes) and log loss."""

from __future__ import annotations

from itertools import pairwise

import numpy as np


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, tied scores sharing their average rank."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    first = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(scores)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(scores))
    ranks[order] = avg[group]
    return ranks


def auc(labels, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def gauc(groups, labels, scores) -> float:
    """Σ_u n_u · AUC_u / Σ_u n_u over groups (users) that have both classes."""
    g = np.asarray(groups)
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(g, kind="mergesort")
    g, y, s = g[order], y[order], s[order]
    bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1], True])
    total = weight = 0.0
    for a, b in pairwise(bounds):
        yy = y[a:b]
        if yy.all() or not yy.any():
            continue
        total += (b - a) * auc(yy, s[a:b])
        weight += b - a
    return float(total / weight) if weight else float("nan")


def logloss(labels, probabilities, eps: float = 1e-7) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def report(groups, labels, probabilities) -> dict[str, float]:
    return {"auc": auc(labels, probabilities), "gauc": gauc(groups, labels, probabilities),
            "logloss": logloss(labels, probabilities), "rows": len(labels),
            "positives": int(np.asarray(labels).sum())}
