"""`vitrine train retrieval`: a two-tower version from the home's feature store.

Positives are the labelled samples with a click (first per user, item and session), joined
point in time with the `two_tower_v1` service through Feast; the catalogue to embed is every
item's latest attributes and stats. The version is published as `latest` once it verifies.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training.two_tower import TrainedTwoTower, TwoTowerSettings, train
from vitrine.config import Home
from vitrine.featurestore.training import build_training_set, load_samples
from vitrine.versions import new_version_dir, publish


def latest_rows(path: Path, key: str, prefix: str) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df = df.sort_values("event_timestamp").drop_duplicates(key, keep="last")
    return df.drop(columns=["event_timestamp"]).rename(columns={c: f"{prefix}__{c}" for c in df if c != key})


def item_catalogue(home: Home) -> pd.DataFrame:
    """Every item's latest attributes and stats, in two_tower_v1 column names."""
    attrs = latest_rows(home.features / "item_attributes", "item_id", "item_attributes")
    stats = latest_rows(home.features / "item_stats", "item_id", "item_stats")
    return attrs.merge(stats, on="item_id", how="left").sort_values("item_id").reset_index(drop=True)


def train_retrieval(home: Home, redis_url: str, *, settings: TwoTowerSettings | None = None,
                    fraction: float | None = None, progress: bool = False) -> TrainedTwoTower:
    samples = load_samples(home, fraction=fraction)
    positives = samples[samples["label_click"] == 1][["user_id", "item_id", "event_timestamp"]]
    rows = build_training_set(home, redis_url, "two_tower_v1", entity_df=positives)
    catalogue = item_catalogue(home)
    out = new_version_dir(home, "two_tower")
    from retrieval.tables import user_frame

    trained = train(rows.frame, catalogue, out_dir=out, settings=settings or TwoTowerSettings(),
                    data_window=rows.window, users=user_frame(home.features), progress=progress)
    publish(home, "two_tower", out)
    return trained


def cli_train(args, home: Home) -> None:
    import sys

    from vitrine.online.redis_local import redis_url

    settings = TwoTowerSettings() if args.epochs is None else TwoTowerSettings(epochs=args.epochs)
    trained = train_retrieval(home, redis_url(home), settings=settings, fraction=args.fraction,
                              progress=sys.stderr.isatty())
    m = trained.manifest
    print(f"two-tower {m['version']}: {m['metrics']['positives']:,} positives, {m['metrics']['items']:,} items "
          f"embedded, loss {m['metrics']['train_loss'][0]:.3f} → {m['metrics']['train_loss'][-1]:.3f}; "
          f"published as latest in {trained.directory.parent}")
