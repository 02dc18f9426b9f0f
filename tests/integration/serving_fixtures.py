"""A served copy of the small home: its own directory (the serving tests append events and
push real-time features, which must not leak into the shared `small_home`), its own Redis,
`feast apply` and materialisation done."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from vitrine.config import Home
from vitrine.featurestore.materialize import materialize
from vitrine.featurestore.realtime import ensure_table
from vitrine.featurestore.repo import run_feast
from vitrine.online.redis_local import ManagedRedis, redis_url


def served_copy(small_home: Home, root: Path) -> Iterator[tuple[Home, str]]:
    home = Home(root / "home")
    for part in ("events", "catalog", "features"):
        shutil.copytree(small_home.root / part, home.root / part)
    url = redis_url(home)
    ensure_table(home)
    run_feast(home, url, ["apply"], capture=True)
    materialize(home, url)
    try:
        yield home, url
    finally:
        ManagedRedis(home.redis_dir).stop()


def running_server(home: Home, url: str, config, http_port: int | None = None):
    """A real server on a free port over `home` (a generator for module fixtures)."""
    from serving.core import Core
    from serving.server import start_server

    running = start_server(Core(home, config, redis_url=url), port=0, http_port=http_port)
    try:
        yield running
    finally:
        running.stop(0)


def stub_of(server):
    """A Recommender stub on its own channel to `server` (a generator for module fixtures)."""
    import grpc

    from serving.proto import pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.RecommenderStub(channel)
