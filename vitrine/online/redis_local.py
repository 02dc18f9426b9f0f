"""The online store's Redis: an external one from `$VITRINE_REDIS_URL`, or one managed per home.

The embedded default starts `redis-server` bound to loopback on a free port, with its
data, config, pid and log under `<home>/redis/`, and reuses it while it answers. Nothing
has to be started by hand, and two homes never share a server. It asks for a password
(`requirepass`, made at its first start and kept in `<home>/redis/password`, readable by the
owner only), so other local users cannot read or write the online store; every client takes it
from the URL (`redis://:<password>@127.0.0.1:<port>/0`), Feast included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vitrine.config import Home, redis_url_from_env
from vitrine.errors import VitrineError


class RedisUnavailable(VitrineError):
    """No Redis could be reached or started; the message says how to fix it."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redacted(url: str) -> str:
    """The URL with its password replaced by `***` (for printing and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (created 0600, never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ping(url: str, timeout: float = 0.5) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        return False
    except redis.exceptions.ResponseError as e:  # it answers: refusing writes, Redis refuses PING too
        return redis_unavailable(e)


# Redis answers, but refuses writes until an operator acts: its disk is full or unwritable
# (MISCONF: a failed RDB save or AOF write), it is out of memory (OOM), a read-only replica
# (READONLY), or its primary is gone (MASTERDOWN, NOREPLICAS)
REFUSING_WRITES = ("MISCONF", "NOREPLICAS")


def redis_unavailable(e: BaseException) -> bool:
    """Whether `e` means the Redis server cannot be reached (down, restarting, timing out) or
    cannot take writes for now (see REFUSING_WRITES): a caller can only wait and retry."""
    import redis

    if isinstance(e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError,
                      redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError,
                      redis.exceptions.MasterDownError)):
        return True
    return isinstance(e, redis.exceptions.ResponseError) and str(e).startswith(REFUSING_WRITES)


@dataclass
class ManagedRedis:
    """A redis-server owned by one home."""

    directory: Path

    @property
    def port_file(self) -> Path:
        return self.directory / "port"

    @property
    def pid_file(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def password_file(self) -> Path:
        return self.directory / "password"

    @property
    def url(self) -> str | None:
        if not self.port_file.exists():
            return None
        # a server started before homes had passwords has no file, and needs none
        auth = f":{self.password_file.read_text().strip()}@" if self.password_file.exists() else ""
        return f"redis://{auth}127.0.0.1:{self.port_file.read_text().strip()}/0"

    def running(self) -> bool:
        url = self.url
        return url is not None and ping(url)

    def start(self, port: int | None = None, timeout: float = 10.0) -> str:
        if self.running():
            return self.url  # type: ignore[return-value]
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(
                "redis-server is not installed: run `make setup` (installs Debian's redis-server), "
                "or point VITRINE_REDIS_URL at a running Redis")
        self.directory.mkdir(parents=True, exist_ok=True)
        # the port it had, when free: a running server (and any client holding the URL)
        # reconnects to a restarted Redis without being told a new address
        port = port or self._previous_port() or free_port()
        conf = self.directory / "redis.conf"
        aof = (self.directory / "appendonlydir").exists()
        if not self.password_file.exists():
            _write_private(self.password_file, "vt" + secrets.token_hex(24))  # never JSON (Feast decodes values)
        _write_private(conf, "\n".join([
            "bind 127.0.0.1", f"port {port}", "protected-mode yes", "daemonize yes",
            f"requirepass {self.password_file.read_text().strip()}",
            f"dir {self.directory}", f"pidfile {self.pid_file}", f"logfile {self.directory / 'redis.log'}",
            # the event stream holds acknowledged events until its consumers have them: every
            # write reaches the append-only file before Redis answers (fsynced each second).
            # Started with AOF on and no AOF yet, Redis would load nothing (not the RDB of a
            # home made before): then it starts without and turns AOF on once it has loaded.
            "save 300 1", f"appendonly {'yes' if aof else 'no'}", "appendfsync everysec",
            "dbfilename dump.rdb", "",
        ]))
        subprocess.run([binary, str(conf)], check=True, capture_output=True)
        self.port_file.write_text(str(port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ping(self.url):  # type: ignore[arg-type]
                if not aof:
                    self._turn_aof_on(deadline)
                return self.url  # type: ignore[return-value]
            time.sleep(0.05)
        log = (self.directory / "redis.log")
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RedisUnavailable(f"redis-server did not answer on port {port} within {timeout}s:\n{tail}")

    def _turn_aof_on(self, deadline: float) -> None:
        """AOF on at run time: Redis writes the loaded data as the file's base (it refuses to
        shut down until that is written, so wait for it)."""
        import redis

        client = redis.Redis.from_url(self.url)  # type: ignore[arg-type]
        client.config_set("appendonly", "yes")
        while time.monotonic() < deadline + 60:
            info = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled") \
                    and info.get("aof_enabled"):
                return
            time.sleep(0.05)

    def _previous_port(self) -> int | None:
        try:
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis binds: TIME_WAIT is no obstacle
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return None
        return port

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down (saving its data). True if one was running."""
        if not self.running():
            return False
        import redis

        client = redis.Redis.from_url(self.url)  # type: ignore[arg-type]
        try:
            client.shutdown(save=True)
        except redis.exceptions.ConnectionError:
            pass  # the server closes the connection as it exits
        except redis.exceptions.ResponseError as e:  # it keeps running rather than lose data
            raise RedisUnavailable(
                f"Redis could not save its data to stop ({e}): its disk is probably full; free space under "
                f"{self.directory} and stop it again (what failed: {self.directory / 'redis.log'})") from e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            time.sleep(0.05)
        return True


def redis_url(home: Home, start: bool = True) -> str:
    """The online store's URL: `$VITRINE_REDIS_URL`, else this home's managed server."""
    external = redis_url_from_env()
    if external:
        return external
    managed = ManagedRedis(home.redis_dir)
    if managed.running():
        return managed.url  # type: ignore[return-value]
    if not start:
        raise RedisUnavailable(f"no Redis running for {home.root}: run `vitrine redis start`")
    return managed.start()
