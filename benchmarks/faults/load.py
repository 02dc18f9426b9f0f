"""The load the fault scripts put on a server while something breaks: paced `Recommend`
callers, a probe (one `Recommend` every 20 ms, its answers timed) and `TrackEvents` senders
(batches of 20 clicks with unique ids, without pause), each on its own connection. Counts
every answer by status code and degraded reason, keeps the acknowledged event ids and when
each batch was acknowledged."""

from __future__ import annotations

import threading
import time
from collections import Counter


class Load:
    def __init__(self, port: int, users, items, run: str, rate: float = 50.0, trackers: int = 1) -> None:
        self.port, self.users, self.items, self.run = port, list(users), list(items), run
        self.rate, self.trackers = rate, trackers
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.recommend: Counter = Counter()  # status code → calls
        self.degraded: Counter = Counter()  # degraded reason ("-": not degraded) → answers
        self.track: Counter = Counter()
        self.acked: list[str] = []
        self.track_ok_times: list[float] = []
        self.track_failures: list[tuple[float, str, str]] = []  # (time, code, details), the first 50
        self.track_failure_times: list[float] = []  # every one
        self.probe: list[tuple[float, str]] = []  # (time, degraded reason or "")
        self._threads: list[threading.Thread] = []

    def _channel(self):
        import grpc

        return grpc.insecure_channel(f"127.0.0.1:{self.port}", options=[("grpc.use_local_subchannel_pool", 1)])

    def _recommender(self, k: int, pace: float, out: list | None) -> None:
        import grpc

        from serving.proto import pb, pb_grpc

        with self._channel() as ch:
            stub = pb_grpc.RecommenderStub(ch)
            n = 0
            while not self.stop_event.is_set():
                n += 1
                try:
                    user = str(self.users[(k * 7919 + n) % len(self.users)])
                    r = stub.Recommend(pb.RecommendRequest(user_id=user, k=10), timeout=2)
                    with self.lock:
                        self.recommend["OK"] += 1
                        self.degraded[r.degraded_reason or "-"] += 1
                        if out is not None:
                            out.append((time.monotonic(), r.degraded_reason))
                except grpc.RpcError as e:
                    with self.lock:
                        self.recommend[e.code().name] += 1
                time.sleep(pace)

    def _tracker(self, k: int) -> None:
        import grpc

        from serving.proto import pb, pb_grpc

        with self._channel() as ch:
            stub = pb_grpc.RecommenderStub(ch)
            n = 0
            while not self.stop_event.is_set():
                n += 1
                ids = [f"{self.run}-{k}-{n}-{i}" for i in range(20)]
                events = [pb.Event(event_id=e, user_id=f"{self.run}-u{(n + i) % 30}",
                                   item_id=str(self.items[(n + i) % len(self.items)]), event_type="click")
                          for i, e in enumerate(ids)]
                try:
                    stub.TrackEvents(pb.TrackEventsRequest(events=events), timeout=2)
                    with self.lock:
                        self.track["OK"] += 1
                        self.acked.extend(ids)
                        self.track_ok_times.append(time.monotonic())
                except grpc.RpcError as e:
                    with self.lock:
                        self.track[e.code().name] += 1
                        self.track_failure_times.append(time.monotonic())
                        if len(self.track_failures) < 50:
                            self.track_failures.append((time.monotonic(), e.code().name, e.details()))
                    time.sleep(0.02)

    def start(self) -> None:
        targets = [(self._recommender, (k, 2 / self.rate, None)) for k in range(2)]
        targets += [(self._recommender, (99, 0.02, self.probe))]
        targets += [(self._tracker, (k,)) for k in range(self.trackers)]
        for fn, args in targets:
            thread = threading.Thread(target=fn, args=args)
            thread.start()
            self._threads.append(thread)

    def finish(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join()

    def first_answer_after(self, t: float, not_reason: str) -> float | None:
        """When the probe first got an answer not degraded for `not_reason` after `t`."""
        with self.lock:
            return next((at for at, reason in self.probe if at > t and reason != not_reason), None)

    def first_ack_after(self, t: float) -> float | None:
        with self.lock:
            return next((at for at in self.track_ok_times if at > t), None)

    def bad_codes(self) -> tuple[int, int]:
        """(Recommend calls not OK, TrackEvents calls neither OK nor UNAVAILABLE)."""
        return (sum(v for k, v in self.recommend.items() if k != "OK"),
                sum(v for k, v in self.track.items() if k not in ("OK", "UNAVAILABLE")))


def logged_ids(root, run: str) -> list[str]:
    """The event ids of this run in an event log (hidden and temporary files ignored)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    log = ds.dataset(root, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    return log.to_table(columns=["event_id"], filter=pc.starts_with(ds.field("event_id"), f"{run}-")) \
        .column(0).to_pylist()
