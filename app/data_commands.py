"""Commands on data and features: generate, ingest, convert, redis, features, feast,
training-set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.registry import PRESET_NAMES, command
from vitrine.config import Home

# --- generate ---------------------------------------------------------------------------

def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=list(PRESET_NAMES),
                   help="scale (default: tiny)")
    p.add_argument("--days", type=int, default=None, help="days to simulate (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--format", dest="fmt", default="parquet", choices=["parquet", "csv"],
                   help="event file format (default parquet)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("generate", "write a synthetic platform (users, merchants, items, events)", _generate_args)
def _generate(args: argparse.Namespace, home: Home) -> int:
    from vitrine.synth.generate import generate
    from vitrine.synth.presets import get_preset

    summary = generate(get_preset(args.preset), args.out, seed=args.seed, days=args.days,
                       fmt=args.fmt, progress=not args.json and sys.stderr.isatty())
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.render())
    return 0


# --- ingest -----------------------------------------------------------------------------

def _ingest_args(p: argparse.ArgumentParser) -> None:
    for table in ("events", "users", "items", "merchants"):
        p.add_argument(f"--{table}", action="append", default=[], metavar="PATH",
                       help=f"{table} file (CSV/Parquet) or directory; repeatable")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("ingest", "validate CSV/Parquet logs and catalogues into the home", _ingest_args)
def _ingest(args: argparse.Namespace, home: Home) -> int:
    from vitrine.data.ingest import ingest

    report = ingest(home, events=args.events, users=args.users, items=args.items,
                    merchants=args.merchants, progress=not args.json and sys.stderr.isatty())
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0


# --- redis ------------------------------------------------------------------------------

def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["movielens", "taobao"], help="which public log format")
    p.add_argument("src", type=Path, nargs="?", default=None,
                   help="the log's files (default: the extract shipped in data/real/)")
    p.add_argument("--out", type=Path, required=True, help="directory for events.csv, items.csv, users.csv")


@command("convert", "convert a public interaction log to the ingest contracts (CSV)", _convert_args)
def _convert(args: argparse.Namespace, home: Home) -> int:
    from vitrine.data.convert import convert, shipped

    converted, paths = convert(args.kind, args.src or shipped(args.kind), args.out)
    print(converted.render())
    flags = " ".join(f"--{name} {path}" for name, path in paths.items())
    print(f"next: vitrine --home DIR ingest {flags}")
    return 0


def _redis_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["start", "stop", "status", "url"])


@command("redis", "start, stop or show the home's online-store Redis", _redis_args)
def _redis(args: argparse.Namespace, home: Home) -> int:
    from vitrine.config import redis_url_from_env
    from vitrine.online.redis_local import ManagedRedis, ping, redacted, redis_url

    external = redis_url_from_env()
    managed = ManagedRedis(home.redis_dir)
    if args.action == "url":  # for scripts (`redis-cli -u "$(vitrine redis url)"`): the password included
        print(redis_url(home))
    elif args.action == "start":
        print(redacted(redis_url(home)))
    elif args.action == "stop":
        if external:
            print(f"VITRINE_REDIS_URL is set ({redacted(external)}); Vitrine does not manage that server")
        else:
            print("stopped" if managed.stop() else "not running")
    else:
        url = external or managed.url
        up = url is not None and ping(url)
        print(f"{'external' if external else 'managed'} {redacted(url) if url else '-'}: {'up' if up else 'down'}")
        return 0 if up else 1
    return 0


# --- features ---------------------------------------------------------------------------

def _when(text: str):
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time (e.g. 2026-10-14T00:00:00Z)") from None


def _spark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spark-master", default=None,
                   help="Spark master URL (default: $VITRINE_SPARK_MASTER or local[*])")
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Spark setting; repeatable (also $VITRINE_SPARK_CONF, comma-separated)")


def _features_args(p: argparse.ArgumentParser) -> None:
    _spark_args(p)
    p.add_argument("--as-of", type=_when, default=None,
                   help="compute as of this time (default: the latest event in the log)")
    p.add_argument("--snapshot-days", type=int, default=None,
                   help="only the last N daily snapshots (default: every day of the log)")
    p.add_argument("--only", action="append", default=None, metavar="TABLE",
                   help="run only these jobs; repeatable")
    p.add_argument("--skip-jobs", action="store_true", help="only feast apply + materialise")
    p.add_argument("--full", action="store_true", help="re-materialise everything, not just what is new")


@command("features", "Spark feature jobs, feast apply, incremental materialisation into Redis", _features_args)
def _features(args: argparse.Namespace, home: Home) -> int:
    from app.flows import run_feature_pipeline
    from spark_jobs.session import SparkSettings
    from vitrine.online.redis_local import redis_url

    run_feature_pipeline(home, redis=redis_url(home),
                         spark_settings=SparkSettings.from_env(args.spark_master, args.spark_conf),
                         as_of=args.as_of, snapshot_days=args.snapshot_days, only=args.only,
                         skip_jobs=args.skip_jobs, full=args.full)
    return 0


def _feast_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("feast_args", nargs=argparse.REMAINDER,
                   help="arguments for feast, e.g. apply; `env` prints the exports for plain `feast` "
                        "and FeatureStore(...) on this home: eval \"$(vitrine feast env)\"")


@command("feast", "run the Feast CLI on feature_repo/ against this home (e.g. `vitrine feast apply`)",
         _feast_args)
def _feast(args: argparse.Namespace, home: Home) -> int:
    from vitrine.featurestore.realtime import ensure_table
    from vitrine.featurestore.repo import feast_exports, run_feast
    from vitrine.online.redis_local import redis_url

    if args.feast_args[:1] == ["env"]:
        print(feast_exports(home, redis_url(home)))
        return 0
    ensure_table(home)
    return run_feast(home, redis_url(home), args.feast_args or ["--help"], check=False).returncode


def _training_set_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", default="ranker_v1", help="feature service (default ranker_v1)")
    p.add_argument("--start", type=_when, default=None, help="first label time (inclusive)")
    p.add_argument("--end", type=_when, default=None, help="last label time (exclusive)")
    p.add_argument("--fraction", type=float, default=None, help="random fraction of the samples")
    p.add_argument("--out", type=Path, required=True, help="Parquet file to write")


@command("training-set", "point-in-time training set for a feature service (Feast historical join)",
         _training_set_args)
def _training_set(args: argparse.Namespace, home: Home) -> int:
    from vitrine.featurestore.training import build_training_set
    from vitrine.online.redis_local import redis_url

    result = build_training_set(home, redis_url(home), args.service, start=args.start, end=args.end,
                                fraction=args.fraction, out=args.out)
    print(result.render() + f" → {args.out}")
    return 0




def _skew_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--users", type=int, default=1000, help="users sampled from the user snapshots (default 1000)")
    p.add_argument("--seed", type=int, default=0)


@command("skew", "served user features (Redis) against the offline point-in-time join, per feature",
         _skew_args)
def _skew(args: argparse.Namespace, home: Home) -> int:
    """Exit 1 when any served value differs from what a training row at the same time gets."""
    import pandas as pd

    from serving.core import redis_client
    from serving.skew import skew_check
    from vitrine.featurestore.repo import feature_store, project_name
    from vitrine.online.redis_local import redis_url

    url = redis_url(home)
    ids = pd.read_parquet(home.features / "user_behaviour", columns=["user_id"])["user_id"].drop_duplicates()
    users = ids.sample(min(args.users, len(ids)), random_state=args.seed).astype(str).tolist()
    client = redis_client(url, 5.0)
    try:
        report = skew_check(feature_store(home, url), client, project_name(), users)
    finally:
        client.close()
    print(report.render())
    return 1 if report.mismatches else 0
