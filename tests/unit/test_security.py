"""Access rules without a server: tokens, the public rate limit, settings, redaction."""

from __future__ import annotations

import json

import pytest

from serving.config import Security, ServingConfig
from serving.security import Access, RateLimiter, SecurityError, bearer, bearer_of_metadata, check_exposure
from serving.validation import RateLimited, Unauthenticated, failure_of
from vitrine.featurestore.repo import feast_connection_string
from vitrine.online.redis_local import redacted

WRITE = "w" * 20
ADMIN = "a" * 20


@pytest.fixture(autouse=True)
def no_token_env(monkeypatch):
    for scope in ("WRITE", "ADMIN", "READ"):
        monkeypatch.delenv(f"VITRINE_{scope}_TOKEN", raising=False)


def access(tmp_path, **kw) -> Access:
    (tmp_path / "write").write_text(WRITE + "\n")
    return Access.from_settings(Security(write_token_file=str(tmp_path / "write"), **kw))


def test_bearer_parsing():
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer("Bearer") is None and bearer(None) is None
    assert bearer_of_metadata([("x", "y"), ("authorization", "Bearer t")]) == "t"
    assert bearer_of_metadata(None) is None


def test_tokens_per_scope_and_the_admin_fallback(tmp_path, monkeypatch):
    a = access(tmp_path)
    assert a.closed and a.requires("write") and a.requires("admin") and not a.requires("read")
    a.check("read", None, "Recommend")  # open
    a.check("write", WRITE, "TrackEvents")
    a.check("admin", WRITE, "GET /metrics")  # no admin token: the write token
    with pytest.raises(Unauthenticated, match="needs a token: send `authorization: Bearer <write token>`"):
        a.check("write", None, "TrackEvents")
    with pytest.raises(Unauthenticated, match="not valid"):
        a.check("write", WRITE[:-1] + "x", "TrackEvents")
    monkeypatch.setenv("VITRINE_ADMIN_TOKEN", ADMIN)
    b = access(tmp_path)
    b.check("write", ADMIN, "TrackEvents")  # admin is accepted everywhere
    with pytest.raises(Unauthenticated):
        b.check("admin", WRITE, "GET /metrics")  # but write is not admin
    assert failure_of(Unauthenticated("x")).code == "UNAUTHENTICATED"
    assert failure_of(Unauthenticated("x")).http == 401


def test_token_sources_and_their_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("VITRINE_WRITE_TOKEN", "e" * 20)
    assert access(tmp_path).tokens["write"] == b"e" * 20  # the environment beats the file
    monkeypatch.setenv("VITRINE_WRITE_TOKEN", "short")
    with pytest.raises(SecurityError, match="at least 16 characters"):
        access(tmp_path)
    monkeypatch.delenv("VITRINE_WRITE_TOKEN")
    with pytest.raises(SecurityError, match="cannot read the write token file"):
        Access.from_settings(Security(write_token_file=str(tmp_path / "missing")))
    assert not Access.from_settings(Security()).closed


def test_rate_limiter_buckets_per_client():
    limiter = RateLimiter(rate=2.0, burst=3, max_keys=2)
    assert [limiter.allow("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", now=0.0)  # its own bucket
    assert limiter.allow("a", now=0.5) and not limiter.allow("a", now=0.5)  # 2/s refills one in 0.5 s
    limiter.allow("c", now=0.5)  # a third client: the least recently seen ("b") is forgotten
    assert set(limiter._buckets) == {"a", "c"}


def test_shared_rate_limit_falls_back_to_the_process_bucket_without_redis():
    import redis

    from serving.security import SharedRateLimiter
    from vitrine.online.redis_local import free_port

    limiter = SharedRateLimiter(redis.Redis(port=free_port(), socket_connect_timeout=0.2), rate=0.01, burst=2)
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]  # never refused for Redis's sake


def test_public_limit_message_and_status(tmp_path):
    a = access(tmp_path, public_rate_per_s=1.0, public_burst=1)
    a.limit("10.0.0.1", "POST /collect")
    with pytest.raises(RateLimited, match=r"more than 1 calls a second from 10\.0\.0\.1"):
        a.limit("10.0.0.1", "POST /collect")
    assert failure_of(RateLimited("x")).http == 429 and failure_of(RateLimited("x")).code == "RESOURCE_EXHAUSTED"


def test_origins_allowlist():
    a = Access.from_settings(Security(collect_origins=("https://shop.example",)))
    assert a.origin_allowed("https://shop.example")
    assert not a.origin_allowed("https://evil.example") and not a.origin_allowed(None)
    assert Access.from_settings(Security(collect_origins=("*",))).origin_allowed("https://any.example")
    with pytest.raises(ValueError, match=r"must look like https://shop\.example"):
        Security(collect_origins=("shop.example",))


def test_settings_are_checked_and_read_from_json(tmp_path):
    with pytest.raises(ValueError, match="both tls_cert_file and tls_key_file"):
        Security(tls_cert_file="c.pem")
    with pytest.raises(ValueError, match="needs tls_cert_file"):
        Security(tls_client_ca_file="ca.pem")
    path = tmp_path / "serving.json"
    path.write_text(json.dumps({"security": {"collect_origins": ["https://shop.example"], "public_burst": 5}}))
    config = ServingConfig.from_json(path)
    assert config.security.collect_origins == ("https://shop.example",) and config.security.public_burst == 5
    path.write_text(json.dumps({"security": {"write_token": "inline"}}))
    with pytest.raises(ValueError, match=r"security: unknown settings \['write_token'\]"):
        ServingConfig.from_json(path)


def test_non_loopback_needs_a_write_token(tmp_path):
    open_access = Access.from_settings(Security())
    check_exposure(ServingConfig(host="127.0.0.1"), open_access)
    check_exposure(ServingConfig(host="::1"), open_access)
    with pytest.raises(SecurityError, match=r"refusing to serve on 0\.0\.0\.0 with unauthenticated writes"):
        check_exposure(ServingConfig(host="0.0.0.0"), open_access)
    check_exposure(ServingConfig(host="0.0.0.0", security=Security(insecure_public=True)), open_access)
    check_exposure(ServingConfig(host="0.0.0.0"), access(tmp_path))


def test_passwords_are_redacted_and_passed_to_feast():
    assert redacted("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert feast_connection_string("rediss://app:pw@h:6380/2?ssl_ca_certs=/x/ca.pem") == \
        "h:6380,db=2,username=app,password=pw,ssl=true,ssl_ca_certs=/x/ca.pem"
