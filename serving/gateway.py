"""A small HTTP gateway on the same core: `POST /collect` for the browser tracker,
`GET /recommend` as JSON, `GET /metrics` (Prometheus) and `GET /healthz`.

Every answer is JSON, errors included (a malformed request line, an unsupported method, a bad
`Content-Length`, a body nested too deeply: 4xx with a message, never a 500 or an HTML page).
Connections are bounded (`MAX_CONNECTIONS`; more get a 503 at once) and a client that sends
nothing for `READ_TIMEOUT_S` is dropped, so slow clients cannot hold every thread; a client
that goes away mid-answer is logged at DEBUG, not as a traceback.

Access (serving/security.py): `/recommend` needs the read token, `/metrics` the admin token,
`POST /collect` the write token or an allowlisted browser `Origin` (then rate limited per
client address), each only where the server has that token set; `/healthz` is open. CORS
headers name the caller's origin only when it is on the allowlist, never `*` by default. With
certificate files the gateway speaks HTTPS (the handshake runs in the connection's thread,
under the same read timeout)."""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from serving import validation
from serving.security import Access, bearer, http_context
from serving.validation import InvalidRequest, failure_of

log = logging.getLogger("serving.gateway")
MAX_BODY = 1 << 20
MAX_CONNECTIONS = 64  # open connections (one thread each); more are answered 503 at once
READ_TIMEOUT_S = 10.0  # a client silent this long mid-request is dropped


class _Handler(BaseHTTPRequestHandler):
    server_version = "vitrine-gateway"
    core = None  # set on the subclass made per gateway
    access: Access = None  # type: ignore[assignment]
    timeout = READ_TIMEOUT_S

    def setup(self) -> None:
        tls = self.server.tls
        if tls is not None:  # the handshake here, in this connection's thread, bounded by the timeout
            self.request.settimeout(self.timeout)
            self.request = tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def _cors(self) -> str | None:
        headers = getattr(self, "headers", None)  # None before a request line parsed
        origin = headers.get("Origin") if headers is not None else None
        return origin if self.access.origin_allowed(origin) else None

    def _authorise(self, scope: str, what: str, public: bool = False) -> None:
        """The scope's token; without one, an open scope (or a `public` call) is rate limited
        per client address on a server that has any token set."""
        token = bearer(self.headers.get("Authorization"))
        if token is not None:
            self.access.check(scope, token, what)
            return
        if not public:
            self.access.check(scope, None, what)
        if self.access.closed:
            self.access.limit(self.client_address[0], what)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (bad request line, 501, 414) as JSON, not HTML."""
        try:
            self.close_connection = True
            self.request_version = "HTTP/1.1"  # a garbled request line parses as HTTP/0.9: no status line
            self._json(code, {"error": message or HTTPStatus(code).phrase})
        except (ConnectionError, TimeoutError):
            pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        origin = self._cors()
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        elif status == HTTPStatus.TOO_MANY_REQUESTS:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode())

    def _guard(self, method: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except (ConnectionError, TimeoutError):
            raise  # the client is gone: nothing to answer (`handle` logs it at DEBUG)
        except Exception as e:
            failure = failure_of(e)
            if failure.internal:
                log.exception("internal error", extra={"method": method})
            self.core.metrics.errors.labels(method, failure.code).inc()
            self._json(failure.http, {"error": failure.message})
        finally:
            self.core.metrics.request_seconds.labels(method).observe(time.perf_counter() - t0)

    def do_OPTIONS(self) -> None:  # CORS preflight from the tracker's pages
        origin = self._cors()
        if origin is None:
            self._json(HTTPStatus.FORBIDDEN, {"error": "this origin may not call the gateway from a browser; "
                                                       "list it in security.collect_origins"})
            return
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Origin", origin)
        self.send_header("Vary", "Origin")
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/recommend":
            self._guard("http_recommend", lambda: self._recommend(parse_qs(url.query)))
        elif url.path == "/metrics":
            self._guard("http_metrics", self._metrics)
        elif url.path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "serving", "models": self.core.models.current.version_string()})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "unknown path; use /recommend, /collect, /metrics, /healthz"})

    def _not_allowed(self) -> None:
        self.close_connection = True
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        body = json.dumps({"error": f"{self.command} is not served here; use GET or POST"}).encode()
        self.send_header("Allow", "GET, POST, OPTIONS")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/collect":
            self._json(HTTPStatus.NOT_FOUND, {"error": "POST only to /collect"})
            return
        self._guard("http_collect", self._collect)

    def _metrics(self) -> None:
        self._authorise("admin", "GET /metrics")
        self._send(HTTPStatus.OK, self.core.metrics.exposition(), "text/plain; version=0.0.4")

    def _recommend(self, query: dict[str, list[str]]) -> None:
        self._authorise("read", "GET /recommend")
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
        self._authorise("write", "POST /collect (from a browser: an allowed Origin)",
                        public=self.access.origin_allowed(self.headers.get("Origin")))
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not raw.isdigit():
            raise InvalidRequest(f"Content-Length must be a whole number of bytes, got {raw[:40]!r}")
        length = int(raw)
        if length <= 0 or length > MAX_BODY:
            raise InvalidRequest(f"send a JSON body of 1 byte to {MAX_BODY} bytes (got {length})")
        data = self.rfile.read(length)
        if len(data) < length:
            raise InvalidRequest(f"the body ended after {len(data)} of {length} bytes")
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidRequest(f"the body is not JSON: {e}") from None
        except RecursionError:
            raise InvalidRequest("the body's JSON is nested too deeply") from None
        events = body.get("events") if isinstance(body, dict) and "events" in body else body
        if isinstance(events, dict):
            events = [events]
        self._json(HTTPStatus.OK, self.core.track(events).to_dict())


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most `MAX_CONNECTIONS` of them."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog (socketserver's default is 5)

    def __init__(self, *args, tls=None, **kw) -> None:
        super().__init__(*args, **kw)
        self.tls = tls
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                body = b'{"error": "too many connections; retry shortly"}'
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                                + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:  # never a traceback on stderr
        log.debug("gateway connection error", exc_info=True)


class Gateway:
    def __init__(self, core, host: str, port: int, access: Access | None = None) -> None:
        access = access or Access.from_settings(core.config.security, core.client)
        handler = type("Handler", (_Handler,), {"core": core, "access": access})
        self.httpd = _BoundedServer((host, port), handler, tls=http_context(core.config.security))
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="vitrine-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
