"""Closed to strangers, for real: a server with tokens (gRPC and HTTP), the browser collector's
origin allowlist and rate limit, TLS with client certificates on both ports, and the whole
online path (Feast apply, materialisation, reads, the event stream) over a TLS Redis with a
password. Certificates come from the `openssl` command; Redis is a real `redis-server`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import pytest

from serving.config import Security, ServingConfig
from serving.proto import pb, pb_grpc
from tests.integration.serving_fixtures import running_server, served_copy, stub_of
from tests.integration.tls_fixtures import make_certs
from vitrine.online.redis_local import free_port, ping

pytestmark = pytest.mark.integration

WRITE = "write-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def served(small_home, tmp_path_factory):
    yield from served_copy(small_home, tmp_path_factory.mktemp("secured"))


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def closed(served, tmp_path_factory):
    home, url = served
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "write").write_text(WRITE)
    (secrets / "admin").write_text(ADMIN + "\n")
    security = Security(write_token_file=str(secrets / "write"), admin_token_file=str(secrets / "admin"),
                        collect_origins=(SHOP,), public_rate_per_s=0.01, public_burst=2)
    yield from running_server(home, url, ServingConfig(port=0, http_port=0, reload_seconds=3600,
                                                       security=security), http_port=0)


@pytest.fixture(scope="module")
def stub(closed):
    yield from stub_of(closed)


def click(user: str, item: str = "i2") -> pb.TrackEventsRequest:
    return pb.TrackEventsRequest(events=[pb.Event(user_id=user, item_id=item, event_type="click")])


def test_grpc_writes_need_the_write_token_and_reads_stay_open(stub, closed):
    with pytest.raises(grpc.RpcError) as e:
        stub.TrackEvents(click("sec-1"), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "TrackEvents needs a token: send `authorization: Bearer <write token>`" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.TrackEvents(click("sec-1"), timeout=10, metadata=[("authorization", "Bearer " + "x" * 28)])
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and "not valid" in e.value.details()
    for token in (WRITE, ADMIN):
        r = stub.TrackEvents(click("sec-1"), timeout=10, metadata=[("authorization", f"Bearer {token}")])
        assert r.accepted == 1
    assert stub.Recommend(pb.RecommendRequest(user_id="sec-1", k=2), timeout=10).items
    metrics = closed.core.metrics.exposition().decode()
    assert 'vitrine_errors_total{code="UNAUTHENTICATED",method="TrackEvents"} 2.0' in metrics


def http(closed, method: str, path: str, body: object | None = None, **headers: str):
    """(status, headers, JSON body) of one gateway call; errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{closed.gateway.port}{path}", data=data, method=method,
                                     headers={k.replace("_", "-"): v for k, v in headers.items()})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            raw = r.read()
            return r.status, r.headers, json.loads(raw) if r.headers["Content-Type"] == "application/json" else raw
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, e.headers, json.loads(raw) if raw else None


def test_gateway_tokens_origins_and_the_public_rate_limit(closed, caplog):
    caplog.set_level(logging.DEBUG)
    event = {"user_id": "web-9", "item_id": "i2", "event_type": "click"}
    status, headers, answer = http(closed, "POST", "/collect", [event])
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and "needs a token" in answer["error"]
    status, headers, _ = http(closed, "POST", "/collect", [event], Origin="https://evil.example")
    assert status == 401 and headers["Access-Control-Allow-Origin"] is None
    assert http(closed, "OPTIONS", "/collect", Origin="https://evil.example")[0] == 403
    status, headers, _ = http(closed, "OPTIONS", "/collect", Origin=SHOP)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == SHOP
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    # a browser on the shop's origin: public, two calls of burst, then 429
    for _ in range(2):
        status, headers, answer = http(closed, "POST", "/collect", [event], Origin=SHOP)
        assert status == 200 and answer["accepted"] == 1 and headers["Access-Control-Allow-Origin"] == SHOP
    status, headers, answer = http(closed, "POST", "/collect", [event], Origin=SHOP)
    assert status == 429 and headers["Retry-After"] == "1" and "without a token" in answer["error"]
    # the bucket is in Redis: another server process (a second Access on the same Redis) refuses too
    import redis

    from serving.security import Access, RateLimited

    other = Access.from_settings(closed.core.config.security, redis.Redis.from_url(closed.core.redis_url))
    with pytest.raises(RateLimited):
        other.limit("127.0.0.1", "POST /collect")
    # a back end with the token is not limited
    status, _, answer = http(closed, "POST", "/collect", [event], Authorization=f"Bearer {WRITE}")
    assert status == 200 and answer["accepted"] == 1
    # metrics: the admin token only; health is open
    assert http(closed, "GET", "/metrics")[0] == 401
    assert http(closed, "GET", "/metrics", Authorization=f"Bearer {WRITE}")[0] == 401
    status, _, text = http(closed, "GET", "/metrics", Authorization=f"Bearer {ADMIN}")
    assert status == 200 and b'vitrine_errors_total{code="RESOURCE_EXHAUSTED",method="http_collect"}' in text
    assert http(closed, "GET", "/healthz")[0] == 200
    assert WRITE not in caplog.text and ADMIN not in caplog.text


