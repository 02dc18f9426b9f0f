"""Retrieval metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import coverage, evaluate, ndcg_at_k, recall_at_k


def test_recall_at_k():
    assert recall_at_k(["a", "b", "c", "d"], {"b", "d", "z"}, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "b", "c", "d"], {"b", "d", "z"}, 4) == pytest.approx(2 / 3)
    assert recall_at_k(["a"], set(), 5) == 0.0


def test_ndcg_at_k():
    # hits at ranks 2 and 4: (1/log2 3 + 1/log2 5) / (1/log2 2 + 1/log2 3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["a", "b", "c", "d"], {"b", "d"}, 4) == pytest.approx(expected)
    assert ndcg_at_k(["b", "d"], {"b", "d"}, 4) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"b"}, 2) == 0.0


def test_coverage_and_evaluate():
    recs = {"u1": ["a", "b", "c"], "u2": ["a", "d", "e"], "u3": ["f"]}
    assert coverage(recs.values(), 10, 2) == pytest.approx(4 / 10)  # a, b, d, f
    out = evaluate(recs, {"u1": {"b"}, "u2": {"z"}, "u4": set()}, 2, 10)
    assert out["users"] == 2
    assert out["recall@2"] == pytest.approx(0.5)  # u1 finds b, u2 finds nothing
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)
    with pytest.raises(ValueError, match="no user"):
        evaluate(recs, {"u1": set()}, 2, 10)


def test_average_precision_at_k():
    from evaluation.metrics import average_precision_at_k

    # hits at ranks 1 and 3 of 4, two relevant: (1/1 + 2/3) / 2
    assert average_precision_at_k(["b", "x", "d", "y"], {"b", "d"}, 4) == pytest.approx((1 + 2 / 3) / 2)
    # three relevant, k = 2, one hit at rank 2: (1/2) / min(2, 3)
    assert average_precision_at_k(["x", "b"], {"b", "d", "e"}, 2) == pytest.approx(0.25)
    assert average_precision_at_k(["b", "d"], {"b", "d"}, 2) == pytest.approx(1.0)
    assert average_precision_at_k(["x"], set(), 2) == 0.0
    out = evaluate({"u1": ["b", "x", "d"]}, {"u1": {"b", "d"}}, 3, 10)
    assert out["map@3"] == pytest.approx((1 + 2 / 3) / 2)
