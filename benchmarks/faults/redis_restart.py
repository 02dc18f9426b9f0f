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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.faults.load import Load, logged_ids  # noqa: E402
from benchmarks.processes import run_vitrine, start_vitrine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home with its managed Redis")
    p.add_argument("--outages", type=int, default=4, help="Redis outages, alternating clean stop and kill -9")
    p.add_argument("--down", type=float, default=3.0, help="seconds Redis stays down each time")
    p.add_argument("--up", type=float, default=6.0, help="seconds of load between outages")
    p.add_argument("--rate", type=float, default=50.0, help="Recommend calls a second (besides the probe)")
    args = p.parse_args()

    import pandas as pd

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
    load = Load(port, users, items, run, rate=args.rate)
    load.start()
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
        answer = load.first_answer_after(t_up, "redis_unavailable")
        tracked = load.first_ack_after(t_up)
        outages.append({"how": how, "down_s": round(t_up - t_down, 2),
                        "recommend_recovered_s": None if answer is None else round(answer - t_up, 3),
                        "track_recovered_s": None if tracked is None else round(tracked - t_up, 3)})
        print(f"outage {i + 1} ({how}): Redis down {t_up - t_down:.1f} s; recovered: Recommend "
              f"{outages[-1]['recommend_recovered_s']} s, TrackEvents {outages[-1]['track_recovered_s']} s", flush=True)
    load.finish()
    server.terminate()
    server.wait()
    drain = run_vitrine(args.home, "consume", "--drain", "--config", str(config))
    if drain.returncode:
        raise SystemExit(f"vitrine consume --drain failed:\n{drain.stderr[-2000:]}")
    acked = load.acked
    logged = logged_ids(args.home / "events", run)
    lost, twice = len(set(acked) - set(logged)), len(logged) - len(set(logged))
    worst = max((99.0 if v is None else v for o in outages
                 for v in (o["recommend_recovered_s"], o["track_recovered_s"])), default=0.0)
    rec_codes, degraded, track_codes = load.recommend, load.degraded, load.track
    out = {"outages": outages, "recommend": dict(rec_codes), "degraded": dict(degraded), "track": dict(track_codes),
           "acknowledged": len(acked), "stored": len(logged), "lost": lost, "written_twice": twice,
           "worst_recovery_s": worst}
    bad_rec, bad_track = load.bad_codes()
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
