"""Fault: the online store's Redis stopped and started again under load.

A server (`vitrine serve`, consumers inside) runs on a served home with its managed Redis.
Client threads call `Recommend` (paced) and `TrackEvents` (batches of clicks with unique ids)
without pause, and a probe calls `Recommend` every 20 ms. Several times Redis goes down — in
turn `vitrine redis stop` (a clean shutdown) and kill -9 of redis-server — stays down a few
seconds and is started again on its port (`vitrine redis start`). Then the consumers drain
and the script checks:

  * `Recommend`: errors (must be 0: answers are degraded, never failed) and degraded answers;
  * `TrackEvents`: every failure `UNAVAILABLE` (never `INTERNAL`), every acknowledged event in
    the event log once (kill -9 included: the append-only file has every write Redis answered);
  * recovery: from Redis answering again to the probe's first answer that is not
    `redis_unavailable`, and to the first `TrackEvents` acknowledged (target ≤ 2 s).

Prints a table and records benchmarks/results/fault-redis.json.

    .venv/bin/python benchmarks/faults/redis_restart.py --home /tmp/h/demo10 [--outages 4] [--down 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.processes import run_vitrine, start_vitrine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home with its managed Redis")
    p.add_argument("--outages", type=int, default=4, help="Redis outages, alternating clean stop and kill -9")
    p.add_argument("--down", type=float, default=3.0, help="seconds Redis stays down each time")
    p.add_argument("--up", type=float, default=6.0, help="seconds of load between outages")
    p.add_argument("--rate", type=float, default=50.0, help="Recommend calls a second (besides the probe)")
    args = p.parse_args()

    import grpc
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from serving.proto import pb, pb_grpc
    from vitrine.config import Home
    from vitrine.online.redis_local import ManagedRedis, free_port, ping, redis_url

    home = Home(args.home)
    managed = ManagedRedis(home.redis_dir)
    redis_url(home)  # running before the server starts
    run = f"redis{int(time.time())}"
    items = pd.read_parquet(args.home / "features" / "item_attributes", columns=["item_id"])["item_id"].unique()[:100]
    users = pd.read_parquet(args.home / "features" / "user_behaviour", columns=["user_id"])["user_id"].unique()[:200]
    config = args.home / "fault-redis.json"
    config.write_text(json.dumps({"reload_seconds": 3600}))
    port = free_port()
    server = start_vitrine(args.home, "serve", "--port", str(port), "--no-http", "--config", str(config))
    stop = threading.Event()
    lock = threading.Lock()
    rec_codes: Counter = Counter()
    track_codes: Counter = Counter()
    degraded: Counter = Counter()
    acked: list[str] = []
    probe: list[tuple[float, str]] = []  # (time, degraded reason or "")
    track_ok_times: list[float] = []

    def channel():
        return grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])

    def recommender(k: int, pace: float, out: list | None) -> None:
        with channel() as ch:
            stub = pb_grpc.RecommenderStub(ch)
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    r = stub.Recommend(pb.RecommendRequest(user_id=str(users[(k * 7919 + n) % len(users)]), k=10),
                                       timeout=2)
                    with lock:
                        rec_codes["OK"] += 1
                        degraded[r.degraded_reason or "-"] += 1
                        if out is not None:
                            out.append((time.monotonic(), r.degraded_reason))
                except grpc.RpcError as e:
                    with lock:
                        rec_codes[e.code().name] += 1
                time.sleep(pace)

    def tracker(k: int) -> None:
        with channel() as ch:
            stub = pb_grpc.RecommenderStub(ch)
            n = 0
            while not stop.is_set():
                n += 1
                ids = [f"{run}-{k}-{n}-{i}" for i in range(20)]
                events = [pb.Event(event_id=e, user_id=f"{run}-u{(n + i) % 30}",
                                   item_id=str(items[(n + i) % len(items)]), event_type="click")
                          for i, e in enumerate(ids)]
                try:
                    stub.TrackEvents(pb.TrackEventsRequest(events=events), timeout=2)
                    with lock:
                        track_codes["OK"] += 1
                        acked.extend(ids)
                        track_ok_times.append(time.monotonic())
                except grpc.RpcError as e:
                    with lock:
                        track_codes[e.code().name] += 1
                    time.sleep(0.02)

    threads = [threading.Thread(target=recommender, args=(k, 2 / args.rate, None)) for k in range(2)]
    threads += [threading.Thread(target=recommender, args=(99, 0.02, probe)),
                threading.Thread(target=tracker, args=(0,))]
    for t in threads:
        t.start()
    outages = []
    time.sleep(args.up)
    for i in range(args.outages):
        how = ("stop", "kill -9")[i % 2]
        t_down = time.monotonic()
        if how == "stop":
            managed.stop()
        else:
            os.kill(int(managed.pid_file.read_text()), signal.SIGKILL)
            while ping(managed.url, timeout=0.1):
                time.sleep(0.01)
        time.sleep(args.down)
        started = run_vitrine(args.home, "redis", "start")
        if started.returncode:
            raise SystemExit(f"vitrine redis start failed:\n{started.stderr[-2000:]}")
        while not ping(managed.url, timeout=0.1):
            time.sleep(0.01)
        t_up = time.monotonic()
        time.sleep(args.up)
        with lock:
            answer = next((t for t, reason in probe if t > t_up and reason != "redis_unavailable"), None)
            tracked = next((t for t in track_ok_times if t > t_up), None)
        outages.append({"how": how, "down_s": round(t_up - t_down, 2),
                        "recommend_recovered_s": None if answer is None else round(answer - t_up, 3),
                        "track_recovered_s": None if tracked is None else round(tracked - t_up, 3)})
        print(f"outage {i + 1} ({how}): Redis down {t_up - t_down:.1f} s; recovered: Recommend "
              f"{outages[-1]['recommend_recovered_s']} s, TrackEvents {outages[-1]['track_recovered_s']} s", flush=True)
    stop.set()
    for t in threads:
        t.join()
    server.terminate()
    server.wait()
    drain = run_vitrine(args.home, "consume", "--drain", "--config", str(config))
    if drain.returncode:
        raise SystemExit(f"vitrine consume --drain failed:\n{drain.stderr[-2000:]}")
    log = ds.dataset(args.home / "events", format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    logged = log.to_table(columns=["event_id"], filter=pc.starts_with(ds.field("event_id"), f"{run}-")) \
        .column(0).to_pylist()
    lost, twice = len(set(acked) - set(logged)), len(logged) - len(set(logged))
    worst = max((99.0 if v is None else v for o in outages
                 for v in (o["recommend_recovered_s"], o["track_recovered_s"])), default=0.0)
    out = {"outages": outages, "recommend": dict(rec_codes), "degraded": dict(degraded), "track": dict(track_codes),
           "acknowledged": len(acked), "stored": len(logged), "lost": lost, "written_twice": twice,
           "worst_recovery_s": worst}
    bad_track = sum(v for k, v in track_codes.items() if k not in ("OK", "UNAVAILABLE"))
    bad_rec = sum(v for k, v in rec_codes.items() if k != "OK")
    print("| fault | Recommend calls | errors | degraded (Redis down) | TrackEvents OK / UNAVAILABLE / other "
          "| events acknowledged | lost | written twice | worst recovery |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| Redis stopped / killed, {args.outages} times | {sum(rec_codes.values()):,} | {bad_rec} "
          f"| {degraded.get('redis_unavailable', 0):,} | {track_codes['OK']:,} / {track_codes['UNAVAILABLE']:,} / "
          f"{bad_track} | {len(acked):,} | {lost} | {twice} | {worst:.2f} s |")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "fault-redis.json").write_text(json.dumps(out, indent=2))
    sys.exit(1 if lost or twice or bad_rec or bad_track or worst > 2.0 else 0)


if __name__ == "__main__":
    main()
