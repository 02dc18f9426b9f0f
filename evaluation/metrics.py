"""Top-K list metrics for offline evaluation: Recall@K, NDCG@K, MAP@K (binary relevance)
and catalogue coverage. Inputs are plain Python/NumPy: a ranked list per user and the set of
items that user actually engaged with in the hold-out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant items found in the top k (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """DCG of the top k over the best possible DCG, relevance 1 for held-out items."""
    if not relevant:
        return 0.0
    gains = [1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant]
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(relevant))))
    return float(sum(gains) / ideal)


def average_precision_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """AP@k: the mean of precision@i over the ranks i <= k that hold a relevant item, divided
    by min(k, |relevant|) (so a perfect top k scores 1)."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for i, item in enumerate(ranked[:k]):
        if item in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / min(k, len(relevant))


def coverage(lists: Iterable[Sequence[str]], catalogue_size: int, k: int) -> float:
    """Share of the catalogue that appears in anyone's top k."""
    seen: set[str] = set()
    for ranked in lists:
        seen.update(ranked[:k])
    return len(seen) / catalogue_size if catalogue_size else 0.0


def evaluate(recommended: Mapping[str, Sequence[str]], held_out: Mapping[str, set[str]], k: int,
             catalogue_size: int) -> dict[str, float]:
    """Mean Recall@k, NDCG@k and MAP@k over users with a hold-out, and coverage@k."""
    users = [u for u, items in held_out.items() if items]
    if not users:
        raise ValueError("no user has held-out items to evaluate against")
    recalls = [recall_at_k(recommended.get(u, []), held_out[u], k) for u in users]
    ndcgs = [ndcg_at_k(recommended.get(u, []), held_out[u], k) for u in users]
    aps = [average_precision_at_k(recommended.get(u, []), held_out[u], k) for u in users]
    return {f"recall@{k}": float(np.mean(recalls)), f"ndcg@{k}": float(np.mean(ndcgs)),
            f"map@{k}": float(np.mean(aps)),
            f"coverage@{k}": coverage((recommended.get(u, []) for u in users), catalogue_size, k),
            "users": len(users)}
