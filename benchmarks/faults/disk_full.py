"""Fault: the home's disk full under load — the event log, the exposure log and the managed
Redis's files (its append-only file and snapshots) on one small filesystem that fills up.

The script mounts a tmpfs (so it needs root, or CAP_SYS_ADMIN) just big enough for the
managed Redis's files plus a few MiB, moves the home's `redis/` there (Redis stopped and
started again on its port) and gives `events/` and `exposures/` empty directories there (the
home's own logs are set aside and merged back at the end). A server (`vitrine serve`,
consumers inside) takes `Recommend` and `TrackEvents` load; then a filler file takes every
free byte, stays `--full` seconds, and is deleted. Then the consumers drain and the script
checks:

  * `Recommend`: no errors (answers while full are served; their exposures may be dropped);
  * `TrackEvents`: every failure `UNAVAILABLE` with a message (never `INTERNAL`), and how
    many calls were refused while the disk was full;
  * no corruption: every Parquet file in both logs reads, no temporary file is left;
  * nothing acknowledged that was not stored: every acknowledged event in the event log once;
  * recovery: from the filler's deletion to the first `TrackEvents` acknowledged.

Prints a table and records benchmarks/results/fault-disk-full.json. The home is put back as it
was (its Redis data, with this run's events, moved back) even if a check fails.

    sudo .venv/bin/python benchmarks/faults/disk_full.py --home /tmp/h/demo10 [--full 10]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.faults.load import Load, logged_ids  # noqa: E402
from benchmarks.processes import run_vitrine, start_vitrine  # noqa: E402

ROOM_MIB = 8  # beyond the Redis files: the logs' room before the filler takes it


def mount_tmpfs(size_mib: int) -> Path:
    mount = Path(tempfile.mkdtemp(prefix="vitrine-disk-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        mount.rmdir()
        raise SystemExit(f"could not mount a {size_mib} MiB tmpfs ({done.stderr.strip()}): this fault needs root")
    return mount


def fill(mount: Path) -> Path:
    """A file taking every free byte of `mount`."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


def du_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def check_files(root: Path) -> tuple[int, int, list[str]]:
    """(Parquet files, hidden/temporary files, files that do not read) under a log."""
    import pyarrow.parquet as pq

    files, hidden, bad = 0, 0, []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith((".", "_")):
            hidden += 1
            continue
        files += 1
        try:
            pq.read_table(path)
        except Exception as e:
            bad.append(f"{path.name}: {e}")
    return files, hidden, bad


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True, help="a served home with its managed Redis")
    p.add_argument("--up", type=float, default=6.0, help="seconds of load before the disk fills and after it is freed")
    p.add_argument("--full", type=float, default=10.0, help="seconds the disk stays full")
    p.add_argument("--rate", type=float, default=50.0, help="Recommend calls a second (besides the probe)")
    args = p.parse_args()

    import pandas as pd

    from vitrine.config import Home
    from vitrine.online.redis_local import ManagedRedis, free_port

    home = Home(args.home.resolve())
    managed = ManagedRedis(home.redis_dir)
    managed.start()
    run = f"disk{int(time.time())}"
    items = pd.read_parquet(home.root / "features" / "item_attributes", columns=["item_id"])["item_id"].unique()[:100]
    users = pd.read_parquet(home.root / "features" / "user_behaviour", columns=["user_id"])["user_id"].unique()[:200]
    config = home.root / "fault-disk-full.json"
    config.write_text(json.dumps({"reload_seconds": 3600, "log_batch_seconds": 1.0}))

    managed.stop()
    mount = mount_tmpfs(int(du_mib(home.redis_dir) * 2.5) + ROOM_MIB)  # its next snapshot and rewrite fit
    moved = {name: home.root / f"{name}.aside-{run}" for name in ("redis", "events", "exposures")}
    server = None
    try:
        for name, aside in moved.items():
            live = home.root / name
            if live.exists():
                live.rename(aside)
            if name == "redis":
                shutil.copytree(aside, mount / name)
            else:
                (mount / name).mkdir()
            live.symlink_to(mount / name)
        managed.start()
        port = free_port()
        server = start_vitrine(home.root, "serve", "--port", str(port), "--no-http", "--config", str(config))
        load = Load(port, users, items, run, rate=args.rate)
        load.start()
        time.sleep(args.up)
        t_full = time.monotonic()
        filler = fill(mount)
        print(f"disk full ({mount}: {filler.stat().st_size / 2**20:.1f} MiB of filler)", flush=True)
        time.sleep(args.full)
        with load.lock:
            refused_while_full = sum(1 for t in load.track_failure_times if t >= t_full)
            messages = sorted({d[:160] for t, _, d in load.track_failures if t >= t_full})
        filler.unlink()
        t_free = time.monotonic()
        print("disk freed", flush=True)
        time.sleep(args.up)
        load.finish()
        server.terminate()
        server.wait()
        server = None
        drain = run_vitrine(home.root, "consume", "--drain", "--config", str(config))
        if drain.returncode:
            raise SystemExit(f"vitrine consume --drain failed:\n{drain.stderr[-2000:]}")
        acked = load.acked
        logged = logged_ids(home.events, run)
        lost, twice = len(set(acked) - set(logged)), len(logged) - len(set(logged))
        checks = {name: check_files(mount / name) for name in ("events", "exposures")}
        tracked = load.first_ack_after(t_free)
        bad_rec, bad_track = load.bad_codes()
        out = {"full_s": args.full, "recommend": dict(load.recommend), "degraded": dict(load.degraded),
               "track": dict(load.track), "refused_while_full": refused_while_full, "messages": messages,
               "acknowledged": len(acked), "stored": len(logged), "lost": lost, "written_twice": twice,
               "files": {k: {"parquet": v[0], "hidden": v[1], "unreadable": v[2]} for k, v in checks.items()},
               "track_recovered_s": None if tracked is None else round(tracked - t_free, 3)}
    finally:
        (mount / "filler").unlink(missing_ok=True)
        if server is not None:
            server.kill()
            server.wait()
        managed.stop()
        for name, aside in moved.items():
            live = home.root / name
            if live.is_symlink():
                live.unlink()
                if name == "redis":
                    shutil.rmtree(aside, ignore_errors=True)
                    shutil.copytree(mount / name, live)  # this run's Redis data, events included
                else:
                    if aside.exists():
                        aside.rename(live)
                    for f in (mount / name).rglob("*.parquet"):  # this run's log files join the home's
                        target = live / f.relative_to(mount / name)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, target)
            elif aside.exists() and not live.exists():
                aside.rename(live)
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()
        managed.start()

    files = " · ".join(f"{k} {v['parquet']} files, {v['hidden']} temporary, {len(v['unreadable'])} unreadable"
                       for k, v in out["files"].items())
    print(f"TrackEvents refused while full: {refused_while_full} ({'; '.join(messages) or '-'})")
    print("| fault | Recommend calls | errors | TrackEvents OK / UNAVAILABLE / other | events acknowledged "
          "| lost | written twice | log files | TrackEvents recovered |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| home's disk full {args.full:.0f} s | {sum(load.recommend.values()):,} | {bad_rec} "
          f"| {load.track['OK']:,} / {load.track['UNAVAILABLE']:,} / {bad_track} | {len(acked):,} | {lost} "
          f"| {twice} | {files} | {out['track_recovered_s']} s |")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "fault-disk-full.json").write_text(json.dumps(out, indent=2))
    unreadable = sum(len(v["unreadable"]) + v["hidden"] for v in out["files"].values())
    sys.exit(1 if lost or twice or bad_rec or bad_track or unreadable else 0)


if __name__ == "__main__":
    main()
