"""Fault: bad input — N seeded random gRPC requests (benchmarks/fuzzing.py) at a server on a
served home, one after another. Checked: no answer INTERNAL or UNKNOWN, every rejection with a
message, the server alive and answering a well-formed request at the end, and its resident
memory before and after. Prints a table and records benchmarks/results/fault-fuzz.json.
Accepted fuzzed events join the home's event log (user `fuzz-user` and random ids).

    .venv/bin/python benchmarks/faults/fuzz.py --home /tmp/h/demo10 [--requests 10000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.fuzzing import fuzz  # noqa: E402
from benchmarks.processes import start_vitrine  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()

    import grpc
    import pandas as pd

    from serving.proto import pb, pb_grpc
    from vitrine.online.redis_local import free_port

    users = [str(u) for u in pd.read_parquet(args.home / "features" / "user_behaviour", columns=["user_id"])
             ["user_id"].unique()[:2]]
    items = [str(i) for i in pd.read_parquet(args.home / "features" / "item_attributes", columns=["item_id"])
             ["item_id"].unique()[:2]]
    port = free_port()
    server = start_vitrine(args.home, "serve", "--port", str(port), "--no-http")
    try:
        before = rss_mib(server.pid)
        t = time.monotonic()
        outcomes, bad = fuzz(port, args.requests, seed=args.seed, users=tuple(users), items=tuple(items))
        seconds = time.monotonic() - t
        after = rss_mib(server.pid)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = pb_grpc.RecommenderStub(channel).Recommend(pb.RecommendRequest(user_id=users[0], k=5), timeout=5)
        alive = server.poll() is None and len(answer.items) == 5
    finally:
        server.terminate()
        server.wait()
    out = {"requests": args.requests, "seed": args.seed, "seconds": round(seconds, 1), "outcomes": outcomes,
           "broke_the_rule": [list(b) for b in bad[:50]], "broke_count": len(bad), "rss_mib_before": round(before, 1),
           "rss_mib_after": round(after, 1), "still_serving": alive}
    codes = " · ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    print("| fault | requests | answers | INTERNAL / UNKNOWN / no message | server after | RSS before → after |")
    print("|---|---|---|---|---|---|")
    growth = (after / before - 1) * 100
    print(f"| {args.requests:,} fuzzed gRPC requests (seed {args.seed}) | {args.requests:,} | {codes} | {len(bad)} "
          f"| {'serving' if alive else 'NOT serving'} | {before:.0f} → {after:.0f} MiB ({growth:+.1f} %) |")
    for b in bad[:10]:
        print("  broke the rule:", b)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "fault-fuzz.json").write_text(json.dumps(out, indent=2))
    sys.exit(1 if bad or not alive else 0)


if __name__ == "__main__":
    main()
