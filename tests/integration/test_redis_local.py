"""The embedded online store: a real redis-server per home, or an external one by URL."""

from __future__ import annotations

import pytest
import redis

from app.cli import main
from vitrine.config import Home
from vitrine.online.redis_local import ManagedRedis, ping, redis_url

pytestmark = pytest.mark.integration


def test_managed_redis_starts_per_home_persists_and_stops(home: Home, tmp_path, capsys):
    url = redis_url(home)
    managed = ManagedRedis(home.redis_dir)
    password = managed.password_file.read_text()
    assert url == f"redis://:{password}@127.0.0.1:{managed.port_file.read_text()}/0" and ping(url)
    # closed to other local users: a password only the owner can read, the client without it refused
    assert managed.password_file.stat().st_mode & 0o777 == 0o600
    assert (home.redis_dir / "redis.conf").stat().st_mode & 0o777 == 0o600
    without = url.replace(f":{password}@", "")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(without).get("k")
    assert redis_url(home) == url  # reused while it answers
    main(["--home", str(home.root), "redis", "status"])
    assert capsys.readouterr().out.strip() == f"managed {url.replace(password, '***')}: up"  # never printed
    other = Home(tmp_path / "other")
    other_url = redis_url(other)
    try:
        assert other_url != url  # homes never share a server
        redis.Redis.from_url(url).set("k", "v")
        assert redis.Redis.from_url(other_url).get("k") is None
    finally:
        ManagedRedis(other.redis_dir).stop()
    assert managed.stop() and not ping(url)
    # data survives a restart (saved on shutdown)
    url = managed.start()
    try:
        assert redis.Redis.from_url(url).get("k") == b"v"
        assert redis.Redis.from_url(url).config_get("appendonly") == {"appendonly": "yes"}
        client = redis.Redis.from_url(url)
        client.set("written-after-the-last-save", "1")
        client.shutdown(nosave=True)  # what the append-only file alone brings back
    except redis.exceptions.ConnectionError:
        pass
    url = managed.start()
    try:
        assert redis.Redis.from_url(url).get("written-after-the-last-save") == b"1"
    finally:
        managed.stop()
    # a home made before the append-only file: its RDB is loaded, then AOF turned on
    import shutil

    shutil.rmtree(home.redis_dir / "appendonlydir")
    url = managed.start()
    try:
        assert redis.Redis.from_url(url).get("k") == b"v" and (home.redis_dir / "appendonlydir").exists()
    finally:
        managed.stop()


def test_external_url_wins(home: Home, monkeypatch, tmp_path):
    server = ManagedRedis(tmp_path / "external")
    url = server.start()
    try:
        monkeypatch.setenv("VITRINE_REDIS_URL", url)
        assert redis_url(home) == url
        assert not home.redis_dir.exists()  # nothing started for the home
    finally:
        server.stop()
