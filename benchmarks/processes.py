"""Vitrine commands as processes of their own, for the benchmarks and fault scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_vitrine(home: Path, *cmd: str) -> subprocess.Popen:
    """`vitrine --home HOME CMD...` (serve or consume), returned once it printed that it runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--home", str(home), *cmd], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith(("serving", "consuming")):
        proc.kill()
        raise RuntimeError(f"{cmd[0]} did not start: {line!r}")
    return proc


def run_vitrine(home: Path, *cmd: str) -> subprocess.CompletedProcess:
    """`vitrine --home HOME CMD...` to its end, output captured."""
    return subprocess.run([sys.executable, "-m", "app.cli", "--home", str(home), *cmd],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the server processes), seconds."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total
