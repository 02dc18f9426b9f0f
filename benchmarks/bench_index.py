"""ANN index at the platform catalogue: 100k items × 64 dims, top-500 per query, one thread.

    .venv/bin/python benchmarks/bench_index.py [--items 100000] [--dim 64] [--record]

Vectors are clustered like trained item embeddings (a mixture of 200 Gaussian clusters,
L2-normalised); queries come from the same mixture. Every backend is timed side by side in
one run: build time, median and p99 single-query latency, recall@100 against exact.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from retrieval.index import agreement_at_k, make_index

ROOT = Path(__file__).resolve().parents[1]


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, args.dim))
    items = clustered(args.items, args.dim, rng, centres)
    queries = clustered(args.queries, args.dim, rng, centres)

    configs = {"exact": {}, "ivf": {"nlist": 1024, "nprobe": 24}, "hnsw": {"M": 16, "ef_construction": 200}}
    results = {}
    exact_rows = None
    for name, params in configs.items():
        t = time.perf_counter()
        index = make_index(name, **params).build(items)
        build_s = time.perf_counter() - t
        index.search(queries[:5], args.k)  # warm up
        times, rows = [], []
        for q in queries:
            t = time.perf_counter()
            r, _ = index.search(q, args.k)
            times.append((time.perf_counter() - t) * 1000)
            rows.append(r[0])
        rows = np.array(rows)
        if name == "exact":
            exact_rows = rows
        times.sort()
        results[name] = {"params": index.params, "build_s": round(build_s, 2),
                         "median_ms": round(statistics.median(times), 3),
                         "p99_ms": round(times[int(0.99 * (len(times) - 1))], 3),
                         "recall_at_100": round(agreement_at_k(rows, exact_rows, 100), 4)}
        print(name, json.dumps(results[name]))
    out = {"items": args.items, "dim": args.dim, "k": args.k, "queries": args.queries, "threads": 1,
           "backends": results}
    if args.record:
        path = ROOT / "benchmarks" / "results" / "index.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"recorded in {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
