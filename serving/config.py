"""Serving settings: one typed tree, built once at the edge (defaults, a JSON file, CLI flags)
and passed down. Budgets are milliseconds inside the request deadline."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class Strategy:
    """An A/B arm: which rankers run and how the final score is made.

    final = p_ctr · (1 + value_weight · p_cvr · log1p(price)) with the teacher (`fine`);
    the student's score alone without it.
    """

    name: str
    share: int  # of 100 hash buckets
    coarse: bool = True  # FM student narrows recall to `coarse_k`
    fine: bool = True  # MMoE teacher scores what is left
    value_weight: float = 1.0


@dataclass(frozen=True)
class Budgets:
    """Per-stage budgets (ms). A stage past its budget, or past the request deadline, ends
    the pipeline with a degraded hot/new answer (`<stage>_late`)."""

    total: float = 200.0  # the request deadline when the caller gives none (or a longer one)
    features: float = 50.0
    recall: float = 80.0
    coarse: float = 50.0
    fine: float = 80.0
    adjust: float = 30.0


@dataclass(frozen=True)
class Diversity:
    """MMR-like: each earlier pick of the same merchant (category) multiplies a candidate's
    score by this factor, so the list stays sorted by the score it reports."""

    merchant_decay: float = 0.6
    category_decay: float = 0.85


@dataclass(frozen=True)
class Security:
    """Who may call what, and over what (serving/security.py; docs/security.md).

    Tokens are read from the environment (`VITRINE_WRITE_TOKEN`, `VITRINE_ADMIN_TOKEN`,
    `VITRINE_READ_TOKEN`) or else from the files named here, and never logged. A scope whose
    token is not set is open; the server refuses to bind a non-loopback host with writes open
    unless `insecure_public` says so."""

    write_token_file: str | None = None  # TrackEvents, POST /collect from back ends
    admin_token_file: str | None = None  # GET /metrics (without one, the write token)
    read_token_file: str | None = None  # Recommend, GET /recommend (without one: public)
    # browsers may POST /collect without a token from these origins ("https://shop.example");
    # such calls are limited per client address. No origin listed: no CORS headers at all.
    collect_origins: tuple[str, ...] = ()
    public_rate_per_s: float = 20.0  # calls without a token on a closed server, per client address
    public_burst: int = 40
    tls_cert_file: str | None = None  # PEM: gRPC and HTTP both serve TLS when these are set
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None  # PEM: clients must present a certificate it signed (mTLS)
    insecure_public: bool = False  # allow a non-loopback host with unauthenticated writes

    def __post_init__(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("security: set both tls_cert_file and tls_key_file, or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("security: tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        if self.public_rate_per_s <= 0 or self.public_burst < 1:
            raise ValueError("security: public_rate_per_s must be > 0 and public_burst >= 1")
        for origin in self.collect_origins:
            if origin != "*" and (not origin.startswith(("http://", "https://")) or origin.endswith("/")):
                raise ValueError(f"security: collect origin {origin!r} must look like https://shop.example "
                                 "(scheme and host, optional port, no path)")


@dataclass(frozen=True)
class ServingConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    http_port: int | None = 8080  # gateway (POST /collect, GET /recommend, /metrics); None = off
    grpc_workers: int = 2  # handler threads per process: 2 did 91 req/s where 8 did 62 (GIL; docs/benchmarks.md)
    # threads that run the pipelines, so a hung stage is abandoned at the deadline (serving/watchdog.py);
    # 0 = inline in the handler thread
    stage_workers: int = 8
    max_concurrent_rpcs: int = 256
    recall_k: int = 500  # candidates from the recall merger
    coarse_k: int = 150  # kept by the FM student for the teacher
    max_k: int = 200
    max_exclude: int = 1000
    max_events: int = 500  # per TrackEvents / POST /collect
    max_user_id_len: int = 128
    redis_timeout_s: float = 0.05  # socket timeout for user reads: Redis down must not stall
    reload_seconds: float = 5.0  # how often model `latest` pointers and the item cache marker are checked
    recent_items_max: int = 20  # rt_recent_items kept per user
    bought_items_max: int = 100  # rt_bought_items kept per user
    grace_seconds: float = 5.0  # graceful shutdown: in-flight RPCs get this long
    # events are accepted from this long before the server's clock to this long after it (a
    # replay of an older log widens the first explicitly; `vitrine ingest` takes any history)
    event_past_days: float = 30.0
    event_future_minutes: float = 10.0
    # the event stream (vitrine.stream): an event id taken within the window is a duplicate
    dedup_window_s: int = 3600
    stream_timeout_s: float = 1.0  # the collector's appends: past this, UNAVAILABLE (resend is safe)
    consumers: bool = True  # run the stream's consumers in the server (False: `vitrine consume` does)
    log_batch_events: int = 50_000  # the event-log writer's group commit: this many events,
    log_batch_seconds: float = 5.0  # or this long after the first
    exposures: bool = True  # log every answer (serving/exposures.py)
    exposure_feature_sample: float = 0.01  # share of answers logged with the user features used
    # leave out items already shown to the user this many times (serving/shown.py; 0 = off),
    # counting answers of the last `shown_ttl_s` (from the user's latest answer)
    shown_limit: int = 0
    shown_ttl_s: int = 7 * 86400
    # the hot route's first `hot_live_share` of items from what is hot now: events of the last
    # `hot_live_window_s` counted from the stream in buckets of `hot_live_bucket_s`, re-read
    # every `reload_seconds` (serving/trending.py; 0 = off: only the daily order)
    hot_live_share: float = 0.0
    hot_live_window_s: int = 3600
    hot_live_bucket_s: int = 60
    budgets: Budgets = field(default_factory=Budgets)
    security: Security = field(default_factory=Security)
    diversity: Diversity = field(default_factory=Diversity)
    strategies: tuple[Strategy, ...] = (
        Strategy("control", 90, coarse=True, fine=True),
        Strategy("coarse_only", 10, coarse=True, fine=False),
    )

    def __post_init__(self) -> None:
        total = sum(s.share for s in self.strategies)
        if total != 100:
            raise ValueError(f"A/B strategy shares must add up to 100, got {total}")
        if len({s.name for s in self.strategies}) != len(self.strategies):
            raise ValueError("A/B strategy names must be unique")
        if self.shown_limit < 0 or self.shown_ttl_s < 1:
            raise ValueError("shown_limit must be >= 0 (0 = off) and shown_ttl_s >= 1")
        if self.shown_limit and not self.exposures:
            raise ValueError("shown_limit counts exposures: it needs exposures on")
        if not 0 <= self.hot_live_share <= 1 or self.hot_live_bucket_s < 1 \
                or self.hot_live_window_s < self.hot_live_bucket_s:
            raise ValueError("hot_live_share must be in [0, 1] (0 = off), hot_live_bucket_s >= 1 and "
                             "hot_live_window_s >= hot_live_bucket_s")
        if self.stage_workers < 0:
            raise ValueError("stage_workers must be >= 0 (0 = run the pipeline in the handler thread)")
        if not 0 < self.coarse_k <= self.recall_k:
            raise ValueError("need 0 < coarse_k <= recall_k")
        if self.event_past_days < 0 or self.event_future_minutes < 0:
            raise ValueError("event_past_days and event_future_minutes must be >= 0")
        if self.dedup_window_s < 1 or self.log_batch_events < 1 or self.log_batch_seconds <= 0:
            raise ValueError("dedup_window_s, log_batch_events and log_batch_seconds must be positive")

    @classmethod
    def from_json(cls, path: Path, **overrides: object) -> ServingConfig:
        """Settings from a JSON file (any subset of the fields), then explicit overrides."""
        raw = json.loads(Path(path).read_text()) if path else {}
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown serving settings {sorted(unknown)}; known: {sorted(known)}")
        for name, part in (("budgets", Budgets), ("security", Security), ("diversity", Diversity)):
            if name in raw:
                raw[name] = _part(part, raw[name], f"{path}: {name}")
        if "strategies" in raw:
            raw["strategies"] = tuple(Strategy(**s) for s in raw["strategies"])
        return replace(cls(**raw), **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


def _part(cls, raw: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{where}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
