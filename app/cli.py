"""`vitrine`: one console script for every stage — the application layer's entry point.
It imports the command modules (which register their commands) and dispatches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import data_commands, model_commands, stream_commands  # noqa: F401  (register their commands)
from app.registry import COMMANDS
from vitrine.config import Home
from vitrine.errors import VitrineError

# --- entry point ------------------------------------------------------------------------

# commands whose libraries (Spark, TensorFlow, Feast) write warnings to stderr: those go to a log file
NOISY = ("features", "training-set", "train", "evaluate", "demo", "skew")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitrine", description="Vitrine: a feature-store-centric recommender system.")
    parser.add_argument("--home", default=None,
                        help="deployment directory (default: $VITRINE_HOME or ~/.vitrine)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure, fn) in COMMANDS.items():
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

            with library_output_to(home.logs / f"{args.command}.log") as path:
                if path is not None:
                    print(f"(library output: {path})", flush=True)
                return args.handler(args, home)
        return args.handler(args, home)
    except (VitrineError, ValueError, OSError) as e:
        print(f"vitrine {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
