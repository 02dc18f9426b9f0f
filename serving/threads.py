"""Thread counts for the serving process, set before NumPy/TensorFlow are imported.

A request is small (a 100k×d dot product, FM on 500, the teacher on ~150): spinning up
BLAS/TF worker pools per call costs more than it saves, and with 2 cores the parallelism
comes from concurrent requests, not from inside one. So every pool is 1 thread by default
(`benchmarks/serving` measures the difference); existing settings are respected.
"""

from __future__ import annotations

import os

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def limit_threads(n: int = 1) -> dict[str, str]:
    """Set the thread-count variables (unless already set) and tf-keras; returns them."""
    for name in VARIABLES:
        os.environ.setdefault(name, str(n))
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {name: os.environ[name] for name in VARIABLES}
