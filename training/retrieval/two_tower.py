"""TFRS two-tower training: `train(...)` turns a Feast point-in-time set of positive
(user, item) rows into a versioned model — a SavedModel user tower plus item embeddings
with a manifest. The CLI, tests and tuning all call `train` with typed settings.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS 0.7 needs Keras 2 (tf-keras)

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrieval.tower_inputs import TITLE_VOCABULARY, TowerLayout, Vocabularies, item_inputs, text_tokens, user_inputs
from retrieval.two_tower import LAYOUT
from training.retrieval.settings import TwoTowerSettings
from vitrine.versions import write_manifest

FEATURE_SERVICE = "two_tower_v1"
DEFAULT_SETTINGS = TwoTowerSettings()
NO_VALUES = "<none seen in training>"  # the single entry of a vocabulary that saw no values


@dataclass
class TrainedTwoTower:
    directory: Path
    manifest: dict
    item_ids: list[str]
    item_embeddings: np.ndarray
    user_tower: object  # the Keras user tower (in memory)


def build_vocabularies(layout: TowerLayout, positives: pd.DataFrame, catalogue: pd.DataFrame) -> Vocabularies:
    def values(*series: pd.Series) -> list[str]:
        out: set[str] = set()
        for s in series:
            out |= {str(v) for v in s.dropna().tolist() if str(v)}
        return sorted(out)

    u, c = user_inputs(layout, positives), item_inputs(layout, catalogue)
    p_items = item_inputs(layout, positives)
    vocab = Vocabularies(
        users=values(positives["user_id"]),
        items=values(catalogue["item_id"], positives["item_id"]),
    )
    for name in layout.user_categorical:
        vocab.values[name] = values(pd.Series(u[name]))
    for name in layout.item_categorical:  # with the values of the user bags that match the field
        bags = [pd.Series(u[b].ravel()) for b, matched in layout.user_bags.items() if matched == name]
        vocab.values[name] = values(pd.Series(c[name]), pd.Series(p_items[name]), *bags)
    for name in layout.item_text:
        tokens = pd.Series(text_tokens(catalogue[name] if name in catalogue else pd.Series([], dtype=object)).ravel())
        vocab.values[name] = tokens[tokens != ""].value_counts().head(TITLE_VOCABULARY).index.sort_values().tolist()
    for name, known in vocab.values.items():
        if not known:  # e.g. no users catalogue: every profile value unknown (Keras refuses [])
            vocab.values[name] = [NO_VALUES]
    for name in layout.user_numeric:
        x = u[name]
        vocab.numeric_stats[name] = (float(x.mean()), float(x.std() or 1.0))
    for name in layout.item_numeric:
        x = np.concatenate([c[name], p_items[name]])
        vocab.numeric_stats[name] = (float(x.mean()), float(x.std() or 1.0))
    return vocab


def _dataset(layout: TowerLayout, positives: pd.DataFrame, batch_size: int, seed: int, shuffle: bool):
    import tensorflow as tf

    counts = positives["item_id"].map(positives["item_id"].value_counts())
    probability = (counts / len(positives)).to_numpy(dtype=np.float32)
    data = {"user": user_inputs(layout, positives), "item": item_inputs(layout, positives),
            "item_probability": probability}
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        ds = ds.shuffle(len(positives), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def embed_items(layout: TowerLayout, item_tower, catalogue: pd.DataFrame, batch: int = 4096) -> np.ndarray:
    inputs = item_inputs(layout, catalogue)
    out = [item_tower({k: v[i:i + batch] for k, v in inputs.items()}).numpy()
           for i in range(0, len(catalogue), batch)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1), np.float32)


def embed_users(layout: TowerLayout, user_tower, users: pd.DataFrame, batch: int = 4096) -> np.ndarray:
    inputs = user_inputs(layout, users)
    out = [user_tower({k: v[i:i + batch] for k, v in inputs.items()}).numpy() for i in range(0, len(users), batch)]
    return np.concatenate(out).astype(np.float32)


def train(layout: TowerLayout, positives: pd.DataFrame, catalogue: pd.DataFrame, *, out_dir: Path,
          settings: TwoTowerSettings = DEFAULT_SETTINGS, data_window: tuple[str, str] | None = None,
          users: pd.DataFrame | None = None, progress: bool = False) -> TrainedTwoTower:
    """Fit on `positives` (user_id, item_id + the layout's columns, one row per engagement),
    embed every `catalogue` item, and write a version to `out_dir`. `users` (user_id + the
    user columns, one row per user: the latest snapshot) are embedded too, so serving needs
    the user tower only for users whose real-time behaviour changed since."""
    import tensorflow as tf

    from training.retrieval.model import TwoTowerModel, serving_function, user_specs

    if positives.empty:
        raise ValueError("no positive rows to train the two-tower model on")
    missing = [c for c in (*layout.user_columns, *layout.item_columns) if c not in positives]
    if missing:
        raise ValueError(f"training rows lack {layout.service} columns {missing[:5]}")
    tf.keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    vocab = build_vocabularies(layout, positives, catalogue)
    model = TwoTowerModel(layout, vocab, settings)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(settings.learning_rate))
    history = model.fit(_dataset(layout, positives, settings.batch_size, settings.seed, True), epochs=settings.epochs,
                        verbose=1 if progress else 0)
    embeddings = embed_items(layout, model.item_tower, catalogue)
    item_ids = catalogue["item_id"].astype(str).tolist()

    out_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(model.user_tower, str(out_dir / "user_tower"),
                        signatures={"serving_default": serving_function(model.user_tower, user_specs(layout))})
    np.save(out_dir / "item_embeddings.npy", embeddings)
    (out_dir / "item_ids.json").write_text(json.dumps(item_ids))
    if users is not None and len(users):
        np.save(out_dir / "user_embeddings.npy", embed_users(layout, model.user_tower, users))
        (out_dir / "user_ids.json").write_text(json.dumps(users["user_id"].astype(str).tolist()))
    (out_dir / "vocabularies.json").write_text(json.dumps(vocab.to_json()))
    (out_dir / LAYOUT).write_text(json.dumps(layout.to_json()))
    losses = [float(x) for x in history.history.get("loss", [])]
    manifest = write_manifest(
        out_dir, model="two_tower", feature_service=layout.service,
        data_window=list(data_window) if data_window else None,
        settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()},
        metrics={"train_loss": losses, "positives": len(positives), "users": len(vocab.users),
                 "items": len(item_ids), "users_embedded": 0 if users is None else len(users)},
    )
    return TrainedTwoTower(out_dir, manifest, item_ids, embeddings, model.user_tower)
