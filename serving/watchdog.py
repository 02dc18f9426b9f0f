"""Deadlines that hold: each request's pipeline runs on a worker thread while the handler
waits for it until the request's deadline. A stage that has not ended by then is abandoned
— the handler answers hot/new, degraded `<stage>_hung` — and its worker finishes (or not) on
its own; its answer is dropped and counts nothing.

Workers are bounded (`ServingConfig.stage_workers`). A request waits for a free one until its
deadline; with every worker held by hung stages it is answered then, degraded `stages_busy`. The
hand-off costs about 0.1 ms a request (docs/benchmarks.md); `stage_workers = 0` runs the
pipeline inline in the handler thread (no hand-off, and a hung stage holds the request).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from serving.api import Recommendation, RecommendRequest
from serving.pipeline import Context, Progress, abandoned, deadline_of, recommend

# past the deadline, the pipeline's own "late" answer has this long to arrive before the
# request is abandoned (a stage that merely ends late degrades itself with its reason)
GRACE_S = 0.005


class Watchdog:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vitrine-stage") if workers else None
        self._free = threading.BoundedSemaphore(max(workers, 1))

    def recommend(self, ctx: Context, req: RecommendRequest, timeout_s: float | None = None,
                  with_features: bool = False) -> Recommendation:
        progress = Progress(deadline_of(ctx.config, timeout_s))
        if self._pool is None:
            return recommend(ctx, req, timeout_s, with_features, progress)
        if not self._free.acquire(timeout=max(progress.deadline - time.perf_counter(), 0.0)):
            return abandoned(ctx, req, progress, with_features, reason="stages_busy")
        try:
            future = self._pool.submit(self._run, ctx, req, with_features, progress)
        except RuntimeError:  # shut down
            self._free.release()
            raise
        try:
            return future.result(timeout=max(progress.deadline - time.perf_counter(), 0.0) + GRACE_S)
        except FutureTimeout:
            return abandoned(ctx, req, progress, with_features)

    def _run(self, ctx: Context, req: RecommendRequest, with_features: bool, progress: Progress) -> Recommendation:
        try:
            return recommend(ctx, req, None, with_features, progress)
        finally:
            self._free.release()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
