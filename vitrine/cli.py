"""`vitrine`: one console script for every stage. Heavy libraries load inside the commands
that use them, so `vitrine --help` stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vitrine.config import Home
from vitrine.errors import VitrineError

PRESET_NAMES = ("tiny", "demo", "catalogue", "platform")  # vitrine.synth.presets (not imported: keeps --help fast)

Handler = Callable[[argparse.Namespace, Home], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = (help_text, configure, fn)
        return fn
    return register


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
    from vitrine.online.redis_local import ManagedRedis, ping, redis_url

    external = redis_url_from_env()
    managed = ManagedRedis(home.redis_dir)
    if args.action in ("start", "url"):
        print(redis_url(home))
    elif args.action == "stop":
        if external:
            print(f"VITRINE_REDIS_URL is set ({external}); Vitrine does not manage that server")
        else:
            print("stopped" if managed.stop() else "not running")
    else:
        url = external or managed.url
        up = url is not None and ping(url)
        print(f"{'external' if external else 'managed'} {url or '-'}: {'up' if up else 'down'}")
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
    from spark_jobs.session import SparkSettings
    from vitrine.online.redis_local import redis_url
    from vitrine.pipeline import run_feature_pipeline

    run_feature_pipeline(home, redis=redis_url(home),
                         spark_settings=SparkSettings.from_env(args.spark_master, args.spark_conf),
                         as_of=args.as_of, snapshot_days=args.snapshot_days, only=args.only,
                         skip_jobs=args.skip_jobs, full=args.full)
    return 0


def _feast_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("feast_args", nargs=argparse.REMAINDER, help="arguments for feast, e.g. apply")


@command("feast", "run the Feast CLI on feature_repo/ against this home (e.g. `vitrine feast apply`)",
         _feast_args)
def _feast(args: argparse.Namespace, home: Home) -> int:
    from vitrine.featurestore.realtime import ensure_table
    from vitrine.featurestore.repo import run_feast
    from vitrine.online.redis_local import redis_url

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


# --- train / evaluate --------------------------------------------------------------------
# Each model family owns its `cli_train(args, home)` / `cli_evaluate(args, home)` in its own
# module; these commands only parse and dispatch.

def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default="all", choices=["all", "retrieval", "ranking"],
                   help="what to train (default all: every model the server needs, in order)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs")
    p.add_argument("--fraction", type=float, default=None, help="random fraction of the labelled samples")
    p.add_argument("--tune", choices=["pso", "random"], default=None, help="ranking: hyper-parameter search")
    p.add_argument("--budget", type=int, default=None, help="ranking: tuning trials")


@command("train", "train model versions from the feature store and publish them", _train_args)
def _train(args: argparse.Namespace, home: Home) -> int:
    if args.model in ("all", "retrieval"):
        from training.retrieval_pipeline import cli_train

        cli_train(args, home)
    if args.model in ("all", "ranking"):
        from training.ranking_pipeline import cli_train

        cli_train(args, home)
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=["pipeline", "retrieval", "ranking"],
                   help="pipeline: the served answer stage by stage vs tuned baselines on a time split")
    p.add_argument("--split", choices=["global", "user"], default="global",
                   help="pipeline: one global time cut (default) or each user's last fraction")
    p.add_argument("--holdout", type=float, default=0.2, help="pipeline: held-out fraction (default 0.2)")
    p.add_argument("--users", type=int, default=1000, help="pipeline: at most this many users per cut")
    p.add_argument("--trials", type=int, default=40, help="pipeline: trials for the recall blend "
                   "(each baseline gets at most as many settings)")
    p.add_argument("--objective", choices=["recall@20", "recall+ndcg@20"], default="recall@20",
                   help="pipeline: what the blend search, stage switches and baselines maximise on validation")
    p.add_argument("--no-rankers", action="store_true", help="pipeline: skip training the rankers per cut")
    p.add_argument("--no-publish", action="store_true", help="pipeline: do not publish the chosen policy")
    p.add_argument("--out", type=Path, default=None, help="directory for the table and plots "
                   "(default <home>/reports/<model>)")
    p.add_argument("--k", type=int, nargs="+", default=None,
                   help="cut-offs (retrieval: default 20 50 100; pipeline: 10 20 50, 20 always)")
    p.add_argument("--fraction", type=float, default=None, help="random fraction of the samples/users")
    p.add_argument("--epochs", type=int, default=None, help="epochs for models trained for the evaluation")


@command("evaluate", "evaluate trained models side by side with baselines: table + plot", _evaluate_args)
def _evaluate(args: argparse.Namespace, home: Home) -> int:
    if args.model == "pipeline":
        from evaluation.pipeline import cli_evaluate
    elif args.model == "retrieval":
        from evaluation.retrieval import cli_evaluate
    else:
        from evaluation.ranking import cli_evaluate
    return cli_evaluate(args, home)


# --- serve / recommend --------------------------------------------------------------------
# The server and its in-process core live in serving/; thread counts are set before NumPy/TF load.

def _serving_config(args: argparse.Namespace):
    from serving.config import ServingConfig

    overrides = {"port": getattr(args, "port", None), "http_port": getattr(args, "http_port", None)}
    return (ServingConfig.from_json(args.config, **overrides) if args.config
            else ServingConfig(**{k: v for k, v in overrides.items() if v is not None}))


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=None, help="gRPC port (default 50051; 0 = any free port)")
    p.add_argument("--http-port", type=int, default=None,
                   help="HTTP gateway port: POST /collect, GET /recommend, /metrics (default 8080)")
    p.add_argument("--config", type=Path, default=None, help="serving settings (JSON): budgets, A/B strategies, ...")
    p.add_argument("--processes", type=int, default=1,
                   help="server processes sharing the gRPC port (SO_REUSEPORT); about one per core (default 1)")
    p.add_argument("--no-http", action="store_true", help="no HTTP gateway")


@command("serve", "run the gRPC Recommend server (and its HTTP gateway) on this home", _serve_args)
def _serve(args: argparse.Namespace, home: Home) -> int:
    from serving.threads import limit_threads

    limit_threads()
    from serving.core import Core
    from serving.metrics import configure_logging
    from serving.server import serve_forever, start_server

    if args.processes > 1:
        from serving.processes import serve_processes

        return serve_processes(home.root, args.processes, args.port, args.http_port, args.config)
    configure_logging()
    running = start_server(Core(home, _serving_config(args)), http_port=None if args.no_http else -1)
    gateway = f", HTTP on {running.gateway.port}" if running.gateway else ""
    print(f"serving {home.root}: gRPC on {running.address}{gateway} "
          f"(models: {running.core.models.current.version_string()}); Ctrl-C stops", flush=True)
    serve_forever(running)
    return 0


def _recommend_args(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one user id")
    who.add_argument("--users", type=Path, help="a file of user ids, one per line (batch; needs --out)")
    p.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    p.add_argument("--out", type=Path, default=None, help="batch: CSV user_id,rank,item_id,score")
    p.add_argument("--json", action="store_true", help="one user: print the whole answer as JSON")
    p.add_argument("--config", type=Path, default=None, help="serving settings (JSON)")


@command("recommend", "recommendations from the home's models, in process (no server needed)", _recommend_args)
def _recommend(args: argparse.Namespace, home: Home) -> int:
    from serving.threads import limit_threads

    limit_threads()
    from serving.batch import recommend_batch, recommend_one

    if args.users is not None:
        if args.out is None:
            raise ValueError("--users needs --out FILE (the CSV to write)")
        summary = recommend_batch(home, _serving_config(args), args.users, args.k, args.out)
        print(summary)
    else:
        print(recommend_one(home, _serving_config(args), args.user, args.k, as_json=args.json))
    return 0


# --- schema -----------------------------------------------------------------------------

def _schema_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--markdown", action="store_true", help="print docs/data.md")


@command("schema", "show the data contracts (events, users, items, merchants)", _schema_args)
def _schema(args: argparse.Namespace, home: Home) -> int:
    from vitrine.data.schemas import ALL_TABLES, render_markdown

    if args.markdown:
        print(render_markdown())
    else:
        for table in ALL_TABLES.values():
            cols = ", ".join(c.name + ("*" if c.required else "") for c in table.columns)
            print(f"{table.name}: {cols}")
        print("(* required)")
    return 0


# --- demo -------------------------------------------------------------------------------

def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="demo", choices=list(PRESET_NAMES))
    p.add_argument("--seed", type=int, default=0)


@command("demo", "the main job end to end on embedded defaults", _demo_args)
def _demo(args: argparse.Namespace, home: Home) -> int:
    from vitrine.pipeline import run_demo

    return run_demo(home, preset=args.preset, seed=args.seed)


# --- entry point ------------------------------------------------------------------------

# commands whose libraries (Spark, TensorFlow, Feast) write warnings to stderr: those go to a log file
NOISY = ("features", "training-set", "train", "evaluate", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitrine", description="Vitrine: a feature-store-centric recommender system.")
    parser.add_argument("--home", default=None,
                        help="deployment directory (default: $VITRINE_HOME or ~/.vitrine)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    home = Home.resolve(args.home)
    try:
        if args.command in NOISY:
            from vitrine.console import library_output_to

            with library_output_to(home.root / "logs" / f"{args.command}.log") as path:
                if path is not None:
                    print(f"(library output: {path})", flush=True)
                return args.handler(args, home)
        return args.handler(args, home)
    except (VitrineError, ValueError, OSError) as e:
        print(f"vitrine {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
