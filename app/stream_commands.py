"""Commands on the event stream: consume (its consumers as a deployment of their own)."""

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
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    consumers.start()
    print(f"consuming the event stream of {home.root} (consumer {consumers.updater.consumer}); Ctrl-C stops",
          flush=True)
    done.wait()
    consumers.stop()
    return 0
