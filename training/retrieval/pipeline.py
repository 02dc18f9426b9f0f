"""`vitrine train retrieval`: a two-tower version from the home's feature store.

Positives are the labelled samples with a click (first per user, item and session), joined
point in time with the two-tower's feature service (`two_tower_v1` by default; its fields are
the towers' inputs, `retrieval/tower_inputs.py`) through Feast; the catalogue to embed is every
item's latest attributes and stats (and any other item view the service reads). The version
is published as `latest` once it verifies.
"""

from __future__ import annotations

from retrieval.tables import item_frame, user_frame
from retrieval.tower_inputs import TowerLayout
from training.retrieval.two_tower import FEATURE_SERVICE, TrainedTwoTower, TwoTowerSettings, train
from vitrine.config import Home
from vitrine.featurestore.contract import service_fields
from vitrine.featurestore.repo import feature_store
from vitrine.featurestore.training import build_training_set, load_samples
from vitrine.versions import new_version_dir, publish


def train_retrieval(home: Home, redis_url: str, *, settings: TwoTowerSettings | None = None,
                    fraction: float | None = None, progress: bool = False,
                    service: str = FEATURE_SERVICE) -> TrainedTwoTower:
    layout = TowerLayout(service, service_fields(feature_store(home, redis_url), service))
    samples = load_samples(home, fraction=fraction)
    positives = samples[samples["label_click"] == 1][["user_id", "item_id", "event_timestamp"]]
    rows = build_training_set(home, redis_url, service, entity_df=positives)
    catalogue = item_frame(home.features, views=tuple(layout.views("item")))  # every item's latest rows
    out = new_version_dir(home, "two_tower")
    trained = train(layout, rows.frame, catalogue, out_dir=out, settings=settings or TwoTowerSettings(),
                    data_window=rows.window, users=user_frame(home.features, views=tuple(layout.views("user"))),
                    progress=progress)
    publish(home, "two_tower", out)
    return trained


def cli_train(args, home: Home) -> None:
    import sys

    from vitrine.online.redis_local import redis_url

    settings = TwoTowerSettings() if args.epochs is None else TwoTowerSettings(epochs=args.epochs)
    trained = train_retrieval(home, redis_url(home), settings=settings, fraction=args.fraction,
                              progress=sys.stderr.isatty(),
                              service=getattr(args, "tower_service", None) or FEATURE_SERVICE)
    m = trained.manifest
    print(f"two-tower {m['version']}: {m['metrics']['positives']:,} positives, {m['metrics']['items']:,} items "
          f"embedded, loss {m['metrics']['train_loss'][0]:.3f} → {m['metrics']['train_loss'][-1]:.3f}; "
          f"published as latest in {trained.directory.parent}")
