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

from retrieval.tower_inputs import (
    ITEM_COLUMNS,
    ITEM_NUMERIC,
    USER_COLUMNS,
    USER_NUMERIC,
    Vocabularies,
    item_inputs,
    title_tokens,
    user_inputs,
)
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


def build_vocabularies(positives: pd.DataFrame, catalogue: pd.DataFrame) -> Vocabularies:
    def values(*series: pd.Series) -> list[str]:
        out: set[str] = set()
        for s in series:
            out |= {str(v) for v in s.dropna().tolist() if str(v)}
        return sorted(out)

    u, c = user_inputs(positives), item_inputs(catalogue)
    p_items = item_inputs(positives)
    vocab = Vocabularies(
        users=values(positives["user_id"]),
        items=values(catalogue["item_id"], positives["item_id"]),
    )
    for name, arr in u.items():
        if arr.dtype == object and arr.ndim == 1 and name != "user_id":
            vocab.values[name] = values(pd.Series(arr))
    for name in ("category", "top_category", "brand"):
        vocab.values[name] = values(pd.Series(c[name]), pd.Series(p_items[name]),
                                    pd.Series(u["top_categorys"].ravel()) if name == "category" else pd.Series([]))
    titles = pd.Series(title_tokens(catalogue[ITEM_COLUMNS["title"]]).ravel())
    vocab.values["title"] = titles[titles != ""].value_counts().head(5000).index.sort_values().tolist()
    for name, known in vocab.values.items():
        if not known:  # e.g. no users catalogue: every profile value unknown (Keras refuses [])
            vocab.values[name] = [NO_VALUES]
    for name in USER_NUMERIC:
        x = u[name]
        vocab.numeric_stats[f"user_{name}"] = (float(x.mean()), float(x.std() or 1.0))
    both = {n: np.concatenate([c[n], p_items[n]]) for n in ITEM_NUMERIC}
    for name, x in both.items():
        vocab.numeric_stats[f"item_{name}"] = (float(x.mean()), float(x.std() or 1.0))
    return vocab


def _dataset(positives: pd.DataFrame, batch_size: int, seed: int, shuffle: bool):
    import tensorflow as tf

    counts = positives["item_id"].map(positives["item_id"].value_counts())
    probability = (counts / len(positives)).to_numpy(dtype=np.float32)
    data = {"user": user_inputs(positives), "item": item_inputs(positives), "item_probability": probability}
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        ds = ds.shuffle(len(positives), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def embed_items(item_tower, catalogue: pd.DataFrame, batch: int = 4096) -> np.ndarray:
    inputs = item_inputs(catalogue)
    out = [item_tower({k: v[i:i + batch] for k, v in inputs.items()}).numpy()
           for i in range(0, len(catalogue), batch)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1), np.float32)


def embed_users(user_tower, users: pd.DataFrame, batch: int = 4096) -> np.ndarray:
    inputs = user_inputs(users)
    out = [user_tower({k: v[i:i + batch] for k, v in inputs.items()}).numpy() for i in range(0, len(users), batch)]
    return np.concatenate(out).astype(np.float32)


def train(positives: pd.DataFrame, catalogue: pd.DataFrame, *, out_dir: Path,
          settings: TwoTowerSettings = DEFAULT_SETTINGS, data_window: tuple[str, str] | None = None,
          users: pd.DataFrame | None = None, progress: bool = False) -> TrainedTwoTower:
    """Fit on `positives` (user_id, item_id + two_tower_v1 columns, one row per engagement),
    embed every `catalogue` item, and write a version to `out_dir`. `users` (user_id + the
    user columns, one row per user: the latest snapshot) are embedded too, so serving needs
    the user tower only for users whose real-time behaviour changed since."""
    import tensorflow as tf

    from training.retrieval.model import USER_SPECS, TwoTowerModel, serving_function

    if positives.empty:
        raise ValueError("no positive rows to train the two-tower model on")
    missing = [c for c in (*USER_COLUMNS.values(), *ITEM_COLUMNS.values()) if c not in positives]
    if missing:
        raise ValueError(f"training rows lack {FEATURE_SERVICE} columns {missing[:5]}")
    tf.keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    vocab = build_vocabularies(positives, catalogue)
    model = TwoTowerModel(vocab, settings)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(settings.learning_rate))
    history = model.fit(_dataset(positives, settings.batch_size, settings.seed, True), epochs=settings.epochs,
                        verbose=1 if progress else 0)
    embeddings = embed_items(model.item_tower, catalogue)
    item_ids = catalogue["item_id"].astype(str).tolist()

    out_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(model.user_tower, str(out_dir / "user_tower"),
                        signatures={"serving_default": serving_function(model.user_tower, USER_SPECS)})
    np.save(out_dir / "item_embeddings.npy", embeddings)
    (out_dir / "item_ids.json").write_text(json.dumps(item_ids))
    if users is not None and len(users):
        np.save(out_dir / "user_embeddings.npy", embed_users(model.user_tower, users))
        (out_dir / "user_ids.json").write_text(json.dumps(users["user_id"].astype(str).tolist()))
    (out_dir / "vocabularies.json").write_text(json.dumps(vocab.to_json()))
    losses = [float(x) for x in history.history.get("loss", [])]
    manifest = write_manifest(
        out_dir, model="two_tower", feature_service=FEATURE_SERVICE,
        data_window=list(data_window) if data_window else None,
        settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()},
        metrics={"train_loss": losses, "positives": len(positives), "users": len(vocab.users),
                 "items": len(item_ids), "users_embedded": 0 if users is None else len(users)},
    )
    return TrainedTwoTower(out_dir, manifest, item_ids, embeddings, model.user_tower)
