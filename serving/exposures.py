"""The exposure log: every `Recommend` answer, through a stream, into a dated Parquet log.

One row per item shown: the request id, when, the user, the A/B arm, the model versions, the
item's position, score, p_ctr/p_cvr and recall routes, whether the answer was degraded and
why; on a sampled share of requests (`exposure_feature_sample`) the first row also carries the
user features the answer was computed from (JSON). Events that name the answer's
`request_id` join to it (`evaluation.ab`, `vitrine report ab`).

Recording never slows or fails an answer: `ExposureRecorder.record` puts the answer on a
bounded queue; a background thread turns what is queued into one Arrow batch every
`FLUSH_S` and appends it to the exposure stream (no de-duplication: a request is answered
once). When the queue is full or Redis is down, answers are dropped from the log and counted
(`vitrine_exposures_total{outcome="dropped"}`): the exposure log is for analysis, the answer
matters more. The stream's `exposure-log` group is written by a `StreamLogWriter` like the
event log (group commit, each appended exposure once across crashes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from serving.api import Recommendation, RecommendRequest
from serving.metrics import Metrics
from vitrine.stream.base import EventStream

log = logging.getLogger("serving.exposures")

STREAM_KEY = "vitrine:exposures"
GROUP = "exposure-log"
FLUSH_S = 0.2
QUEUE_MAX = 10_000  # answers waiting to be appended

SCHEMA = pa.schema([
    ("request_id", pa.string()), ("served_at", pa.timestamp("us", tz="UTC")), ("user_id", pa.string()),
    ("arm", pa.string()), ("model_version", pa.string()), ("degraded", pa.bool_()),
    ("degraded_reason", pa.string()), ("position", pa.int32()), ("item_id", pa.string()),
    ("score", pa.float64()), ("p_ctr", pa.float64()), ("p_cvr", pa.float64()), ("routes", pa.string()),
    ("features", pa.string()),
])


def sampled(request_id: str, share: float) -> bool:
    """Whether this request's features are logged: a stable draw from its id."""
    if share <= 0:
        return False
    draw = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little") / 2**64
    return draw < share


def exposure_rows(req: RecommendRequest, rec: Recommendation, served_at: datetime,
                  features: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per item shown (position 0 first); `features` on the first row only."""
    rows = []
    for position, item in enumerate(rec.items):
        rows.append({"request_id": rec.request_id, "served_at": served_at, "user_id": req.user_id,
                     "arm": rec.ab_bucket, "model_version": rec.model_version, "degraded": rec.degraded,
                     "degraded_reason": rec.degraded_reason, "position": position, "item_id": item.item_id,
                     "score": float(item.score), "p_ctr": float(item.p_ctr), "p_cvr": float(item.p_cvr),
                     "routes": ",".join(item.routes),
                     "features": json.dumps(features, default=str, sort_keys=True)
                     if features is not None and position == 0 else None})
    return rows


class ExposureRecorder:
    def __init__(self, stream: EventStream, metrics: Metrics, feature_sample: float) -> None:
        self.stream, self.metrics, self.feature_sample = stream, metrics, feature_sample
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one flush at a time: a caller's flush waits for the thread's

    def wants_features(self, request_id: str) -> bool:
        return sampled(request_id, self.feature_sample)

    def record(self, req: RecommendRequest, rec: Recommendation, features: dict[str, Any] | None = None) -> None:
        """Queue the answer for the log (never blocks; drops and counts when full)."""
        self.metrics.exposures.labels(rec.ab_bucket).inc(len(rec.items))
        try:
            self._queue.put_nowait((req, rec, datetime.now(UTC), features))
        except queue.Full:
            self.metrics.exposure_log.labels("dropped").inc()

    def flush(self) -> int:
        """Append what is queued as one batch; returns the answers appended."""
        with self._lock:
            return self._flush()

    def _flush(self) -> int:
        pending = []
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not pending:
            return 0
        rows = [row for req, rec, at, features in pending for row in exposure_rows(req, rec, at, features)]
        if not rows:
            return len(pending)
        try:
            self.stream.append(pa.Table.from_pylist(rows, schema=SCHEMA))
        except Exception as e:
            self.metrics.exposure_log.labels("dropped").inc(len(pending))
            log.warning("exposures not logged", extra={"answers": len(pending), "error": str(e)[:300]})
            return 0
        self.metrics.exposure_log.labels("logged").inc(len(pending))
        return len(pending)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(FLUSH_S):
                self.flush()

        self._thread = threading.Thread(target=loop, name="vitrine-exposures", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
