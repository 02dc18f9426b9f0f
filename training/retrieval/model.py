"""The two towers (Keras layers) and the TFRS model that wires them to the retrieval task.

The towers compute embeddings; the task (`tfrs.tasks.Retrieval`, in-batch softmax with the
log of each candidate's sampling probability subtracted, and accidental hits removed) owns
the loss — the split TFRS's own models use.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf
import tensorflow_recommenders as tfrs

from retrieval.tower_inputs import (
    ITEM_CATEGORICAL,
    ITEM_NUMERIC,
    RECENT,
    TITLE_TOKENS,
    TOP_CATEGORIES,
    USER_CATEGORICAL,
    USER_NUMERIC,
    Vocabularies,
)
from training.retrieval.settings import TwoTowerSettings


def _lookup(vocabulary: list[str], mask: bool = False) -> tf.keras.layers.StringLookup:
    return tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token="" if mask else None,
                                        num_oov_indices=1)


class _Normalise(tf.keras.layers.Layer):
    """(x - mean) / std with statistics fixed at training time (saved with the model)."""

    def __init__(self, stats: dict[str, tuple[float, float]], names: tuple[str, ...], **kw):
        super().__init__(**kw)
        self.names = names
        self.mean = tf.constant([stats[n][0] for n in names], dtype=tf.float32)
        self.std = tf.constant([max(stats[n][1], 1e-6) for n in names], dtype=tf.float32)

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        x = tf.stack([tf.cast(inputs[n], tf.float32) for n in self.names], axis=1)
        return (x - self.mean) / self.std


def _bag(lookup, embedding, values: tf.Tensor) -> tf.Tensor:
    """Mean embedding of a padded list of strings ('' is padding)."""
    ids = lookup(values)
    vectors = embedding(ids)
    mask = tf.cast(tf.not_equal(values, ""), tf.float32)[..., None]
    return tf.reduce_sum(vectors * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def _mlp(settings: TwoTowerSettings, name: str) -> tf.keras.Sequential:
    layers = [tf.keras.layers.Dense(h, activation="relu") for h in settings.hidden]
    layers.append(tf.keras.layers.Dense(settings.embedding_dim))
    return tf.keras.Sequential(layers, name=name)


class ItemIds(tf.keras.layers.Layer):
    """The item-id embedding, shared by the item tower and the user's recent items."""

    def __init__(self, vocab: Vocabularies, dim: int, **kw):
        super().__init__(**kw)
        self.lookup = _lookup(vocab.items, mask=True)
        self.embedding = tf.keras.layers.Embedding(len(vocab.items) + 2, dim)


class UserTower(tf.keras.Model):
    def __init__(self, vocab: Vocabularies, settings: TwoTowerSettings, item_ids: ItemIds):
        super().__init__(name="user_tower")
        self.item_ids = item_ids
        self.user_lookup = _lookup(vocab.users)
        self.user_embedding = tf.keras.layers.Embedding(len(vocab.users) + 1, settings.id_dim)
        self.cat = {n: (_lookup(vocab.values[n]), tf.keras.layers.Embedding(len(vocab.values[n]) + 1,
                                                                            settings.feature_dim))
                    for n in USER_CATEGORICAL}
        self.pref_lookup = _lookup(vocab.values["category"], mask=True)
        self.pref_embedding = tf.keras.layers.Embedding(len(vocab.values["category"]) + 2, settings.feature_dim)
        self.numeric = _Normalise(vocab.numeric_stats, tuple(f"user_{n}" for n in USER_NUMERIC))
        self.mlp = _mlp(settings, "user_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.user_embedding(self.user_lookup(f["user_id"]))]
        parts += [emb(lookup(f[n])) for n, (lookup, emb) in self.cat.items()]
        parts.append(self.numeric({f"user_{n}": f[n] for n in USER_NUMERIC}))
        parts.append(_bag(self.pref_lookup, self.pref_embedding, f["top_categorys"]))
        parts.append(_bag(self.item_ids.lookup, self.item_ids.embedding, f["recent_items"]))
        return tf.math.l2_normalize(self.mlp(tf.concat(parts, axis=1)), axis=1)



class ItemTower(tf.keras.Model):
    def __init__(self, vocab: Vocabularies, settings: TwoTowerSettings, item_ids: ItemIds):
        super().__init__(name="item_tower")
        self.item_ids = item_ids
        self.cat = {n: (_lookup(vocab.values[n]), tf.keras.layers.Embedding(len(vocab.values[n]) + 1,
                                                                            settings.feature_dim))
                    for n in ITEM_CATEGORICAL}
        self.title_lookup = _lookup(vocab.values["title"], mask=True)
        self.title_embedding = tf.keras.layers.Embedding(len(vocab.values["title"]) + 2, settings.feature_dim)
        self.numeric = _Normalise(vocab.numeric_stats, tuple(f"item_{n}" for n in ITEM_NUMERIC))
        self.mlp = _mlp(settings, "item_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.item_ids.embedding(self.item_ids.lookup(f["item_id"]))]
        parts += [emb(lookup(f[n])) for n, (lookup, emb) in self.cat.items()]
        parts.append(self.numeric({f"item_{n}": f[n] for n in ITEM_NUMERIC}))
        parts.append(_bag(self.title_lookup, self.title_embedding, f["title"]))
        return tf.math.l2_normalize(self.mlp(tf.concat(parts, axis=1)), axis=1)



USER_SPECS = {
    "user_id": tf.TensorSpec([None], tf.string),
    **{n: tf.TensorSpec([None], tf.string) for n in USER_CATEGORICAL},
    **{n: tf.TensorSpec([None], tf.float32) for n in USER_NUMERIC},
    "top_categorys": tf.TensorSpec([None, TOP_CATEGORIES], tf.string),
    "recent_items": tf.TensorSpec([None, RECENT], tf.string),
}
ITEM_SPECS = {
    "item_id": tf.TensorSpec([None], tf.string),
    **{n: tf.TensorSpec([None], tf.string) for n in ITEM_CATEGORICAL},
    **{n: tf.TensorSpec([None], tf.float32) for n in ITEM_NUMERIC},
    "title": tf.TensorSpec([None, TITLE_TOKENS], tf.string),
}


def serving_function(tower: tf.keras.Model, specs: dict[str, tf.TensorSpec]):
    """A tf.function with one named argument per input (the SavedModel signature)."""
    names = list(specs)

    @tf.function(input_signature=[tf.TensorSpec(specs[n].shape, specs[n].dtype, name=n) for n in names])
    def serve(*args):
        return {"embedding": tower(dict(zip(names, args, strict=True)))}

    return serve


class TwoTowerModel(tfrs.Model):
    """Towers in, loss out: the retrieval task scores every user against every item of the batch."""

    def __init__(self, vocab: Vocabularies, settings: TwoTowerSettings):
        super().__init__()
        shared = ItemIds(vocab, settings.id_dim)
        self.user_tower = UserTower(vocab, settings, shared)
        self.item_tower = ItemTower(vocab, settings, shared)
        self.settings = settings
        self.task = tfrs.tasks.Retrieval(temperature=settings.temperature, remove_accidental_hits=True)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users = self.user_tower(features["user"])
        items = self.item_tower(features["item"])
        probability = features["item_probability"] if self.settings.log_q else None
        return self.task(users, items, candidate_sampling_probability=probability,
                         candidate_ids=features["item"]["item_id"], compute_metrics=not training)
