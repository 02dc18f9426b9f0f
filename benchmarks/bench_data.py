"""Generation and ingest throughput and peak memory for `platform` days.

    .venv/bin/python benchmarks/bench_data.py [--days 1] [--preset platform] [--record]

Each phase runs in its own process so its peak RSS is its own. Prints the figures and,
with --record, writes them to benchmarks/results/data.json (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GENERATE = """
import json, resource, sys, time
from pathlib import Path
from vitrine.synth.generate import generate
from vitrine.synth.presets import get_preset
t = time.perf_counter()
s = generate(get_preset(sys.argv[1]), Path(sys.argv[2]), seed=0, days=int(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - t, "events": s.total_events,
                  "rates": s.rates(), "daily_active": s.daily_active,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

INGEST = """
import json, resource, sys, time
from pathlib import Path
from vitrine.config import Home
from vitrine.data.ingest import ingest
d = Path(sys.argv[1])
t = time.perf_counter()
r = ingest(Home(Path(sys.argv[2])), merchants=[d / "merchants.parquet"], items=[d / "items.parquet"],
           users=[d / "users.parquet"], events=[d / "events"])
print(json.dumps({"seconds": time.perf_counter() - t, "tables": r.to_dict()["tables"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:  # the child's own error, not only its exit status
        raise SystemExit(f"a benchmark step failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--preset", default="platform")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        started = time.perf_counter()
        gen = run(GENERATE, args.preset, str(data), str(args.days))
        ing = run(INGEST, str(data), str(home))
        total = time.perf_counter() - started
        # a second ingest of the same files: the idempotent path (everything is a duplicate)
        again = run(INGEST, str(data), str(home))
    events = gen["events"]
    result = {
        "preset": args.preset, "days": args.days, "events": events,
        "generate_s": round(gen["seconds"], 1), "generate_events_per_s": round(events / gen["seconds"]),
        "generate_peak_rss_mib": round(gen["peak_rss_mib"]),
        "ingest_s": round(ing["seconds"], 1), "ingest_events_per_s": round(events / ing["seconds"]),
        "ingest_peak_rss_mib": round(ing["peak_rss_mib"]),
        "reingest_s": round(again["seconds"], 1),
        "reingest_duplicates": again["tables"]["events"]["duplicate"],
        "total_wall_s": round(total, 1),
        "ctr": round(gen["rates"]["ctr"], 4),
        "purchase_per_click": round(gen["rates"]["purchase_per_click"], 4),
        "daily_active": gen["daily_active"],
        "cores": len(os.sched_getaffinity(0)),
    }
    print(json.dumps(result, indent=2))
    if args.record:
        out = ROOT / "benchmarks" / "results" / f"data-{args.preset}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"recorded in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
