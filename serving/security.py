"""Who may call what, and over what: tokens per scope, the browser collector's origin
allowlist and per-address rate limit, TLS from certificate files (docs/security.md).

Scopes: `write` (TrackEvents, POST /collect from back ends), `admin` (GET /metrics) and `read`
(Recommend, GET /recommend). A scope's token comes from `$VITRINE_<SCOPE>_TOKEN` or else the
file named in `Security`; a scope without one is open, except `admin`, which falls back to the
write token. The admin token is accepted wherever a token is asked for. Tokens travel as
`authorization: Bearer <token>` (gRPC metadata or the HTTP header), are compared in constant
time and never logged.

Browsers cannot keep a secret, so a closed server takes `POST /collect` without a token only
with an `Origin` on the allowlist, and then at most `public_rate_per_s` calls per second per
client address (a token bucket; what any public collector can promise: an `Origin` header is
only a browser's word). Clients with a token are not limited.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from serving.config import Security, ServingConfig
from serving.validation import RateLimited, Unauthenticated
from vitrine.errors import VitrineError

log = logging.getLogger("serving.security")
SCOPES = ("write", "admin", "read")
MIN_TOKEN_CHARS = 16
MAX_LIMITED_CLIENTS = 100_000  # addresses the rate limiter remembers (least recently seen dropped)


class SecurityError(VitrineError):
    """A security setting cannot be used as given; the message says how to fix it."""


def token_env(scope: str) -> str:
    return f"VITRINE_{scope.upper()}_TOKEN"


def _read_token(scope: str, file: str | None) -> bytes | None:
    value = os.environ.get(token_env(scope), "").strip()
    where = f"${token_env(scope)}"
    if not value and file:
        try:
            value = Path(file).read_text().strip()
        except OSError as e:
            raise SecurityError(f"cannot read the {scope} token file {file}: {e.strerror}") from None
        where = file
    if not value:
        return None
    if len(value) < MIN_TOKEN_CHARS or any(c.isspace() for c in value):
        raise SecurityError(f"the {scope} token in {where} must be at least {MIN_TOKEN_CHARS} characters with "
                            "no spaces (make one: `openssl rand -hex 32`)")
    return value.encode()


def bearer(header: str | None) -> str | None:
    """The token of an `authorization: Bearer <token>` value, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def bearer_of_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            return bearer(value)
    return None


class RateLimiter:
    """A token bucket per key (client address): `rate` calls a second, bursts of `burst`."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_LIMITED_CLIENTS) -> None:
        self.rate, self.burst, self.max_keys = rate, float(burst), max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed


# a token bucket in Redis, on Redis's clock: every server process draws from the same bucket
_SHARED_BUCKET = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return allowed
"""


class SharedRateLimiter:
    """The public rate limit across server processes (`serve --processes N`, several hosts on
    one Redis): one token bucket per client address in Redis (`vitrine:ratelimit:<address>`,
    expiring once full again). Redis away: each process's own bucket (`RateLimiter`) decides,
    so the limit is per process until it is back — never a refusal for Redis's sake."""

    def __init__(self, client, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.local = RateLimiter(rate, burst)
        self._bucket = client.register_script(_SHARED_BUCKET)

    def allow(self, key: str) -> bool:
        try:
            return bool(self._bucket(keys=[f"vitrine:ratelimit:{key}"], args=[self.rate, self.burst]))
        except Exception:
            return self.local.allow(key)


@dataclass
class Access:
    """The tokens and rules of one server; built once from `Security` at start."""

    tokens: dict[str, bytes | None]
    origins: frozenset[str]
    limiter: RateLimiter | SharedRateLimiter

    @classmethod
    def from_settings(cls, security: Security, redis_client=None) -> Access:
        """`redis_client`: the public rate limit is kept there, shared by every process."""
        tokens = {scope: _read_token(scope, getattr(security, f"{scope}_token_file")) for scope in SCOPES}
        if tokens["admin"] is None:
            tokens["admin"] = tokens["write"]
        rate, burst = security.public_rate_per_s, security.public_burst
        limiter = RateLimiter(rate, burst) if redis_client is None else SharedRateLimiter(redis_client, rate, burst)
        return cls(tokens, frozenset(security.collect_origins), limiter)

    @property
    def closed(self) -> bool:
        """Whether any scope needs a token (then calls without one are rate limited)."""
        return any(self.tokens.values())

    def requires(self, scope: str) -> bool:
        return self.tokens[scope] is not None

    def valid(self, scope: str, token: str | None) -> bool:
        if token is None:
            return False
        given = token.encode()
        return any(t is not None and hmac.compare_digest(given, t) for t in (self.tokens[scope], self.tokens["admin"]))

    def check(self, scope: str, token: str | None, what: str) -> None:
        """Raise `Unauthenticated` unless the scope is open or `token` may do it."""
        if not self.requires(scope):
            return
        if token is None:
            raise Unauthenticated(f"{what} needs a token: send `authorization: Bearer <{scope} token>` "
                                  f"(the server reads it from ${token_env(scope)} or security.{scope}_token_file)")
        if not self.valid(scope, token):
            raise Unauthenticated(f"{what}: the token is not valid for this server's {scope} scope")

    def origin_allowed(self, origin: str | None) -> bool:
        return bool(origin) and (origin in self.origins or "*" in self.origins)

    def limit(self, client: str, what: str) -> None:
        if not self.limiter.allow(client):
            raise RateLimited(f"{what}: more than {self.limiter.rate:g} calls a second from {client} without a "
                              "token; slow down, or call from a back end with a token")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: ServingConfig, access: Access) -> None:
    """Refuse to listen beyond loopback with writes open to anyone (unless told so)."""
    if is_loopback(config.host):
        return
    if not access.requires("write") and not config.security.insecure_public:
        raise SecurityError(
            f"refusing to serve on {config.host} with unauthenticated writes: set ${token_env('write')} "
            "(or security.write_token_file), or set security.insecure_public to accept anyone's events")
    if not config.security.tls_cert_file:
        log.warning("serving on %s without TLS: tokens and answers travel in clear text "
                    "(set security.tls_cert_file and tls_key_file unless a proxy terminates TLS)", config.host)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise SecurityError(f"cannot read the {what} {path}: {e.strerror}") from None


def grpc_credentials(security: Security):
    """Server credentials for gRPC from the PEM files, or None for plain TCP."""
    if not security.tls_cert_file:
        return None
    import grpc

    ca = _read(security.tls_client_ca_file, "client CA file") if security.tls_client_ca_file else None
    pair = (_read(security.tls_key_file, "TLS key file"), _read(security.tls_cert_file, "TLS certificate file"))
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def http_context(security: Security) -> ssl.SSLContext | None:
    """The gateway's TLS context from the same files, or None for plain HTTP."""
    if not security.tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(security.tls_cert_file, security.tls_key_file)
        if security.tls_client_ca_file:
            context.load_verify_locations(security.tls_client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise SecurityError(f"cannot load the TLS certificate, key or client CA: {e}") from None
    return context
