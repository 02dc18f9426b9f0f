"""Event stream benchmark: a platform day replayed through `TrackEvents` into the stream.

A server (`vitrine serve --no-consumers`) and its consumers (`vitrine consume`) run in their
own processes on a served home; this process replays the generator's platform day (items
mapped onto the home's catalogue, times shifted to end now) in batches at a paced rate, while
a probe sends one click every half second and polls Redis until the user's real-time row
shows it. Prints and records (benchmarks/results/stream-<name>.json):

  * sustained events/s, ack p50/p99 overall and per hour of the replayed day (flat or not);
  * event → real-time feature visible, p50/p99 (the probe);
  * after the consumers drain: events in the log vs acknowledged, ids written twice.

    .venv/bin/python benchmarks/bench_stream.py --home /tmp/demo8 --day /tmp/platform-day [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402

from benchmarks.processes import cpu_seconds, run_vitrine, start_vitrine  # noqa: E402

FIELDS = ("event_id", "event_time", "user_id", "item_id", "event_type", "session_id", "device", "region",
          "scene", "position", "price", "quantity", "merchant_id")


def load_day(day: Path, home: Path, limit: int | None, run: str) -> pd.DataFrame:
    """The generated day's events, oldest first: items mapped onto the home's catalogue
    (the same item always to the same one), times shifted so the day ends now, fresh ids."""
    files = sorted((day / "events").glob("*.parquet"))
    if not files:
        raise SystemExit(f"no events under {day}/events: vitrine generate --preset platform --days 1 --out {day}")
    df = ds.dataset(files).to_table().to_pandas().sort_values("event_time", kind="stable")
    if limit:
        df = df.iloc[:limit]
    items = pd.read_parquet(home / "features" / "item_attributes", columns=["item_id", "merchant_id"])
    items = items.drop_duplicates("item_id").reset_index(drop=True)
    codes = pd.util.hash_array(df["item_id"].to_numpy(dtype=object)) % len(items)
    df["item_id"] = items["item_id"].to_numpy()[codes]
    df["merchant_id"] = items["merchant_id"].to_numpy()[codes]
    shift = pd.Timestamp.now(tz="UTC") - df["event_time"].max() - pd.Timedelta(minutes=1)
    df["hour"] = (df["event_time"] - df["event_time"].min()).dt.total_seconds() // 3600
    df["event_time"] = (df["event_time"] + shift).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    df["event_id"] = [f"{run}-{i}" for i in range(len(df))]
    return df.reset_index(drop=True)


def requests_of(df: pd.DataFrame, batch: int, pb) -> list:
    out = []
    cols = {f: df[f].to_numpy() for f in FIELDS if f in df}
    for start in range(0, len(df), batch):
        events = []
        for i in range(start, min(start + batch, len(df))):
            kw = {}
            for f, col in cols.items():
                v = col[i]
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    continue
                kw[f] = v if f in ("price",) else (int(v) if f in ("position", "quantity") else str(v))
            events.append(pb.Event(**kw))
        out.append(pb.TrackEventsRequest(events=events))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home (features, feast apply, materialised)")
    p.add_argument("--day", type=Path, required=True, help="a generated platform day (vitrine generate --out)")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    p.add_argument("--batch", type=int, default=100, help="events per TrackEvents call")
    p.add_argument("--rate", type=float, default=2000.0, help="paced arrival rate, events/s")
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--processes", type=int, default=1, help="server processes (vitrine serve --processes)")
    p.add_argument("--consumers", type=int, default=1, help="vitrine consume processes (one consumer group)")
    p.add_argument("--name", default="platform-day")
    p.add_argument("--trace", type=Path, default=None,
                   help="also write each call's due time and ack latency, and the probes' visible times (.npz)")
    args = p.parse_args()

    import grpc
    import redis

    from serving.proto import pb, pb_grpc
    from vitrine.config import Home
    from vitrine.online.redis_local import ManagedRedis, free_port, redis_url

    run = f"bench{int(time.time())}"
    t0 = time.perf_counter()
    df = load_day(args.day, args.home, args.limit, run)
    hours = df["hour"].to_numpy()[:: args.batch]
    requests = requests_of(df, args.batch, pb)
    prepared = time.perf_counter() - t0
    print(f"{len(df):,} events in {len(requests):,} calls of {args.batch} (prepared in {prepared:.0f} s)", flush=True)

    config = args.home / "bench-stream.json"
    # the de-duplication window in the replay's time: the day's real rate is ~86 events/s, so at
    # `rate` an hour of the day passes in 3600 · 86 / rate seconds (the Redis memory the day would hold)
    day_rate = len(df) / max(1.0, (df["hour"].max() + 1) * 3600) if args.limit is None else 86.0
    window = max(60, int(3600 * day_rate / args.rate))
    config.write_text(json.dumps({"consumers": False, "event_past_days": 3, "reload_seconds": 3600,
                                  "dedup_window_s": window}))
    port = free_port()
    server = start_vitrine(args.home, "serve", "--port", str(port), "--no-http", "--config", str(config),
                           "--processes", str(args.processes))
    consumers = [start_vitrine(args.home, "consume", "--config", str(config)) for _ in range(args.consumers)]
    home = Home(args.home)
    client = redis.Redis.from_url(redis_url(home, start=False))
    from serving.realtime import realtime_reader
    from vitrine.featurestore.repo import feature_store, project_name

    reader = realtime_reader(client, feature_store(home, redis_url(home)), project_name())  # the row only
    latencies = np.full(len(requests), np.nan)
    accepted = np.zeros(len(requests), dtype=np.int64)
    errors: list[str] = []
    visible: list[float] = []
    probe_ack: list[float] = []  # the probe's own acknowledgement, the first part of `visible`
    memory: list[float] = []  # Redis used memory (MiB), sampled with each probe
    done = threading.Event()
    begin = time.perf_counter() + 1.0

    def sender(k: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stub = pb_grpc.RecommenderStub(ch)
            for j in range(k, len(requests), args.senders):
                due = begin + j * args.batch / args.rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                t = time.perf_counter()
                try:
                    r = stub.TrackEvents(requests[j], timeout=10)
                    accepted[j] = r.accepted
                except grpc.RpcError as e:
                    errors.append(f"{e.code().name}: {e.details()[:100]}")
                latencies[j] = time.perf_counter() - t

    def probe() -> None:
        items = df["item_id"].drop_duplicates().to_numpy()[:50]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.RecommenderStub(ch)
            n = 0
            while not done.wait(0.5):
                user, item = f"{run}-probe-{n % 20}", str(items[n % len(items)])
                memory.append(client.info("memory")["used_memory"] / 2**20)
                n += 1
                t = time.perf_counter()
                stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(user_id=user, item_id=item,
                                                                        event_type="click")]), timeout=10)
                acked = time.perf_counter() - t
                while time.perf_counter() - t < 10:
                    recent = reader.read(user).values.get("user_realtime__rt_recent_items") or [None]
                    if recent[0] == item:
                        visible.append(time.perf_counter() - t)
                        probe_ack.append(acked)
                        break
                    time.sleep(0.0005)  # the poll: its interval is part of the measured time

    # where the cores go: each process's CPU over the replay (Redis's pid from its pid file)
    pids = {"server": [server.pid], "consumers": [c.pid for c in consumers],
            "redis": [int(ManagedRedis(home.redis_dir).pid_file.read_text())]}

    def cpu_of(name: str) -> float:  # each with its children (the server's --processes)
        return sum(cpu_seconds(pid) for pid in pids[name])

    cpu0 = {name: cpu_of(name) for name in pids} | {"client": time.process_time()}
    forks0 = client.info("stats")["total_forks"]  # AOF rewrites and snapshots: a core for a second or two each
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(args.senders)]
    prober = threading.Thread(target=probe)
    for t in [*threads, prober]:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    cpu = {name: cpu_of(name) - cpu0[name] for name in pids}
    cpu["client"] = time.process_time() - cpu0["client"]
    forks = client.info("stats")["total_forks"] - forks0
    done.set()
    prober.join()
    server.terminate()
    server.wait()
    drain_t = time.perf_counter()
    for consumer in consumers:
        consumer.terminate()
    for consumer in consumers:
        consumer.wait()
    drained = run_vitrine(args.home, "consume", "--drain", "--config", str(config))
    if drained.returncode:
        raise SystemExit(f"vitrine consume --drain failed:\n{drained.stderr[-2000:]}")
    drain_s = time.perf_counter() - drain_t
    log = ds.dataset(args.home / "events", format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    ids = log.to_table(columns=["event_id"], filter=pc.starts_with(ds.field("event_id"), f"{run}-")).column(0)
    in_log = len(ids)
    distinct = pc.count_distinct(ids).as_py()
    ack_ms = latencies * 1000
    per_hour = {}
    for h in sorted(set(hours.tolist())):
        sel = ack_ms[hours == h]
        sel = sel[~np.isnan(sel)]
        per_hour[int(h)] = {"calls": len(sel), "p50_ms": float(np.percentile(sel, 50)),
                            "p99_ms": float(np.percentile(sel, 99))}
    done_ms = ack_ms[~np.isnan(ack_ms)]
    out = {
        "events": len(df), "calls": len(requests), "batch": args.batch, "target_rate": args.rate,
        "dedup_window_s": window, "redis_memory_mb_first_last_peak": [memory[0], memory[-1], max(memory)]
        if memory else None,
        "seconds": elapsed, "events_per_s": float(accepted.sum() / elapsed),
        "ack_p50_ms": float(np.percentile(done_ms, 50)), "ack_p99_ms": float(np.percentile(done_ms, 99)),
        "errors": len(errors), "error_examples": errors[:5], "acknowledged": int(accepted.sum()),
        "in_log": in_log, "written_twice": in_log - distinct, "drain_seconds": drain_s,
        "drain_output": drained.stdout.strip()[-300:],
        "visible_p50_ms": float(np.percentile(np.array(visible) * 1000, 50)) if visible else None,
        "visible_p99_ms": float(np.percentile(np.array(visible) * 1000, 99)) if visible else None,
        "probe_ack_p50_ms": float(np.percentile(np.array(probe_ack) * 1000, 50)) if probe_ack else None,
        "probe_ack_p99_ms": float(np.percentile(np.array(probe_ack) * 1000, 99)) if probe_ack else None,
        "probes": len(visible), "per_hour": per_hour,
        "server_processes": args.processes, "consumer_processes": args.consumers,
        "redis_forks": forks,
        "cores_used": {name: seconds / elapsed for name, seconds in cpu.items()},
        "cpu_ms_per_1000_events": {name: seconds * 1e6 / max(1, int(accepted.sum())) for name, seconds in cpu.items()},
    }
    print(f"replayed {out['acknowledged']:,} of {len(df):,} events in {elapsed:.0f} s: "
          f"{out['events_per_s']:,.0f} events/s (paced at {args.rate:,.0f}); "
          f"ack p50 {out['ack_p50_ms']:.1f} ms, p99 {out['ack_p99_ms']:.1f} ms; errors {len(errors)}")
    first, last = per_hour[min(per_hour)], per_hour[max(per_hour)]
    print(f"first hour: p50 {first['p50_ms']:.1f} / p99 {first['p99_ms']:.1f} ms; "
          f"last hour: p50 {last['p50_ms']:.1f} / p99 {last['p99_ms']:.1f} ms")
    print(f"event → real-time feature visible: p50 {out['visible_p50_ms']:.1f} ms, "
          f"p99 {out['visible_p99_ms']:.1f} ms over {len(visible)} probes "
          f"(their own ack p50 {out['probe_ack_p50_ms']:.1f}, p99 {out['probe_ack_p99_ms']:.1f} ms)")
    print("cores used over the replay: " + ", ".join(f"{n} {c:.2f}" for n, c in out["cores_used"].items())
          + f"; Redis forked {forks} times (AOF rewrites, snapshots)")
    print(f"log: {in_log:,} events of {out['acknowledged']:,} acknowledged, {out['written_twice']} written twice; "
          f"drained in {drain_s:.0f} s")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"stream-{args.name}.json").write_text(json.dumps(out, indent=2))
    if args.trace:  # where in the replay the slow calls were (AOF rewrites, snapshots, a noisy neighbour)
        np.savez(args.trace, due_s=np.arange(len(requests)) * args.batch / args.rate, ack_ms=ack_ms,
                 visible_ms=np.array(visible) * 1000, probe_ack_ms=np.array(probe_ack) * 1000)


if __name__ == "__main__":
    main()
