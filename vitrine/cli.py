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

Handler = Callable[[argparse.Namespace, Home], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = (help_text, configure, fn)
        return fn
    return register


# --- generate ---------------------------------------------------------------------------

def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=["tiny", "demo", "platform"],
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
    p.add_argument("--preset", default="demo", choices=["tiny", "demo", "platform"])
    p.add_argument("--seed", type=int, default=0)


@command("demo", "the main job end to end on embedded defaults", _demo_args)
def _demo(args: argparse.Namespace, home: Home) -> int:
    from vitrine.pipeline import run_demo

    return run_demo(home, preset=args.preset, seed=args.seed)


# --- entry point ------------------------------------------------------------------------

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
        return args.handler(args, home)
    except (VitrineError, ValueError, OSError) as e:
        print(f"vitrine {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
