"""The daily flows: the feature pipeline (Spark jobs → `feast apply` → incremental
materialisation into Redis), as `vitrine features` and the main job run it; and the console
helpers the flows and the main job print their stages with."""

from __future__ import annotations

import time
from pathlib import Path

from vitrine.config import Home


def stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def done(started: float) -> None:
    print(f"   ({time.perf_counter() - started:.1f}s)", flush=True)


def data_dir(home: Home, preset: str, seed: int) -> Path:
    return home.synthetic / f"{preset}-seed{seed}"


def run_feature_pipeline(home: Home, *, redis: str, spark_settings=None, as_of=None,
                         snapshot_days: int | None = None, only: list[str] | None = None,
                         skip_jobs: bool = False, full: bool = False) -> dict:
    """Spark jobs → `feast apply` → incremental materialisation into Redis."""
    from vitrine.featurestore.materialize import materialize
    from vitrine.featurestore.realtime import ensure_table
    from vitrine.featurestore.repo import run_feast

    result: dict = {}
    if not skip_jobs:
        from spark_jobs.run import run_features
        from spark_jobs.session import spark_session

        t = stage("Spark feature jobs")
        spark = spark_session(spark_settings)
        run = run_features(home, spark, as_of=as_of, snapshot_days=snapshot_days, only=only,
                           progress=lambda name: print(f"   · {name}", flush=True))
        print(run.render())
        result["jobs"] = run.__dict__
        done(t)
    ensure_table(home)
    t = stage("feast apply")
    out = run_feast(home, redis, ["apply"], capture=True)
    print("   " + "\n   ".join(line for line in out.stdout.splitlines() if line.strip())[-2000:])
    done(t)
    t = stage("materialise into Redis (incremental)")
    report = materialize(home, redis, full=full, progress=lambda name: print(f"   · {name}", flush=True))
    print(report.render())
    result["materialize"] = {k: v.__dict__ for k, v in report.views.items()}
    done(t)
    return result
