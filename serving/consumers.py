"""The event stream's consumers of one process, in background threads: the event-log writer
(`vitrine.stream.log_writer`, while this process holds its lease) and a real-time updater
(`serving.realtime`). They run inside `vitrine serve` by default and alone in `vitrine
consume` (a separate deployment: `--no-consumers` on the servers).

Each loop survives Redis going away (it logs, waits and retries; what it had read stays
pending in the stream) and a kill -9 (the next start recovers the pending entries).
`drain()` waits until everything appended so far is in the log and applied — what tests,
the main job and `vitrine consume --drain` use.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from serving.config import ServingConfig
from serving.realtime import RealtimeUpdater, realtime_reader, realtime_writer
from vitrine.config import Home
from vitrine.stream.base import LOG_GROUP, REALTIME_GROUP, EventStream
from vitrine.stream.log_writer import EventLogWriter
from vitrine.stream.redis_streams import RedisEventStream

log = logging.getLogger("serving.consumers")

CONSUMER_TIMEOUT_S = 5.0  # socket timeout of the consumers' client (reads block up to 0.5 s)
RETRY_S = 0.5


def consumer_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=CONSUMER_TIMEOUT_S, socket_connect_timeout=1.0)


@dataclass
class Consumers:
    stream: EventStream
    writer: EventLogWriter
    updater: RealtimeUpdater
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _flush: threading.Event = field(default_factory=threading.Event)
    errors: int = 0

    @classmethod
    def for_home(cls, home: Home, config: ServingConfig, redis_url: str, store=None) -> Consumers:
        from vitrine.featurestore.repo import feature_store, project_name

        store = store or feature_store(home, redis_url)
        client = consumer_client(redis_url)
        stream = RedisEventStream(client, dedup_window_s=config.dedup_window_s)
        updater = RealtimeUpdater(stream, realtime_reader(client, store, project_name()),
                                  realtime_writer(store, project_name()), config)
        writer = EventLogWriter(stream, home.events, max_events=config.log_batch_events,
                                max_delay_s=config.log_batch_seconds)
        return cls(stream, writer, updater)

    # --- the loops ------------------------------------------------------------------------
    def _loop(self, name: str, step) -> None:
        while not self._stop.is_set():
            try:
                step()
            except Exception as e:
                self.errors += 1
                log.warning("stream consumer failed; retrying", extra={"consumer": name, "error": str(e)[:300]})
                self._stop.wait(RETRY_S)

    def _write(self) -> None:
        self.writer.step(block_ms=200)
        if self._flush.is_set():
            self.writer.flush()

    def _update(self) -> None:
        if not getattr(self, "_recovered", False):
            self.updater.recover()
            self._recovered = True
        self.updater.step(block_ms=200)

    def start(self) -> None:
        for name, step in (("event-log", self._write), ("realtime", self._update)):
            thread = threading.Thread(target=self._loop, args=(name, step), name=f"vitrine-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loops; the writer commits what it collected (if it can)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()
        try:
            if self.writer.active():
                self.writer.flush()
        except Exception as e:  # Redis gone: the batch stays pending and is recovered on restart
            log.warning("event-log batch left pending at stop", extra={"error": str(e)[:300]})

    # --- waiting for the stream -------------------------------------------------------------
    def settled(self) -> bool:
        """Every entry appended so far is acknowledged by both groups."""
        return all(self.stream.lag(g) == (0, 0) for g in (LOG_GROUP, REALTIME_GROUP))

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything appended so far is in the log and applied (running the
        consumers inline when no thread runs them). Raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        self._flush.set()
        try:
            while not self.settled():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the event stream did not drain in {timeout_s} s: "
                                       f"{ {g: self.stream.lag(g) for g in (LOG_GROUP, REALTIME_GROUP)} }")
                if not self._threads:
                    self._update()
                    self.writer.step(block_ms=10)
                    self.writer.flush()
                else:
                    time.sleep(0.01)
        finally:
            self._flush.clear()
