"""Temporal hold-out for retrieval: everything up to a split time trains (features, item-CF,
ALS, content, two-tower), each user's interactions after it are held out.

The split is one time for all users (the start of the log's last `days` calendar days), so the
held-out interactions are every evaluated user's last ones *and* no feature, neighbour list
or model sees anything after the split — a per-user split with shared item-CF/ALS tables
would leak other users' later behaviour into them. The evaluation home lives under
`<home>/eval/retrieval/`: links to the home's event log and catalogues, its own feature
tables (Spark, as of the split), its own Feast registry and project (so nothing it does
touches the home's online store) and its own two-tower version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from vitrine.config import Home
from vitrine.errors import VitrineError

POSITIVE_TYPES = ("click", "add_to_cart", "purchase")
EVAL_PROJECT = "vitrine_eval"
SPILLOVER = timedelta(hours=2)


@dataclass
class HoldOut:
    split: datetime  # training sees events strictly before this
    end: datetime  # the log's last event
    train: pd.DataFrame  # user_id, item_id, event_type, event_time — positives before the split
    test: dict[str, set[str]]  # user → items engaged with after the split, new to that user


def load_positives(home: Home) -> pd.DataFrame:
    import pyarrow.dataset as ds

    if not home.events.exists():
        raise VitrineError(f"no event log in {home.events}: ingest events first")
    dataset = ds.dataset(str(home.events), format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["user_id", "item_id", "event_type", "event_time"],
                             filter=ds.field("event_type").isin(list(POSITIVE_TYPES)))
    df = table.to_pandas()
    df["event_time"] = pd.to_datetime(df["event_time"], utc=True)
    return df


def split_holdout(positives: pd.DataFrame, days: int = 1) -> HoldOut:
    if positives.empty:
        raise VitrineError("the event log has no clicks, carts or purchases to evaluate retrieval on")
    end = positives["event_time"].max().to_pydatetime()
    # the last `days` calendar days; sessions that run up to SPILLOVER past the log's last
    # midnight belong to the day before (else a log ending at 00:20 holds out 20 minutes)
    last_day = (end - SPILLOVER).date()
    split = datetime.combine(last_day, datetime.min.time(), UTC) - timedelta(days=days - 1)
    train = positives[positives["event_time"] < split]
    if train.empty:
        raise VitrineError(f"nothing before the split {split:%Y-%m-%d}: the log needs more than {days} day(s)")
    after = positives[positives["event_time"] >= split]
    known = set(zip(train["user_id"], train["item_id"], strict=True))
    test: dict[str, set[str]] = {}
    for user, item in zip(after["user_id"], after["item_id"], strict=True):
        if (user, item) not in known:
            test.setdefault(user, set()).add(item)
    return HoldOut(split, end, train, test)


def eval_home(home: Home) -> Home:
    """`<home>/eval/retrieval`, sharing the home's log and catalogues by symlink."""
    sub = Home(home.evaluations / "retrieval")
    sub.root.mkdir(parents=True, exist_ok=True)
    for name in ("events", "catalog"):
        link, target = sub.root / name, getattr(home, name)
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return sub


def eval_project():
    """Feast project of evaluation homes: its registry and any Redis keys stay apart."""
    from evaluation.replay import feast_project

    return feast_project(EVAL_PROJECT)


def prepare(home: Home, redis_url: str, holdout: HoldOut, *, epochs: int | None = None,
            spark_settings=None, log=print) -> tuple[Home, object]:
    """Features as of the split (Spark), `feast apply` for the evaluation project, and a
    two-tower version trained on the samples before the split. Returns (eval home, trained)."""
    from spark_jobs.run import run_features
    from spark_jobs.session import spark_session
    from training.retrieval.pipeline import train_retrieval
    from training.retrieval.two_tower import TwoTowerSettings
    from vitrine.featurestore.realtime import ensure_table
    from vitrine.featurestore.repo import run_feast

    sub = eval_home(home)
    as_of = holdout.split - timedelta(microseconds=1)
    log(f"   · Spark features as of {as_of:%Y-%m-%d %H:%M:%S} → {sub.features}")
    run = run_features(sub, spark_session(spark_settings), as_of=as_of,
                       only=["user_behaviour", "user_profile", "item_stats", "item_attributes", "item_cf",
                             "content_neighbours", "als_user_factors", "als_item_factors", "samples"])
    log("     " + run.render().replace("\n", "\n     "))
    ensure_table(sub)
    with eval_project():
        run_feast(sub, redis_url, ["apply"], capture=True)
        log("   · two-tower on the samples before the split (Feast point-in-time join)")
        settings = TwoTowerSettings() if epochs is None else TwoTowerSettings(epochs=epochs)
        trained = train_retrieval(sub, redis_url, settings=settings)
    return sub, trained
