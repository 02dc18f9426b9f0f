"""The transport-agnostic core both the gRPC servicer and the HTTP gateway call: it owns the
online-store client, the feature reader, the item cache, the model set, the collector (which
appends to the event stream) and the stream's consumers, and a background refresher that
hot-reloads models and the item cache."""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any

from serving.api import Recommendation, RecommendRequest, TrackResult
from serving.config import ServingConfig
from serving.consumers import Consumers, exposure_stream
from serving.encoded import prepare
from serving.events import EventCollector
from serving.exposures import ExposureRecorder
from serving.features import UserFeatureReader, entity_views, feature_clock
from serving.items import DEFAULT_SERVICES, ItemCache
from serving.metrics import Metrics, NullMetrics
from serving.models import ModelSet
from serving.pipeline import Context, recommend
from serving.shown import shown_reader
from serving.watchdog import Watchdog
from vitrine.config import Home

log = logging.getLogger("serving.core")


def redis_client(url: str, timeout_s: float):
    """A client that fails fast: no retries, short timeouts (Redis down → degraded answers)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)


def settle_heap() -> None:
    """Collect once, then freeze what is loaded out of the garbage collector's sight.

    The loaded item cache, indices, vocabularies and models are ~600k long-lived objects at
    100k items; a full collection walks all of them: a ~300 ms pause of every request in the
    process, about once per thousand requests (measured in-process: p99 8.9 → 7.3 ms, max
    307 → 11 ms over 1,000 requests). Frozen objects are still freed by reference counting;
    after a reload this runs once more (one pause per reload instead of one every few seconds
    under load)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Core:
    def __init__(self, home: Home, config: ServingConfig, redis_url: str | None = None) -> None:
        from vitrine.featurestore.repo import feature_store, project_name
        from vitrine.online.redis_local import redis_url as home_redis_url

        self.home, self.config = home, config
        self.metrics = Metrics()
        self.redis_url = redis_url or home_redis_url(home)
        self.store = feature_store(home, self.redis_url)
        self.client = redis_client(self.redis_url, config.redis_timeout_s)
        self.reader = UserFeatureReader(self.client, project_name(), entity_views(self.store, "user"))
        self.items: ItemCache | None = None  # loaded with the retriever, which is built on its catalogue
        self.models = ModelSet(home, self.metrics, catalogue=self._catalogue)
        self.models.reload()
        if self.items is None or self.services() != self.items.services:
            self.items = ItemCache.load(self.store, self.services(), reuse=self.items)  # same catalogue
        self.metrics.item_cache_items.set(self.items.size)
        self.warm_up()
        from vitrine.stream.redis_streams import RedisEventStream

        stream = RedisEventStream(redis_client(self.redis_url, config.stream_timeout_s),
                                  dedup_window_s=config.dedup_window_s)
        self.collector = EventCollector(config, self.metrics, stream,
                                        lambda: self.items.row_of if self.items.size else None)
        # the stream's consumers, started with the server (`start_consumers`) unless another
        # deployment runs them (`vitrine consume`); `drain()` also works without threads
        self.consumers = Consumers.for_home(home, config, self.redis_url, self.store)
        # every answer, through the exposure stream, to the exposure log (serving/exposures.py)
        self.exposures = ExposureRecorder(exposure_stream(stream.client), self.metrics,
                                          config.exposure_feature_sample) if config.exposures else None
        if self.exposures is not None:
            self.exposures.start()
        self._read_shown = shown_reader(self.client, config.shown_limit) if config.shown_limit else None
        self.refresh_live_hot()
        self.watchdog = Watchdog(config.stage_workers)  # a hung stage is abandoned at the deadline
        self._registry = home.feast / "registry.db"
        self._registry_stamp = self._stamp(self._registry)
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        settle_heap()

    # --- the two calls --------------------------------------------------------------------
    def recommend(self, req: RecommendRequest, timeout_s: float | None = None) -> Recommendation:
        ctx = Context(self.config, self.metrics, self.models.current, self.items, self._read_user)
        if self.exposures is None:
            return self.watchdog.recommend(ctx, req, timeout_s)
        rec = self.watchdog.recommend(ctx, req, timeout_s, with_features=self.exposures.wants_features(req.request_id))
        self.exposures.record(req, rec, rec.features)
        return rec

    def _read_user(self, user_id: str):
        user = self.reader.read(user_id)
        if self._read_shown is not None:  # the "already shown N times" filter
            user.shown = self._read_shown(user_id)
        return user

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every event tracked and every answer given so far is in its log (and the
        events applied to the users' real-time rows)."""
        if self.exposures is not None:
            self.exposures.flush()
        self.consumers.drain(timeout_s)

    def track(self, events: Any) -> TrackResult:
        return self.collector.track(events)

    def warm_up(self) -> Recommendation:
        """The loaded models' item tables for the cache (`serving.encoded`), then one request
        through every stage with no budgets and throwaway metrics, so the first real request
        does not pay for TensorFlow's first call (graph tracing, allocation); counted nowhere."""
        from dataclasses import replace

        from serving.config import Budgets

        current = self.models.current
        prepare(self.items, (current.student, current.teacher))
        unlimited = Budgets(*[60_000.0] * 6)
        config = replace(self.config, budgets=unlimited)
        ctx = Context(config, NullMetrics(), self.models.current, self.items, self.reader.read)
        out = None
        for strategy in self.config.strategies:  # every arm's models
            one = replace(config, strategies=(replace(strategy, share=100),))
            out = recommend(replace(ctx, config=one), RecommendRequest(user_id="__warm_up__", k=10,
                                                                        request_id="warm-up"))
        return out

    def refresh_live_hot(self) -> int:
        """Hand what is hot now (counted from the event stream: serving/trending.py) to the
        hot route, as rows of its catalogue; on every refresh. Returns the live items."""
        route = None if self.models.current.retriever is None else self.models.current.retriever.routes.get("hot")
        if not self.config.hot_live_share or route is None:
            return 0
        from serving.trending import hot_now, live_rows

        c = self.config
        try:
            ranked = hot_now(self.client, c.hot_live_window_s, c.hot_live_bucket_s, top=max(c.recall_k, 500))
        except Exception as e:  # Redis away: keep what the route has, try again next refresh
            log.warning("live hot items not read", extra={"error": str(e)[:300]})
            return len(route.live.state[0])
        rows = live_rows(ranked, route.catalogue.row_of)
        route.live.set(rows, c.hot_live_share)  # the holder its per-policy copies share
        return len(rows)

    # --- background refresh -----------------------------------------------------------------
    @staticmethod
    def _stamp(path: Path) -> tuple[float, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime, st.st_size

    def services(self) -> tuple[str, ...]:
        """The feature services of the loaded rankers: the item cache holds their views."""
        current = self.models.current
        names = {m.feature_service for m in (current.student, current.teacher) if m is not None}
        return tuple(sorted(names)) or DEFAULT_SERVICES

    def _catalogue(self):
        """The catalogue the retriever is built on: the item cache's (loaded first if none)."""
        if self.items is None:
            self.items = ItemCache.load(self.store, self.services())
        return self.items.catalogue

    def _reload_items(self) -> bool:
        """Reload the item cache; True when its catalogue changed (the retriever must follow)."""
        t = time.perf_counter()
        old = self.items
        items = ItemCache.load(self.store, self.services(), reuse=old)
        current = self.models.current
        prepare(items, (current.student, current.teacher))
        self.items = items  # until the retriever follows, requests map its rows to the cache's by id
        self.metrics.item_cache_items.set(items.size)
        log.info("item cache reloaded", extra={"items": items.size, "services": ",".join(items.services),
                                               "seconds": round(time.perf_counter() - t, 3)})
        return old is None or items.catalogue is not old.catalogue

    def refresh(self) -> dict[str, str]:
        """Reload the item cache if materialisation moved (or a ranker reading other views was
        loaded), and any model whose `latest` moved."""
        force: frozenset[str] = frozenset()
        stamp = self._stamp(self._registry)
        if stamp != self._registry_stamp:
            self._registry_stamp = stamp
            self.store.refresh_registry()
            self.reader.clock_us = feature_clock(entity_views(self.store, "user"))  # a new materialisation
            if ItemCache.marker_of(self.store, self.items.services) != self.items.marker and self._reload_items():
                force = frozenset({"two_tower"})  # the retriever is built on the cache's catalogue
        outcomes = self.models.reload(force)
        if self.services() != self.items.services and self._reload_items():
            outcomes.update(self.models.reload(frozenset({"two_tower"})))  # materialised in between
        if any(o.startswith("loaded") for o in outcomes.values()):
            self.warm_up()
            settle_heap()
        self.refresh_live_hot()
        return outcomes

    def start_refresher(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.config.reload_seconds):
                try:
                    self.refresh()
                except Exception:
                    log.exception("refresh failed; serving what is loaded")

        self._refresher = threading.Thread(target=loop, name="vitrine-refresher", daemon=True)
        self._refresher.start()

    def start_consumers(self) -> None:
        if self.config.consumers:
            self.consumers.start()

    def close(self) -> None:
        self.watchdog.close()
        if self.exposures is not None:
            self.exposures.stop()
        self.consumers.stop()
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
        self.client.close()
