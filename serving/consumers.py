"""The streams' consumers of one process, in background threads: the event-log and
exposure-log writers (`vitrine.stream.log_writer`, each while this process holds its lease),
a real-time updater (`serving.realtime`), with the "already shown" filter on the shown
counter (`serving.shown`), and with live hot items on the hot counter (`serving.trending`).
They run inside `vitrine serve` by default and alone in `vitrine
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
from serving.shown import SHOWN_GROUP, ShownCounter
from serving.trending import HOT_GROUP, HotCounter
from vitrine.config import Home
from vitrine.stream.base import REALTIME_GROUP, EventStream
from vitrine.stream.log_writer import StreamLogWriter, event_log_writer
from vitrine.stream.redis_streams import RedisEventStream

log = logging.getLogger("serving.consumers")

CONSUMER_TIMEOUT_S = 5.0  # socket timeout of the consumers' client (reads block up to 0.5 s)
RETRY_S = 0.5
WARN_EVERY_S = 30.0  # a consumer failing in a row is logged once, then this often
CLAIM_EVERY_S = 10.0


def consumer_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=CONSUMER_TIMEOUT_S, socket_connect_timeout=1.0)


def exposure_stream(client, shown: bool = False) -> RedisEventStream:
    """The stream of logged answers (`serving.exposures`), no de-duplication: the exposure
    log's group, and the shown counter's when the filter is on."""
    from serving.exposures import GROUP, STREAM_KEY

    return RedisEventStream(client, key=STREAM_KEY, groups=(GROUP, SHOWN_GROUP) if shown else (GROUP,),
                            id_column=None)


def _drop_group(client, key: str, group: str) -> None:
    """A group nobody reads would hold the stream's trimming for ever."""
    import redis

    try:
        client.xgroup_destroy(key, group)
    except redis.exceptions.ResponseError:
        pass  # no stream yet


@dataclass
class Consumers:
    stream: EventStream  # the event stream
    writers: list[StreamLogWriter]  # the event log's, the exposure log's
    updater: RealtimeUpdater
    shown: ShownCounter | None = None  # with `shown_limit` on
    hot: HotCounter | None = None  # with `hot_live_share` on
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _flush: threading.Event = field(default_factory=threading.Event)
    _next_claim: float = 0.0  # when the updater next claims what dead consumers left pending
    _shown_recovered: bool = False
    _hot_recovered: bool = False
    errors: int = 0

    @classmethod
    def for_home(cls, home: Home, config: ServingConfig, redis_url: str, store=None) -> Consumers:
        from serving.exposures import GROUP, SCHEMA, STREAM_KEY
        from vitrine.featurestore.repo import feature_store, project_name

        store = store or feature_store(home, redis_url)
        client = consumer_client(redis_url)
        stream = RedisEventStream(client, dedup_window_s=config.dedup_window_s)
        updater = RealtimeUpdater(stream, realtime_reader(client, store, project_name()),
                                  realtime_writer(store, project_name()), config)
        batch = {"max_events": config.log_batch_events, "max_delay_s": config.log_batch_seconds}
        writers = [event_log_writer(stream, home.events, **batch),
                   StreamLogWriter(exposure_stream(client), home.exposures, group=GROUP, schema=SCHEMA,
                                   time_column="served_at", **batch)]
        shown = hot = None
        if config.shown_limit:
            shown = ShownCounter(exposure_stream(client, shown=True), client, config.shown_ttl_s)
        else:
            _drop_group(client, STREAM_KEY, SHOWN_GROUP)
        if config.hot_live_share:
            stream.ensure_group(HOT_GROUP)
            hot = HotCounter(stream, client, config.hot_live_window_s, config.hot_live_bucket_s)
        else:
            _drop_group(client, stream.key, HOT_GROUP)
        return cls(stream, writers, updater, shown, hot)

    @property
    def writer(self) -> StreamLogWriter:
        """The event log's writer."""
        return self.writers[0]

    # --- the loops ------------------------------------------------------------------------
    def _loop(self, name: str, step) -> None:
        failing, logged = 0, 0.0  # failures in a row; when the last was logged
        while not self._stop.is_set():
            try:
                step()
            except Exception as e:
                self.errors += 1
                failing += 1
                if failing == 1 or time.monotonic() - logged >= WARN_EVERY_S:  # not twice a second for hours
                    log.warning("stream consumer failed; retrying", extra={
                        "consumer": name, "failures_in_a_row": failing, "error": str(e)[:300]})
                    logged = time.monotonic()
                self._stop.wait(RETRY_S)
            else:
                if failing:
                    log.warning("stream consumer recovered", extra={"consumer": name, "failures": failing})
                failing = 0

    def _write(self, writer: StreamLogWriter) -> None:
        writer.step(block_ms=200)
        if self._flush.is_set():
            writer.flush()

    def _update(self) -> None:
        now = time.monotonic()
        if now >= self._next_claim:  # at start: this consumer's pending entries; then dead consumers'
            if self._next_claim == 0.0:
                self.updater.recover()
            else:
                self.updater.claim_idle()
            self._next_claim = now + CLAIM_EVERY_S
        self.updater.step(block_ms=200)

    def _count_shown(self) -> None:
        if not self._shown_recovered:
            self.shown.recover()
            self._shown_recovered = True
        self.shown.step(block_ms=200)

    def _count_hot(self) -> None:
        if not self._hot_recovered:
            self.hot.recover()
            self._hot_recovered = True
        self.hot.step(block_ms=200)

    def start(self) -> None:
        steps = [(w.group, lambda w=w: self._write(w)) for w in self.writers] + [("realtime", self._update)]
        if self.shown is not None:
            steps.append(("shown", self._count_shown))
        if self.hot is not None:
            steps.append(("hot", self._count_hot))
        for name, step in steps:
            thread = threading.Thread(target=self._loop, args=(name, step), name=f"vitrine-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loops; the writers commit what they collected (if they can)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()
        for writer in self.writers:
            try:
                if writer.active():
                    writer.flush()
            except Exception as e:  # Redis gone: the batch stays pending and is recovered on restart
                log.warning("log batch left pending at stop", extra={"log": writer.group, "error": str(e)[:300]})

    # --- waiting for the stream -------------------------------------------------------------
    def lags(self) -> dict[str, tuple[int, int]]:
        """Per group: (entries not yet delivered, delivered and not acknowledged)."""
        out = {w.group: w.stream.lag(w.group) for w in self.writers}
        out[REALTIME_GROUP] = self.stream.lag(REALTIME_GROUP)
        if self.shown is not None:
            out[SHOWN_GROUP] = self.shown.stream.lag(SHOWN_GROUP)
        if self.hot is not None:
            out[HOT_GROUP] = self.stream.lag(HOT_GROUP)
        return out

    def settled(self) -> bool:
        """Every entry appended so far is acknowledged by every group."""
        return all(lag == (0, 0) for lag in self.lags().values())

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything appended so far is in the log and applied (running the
        consumers inline when no thread runs them). Raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        self._flush.set()
        try:
            while not self.settled():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the streams did not drain in {timeout_s} s: {self.lags()}")
                if not self._threads:  # alone (`vitrine consume --drain`): take every pending entry
                    self.updater.recover(min_idle_ms=0)
                    self.updater.step(block_ms=10)
                    for writer in self.writers:
                        writer.step(block_ms=10)
                        writer.flush()
                    for counter in (self.shown, self.hot):
                        if counter is not None:
                            counter.recover()
                            counter.step(block_ms=10)
                else:
                    time.sleep(0.01)
        finally:
            self._flush.clear()
