"""The gRPC server: `Recommender` (Recommend, TrackEvents), health checking, reflection,
graceful shutdown, and the HTTP gateway beside it. `start_server` is the factory tests and
`vitrine serve` share; the servicer only converts proto ↔ `serving.api` types and maps
errors to status codes in one place."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
import pyarrow as pa
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from serving import validation
from serving.api import Recommendation, TrackResult
from serving.core import Core
from serving.gateway import Gateway
from serving.proto import SERVICE_NAME, pb, pb_grpc
from serving.security import Access, bearer_of_metadata, check_exposure, grpc_credentials
from serving.validation import failure_of

log = logging.getLogger("serving.server")


def recommendation_pb(rec: Recommendation) -> pb.RecommendResponse:
    return pb.RecommendResponse(
        items=[pb.RecommendedItem(item_id=i.item_id, score=i.score, p_ctr=i.p_ctr, p_cvr=i.p_cvr, routes=i.routes)
               for i in rec.items],
        model_version=rec.model_version, ab_bucket=rec.ab_bucket, request_id=rec.request_id,
        degraded=rec.degraded, degraded_reason=rec.degraded_reason, stage_ms=rec.stage_ms)


def track_pb(result: TrackResult) -> pb.TrackEventsResponse:
    return pb.TrackEventsResponse(accepted=result.accepted, duplicates=result.duplicates,
                                  rejections=[pb.Rejection(index=r.index, field=r.field, reason=r.reason)
                                              for r in result.rejections])


def events_table_pb(events) -> pa.Table:
    """`Event` messages as the collector's table, a column per field: strings as sent (empty
    = missing: null), the optional numbers where set (integers typed, doubles as their text)."""
    columns = {}
    for f in pb.Event.DESCRIPTOR.fields:
        if f.type == f.TYPE_STRING:
            columns[f.name] = pa.array([getattr(e, f.name) or None for e in events], pa.string())
        elif f.type == f.TYPE_DOUBLE:  # as text: a NaN or infinity is then rejected as "not a number"
            columns[f.name] = pa.array([repr(getattr(e, f.name)) if e.HasField(f.name) else None for e in events],
                                       pa.string())
        else:
            columns[f.name] = pa.array([getattr(e, f.name) if e.HasField(f.name) else None for e in events],
                                       pa.int64())
    return pa.table(columns)


class Undecodable:
    """A request whose bytes are not the method's message: answered INVALID_ARGUMENT by the
    servicer (gRPC's own deserialisation failure would be INTERNAL)."""

    def __init__(self, message: str, error: Exception) -> None:
        self.reason = f"the request body is not a valid {message} protobuf message ({type(error).__name__})"


def tolerant(message_class):
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except Exception as e:  # DecodeError, RuntimeWarning-as-error, recursion limits
            return Undecodable(message_class.DESCRIPTOR.full_name, e)

    return parse


MAX_RECEIVE_BYTES = 4 << 20  # a TrackEvents batch of 500 events is well under 1 MB
MAX_SEND_BYTES = 4 << 20


class RecommenderServicer(pb_grpc.RecommenderServicer):
    def __init__(self, core: Core, access: Access | None = None) -> None:
        self.core = core
        self.access = access or Access.from_settings(core.config.security, core.client)

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's methods with tolerant request parsing (see `Undecodable`)."""
        def unary(fn, request, response):
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=tolerant(request),
                                                       response_serializer=response.SerializeToString)

        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Recommend": unary(self.Recommend, pb.RecommendRequest, pb.RecommendResponse),
            "TrackEvents": unary(self.TrackEvents, pb.TrackEventsRequest, pb.TrackEventsResponse)})

    def _call(self, method: str, scope: str, context: grpc.ServicerContext, fn, request=None):
        t0 = time.perf_counter()
        try:
            if self.access.requires(scope):
                self.access.check(scope, bearer_of_metadata(context.invocation_metadata()), method)
            if isinstance(request, Undecodable):
                raise validation.InvalidRequest(request.reason)
            return fn()
        except Exception as e:
            failure = failure_of(e)
            if failure.internal:
                log.exception("internal error", extra={"method": method})
        finally:
            self.core.metrics.request_seconds.labels(method).observe(time.perf_counter() - t0)
        self.core.metrics.errors.labels(method, failure.code).inc()
        context.abort(grpc.StatusCode[failure.code], failure.message)

    def Recommend(self, request: pb.RecommendRequest, context: grpc.ServicerContext) -> pb.RecommendResponse:
        def run() -> pb.RecommendResponse:
            c = request.context
            req = validation.recommend_request(
                self.core.config, user_id=request.user_id, k=request.k, device=c.device, region=c.region,
                scene=c.scene, request_unix_s=c.request_unix_s, exclude=request.exclude_item_ids,
                request_id=request.request_id)
            return recommendation_pb(self.core.recommend(req, context.time_remaining()))

        return self._call("Recommend", "read", context, run, request)

    def TrackEvents(self, request: pb.TrackEventsRequest, context: grpc.ServicerContext) -> pb.TrackEventsResponse:
        def run() -> pb.TrackEventsResponse:
            return track_pb(self.core.track(events_table_pb(request.events)))

        return self._call("TrackEvents", "write", context, run, request)


@dataclass
class RunningServer:
    core: Core
    server: grpc.Server
    health: health.HealthServicer
    port: int
    gateway: Gateway | None = None
    access: Access | None = None

    @property
    def address(self) -> str:
        return f"{self.core.config.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return bool(self.core.config.security.tls_cert_file)

    def stop(self, grace: float | None = None) -> None:
        """Graceful: health goes NOT_SERVING, new calls are refused, in-flight ones finish."""
        self.health.enter_graceful_shutdown()
        if self.gateway is not None:
            self.gateway.stop()
        self.server.stop(self.core.config.grace_seconds if grace is None else grace).wait()
        self.core.close()
        log.info("server stopped", extra={"port": self.port})


def start_server(core: Core, port: int | None = None, http_port: int | None = -1) -> RunningServer:
    """Start gRPC (port 0 = any free port) and, unless `http_port` is None, the gateway
    (-1 = the configured port, 0 = any free port). Tokens, TLS and the exposure check come
    from `config.security` (serving/security.py)."""
    config = core.config
    access = Access.from_settings(config.security, core.client)
    check_exposure(config, access)
    credentials = grpc_credentials(config.security)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.grpc_workers,
                                                    thread_name_prefix="vitrine-grpc"),
                         maximum_concurrent_rpcs=config.max_concurrent_rpcs,
                         options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                                  ("grpc.max_send_message_length", MAX_SEND_BYTES)])
    server.add_generic_rpc_handlers((RecommenderServicer(core, access).handler(),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    address = f"{config.host}:{config.port if port is None else port}"
    bound = (server.add_secure_port(address, credentials) if credentials is not None
             else server.add_insecure_port(address))
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {config.host}:{port}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    gateway = None
    wanted = config.http_port if http_port == -1 else http_port
    if wanted is not None:
        gateway = Gateway(core, config.host, wanted, access)
        gateway.start()
    core.start_refresher()
    core.start_consumers()
    log.info("server started", extra={"grpc_port": bound, "http_port": gateway.port if gateway else None,
                                      "models": core.models.current.version_string(),
                                      "items": core.items.size, "tls": credentials is not None,
                                      "tokens": sorted(s for s, t in access.tokens.items() if t)})
    return RunningServer(core, server, health_servicer, bound, gateway, access)


def serve_forever(running: RunningServer) -> None:
    """Block until SIGTERM/SIGINT, then shut down gracefully."""
    done = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    done.wait()
    running.stop()
