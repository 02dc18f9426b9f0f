"""A small HTTP gateway on the same core: `POST /collect` for the browser tracker,
`GET /recommend` as JSON, `GET /metrics` (Prometheus) and `GET /healthz`."""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from serving import validation
from serving.validation import InvalidRequest, failure_of

log = logging.getLogger("serving.gateway")
MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    server_version = "vitrine-gateway"
    core = None  # set on the subclass made per gateway

    def log_message(self, format: str, *args) -> None:  # route access logs to DEBUG
        log.debug(format % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode())

    def _guard(self, method: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:
            failure = failure_of(e)
            if failure.internal:
                log.exception("internal error", extra={"method": method})
            self.core.metrics.errors.labels(method, failure.code).inc()
            self._json(failure.http, {"error": failure.message})
        finally:
            self.core.metrics.request_seconds.labels(method).observe(time.perf_counter() - t0)

    def do_OPTIONS(self) -> None:  # CORS preflight from the tracker
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.end_headers()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/recommend":
            self._guard("http_recommend", lambda: self._recommend(parse_qs(url.query)))
        elif url.path == "/metrics":
            self._send(HTTPStatus.OK, self.core.metrics.exposition(), "text/plain; version=0.0.4")
        elif url.path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "serving", "models": self.core.models.current.version_string()})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "unknown path; use /recommend, /collect, /metrics, /healthz"})

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/collect":
            self._json(HTTPStatus.NOT_FOUND, {"error": "POST only to /collect"})
            return
        self._guard("http_collect", self._collect)

    def _recommend(self, query: dict[str, list[str]]) -> None:
        def one(name: str, default: str = "") -> str:
            return query.get(name, [default])[-1]

        try:
            k = int(one("k", "10"))
            when = int(one("request_unix_s", "0"))
        except ValueError as e:
            raise InvalidRequest(f"k and request_unix_s must be integers: {e}") from None
        exclude = [i for v in query.get("exclude", []) for i in v.split(",") if i]
        req = validation.recommend_request(self.core.config, user_id=one("user_id"), k=k, device=one("device"),
                                           region=one("region"), scene=one("scene"), request_unix_s=when,
                                           exclude=exclude, request_id=one("request_id"))
        self._json(HTTPStatus.OK, self.core.recommend(req).to_dict())

    def _collect(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            raise InvalidRequest(f"send a JSON body of 1 byte to {MAX_BODY} bytes (got {length})")
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidRequest(f"the body is not JSON: {e}") from None
        events = body.get("events") if isinstance(body, dict) and "events" in body else body
        if isinstance(events, dict):
            events = [events]
        self._json(HTTPStatus.OK, self.core.track(events).to_dict())


class Gateway:
    def __init__(self, core, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"core": core})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="vitrine-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
