"""Soak: a server under a steady mixed load for minutes — errors, memory and latency per minute.

A server (`vitrine serve`, consumers inside) on a served home. Open-loop load at `--rate`
calls a second in all: `Recommend` for the home's users and, for `--track-share` of the calls,
`TrackEvents` batches of 10 clicks (unique ids). Each minute the script prints and records:
calls, errors, degraded answers, client latency p50 / p99 per method, each pipeline stage's p99
(from the server's own histograms, the minute's counts), and the server's resident memory.

Targets (issue 16): 0 errors, memory flat within 10 % (last minute against the second: the
first loads and warms up), per-stage p99 stable.

    .venv/bin/python benchmarks/soak.py --home /tmp/h/demo10 --minutes 10 --rate 100 [--processes 2]
    # raw: benchmarks/results/soak-p<processes>.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.processes import start_vitrine  # noqa: E402

STAGES = ("features", "recall", "coarse", "fine", "adjust")


def rss_mib(pid: int) -> float:
    """Resident memory of the server: the process and its children (`--processes N`)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def stage_buckets(http_port: int) -> dict[str, list[tuple[float, float]]]:
    """Cumulative (le, count) per stage from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in text.splitlines():
        if line.startswith("vitrine_stage_seconds_bucket{"):
            labels, value = line[len("vitrine_stage_seconds_bucket{"):].rsplit("} ", 1)
            parts = dict(p.split("=", 1) for p in labels.split(","))
            le = parts["le"].strip('"')
            out[parts["stage"].strip('"')].append((float("inf") if le == "+Inf" else float(le), float(value)))
    return {k: sorted(v) for k, v in out.items()}


def p99_of(now: list[tuple[float, float]], before: list[tuple[float, float]]) -> float | None:
    """The bucket bound holding the 99th percentile of the observations between two scrapes (ms)."""
    counts = [(le, c - b) for (le, c), (_, b) in zip(now, before or [(le, 0.0) for le, _ in now], strict=True)]
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return None
    for le, c in counts:
        if c >= 0.99 * total:
            return le * 1000
    return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home (features, models, materialised)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=100.0, help="calls a second, both methods together")
    p.add_argument("--track-share", type=float, default=0.2, help="share of the calls that are TrackEvents")
    p.add_argument("--callers", type=int, default=8)
    p.add_argument("--processes", type=int, default=1, help="server processes (vitrine serve --processes)")
    args = p.parse_args()

    import grpc
    import pandas as pd

    from serving.proto import pb, pb_grpc
    from vitrine.online.redis_local import free_port

    users = pd.read_parquet(args.home / "features" / "user_behaviour", columns=["user_id"])["user_id"].unique()
    items = pd.read_parquet(args.home / "features" / "item_attributes", columns=["item_id"])["item_id"].unique()
    config = args.home / "soak.json"
    config.write_text(json.dumps({"reload_seconds": 5.0}))
    port, http_port = free_port(), free_port()
    server = start_vitrine(args.home, "serve", "--port", str(port), "--http-port", str(http_port),
                           "--processes", str(args.processes),
                           "--config", str(config))
    run = f"soak{int(time.time())}"
    lock = threading.Lock()
    minute: dict = defaultdict(list)
    counts: dict = defaultdict(int)
    start = time.monotonic()
    end = start + args.minutes * 60
    interval = args.callers / args.rate  # each caller's schedule

    def caller(k: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            due, n = start + k * interval / args.callers, 0
            while due < end:
                time.sleep(max(0.0, due - time.monotonic()))
                n += 1
                track = (n * 7 + k) % 100 < args.track_share * 100
                t = time.perf_counter()
                try:
                    if track:
                        stub.TrackEvents(pb.TrackEventsRequest(events=[
                            pb.Event(event_id=f"{run}-{k}-{n}-{i}", user_id=str(users[(n + i * 31) % len(users)]),
                                     item_id=str(items[(n * 13 + i) % len(items)]), event_type="click")
                            for i in range(10)]), timeout=2)
                        outcome = "ok"
                    else:
                        r = stub.Recommend(pb.RecommendRequest(user_id=str(users[(n * 17 + k) % len(users)]), k=20),
                                           timeout=2)
                        outcome = "degraded" if r.degraded else "ok"
                except grpc.RpcError as e:
                    outcome = e.code().name
                seconds = time.perf_counter() - t  # from the send (open loop: late sends show as lateness)
                with lock:
                    method = "track" if track else "recommend"
                    minute[method].append(seconds)
                    counts[(method, outcome)] += 1
                due += interval

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(args.callers)]
    for t in threads:
        t.start()
    rows, before = [], stage_buckets(http_port)
    for m in range(1, int(args.minutes) + 1):
        time.sleep(max(0.0, start + 60 * m - time.monotonic()))
        now = stage_buckets(http_port)
        with lock:
            lat = {k: list(v) for k, v in minute.items()}
            minute.clear()
            c = dict(counts)
            counts.clear()
        row = {"minute": m, "rss_mib": round(rss_mib(server.pid), 1),
               "recommend": sum(v for (meth, _), v in c.items() if meth == "recommend"),
               "track": sum(v for (meth, _), v in c.items() if meth == "track"),
               "errors": sum(v for (_, o), v in c.items() if o not in ("ok", "degraded")),
               "degraded": c.get(("recommend", "degraded"), 0),
               **{f"{meth}_p{q}_ms": round(float(np.percentile(v, q)) * 1000, 1)
                  for meth, v in lat.items() if v for q in (50, 99)},
               "stage_p99_ms": {s: p99_of(now.get(s, []), before.get(s, [])) for s in STAGES}}
        before = now
        rows.append(row)
        print(json.dumps(row), flush=True)
    for t in threads:
        t.join()
    server.terminate()
    server.wait()
    growth = (rows[-1]["rss_mib"] / rows[1]["rss_mib"] - 1) * 100 if len(rows) > 1 else 0.0
    out = {"minutes": args.minutes, "rate": args.rate, "track_share": args.track_share,
           "processes": args.processes, "rows": rows,
           "errors": sum(r["errors"] for r in rows), "rss_growth_pct": round(growth, 1)}
    print("| minute | Recommend | TrackEvents | errors | degraded | Recommend p50 / p99 | TrackEvents p50 / p99 "
          "| stage p99 (features · recall · coarse · fine · adjust) | RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        stages = " · ".join("–" if r["stage_p99_ms"][s] is None else f"{r['stage_p99_ms'][s]:g}" for s in STAGES)
        print(f"| {r['minute']} | {r['recommend']:,} | {r['track']:,} | {r['errors']} | {r['degraded']} "
              f"| {r.get('recommend_p50_ms', '–')} / {r.get('recommend_p99_ms', '–')} ms "
              f"| {r.get('track_p50_ms', '–')} / {r.get('track_p99_ms', '–')} ms | {stages} ms "
              f"| {r['rss_mib']:.0f} MiB |")
    print(f"errors {out['errors']}, RSS growth {growth:+.1f} % (minute 2 to the last)")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"soak-p{args.processes}.json").write_text(json.dumps(out, indent=2))
    sys.exit(1 if out["errors"] or abs(growth) > 10 else 0)


if __name__ == "__main__":
    main()
