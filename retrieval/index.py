"""Top-k inner-product search over item embeddings: one small interface, three backends.

`exact` (NumPy matmul + argpartition) is the ground truth; `ivf` (faiss IndexIVFFlat, inner
product) and `hnsw` (hnswlib) are approximate. The backend is chosen by a `type` key
(`make_index("ivf", nlist=..., nprobe=...)`). Saved indexes are plain arrays plus a JSON
manifest (and the backend's own binary index file) — never pickle. The choice between the
approximate backends is made by measurement: `benchmarks/bench_index.py`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected a (n, dim) matrix, got shape {x.shape}")
    return x


class Index(ABC):
    """Inner-product top-k over a fixed set of item vectors, addressed by row number."""

    type: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.vectors: np.ndarray | None = None

    @property
    def size(self) -> int:
        return 0 if self.vectors is None else len(self.vectors)

    def build(self, vectors: np.ndarray) -> Index:
        self.vectors = _as_matrix(vectors)
        self._build(self.vectors)
        return self

    @abstractmethod
    def _build(self, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), each (n_queries, k), best first; rows are -1 past the end."""

    def _check(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, int]:
        if self.vectors is None:
            raise ValueError("index is empty: call build() first")
        q = _as_matrix(queries)
        if q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"query dim {q.shape[1]} != index dim {self.vectors.shape[1]}")
        if k <= 0:
            raise ValueError("k must be positive")
        return q, min(k, self.size)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", self.vectors)
        (directory / "index.json").write_text(json.dumps({"type": self.type, "params": self.params}))
        self._save_extra(directory)

    def _save_extra(self, directory: Path) -> None:  # noqa: B027 - optional hook
        pass

    def _load_extra(self, directory: Path) -> bool:
        return False


class ExactIndex(Index):
    type = "exact"

    def _build(self, vectors: np.ndarray) -> None:
        pass

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = self._check(queries, k)
        scores = q @ self.vectors.T
        if k < scores.shape[1]:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(scores.shape[1]), (len(q), 1))
        top = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)


class IvfIndex(Index):
    """faiss IndexIVFFlat with inner product: k-means cells, `nprobe` cells scanned per query."""

    type = "ivf"

    def _build(self, vectors: np.ndarray) -> None:
        import faiss

        nlist = int(self.params.get("nlist", max(1, int(4 * np.sqrt(len(vectors))))))
        nlist = max(1, min(nlist, len(vectors) // 39 or 1))  # faiss wants ~39 points per centroid
        self.params["nlist"] = nlist
        quantizer = faiss.IndexFlatIP(vectors.shape[1])
        self._index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        self._index.cp.seed = int(self.params.get("seed", 0))
        self._index.train(vectors)
        self._index.add(vectors)
        self.params["nprobe"] = int(self.params.get("nprobe", max(1, nlist // 16)))
        self._index.nprobe = self.params["nprobe"]
        self._quantizer = quantizer  # keep alive with the index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = self._check(queries, k)
        scores, rows = self._index.search(q, k)
        return rows.astype(np.int64), scores

    def _save_extra(self, directory: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(directory / "ivf.faiss"))

    def _load_extra(self, directory: Path) -> bool:
        import faiss

        path = directory / "ivf.faiss"
        if not path.exists():
            return False
        self._index = faiss.read_index(str(path))
        self._index.nprobe = int(self.params.get("nprobe", 1))
        return True


class HnswIndex(Index):
    """hnswlib graph, inner-product space; `ef` (>= k) trades speed for recall."""

    type = "hnsw"

    def _build(self, vectors: np.ndarray) -> None:
        import hnswlib

        self._index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        self._index.init_index(max_elements=len(vectors), M=int(self.params.get("M", 16)),
                               ef_construction=int(self.params.get("ef_construction", 200)),
                               random_seed=int(self.params.get("seed", 0)))
        self._index.add_items(vectors, np.arange(len(vectors)), num_threads=1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = self._check(queries, k)
        self._index.set_ef(max(k, int(self.params.get("ef", 2 * k))))
        rows, dist = self._index.knn_query(q, k=k, num_threads=1)
        return rows.astype(np.int64), (1.0 - dist).astype(np.float32)  # hnswlib ip distance = 1 - dot

    def _save_extra(self, directory: Path) -> None:
        self._index.save_index(str(directory / "hnsw.bin"))

    def _load_extra(self, directory: Path) -> bool:
        import hnswlib

        path = directory / "hnsw.bin"
        if not path.exists():
            return False
        self._index = hnswlib.Index(space="ip", dim=self.vectors.shape[1])
        self._index.load_index(str(path), max_elements=len(self.vectors))
        return True


BACKENDS: dict[str, type[Index]] = {cls.type: cls for cls in (ExactIndex, IvfIndex, HnswIndex)}


def make_index(type: str, **params: Any) -> Index:
    try:
        return BACKENDS[type](**params)
    except KeyError:
        raise ValueError(f"unknown index type {type!r}; choose one of {', '.join(BACKENDS)}") from None


def load_index(directory: Path) -> Index:
    meta = json.loads((directory / "index.json").read_text())
    index = make_index(meta["type"], **meta["params"])
    index.vectors = np.load(directory / "vectors.npy", allow_pickle=False)
    if not index._load_extra(directory):
        index._build(index.vectors)
    return index


def agreement_at_k(approx_rows: np.ndarray, exact_rows: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k that the approximate top-k also returns."""
    hits = [len(np.intersect1d(a[:k], e[:k])) / k for a, e in zip(approx_rows, exact_rows, strict=True)]
    return float(np.mean(hits))
