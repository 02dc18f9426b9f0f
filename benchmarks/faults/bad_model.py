"""Fault: bad model versions published under a serving server.

A server (`vitrine serve`, reloading every 0.5 s) answers a steady `Recommend` load on a home
with published models. For each model (`two_tower`, `coarse`, `ranker`) and each kind of bad
version, a copy of the served version is spoiled, `latest` is pointed at it (as a careless
script would, without `vitrine`'s verification), left for 2 s, then pointed back:

  * corrupt   — bytes of its largest file flipped (the manifest's checksums no longer match);
  * partial   — one file missing (a copy cut short);
  * manifest  — `manifest.json` not JSON;
  * unloadable — the SavedModel / arrays replaced by garbage *with* a matching manifest (a bad
    export that passes the checksums; only loading finds it).

Checked: no `Recommend` call fails, no answer is served by a bad version, the degraded share
does not rise, and every bad version is counted as a failed reload. Prints a table and
records benchmarks/results/fault-model.json.

    .venv/bin/python benchmarks/faults/bad_model.py --home /tmp/h/demo10
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.processes import start_vitrine  # noqa: E402

KINDS = ("corrupt", "partial", "manifest", "unloadable")


def spoil(good: Path, bad: Path, kind: str) -> None:
    from vitrine.versions import MANIFEST, write_manifest

    shutil.copytree(good, bad)
    files = sorted((p for p in bad.rglob("*") if p.is_file() and p.name != MANIFEST), key=lambda p: p.stat().st_size)
    if kind == "corrupt":
        data = bytearray(files[-1].read_bytes())
        for i in range(0, len(data), max(1, len(data) // 64)):
            data[i] ^= 0xFF
        files[-1].write_bytes(bytes(data))
    elif kind == "partial":
        files[-1].unlink()
    elif kind == "manifest":
        (bad / MANIFEST).write_text("{not json")
    else:
        for f in files:
            if f.suffix in (".pb", ".npy", ".json") or "variables" in f.parts:
                f.write_bytes(b"\x00garbage" * 16)
        manifest = json.loads((good / MANIFEST).read_text())
        manifest.pop("checksums", None)
        manifest.pop("version", None)
        write_manifest(bad, **manifest)


def point(root: Path, version: str) -> None:
    tmp = root / ".latest-fault"
    tmp.write_text(version + "\n")
    tmp.replace(root / "latest")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home with published models")
    p.add_argument("--hold", type=float, default=5.0, help="seconds each bad version stays published")
    args = p.parse_args()

    import grpc
    import pandas as pd

    from serving.proto import pb, pb_grpc
    from vitrine.online.redis_local import free_port

    users = pd.read_parquet(args.home / "features" / "user_behaviour", columns=["user_id"])["user_id"].unique()[:200]
    config = args.home / "fault-model.json"
    config.write_text(json.dumps({"reload_seconds": 0.5, "exposures": False}))
    port, http_port = free_port(), free_port()
    server = start_vitrine(args.home, "serve", "--port", str(port), "--http-port", str(http_port),
                           "--config", str(config))
    stop = threading.Event()
    codes: Counter = Counter()
    reasons: Counter = Counter()
    versions: Counter = Counter()

    def load() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.RecommenderStub(ch)
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    r = stub.Recommend(pb.RecommendRequest(user_id=str(users[n % len(users)]), k=10), timeout=2)
                    codes["OK"] += 1
                    reasons[r.degraded_reason or "-"] += 1
                    versions[r.model_version] += 1
                except grpc.RpcError as e:
                    codes[e.code().name] += 1
                time.sleep(0.01)

    def failed_reloads() -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vitrine_model_reloads_total{") and 'result="ok"' not in line
                   and 'result="loaded"' not in line)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(2.0)
    baseline = dict(reasons)
    rows, made = [], []
    try:
        for model in ("two_tower", "coarse", "ranker"):
            root = args.home / "models" / model
            good = (root / "latest").read_text().strip()
            for kind in KINDS:
                bad = f"{good}-fault-{kind}"
                made.append(root / bad)
                spoil(root / good, root / bad, kind)
                before_failed, before_ok = failed_reloads(), codes["OK"]
                point(root, bad)
                time.sleep(args.hold)
                point(root, good)
                time.sleep(1.0)
                served_bad = sum(c for v, c in versions.items() if bad in v)
                rows.append({"model": model, "kind": kind, "answers": codes["OK"] - before_ok,
                             "served_by_bad_version": served_bad, "failed_reloads": failed_reloads() - before_failed})
                print(f"{model:9s} {kind:10s} answers {rows[-1]['answers']:5d}, served by it {served_bad}, "
                      f"failed reloads counted {rows[-1]['failed_reloads']:.0f}", flush=True)
    finally:
        stop.set()
        thread.join()
        server.terminate()
        server.wait()
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
    errors = sum(v for k, v in codes.items() if k != "OK")
    out = {"rows": rows, "calls": dict(codes), "degraded_before": baseline, "degraded_all": dict(reasons),
           "versions": dict(versions)}
    print("| model | bad version | answers while published | served by it | failed reloads counted |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['kind']} | {r['answers']:,} | {r['served_by_bad_version']} "
              f"| {r['failed_reloads']:.0f} |")
    print(f"Recommend calls {sum(codes.values()):,}, errors {errors}; degraded reasons {dict(reasons)}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "fault-model.json").write_text(json.dumps(out, indent=2))
    bad = errors or any(r["served_by_bad_version"] or r["failed_reloads"] < 1 for r in rows)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
