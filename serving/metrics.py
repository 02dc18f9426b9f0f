"""Prometheus metrics of one server (its own registry, so several servers can live in one
process — tests do), and structured JSON logs.

`vitrine serve --processes N` gives its children a directory (`VITRINE_METRICS_DIR`, and
prometheus_client's own variables pointing there, set before anything imports it): each
process's counts then live in files there and the one `/metrics` (the first child's gateway)
adds up every process's counters and histograms; the gauges give the largest value among
live processes. In that mode every `Metrics` of a process shares the same values, so
throwaway counting (the warm-up) uses `NullMetrics`. (Feast's import sets
`PROMETHEUS_MULTIPROC_DIR` to a directory of its own, so that variable says nothing about
our processes.)"""

from __future__ import annotations

import json
import logging
import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values

METRICS_DIR_ENV = "VITRINE_METRICS_DIR"


def multiprocess_env(directory: str) -> dict[str, str]:
    """The environment of a server process whose metrics add up with its siblings'."""
    return {METRICS_DIR_ENV: directory, "PROMETHEUS_MULTIPROC_DIR": directory, "PROMETHEUS_MULTIPROCESS_DIR": directory}
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        if not os.environ.get(METRICS_DIR_ENV):
            # in-memory values, whatever Feast's import did to prometheus_client (its multiprocess
            # files would make every Metrics of the process share counts)
            values.ValueClass = values.MutexValue
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram("vitrine_stage_seconds", "Latency of one pipeline stage", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.request_seconds = Histogram("vitrine_request_seconds", "Latency of one RPC / HTTP call", ["method"],
                                         buckets=STAGE_BUCKETS, registry=r)
        self.requests = Counter("vitrine_requests_total", "Recommend answers by A/B bucket", ["bucket"],
                                registry=r)
        self.degraded = Counter("vitrine_degraded_total", "Degraded (hot/new) answers by reason", ["reason"],
                                registry=r)
        self.errors = Counter("vitrine_errors_total", "Calls that ended in an error status", ["method", "code"],
                              registry=r)
        self.events = Counter("vitrine_events_total", "Tracked events by outcome", ["outcome"], registry=r)
        self.exposures = Counter("vitrine_exposures_total", "Items shown in answers, by A/B arm", ["arm"],
                                 registry=r)
        self.exposure_log = Counter("vitrine_exposure_log_total", "Answers appended to the exposure log, or dropped",
                                    ["outcome"], registry=r)
        self.reloads = Counter("vitrine_model_reloads_total", "Model reload attempts", ["model", "result"],
                               registry=r)
        self.model_info = Gauge("vitrine_model_info", "The model version being served (value 1)",
                                ["model", "version"], registry=r, multiprocess_mode="livemax")
        self.item_cache_items = Gauge("vitrine_item_cache_items", "Items in the in-process item cache",
                                      registry=r, multiprocess_mode="livemax")

    def set_version(self, model: str, version: str) -> None:
        for sample in list(self.model_info.collect()[0].samples):
            if sample.labels.get("model") == model and sample.labels.get("version") != version:
                self.model_info.labels(model, sample.labels["version"]).set(0)  # what other processes read
                self.model_info.remove(model, sample.labels["version"])
        self.model_info.labels(model, version).set(1)

    def exposition(self) -> bytes:
        directory = os.environ.get(METRICS_DIR_ENV)
        if directory:
            from prometheus_client import multiprocess

            every = CollectorRegistry()
            multiprocess.MultiProcessCollector(every, path=directory)
            return generate_latest(every)
        return generate_latest(self.registry)


class _Nothing:
    def labels(self, *args, **kw) -> _Nothing:
        return self

    def inc(self, *args) -> None:
        pass

    observe = set = inc


class NullMetrics:
    """The `Metrics` interface counting nothing (the warm-up's requests)."""

    def __getattr__(self, name: str) -> _Nothing:
        return _Nothing()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra={...}` fields."""

    _RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in self._RESERVED})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr for the `serving` loggers (the server's process-wide setting)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("serving")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
