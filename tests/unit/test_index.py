"""ANN index backends: exact is exact, approximate agrees with it, save → load round trips."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.index import agreement_at_k, load_index, make_index


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    items = centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    queries = centres[rng.integers(0, 20, 50)] + 0.3 * rng.normal(size=(50, 16))
    return items.astype(np.float32), queries.astype(np.float32)


def test_exact_matches_a_hand_example():
    items = np.array([[1, 0], [0, 1], [0.7, 0.7], [-1, 0]], dtype=np.float32)
    rows, scores = make_index("exact").build(items).search(np.array([1.0, 0.2]), 3)
    # dot products: 1.0, 0.2, 0.84, -1.0 → rows 0, 2, 1
    assert rows.tolist() == [[0, 2, 1]]
    assert scores[0].tolist() == pytest.approx([1.0, 0.84, 0.2])


@pytest.mark.parametrize(("kind", "params"), [("ivf", {"nlist": 32, "nprobe": 8}), ("hnsw", {"M": 16})])
def test_approximate_agrees_with_exact(data, kind, params):
    items, queries = data
    exact, _ = make_index("exact").build(items).search(queries, 100)
    approx, scores = make_index(kind, **params).build(items).search(queries, 100)
    assert agreement_at_k(approx, exact, 100) >= 0.95
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # best first


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_save_load_round_trip(data, tmp_path, kind):
    items, queries = data
    index = make_index(kind).build(items)
    before = index.search(queries, 20)
    index.save(tmp_path / kind)
    after = load_index(tmp_path / kind).search(queries, 20)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], rtol=1e-5)


def test_bad_input_is_refused(data):
    items, _ = data
    index = make_index("exact").build(items)
    with pytest.raises(ValueError, match="query dim"):
        index.search(np.zeros(3), 5)
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(np.zeros(16), 0)
    with pytest.raises(ValueError, match="unknown index type"):
        make_index("annoy")


def test_recall_at_k_hand_values():
    assert agreement_at_k(np.array([[1, 2, 3]]), np.array([[3, 4, 1]]), 3) == pytest.approx(2 / 3)
