"""Feature pipeline at platform scale: (a) every Spark job over one `platform` day, (b)
materialising the platform's users and items into Redis — Vitrine's direct path side by side
with Feast's own `materialize` on the same rows — and (c) `get_online_features` latency for
1 user and for 500 items.

    .venv/bin/python benchmarks/bench_features.py --home /tmp/bench-platform [--record]
        [--steps data,spark,materialize,online]

Each step runs in its own process so its peak RSS is its own. The home is kept, so steps can
be re-run on it. Raw figures: benchmarks/results/features-platform.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_data import GENERATE, INGEST, run  # noqa: E402

SPARK = """
import json, resource, sys, time
from vitrine.config import Home
from spark_jobs.session import spark_session
from spark_jobs.run import run_features
spark = spark_session()
t = time.perf_counter()
r = run_features(Home.resolve(sys.argv[1]), spark)
print(json.dumps({"seconds": time.perf_counter() - t, "tables": r.tables,
                  "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

APPLY = """
import sys
from vitrine.config import Home
from vitrine.featurestore.realtime import ensure_table
from vitrine.featurestore.repo import run_feast
home = Home.resolve(sys.argv[1]); ensure_table(home)
run_feast(home, sys.argv[2], ["apply"], capture=True)
print("{}")
"""

# one engine, fresh Redis db, full materialisation of the given views
MATERIALIZE = """
import json, resource, sys, time
import redis
from datetime import datetime, timezone
from vitrine.config import Home
from vitrine.featurestore.repo import feature_store
home, url, engine, views = Home.resolve(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")
redis.Redis.from_url(url).flushdb()
t = time.perf_counter()
if engine == "vitrine":
    from vitrine.featurestore.materialize import materialize
    r = materialize(home, url, views=views, full=True)
    rows = r.rows
else:
    import pyarrow.dataset as ds
    store = feature_store(home, url)
    fvs = [store.get_feature_view(v) for v in views]
    store.materialize(datetime(1970, 1, 2, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc),
                      feature_views=views)
    rows = None
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": rows,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# the same sample of entities read back after each engine: values must be identical
SNAPSHOT = """
import json, sys
from vitrine.config import Home
from vitrine.featurestore.repo import feature_store
import pyarrow.dataset as ds, random
home, url, views = Home.resolve(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
store = feature_store(home, url)
out = {}
for v in views:
    fv = store.get_feature_view(v)
    key = fv.entity_columns[0].name
    ids = ds.dataset(fv.batch_source.path).to_table(columns=[key]).column(0).unique().to_pylist()
    sample = random.Random(0).sample(sorted(ids), min(300, len(ids)))
    refs = [f"{v}:{f.name}" for f in fv.features]
    out[v] = store.get_online_features(features=refs, entity_rows=[{key: k} for k in sample]).to_dict()
print(json.dumps(out, default=str, sort_keys=True))
"""

ONLINE = """
import json, sys, time, statistics
import pyarrow.dataset as ds
from vitrine.config import Home
from vitrine.featurestore.repo import feature_store
home, url = Home.resolve(sys.argv[1]), sys.argv[2]
store = feature_store(home, url)
users = ds.dataset(str(home.features / "user_behaviour")).to_table(columns=["user_id"]).column(0).to_pylist()
items = ds.dataset(str(home.features / "item_stats")).to_table(columns=["item_id"]).column(0).unique().to_pylist()
user_refs = [f"user_behaviour:{f.name}" for f in store.get_feature_view("user_behaviour").features]
item_refs = ([f"item_stats:{f.name}" for f in store.get_feature_view("item_stats").features]
             + [f"item_attributes:{f.name}" for f in store.get_feature_view("item_attributes").features])
def measure(fn, n):
    for _ in range(5): fn(0)
    times = []
    for i in range(n):
        t = time.perf_counter(); fn(i); times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(0.99 * (n - 1))], 2), "n": n}
one_user = measure(lambda i: store.get_online_features(features=user_refs,
                   entity_rows=[{"user_id": users[i % len(users)]}]).to_dict(), 300)
items_500 = measure(lambda i: store.get_online_features(features=item_refs,
                    entity_rows=[{"item_id": x} for x in items[(i * 500) % (len(items) - 500):][:500]]).to_dict(), 40)
print(json.dumps({"one_user": one_user, "items_500": items_500,
                  "user_features": len(user_refs), "item_features": len(item_refs)}))
"""

MATERIALIZE_VIEWS = "user_profile,user_behaviour,item_stats,item_attributes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--steps", default="data,spark,materialize,online")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    steps = args.steps.split(",")
    home = args.home.resolve()
    out_file = ROOT / "benchmarks" / "results" / "features-platform.json"
    result = json.loads(out_file.read_text()) if out_file.exists() else {}
    result["cores"] = len(os.sched_getaffinity(0))

    if "data" in steps:
        data = home.parent / (home.name + "-data")
        gen = run(GENERATE, "platform", str(data), "1")
        ing = run(INGEST, str(data), str(home))
        result["data"] = {"events": gen["events"], "generate_s": round(gen["seconds"], 1),
                          "ingest_s": round(ing["seconds"], 1)}
        print(json.dumps(result["data"]))
    if "spark" in steps:
        sp = run(SPARK, str(home))
        result["spark"] = {"seconds": round(sp["seconds"], 1), "tables": sp["tables"],
                           "driver_peak_rss_mib": round(sp["driver_peak_rss_mib"])}
        print(json.dumps(result["spark"], indent=1))
    url = None
    if "materialize" in steps or "online" in steps:
        sys.path.insert(0, str(ROOT))
        from vitrine.config import Home
        from vitrine.online.redis_local import redis_url

        url = redis_url(Home(home))
        run(APPLY, str(home), url)
    if "materialize" in steps:
        engines = {}
        snapshots = {}
        for engine in ("vitrine", "feast"):
            t = time.perf_counter()
            r = run(MATERIALIZE, str(home), url, engine, MATERIALIZE_VIEWS)
            r["wall_s"] = round(time.perf_counter() - t, 1)
            snapshots[engine] = subprocess.run(
                [sys.executable, "-c", SNAPSHOT, str(home), url, MATERIALIZE_VIEWS], check=True,
                capture_output=True, text=True, cwd=ROOT).stdout
            engines[engine] = r
            print(engine, json.dumps(r))
        rows = engines["vitrine"]["rows"]  # entities written (latest row each): the same for both
        for r in engines.values():
            r["rows_per_s"] = round(rows / r["seconds"])
        result["materialize"] = {
            "views": MATERIALIZE_VIEWS, "rows_written": rows, "engines": engines,
            "speedup": round(engines["feast"]["seconds"] / engines["vitrine"]["seconds"], 2),
            "same_values_read_back": snapshots["vitrine"] == snapshots["feast"],
        }
        print(json.dumps(result["materialize"], indent=1))
    if "online" in steps:
        result["online"] = run(ONLINE, str(home), url)
        print(json.dumps(result["online"]))
    if args.record:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(result, indent=2) + "\n")
        print(f"recorded in {out_file.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
