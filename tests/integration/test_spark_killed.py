"""Fault: `vitrine features` killed with -9 (driver and Spark's JVM) in the middle of its run.
Every feature table a reader can see is a whole one (the previous run's or this run's, never a
half-written one), and the next run puts everything back in order."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.dataset as ds
import pytest

from spark_jobs.io import recover_tables
from vitrine.config import Home

pytestmark = pytest.mark.integration


def tables(home: Home) -> dict[str, int]:
    return {p.name: ds.dataset(p, format="parquet").count_rows() for p in sorted(home.features.iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def test_a_killed_feature_run_leaves_only_whole_tables(small_home: Home, tmp_path):
    home = Home(tmp_path / "home")
    for part in ("events", "catalog", "features"):
        shutil.copytree(small_home.root / part, home.root / part)
    before = tables(home)
    spark_written = {n for n in before if (home.features / n / "_SUCCESS").exists()}  # not tests' own tables
    inodes = {name: (home.features / name).stat().st_ino for name in before}
    run = subprocess.Popen([sys.executable, "-m", "app.cli", "--home", str(home.root), "features"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:  # kill once a few tables were swapped in and Spark is writing the next one
        while time.monotonic() < deadline and run.poll() is None:
            swapped = [n for n, ino in inodes.items()
                       if (home.features / n).exists() and (home.features / n).stat().st_ino != ino]
            if len(swapped) >= 3 and any(home.features.glob(".staging-*")):
                break
            time.sleep(0.01)
        assert run.poll() is None, "the feature run ended before it could be killed"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert len(swapped) >= 3 and any(home.features.glob(".staging-*"))  # killed mid-write
    # what readers see right after the kill: every table there is whole (Spark's _SUCCESS marker,
    # every part readable), the previous run's or this one's (a table is missing only if the
    # kill fell between the two renames of its swap, microseconds; the recovery puts it back)
    seen = tables(home)
    assert set(seen) <= set(before) and len(spark_written) >= 5
    assert all((home.features / name / "_SUCCESS").exists() for name in spark_written & set(seen))
    recover_tables(home.features)  # what the next run does first
    assert set(tables(home)) == set(before)
    assert not [p for p in home.features.iterdir() if p.name.startswith((".staging-", ".old-"))]