def test_a_server_beyond_loopback_without_a_write_token_refuses_to_start(served):
    home, _ = served
    run = subprocess.run([sys.executable, "-m", "app.cli", "--home", str(home.root), "serve", "--host", "0.0.0.0",
                          "--port", "0", "--no-http", "--no-consumers"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "VITRINE_WRITE_TOKEN": ""})
    assert run.returncode != 0
    assert "refusing to serve on 0.0.0.0 with unauthenticated writes: set $VITRINE_WRITE_TOKEN" in run.stderr


@pytest.fixture(scope="module")
def tls(served, certs):
    home, url = served
    security = Security(tls_cert_file=str(certs.server_cert), tls_key_file=str(certs.server_key),
                        tls_client_ca_file=str(certs.ca))
    yield from running_server(home, url, ServingConfig(port=0, http_port=0, reload_seconds=3600,
                                                       security=security), http_port=0)


def test_tls_with_client_certificates_on_both_ports(tls, certs):
    ca = certs.ca.read_bytes()
    mine = grpc.ssl_channel_credentials(ca, certs.client_key.read_bytes(), certs.client_cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{tls.port}", mine) as channel:
        answer = pb_grpc.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id="tls-new", k=2), timeout=10)
        assert len(answer.items) == 2
    for channel in (grpc.secure_channel(f"127.0.0.1:{tls.port}", grpc.ssl_channel_credentials(ca)),
                    grpc.insecure_channel(f"127.0.0.1:{tls.port}")):
        with channel, pytest.raises(grpc.RpcError) as e:  # no client certificate / no TLS
            pb_grpc.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id="u1", k=2), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    url = f"https://127.0.0.1:{tls.gateway.port}/healthz"
    with urllib.request.urlopen(url, context=context, timeout=10) as r:
        assert json.loads(r.read())["status"] == "serving"
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(url, context=ssl.create_default_context(cafile=str(certs.ca)), timeout=10).read()
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{tls.gateway.port}/healthz", timeout=10).read()
    # the gateway still answers after the failed handshakes
    with urllib.request.urlopen(url, context=context, timeout=10) as r:
        assert r.status == 200


@pytest.fixture(scope="module")
def tls_redis(certs, tmp_path_factory):
    """A redis-server speaking only TLS, with a password: the external-Redis case."""
    directory = tmp_path_factory.mktemp("tls-redis")
    port = free_port()
    subprocess.run([shutil.which("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                    "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key),
                    "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no", "--requirepass", "pw-0123456789",
                    "--daemonize", "yes", "--dir", str(directory), "--logfile", str(directory / "redis.log"),
                    "--pidfile", str(directory / "redis.pid")], check=True)
    url = f"rediss://:pw-0123456789@127.0.0.1:{port}/0?ssl_ca_certs={certs.ca}"
    deadline = time.monotonic() + 10
    while not ping(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ping(url) and not ping(url.replace("pw-0123456789", "wrong"))
    yield url
    os.kill(int((directory / "redis.pid").read_text()), 15)


@pytest.fixture(scope="module")
def over_tls_redis(small_home, tls_redis, tmp_path_factory):
    before = os.environ.get("VITRINE_REDIS_URL")
    os.environ["VITRINE_REDIS_URL"] = tls_redis
    try:
        yield from served_copy(small_home, tmp_path_factory.mktemp("over-tls-redis"))
    finally:
        if before is None:
            os.environ.pop("VITRINE_REDIS_URL", None)
        else:
            os.environ["VITRINE_REDIS_URL"] = before


@pytest.fixture(scope="module")
def tls_redis_server(over_tls_redis):
    home, url = over_tls_redis
    yield from running_server(home, url, ServingConfig(port=0, http_port=None, reload_seconds=3600))


@pytest.fixture(scope="module")
def tls_redis_stub(tls_redis_server):
    yield from stub_of(tls_redis_server)


def test_the_online_path_over_a_tls_redis_with_a_password(over_tls_redis, tls_redis_server, tls_redis_stub):
    _, url = over_tls_redis
    server, stub = tls_redis_server, tls_redis_stub
    assert url.startswith("rediss://")
    stub.TrackEvents(pb.TrackEventsRequest(events=[
        pb.Event(event_id="tls-buy", user_id="u9", item_id="i3", event_type="purchase", price=4.0, quantity=1)]),
        timeout=10)
    server.core.consumers.drain()
    mine = server.core.reader.read("u9").values
    assert mine["user_realtime__rt_purchases"] == 1
    online = server.core.store.get_online_features(  # Feast's own client over the same TLS Redis
        features=["user_realtime:rt_purchases", "user_behaviour:clicks_30d"], entity_rows=[{"user_id": "u9"}],
        full_feature_names=True).to_dict()
    assert online["user_realtime__rt_purchases"] == [1]
    assert online["user_behaviour__clicks_30d"] == [mine["user_behaviour__clicks_30d"]]
    answer = stub.Recommend(pb.RecommendRequest(user_id="u9", k=3), timeout=10)
    assert "i3" not in [i.item_id for i in answer.items] and answer.degraded_reason != "redis_unavailable"
