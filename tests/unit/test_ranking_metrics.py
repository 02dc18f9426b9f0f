"""AUC, GAUC and log loss against values worked out by hand."""

import math

import numpy as np
import pytest

from training.ranking.metrics import auc, gauc, logloss


def test_auc_counts_ordered_pairs():
    # positives 0.9, 0.3; negatives 0.8, 0.1: pairs won 0.9>0.8, 0.9>0.1, 0.3>0.1, lost 0.3<0.8 → 3/4
    assert auc([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    assert auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # positives 0.5 (tie with the negative: ½) and 0.2 (below it: 0) → (½ + 0) / 2
    assert auc([1, 1, 0], [0.5, 0.2, 0.5]) == pytest.approx(0.25)


def test_auc_of_one_class_is_nan():
    assert math.isnan(auc([0, 0, 0], [0.1, 0.2, 0.3]))


def test_gauc_weights_users_by_rows_and_skips_one_class_users():
    users = ["a", "a", "a", "b", "b", "c", "c", "c", "c"]
    labels = [1, 0, 0, 0, 1, 0, 0, 0, 0]
    scores = [0.9, 0.1, 0.95, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8]
    # a: 0.9 beats 0.1, loses to 0.95 → AUC ½ over 3 rows; b: AUC 1 over 2 rows; c: no positive, skipped
    assert gauc(users, labels, scores) == pytest.approx((3 * 0.5 + 2 * 1.0) / 5)


def test_logloss_by_hand():
    # −(ln 0.8 + ln 0.6) / 2
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx((0.2231436 + 0.5108256) / 2, abs=1e-6)
    assert logloss([1], [1.0]) == pytest.approx(-np.log(1 - 1e-7), abs=1e-9)  # clipped, finite


def test_day_split_extends_sparse_evaluation_parts_to_enough_positives():
    import pandas as pd

    from training.ranking.data import day_split

    days = pd.date_range("2026-01-01", periods=20, freq="D", tz="UTC")
    # dense: 300 positive rows a day → one day each
    dense = pd.Series(days.repeat(300))
    assert day_split(dense, min_positives=200) == (days[-2], days[-1])
    # sparse: 50 a day → 4 days each reach 200, within the 15 % cap (1,000 rows × 0.15 = 150 → capped)
    sparse = pd.Series(days.repeat(50))
    assert day_split(sparse, min_positives=200, max_share=0.25) == (days[-8], days[-4])
    assert day_split(sparse, min_positives=200, max_share=0.15) == (days[-6], days[-3])
    # only positives count: 1 in 10 rows is positive
    flags = pd.Series(np.tile([1] + [0] * 9, 20 * 30))
    assert day_split(pd.Series(days.repeat(300)), flags, min_positives=60) == (days[-4], days[-2])
