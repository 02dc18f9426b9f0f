"""`vitrine train retrieval`: a two-tower version from the home's feature store.

Positives are the labelled samples with a click (first per user, item and session), joined
point in time with the `two_tower_v1` service through Feast; the catalogue to embed is every
item's latest attributes and stats. The version is published as `latest` once it verifies.
"""

from __future__ import annotations

from retrieval.tables import item_frame, user_frame
from training.retrieval.two_tower import TrainedTwoTower, TwoTowerSettings, train
from vitrine.config import Home
from vitrine.featurestore.training import build_training_set, load_samples
from vitrine.versions import new_version_dir, publish


def train_retrieval(home: Home, redis_url: str, *, settings: TwoTowerSettings | None = None,
                    fraction: float | None = None, progress: bool = False) -> TrainedTwoTower:
    samples = load_samples(home, fraction=fraction)
    positives = samples[samples["label_click"] == 1][["user_id", "item_id", "event_timestamp"]]
    rows = build_training_set(home, redis_url, "two_tower_v1", entity_df=positives)
    catalogue = item_frame(home.features)  # every item's latest attributes and stats
    out = new_version_dir(home, "two_tower")
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
