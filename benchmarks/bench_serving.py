"""Serving benchmark: the gRPC server in its own process, clients in this one.

Prints and records (benchmarks/results/serving-<name>.json):
  * single client: p50/p99 of Recommend, and the per-stage medians the server reports;
  * closed loop with C concurrent clients: requests/s, p50/p99;
  * side by side, in this process on the same home: (a) Feast `get_online_features` for a
    request's candidate items and for one user, vs the server's direct user read and item-cache
    take; (b) the floor: one Redis user read + a (catalogue × d) dot product + FM on 500 +
    the teacher on the fine-ranking candidates;
  * real time: TrackEvents → the pushed feature visible in Redis, p50/p99.

    .venv/bin/python benchmarks/bench_serving.py --home var/demo [--seconds 20] [--clients 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.processes import cpu_seconds  # noqa: E402
from serving.threads import limit_threads  # noqa: E402

limit_threads()

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# gRPC shares one TCP connection among channels to the same target unless told otherwise;
# separate callers (shop back ends) have separate connections
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def cpu_per_request(fn, server_pid: int | None):
    """Run `fn()` (returning a result dict with "requests"); add the server's and this process's
    CPU milliseconds per request — what a request costs, whatever else the machine runs."""
    server0 = cpu_seconds(server_pid) if server_pid else 0.0
    client0 = time.process_time()
    out = fn()
    n = max(out.get("requests", 0), 1)
    if server_pid:
        out["server_cpu_ms_per_request"] = (cpu_seconds(server_pid) - server0) * 1000 / n
    out["client_cpu_ms_per_request"] = (time.process_time() - client0) * 1000 / n
    return out


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q)) if len(xs) else float("nan")


def start_server(home: Path, config: Path | None = None, processes: int = 1) -> tuple[subprocess.Popen, int]:
    from vitrine.online.redis_local import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--home", str(home), "serve", "--port", str(port),
                             "--http-port", "0", *(["--config", str(config)] if config else []),
                             "--processes", str(processes)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, port


def users_of(home: Path, n: int, seed: int = 0) -> list[str]:
    ub = pd.read_parquet(home / "features" / "user_behaviour", columns=["user_id"])
    ids = ub["user_id"].drop_duplicates().to_numpy()
    rng = np.random.default_rng(seed)
    return [str(u) for u in rng.choice(ids, size=min(n, len(ids)), replace=False)] + ["unknown-user"]


def single_client(stub, pb, users, n: int, k: int) -> dict:
    lat, stages, degraded = [], {}, 0
    for i in range(n):
        t = time.perf_counter()
        r = stub.Recommend(pb.RecommendRequest(user_id=users[i % len(users)], k=k), timeout=5)
        lat.append(time.perf_counter() - t)
        degraded += r.degraded
        for s, ms in r.stage_ms.items():
            stages.setdefault(s, []).append(ms)
    return {"requests": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "degraded": degraded,
            "stage_median_ms": {s: float(np.median(v)) for s, v in stages.items()}}


def closed_loop(port: int, pb, pb_grpc, users, clients: int, seconds: float, k: int) -> dict:
    """`clients` callers, each with its own connection (as separate shop back ends have: with
    several server processes the kernel spreads connections, not requests), each sending
    its next request as soon as the previous answer arrives."""
    lat: list[float] = []
    degraded = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        i, mine, deg = offset, [], 0
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            stub.Recommend(pb.RecommendRequest(user_id=users[i % len(users)], k=k), timeout=5)  # connect
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = stub.Recommend(pb.RecommendRequest(user_id=users[i % len(users)], k=k), timeout=5)
                mine.append(time.perf_counter() - t)
                deg += r.degraded
                i += clients
        with lock:
            lat.extend(mine)
            degraded[0] += deg

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": wall, "requests": len(lat), "rps": len(lat) / wall,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "degraded": degraded[0]}


def open_loop(port: int, pb, pb_grpc, users, rate: float, seconds: float, k: int, connections: int = 16) -> dict:
    """Requests arrive at a fixed `rate` (a Poisson-free, evenly spaced schedule) whatever the
    server's speed — latency is measured from each request's scheduled time, so queueing
    behind a slow server counts (no coordinated omission)."""
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION) for _ in range(connections)]
    stubs = [pb_grpc.RecommenderStub(c) for c in channels]
    for i, s in enumerate(stubs):
        s.Recommend(pb.RecommendRequest(user_id=users[i % len(users)], k=k), timeout=5)
    lat: list[float] = []
    degraded = [0]
    lock = threading.Lock()
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.1

    def done(fut, scheduled: float) -> None:
        r = fut.result()
        with lock:
            lat.append(time.perf_counter() - scheduled)
            degraded[0] += r.degraded

    futures = []
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        fut = stubs[i % connections].Recommend.future(
            pb.RecommendRequest(user_id=users[i % len(users)], k=k), timeout=5)
        fut.add_done_callback(lambda f, s=scheduled: done(f, s))
        futures.append(fut)
    for f in futures:
        f.exception()
    wall = time.perf_counter() - t0
    for c in channels:
        c.close()
    return {"rate": rate, "requests": n, "achieved_rps": n / wall, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "degraded": degraded[0]}


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def side_by_side(home: Path, users: list[str], n: int) -> dict:
    """In this process: Feast vs direct reads, and the floor of one request."""
    from serving.config import ServingConfig
    from serving.core import Core
    from serving.pipeline import request_features
    from serving.validation import recommend_request
    from vitrine.config import Home

    core = Core(Home(home), ServingConfig(http_port=None, exposures=False))
    store, cache, models = core.store, core.items, core.models.current
    user = users[0]
    item_refs = sorted({c.replace("__", ":", 1) for c in cache.columns if not c.startswith("merchant_stats")})
    user_refs = [c.replace("__", ":", 1) for c in core.reader.names]
    candidates = list(cache.ids[:500])
    rows = cache.rows(candidates)
    out: dict = {"catalogue_items": int(cache.size)}
    out["feast_items_500_ms"] = float(np.median(timed(lambda: store.get_online_features(
        features=item_refs, entity_rows=[{"item_id": i} for i in candidates]).to_dict(), max(5, n // 10)))) * 1000
    out["cache_take_500_ms"] = float(np.median(timed(lambda: cache.take(cache.rows(candidates)), n))) * 1000
    out["feast_user_ms"] = float(np.median(timed(lambda: store.get_online_features(
        features=user_refs, entity_rows=[{"user_id": user}]).to_dict(), n))) * 1000
    out["direct_user_ms"] = float(np.median(timed(lambda: core.reader.read(user), n))) * 1000
    # the floor: user read + (catalogue × d) dot product + FM on 500 + teacher on coarse_k
    d = 32
    table = np.random.default_rng(0).standard_normal((max(cache.size, 100_000), d)).astype(np.float32)
    q = table[0].copy()
    raw = core.client.hgetall(core.reader.key(user))
    feats = core.reader.decode(raw).values
    req = request_features(recommend_request(core.config, user_id=user, k=10))
    items500, items_fine = cache.take(rows), cache.take(rows[: core.config.coarse_k])
    parts = {
        "redis_user_read": lambda: core.client.hgetall(core.reader.key(user)),
        f"dot_{len(table)}x{d}_top500": lambda: np.argpartition(-(table @ q), 500)[:500],
    }
    if models.student is not None:
        parts["fm_500"] = lambda: models.student.score(feats, items500, req)
    if models.teacher is not None:
        parts[f"teacher_{core.config.coarse_k}"] = lambda: models.teacher.score(feats, items_fine, req)
    floor = {name: float(np.median(timed(fn, n))) * 1000 for name, fn in parts.items()}
    out["floor_parts_ms"] = floor
    out["floor_ms"] = sum(floor.values())
    # as served (each pipeline on a watchdog worker) and inline in this thread, alternating blocks
    from serving.watchdog import Watchdog

    served, inline = core.watchdog, Watchdog(0)
    times: dict[str, list[float]] = {"watchdog": [], "inline": []}
    for block in range(8):
        core.watchdog = served if block % 2 == 0 else inline
        times["watchdog" if block % 2 == 0 else "inline"] += timed(
            lambda: core.recommend(recommend_request(core.config, user_id=user, k=10)), max(n // 4, 10))
    core.watchdog = served
    out["in_process_recommend_p50_ms"] = pct(times["watchdog"], 50)
    out["in_process_inline_p50_ms"] = pct(times["inline"], 50)
    core.close()
    return out


def realtime(stub, pb, home: Path, n: int) -> dict:
    """TrackEvents until the pushed row is readable in Redis (read straight after the ack)."""
    from serving.core import redis_client
    from serving.features import UserFeatureReader, entity_views
    from vitrine.config import Home
    from vitrine.featurestore.repo import feature_store, project_name
    from vitrine.online.redis_local import redis_url

    url = redis_url(Home(home))
    store = feature_store(Home(home), url)
    reader = UserFeatureReader(redis_client(url, 1.0), project_name(), entity_views(store, "user"))
    items = pd.read_parquet(home / "features" / "item_attributes", columns=["item_id"])["item_id"].unique()[:50]
    lat = []
    for i in range(n):
        user, item = f"bench-rt-{i % 20}", str(items[i % len(items)])
        t = time.perf_counter()
        stub.TrackEvents(pb.TrackEventsRequest(events=[pb.Event(user_id=user, item_id=item, event_type="click")]),
                         timeout=5)
        while (reader.read(user).values.get("user_realtime__rt_recent_items") or [None])[0] != item:
            pass
        lat.append(time.perf_counter() - t)
    return {"events": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


class _Skip(Exception):
    pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, default=ROOT / "var" / "demo")
    p.add_argument("--name", default="demo")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--single", type=int, default=500)
    p.add_argument("--skip-server", action="store_true", help="only the in-process side-by-side figures")
    p.add_argument("--parts", default="single,closed,open,side",
                   help="comma-separated subset of single,closed,open,side to run")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--config", type=Path, default=None, help="serving settings JSON for the server")
    p.add_argument("--processes", type=int, default=1, help="server processes (vitrine serve --processes)")
    p.add_argument("--rate", type=float, default=150.0, help="open-loop arrival rate (requests/s) for the p99 test")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--events", type=int, default=0,
                   help="real-time events to send (they are APPENDED to the home's event log; use a scratch home)")
    args = p.parse_args()
    from serving.proto import pb, pb_grpc

    home = args.home.resolve()
    parts = set(args.parts.split(","))
    users = users_of(home, 2000)
    result: dict = {"home": str(home), "command": " ".join(sys.argv), "k": args.k, "cpus": os.cpu_count()}
    proc, port = start_server(home, args.config, args.processes) if not args.skip_server else (None, 0)
    try:
        if proc is None:
            raise _Skip
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            single_client(stub, pb, users, 50, args.k)  # warm
            if "single" in parts:
                result["single"] = single_client(stub, pb, users, args.single, args.k)
                print("single client", json.dumps(result["single"]), flush=True)
            if "closed" in parts:
                result["closed_loop"] = cpu_per_request(
                    lambda: closed_loop(port, pb, pb_grpc, users, args.clients, args.seconds, args.k), proc.pid)
                print("closed loop", json.dumps(result["closed_loop"]), flush=True)
            if "open" in parts:
                result["open_loop"] = cpu_per_request(
                    lambda: open_loop(port, pb, pb_grpc, users, args.rate, args.seconds, args.k), proc.pid)
                print("open loop", json.dumps(result["open_loop"]), flush=True)
            if args.events:
                result["realtime"] = realtime(stub, pb, home, args.events)
                print("event → feature", json.dumps(result["realtime"]), flush=True)
    except _Skip:
        pass
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    if "side" in parts:
        from vitrine.console import library_output_to

        with library_output_to(home / "logs" / "bench-serving.log"):  # TensorFlow's C++ lines
            result["side_by_side"] = side_by_side(home, users, 200)
        print("side by side", json.dumps(result["side_by_side"]), flush=True)
    out = ROOT / "benchmarks" / "results" / f"serving-{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"→ {out}")


if __name__ == "__main__":
    main()
