"""Commands on the streams and what they log: consume (the consumers as a deployment of their
own), report ab (A/B results from the exposure and event logs)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from app.registry import command
from vitrine.config import Home


def _consume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="serving settings (JSON): dedup_window_s, log_batch_events, log_batch_seconds, ...")
    p.add_argument("--drain", action="store_true",
                   help="process everything appended so far (into the log, applied), then exit")


@command("consume", "run the event stream's consumers (event-log writer, real-time features) on this home",
         _consume_args)
def _consume(args: argparse.Namespace, home: Home) -> int:
    from serving.config import ServingConfig
    from serving.consumers import Consumers
    from serving.metrics import configure_logging
    from vitrine.online.redis_local import redis_url

    configure_logging()
    config = ServingConfig.from_json(args.config) if args.config else ServingConfig()
    consumers = Consumers.for_home(home, config, redis_url(home))
    if args.drain:
        consumers.drain(timeout_s=600)
        consumers.stop()
        print(f"drained: {consumers.writer.committed:,} events written to the log, "
              f"{consumers.updater.applied:,} applied to real-time features", flush=True)
        return 0
    from serving.core import settle_heap

    settle_heap()  # what is loaded stays out of the collector's full passes (pauses of the real-time updates)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    consumers.start()
    print(f"consuming the event stream of {home.root} (consumer {consumers.updater.consumer}); Ctrl-C stops",
          flush=True)
    done.wait()
    consumers.stop()
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["ab"], help="ab: per A/B arm, exposures, CTR, CVR, revenue with CIs")
    p.add_argument("--since", default=None, help="only answers and events from this time on (ISO-8601)")
    p.add_argument("--control", default=None, help="the arm the others are tested against (default: the largest)")


@command("report", "reports from the logs: A/B results per arm (exposures joined to events)", _report_args)
def _report(args: argparse.Namespace, home: Home) -> int:
    import pandas as pd

    from evaluation.ab import ab_results, markdown, write_report

    since = None
    if args.since:
        since = pd.Timestamp(args.since)
        since = since.tz_localize("UTC") if since.tzinfo is None else since.tz_convert("UTC")
    results = ab_results(home, since=since, control=args.control)
    print(markdown(results))
    out = write_report(home, results)
    print(f"written to {out}", flush=True)
    return 0
