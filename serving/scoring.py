"""Score arithmetic of the pipeline's last steps: blending a ranker's score with recall's
(`fuse`) and the diversity re-rank (`diversify`). Pure NumPy, no state."""

from __future__ import annotations

import numpy as np


def fuse(recall: np.ndarray, ranker: np.ndarray, weight: float) -> np.ndarray:
    """A stage's score: the ranker's alone at weight 1 (unchanged), else `weight` of its
    min-max normalised score plus the rest of the recall score's (`Policy.coarse_weight`)."""
    if weight >= 1.0:
        return ranker

    def minmax(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        span = x.max() - x.min() if len(x) else 0.0
        return (x - x.min()) / span if span > 0 else np.zeros(len(x))

    return (1.0 - weight) * minmax(recall) + weight * minmax(ranker)


def diversify(scores: np.ndarray, merchants: np.ndarray, categories: np.ndarray, k: int,
              merchant_decay: float, category_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy re-rank: each earlier pick of the same merchant / category (labels, or integer
    codes) multiplies a candidate's (positive) score by the decay. Adjusted scores only fall as picks are made,
    so the picks come out sorted by the score they are reported with."""
    n = len(scores)
    m_codes, c_codes = (labels if labels.dtype.kind in "iu" else np.unique(labels.astype(str), return_inverse=True)[1]
                        for labels in (np.asarray(merchants), np.asarray(categories)))
    current = scores.astype(np.float64).copy()
    picked, picked_scores = [], []
    for _ in range(min(k, n)):
        i = int(np.argmax(current))
        picked.append(i)
        picked_scores.append(current[i])
        current[i] = -np.inf
        current[m_codes == m_codes[i]] *= merchant_decay
        current[c_codes == c_codes[i]] *= category_decay
    return np.array(picked, dtype=np.int64), np.array(picked_scores)
