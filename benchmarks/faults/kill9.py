"""Fault: kill -9 of the server and of the stream's consumer at random moments under tracking.

A server (`vitrine serve --no-consumers`) and `vitrine consume` run on a served home; sender
threads send `TrackEvents` batches of clicks with unique ids for a set of users without
pause; every few seconds (at random) the server or the consumer, in turn, is killed with -9
and started again. At the end the consumers drain, and the script checks:

  * every acknowledged event is in the event log (lost = acknowledged, not in the log);
  * no event id is in the log twice;
  * each user's real-time click count equals the user's clicks in the log (each applied once).

A call in flight when the server dies is not acknowledged; its events may still be stored
(the stream had them): that is allowed, and they must then be in the log once. Prints a table
and records benchmarks/results/fault-kill9.json.

    .venv/bin/python benchmarks/faults/kill9.py --home /tmp/demo8 [--kills 6] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.processes import run_vitrine, start_vitrine  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home (features, feast apply, materialised)")
    p.add_argument("--kills", type=int, default=6, help="kill -9s, alternating server and consumer")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--senders", type=int, default=3)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import grpc
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import redis

    from serving.features import UserFeatureReader, entity_views
    from serving.proto import pb, pb_grpc
    from vitrine.config import Home
    from vitrine.featurestore.repo import feature_store, project_name
    from vitrine.online.redis_local import free_port, redis_url

    rng = random.Random(args.seed)
    run = f"kill{int(time.time())}"
    home = Home(args.home)
    url = redis_url(home)
    items = pd.read_parquet(args.home / "features" / "item_attributes", columns=["item_id"])["item_id"].unique()[:100]
    config = args.home / "fault-kill9.json"
    config.write_text(json.dumps({"consumers": False, "reload_seconds": 3600}))
    port = free_port()
    procs = {"server": start_vitrine(args.home, "serve", "--port", str(port), "--no-http", "--config", str(config)),
             "consumer": start_vitrine(args.home, "consume", "--config", str(config))}
    acked: list[str] = []
    calls = {"ok": 0, "error": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def sender(k: int) -> None:
        n = 0
        while not stop.is_set():
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                stub = pb_grpc.RecommenderStub(ch)
                while not stop.is_set():
                    ids = [f"{run}-{k}-{n}-{i}" for i in range(20)]
                    n += 1
                    events = [pb.Event(event_id=e, user_id=f"{run}-u{(k + i) % args.users}",
                                       item_id=str(items[(n + i) % len(items)]), event_type="click") for i, e in
                              enumerate(ids)]
                    try:
                        stub.TrackEvents(pb.TrackEventsRequest(events=events), timeout=5)
                    except grpc.RpcError:
                        with lock:
                            calls["error"] += 1
                        time.sleep(0.05)
                        break  # a new channel: the server may have been restarted
                    with lock:
                        calls["ok"] += 1
                        acked.extend(ids)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(args.senders)]
    for t in threads:
        t.start()
    kills = {"server": 0, "consumer": 0}
    deadline = time.monotonic() + args.seconds
    gap = args.seconds / (args.kills + 1)
    for i in range(args.kills):
        time.sleep(max(0.5, rng.uniform(0.5 * gap, 1.5 * gap)))
        victim = ("server", "consumer")[i % 2]
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        kills[victim] += 1
        procs[victim] = (start_vitrine(args.home, "serve", "--port", str(port), "--no-http", "--config", str(config))
                         if victim == "server" else start_vitrine(args.home, "consume", "--config", str(config)))
    time.sleep(max(0.0, deadline - time.monotonic()))
    stop.set()
    for t in threads:
        t.join()
    for proc in procs.values():
        proc.terminate()
        proc.wait()
    drain = run_vitrine(args.home, "consume", "--drain", "--config", str(config))
    if drain.returncode:
        raise SystemExit(f"vitrine consume --drain failed:\n{drain.stderr[-2000:]}")
    log = ds.dataset(args.home / "events", format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    table = log.to_table(columns=["event_id", "user_id"], filter=pc.starts_with(ds.field("event_id"), f"{run}-"))
    logged = table.column("event_id").to_pylist()
    lost = len(set(acked) - set(logged))
    twice = len(logged) - len(set(logged))
    store = feature_store(home, url)
    reader = UserFeatureReader(redis.Redis.from_url(url), project_name(), entity_views(store, "user"), clock_us=None)
    per_user = pd.Series(table.column("user_id").to_pylist()).value_counts()
    mismatched = sum(int(reader.read(u).values.get("user_realtime__rt_clicks") or 0) != int(c)
                     for u, c in per_user.items())
    out = {"kills": kills, "seconds": args.seconds, "calls_ok": calls["ok"], "calls_failed": calls["error"],
           "acknowledged": len(acked), "stored": len(logged), "lost": lost, "written_twice": twice,
           "stored_not_acknowledged": len(set(logged) - set(acked)), "users": len(per_user),
           "realtime_mismatches": mismatched, "drain": drain.stdout.strip()[-200:]}
    print("| fault | kills | calls OK | calls failed | events acknowledged | stored | lost | written twice "
          "| real-time counts wrong |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| kill -9 server / consumer | {kills['server']} / {kills['consumer']} | {calls['ok']:,} "
          f"| {calls['error']:,} | {len(acked):,} | {len(logged):,} | {lost} | {twice} "
          f"| {mismatched} of {len(per_user)} users |")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "fault-kill9.json").write_text(json.dumps(out, indent=2))
    sys.exit(1 if lost or twice or mismatched else 0)


if __name__ == "__main__":
    main()
