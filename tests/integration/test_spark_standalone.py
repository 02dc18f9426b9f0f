"""The same Spark jobs, unchanged, against a standalone master + worker on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.conftest import EVENTS, ITEMS
from vitrine.config import Home
from vitrine.data.ingest import ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="module")
def standalone_master(tmp_path_factory):
    """`spark-class ...Master` and one `...Worker` (the pyspark wheel has no start-master.sh)."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    spark_class = spark_home / "bin" / "spark-class"
    logs = tmp_path_factory.mktemp("spark-standalone")
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "SPARK_WORKER_DIR": str(logs / "work")}
    port = _free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(_free_port())],
            env=env, stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT))
        _wait_port(port)
        procs.append(subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
             "--host", "127.0.0.1", "--cores", "2", "--memory", "2g", "--webui-port", str(_free_port())],
            env=env, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
        yield f"spark://127.0.0.1:{port}"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_jobs_run_unchanged_on_a_standalone_cluster(standalone_master: str, tmp_path: Path, spark):
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "items.csv").write_text(ITEMS)
    local, cluster = Home(tmp_path / "local"), Home(tmp_path / "cluster")
    for home in (local, cluster):
        ingest(home, items=[tmp_path / "items.csv"], events=[tmp_path / "events.csv"])
    tables = ["user_behaviour", "samples"]

    from spark_jobs.run import run_features

    run_features(local, spark, only=tables)
    # the cluster run is a separate driver process: only the master URL differs
    code = ("import sys\nfrom vitrine.config import Home\nfrom spark_jobs.session import SparkSettings, "
            "spark_session\nfrom spark_jobs.run import run_features\n"
            "s = spark_session(SparkSettings.from_env())\n"
            f"run_features(Home.resolve(sys.argv[1]), s, only={tables!r})\n"
            "assert s.sparkContext.master.startswith('spark://'), s.sparkContext.master\ns.stop()\n")
    env = {**os.environ, "VITRINE_SPARK_MASTER": standalone_master,
           "VITRINE_SPARK_CONF": "spark.executor.memory=1g,spark.cores.max=2", "SPARK_LOCAL_IP": "127.0.0.1"}
    subprocess.run([sys.executable, "-c", code, str(cluster.root)], env=env, check=True, timeout=400,
                   cwd=Path(__file__).resolve().parents[2])
    for name in tables:
        a = pd.read_parquet(local.features / name)
        b = pd.read_parquet(cluster.features / name)
        keys = [c for c in ("user_id", "item_id", "event_timestamp") if c in a.columns]
        a = a.sort_values(keys).reset_index(drop=True)
        b = b.sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a.astype(str), b.astype(str), check_exact=False)
