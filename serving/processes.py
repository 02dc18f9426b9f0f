"""Several server processes on one port: Python runs one request's Python parts at a time per
process (the GIL), so on N cores N processes serve N requests at once. Each child is a full
`vitrine serve` (its own core, item cache, models, hot reload) bound to the same gRPC port
with SO_REUSEPORT — the kernel spreads connections over them; only the first child runs the
HTTP gateway, and its `/metrics` counts every process (prometheus_client's multiprocess mode,
in a directory the parent makes and removes). The parent forwards SIGTERM/SIGINT and waits
for every child's graceful stop.

Every process appends to the one event stream and runs a real-time updater in its consumer
group: an update of one user is a Redis transaction, so two processes never lose each other's
updates, and an event id sent to both is taken once (serving/realtime.py, vitrine/stream).
One process at a time writes the event log (the writer's lease).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from serving.metrics import multiprocess_env
from vitrine.online.redis_local import free_port


def serve_processes(home_root: Path, processes: int, port: int | None, http_port: int | None,
                    config: Path | None, consumers: bool = True, host: str | None = None) -> int:
    if port in (None, 0):
        port = free_port() if port == 0 else 50051
    metrics = tempfile.mkdtemp(prefix="vitrine-metrics-")
    try:
        return _run(home_root, processes, port, http_port, config, consumers, host, metrics)
    finally:
        shutil.rmtree(metrics, ignore_errors=True)


def _run(home_root: Path, processes: int, port: int, http_port: int | None, config: Path | None,
         consumers: bool, host: str | None, metrics: str) -> int:
    env = {**os.environ, **multiprocess_env(metrics)}
    children = []
    for i in range(processes):
        cmd = [sys.executable, "-m", "app.cli", "--home", str(home_root), "serve", "--port", str(port),
               "--processes", "1"]
        if i > 0:
            cmd += ["--no-http"]
        elif http_port is not None:
            cmd += ["--http-port", str(http_port)]
        if config is not None:
            cmd += ["--config", str(config)]
        if host is not None:
            cmd += ["--host", host]
        if not consumers:
            cmd += ["--no-consumers"]
        children.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env))
    lines = [c.stdout.readline().strip() for c in children]
    if not all(line.startswith("serving") for line in lines):
        for c in children:
            c.terminate()
        raise OSError(f"a server process did not start: {lines}")
    print(f"{lines[0]} [{processes} processes, SO_REUSEPORT]", flush=True)
    done = threading.Event()

    def on_signal(signum, _frame) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(1.0):
        if any(c.poll() is not None for c in children):
            break  # a child died: stop the others rather than serve at reduced capacity unnoticed
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    codes = [c.wait() for c in children]
    return max(codes) if any(codes) else 0
