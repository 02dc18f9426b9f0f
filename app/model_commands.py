"""Commands on models and answers: train, evaluate, serve, recommend, schema, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.registry import PRESET_NAMES, command
from vitrine.config import Home

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
    p.add_argument("--negatives", choices=["auto", "recall", "popularity"], default="auto",
                   help="ranking, on a log without impressions: negatives from recall candidates (auto) "
                        "or popularity-drawn (the Spark samples)")
    p.add_argument("--service", default=None,
                   help="ranking: the teacher's feature service, its inputs (default ranker_v1)")
    p.add_argument("--student-service", default=None,
                   help="ranking: the FM student's feature service (default coarse_v1)")
    p.add_argument("--tower-service", default=None,
                   help="retrieval: the two-tower's feature service (default two_tower_v1)")


@command("train", "train model versions from the feature store and publish them", _train_args)
def _train(args: argparse.Namespace, home: Home) -> int:
    if args.model in ("all", "retrieval"):
        from training.retrieval.pipeline import cli_train

        cli_train(args, home)
    if args.model in ("all", "ranking"):
        from training.ranking.pipeline import cli_train

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

    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None),
                 "http_port": getattr(args, "http_port", None),
                 "consumers": False if getattr(args, "no_consumers", False) else None}
    return (ServingConfig.from_json(args.config, **overrides) if args.config
            else ServingConfig(**{k: v for k, v in overrides.items() if v is not None}))


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None,
                   help="address to bind (default 127.0.0.1; beyond loopback needs a write token: docs/security.md)")
    p.add_argument("--port", type=int, default=None, help="gRPC port (default 50051; 0 = any free port)")
    p.add_argument("--http-port", type=int, default=None,
                   help="HTTP gateway port: POST /collect, GET /recommend, /metrics (default 8080)")
    p.add_argument("--config", type=Path, default=None, help="serving settings (JSON): budgets, A/B strategies, ...")
    p.add_argument("--processes", type=int, default=1,
                   help="server processes sharing the gRPC port (SO_REUSEPORT); about one per core (default 1)")
    p.add_argument("--no-http", action="store_true", help="no HTTP gateway")
    p.add_argument("--no-consumers", action="store_true",
                   help="do not run the event stream's consumers here (`vitrine consume` runs them)")


@command("serve", "run the gRPC Recommend server (and its HTTP gateway) on this home", _serve_args)
def _serve(args: argparse.Namespace, home: Home) -> int:
    from serving.threads import limit_threads

    limit_threads()
    from serving.core import Core
    from serving.metrics import configure_logging
    from serving.server import serve_forever, start_server

    if args.processes > 1:
        from serving.processes import serve_processes

        return serve_processes(home.root, args.processes, args.port, args.http_port, args.config,
                               consumers=not args.no_consumers, host=args.host)
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
    from dataclasses import replace

    from serving.batch import recommend_batch, recommend_one

    config = replace(_serving_config(args), exposures=False)  # answers computed here are not shown
    if args.users is not None:
        if args.out is None:
            raise ValueError("--users needs --out FILE (the CSV to write)")
        summary = recommend_batch(home, config, args.users, args.k, args.out)
        print(summary)
    else:
        print(recommend_one(home, config, args.user, args.k, as_json=args.json))
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
    from app.main_job import run_demo

    return run_demo(home, preset=args.preset, seed=args.seed)


