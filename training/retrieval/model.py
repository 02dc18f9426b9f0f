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

from retrieval.tower_inputs import LIST_WIDTH, TowerLayout, Vocabularies
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


def _categorical(vocab: Vocabularies, column: str, dim: int, mask: bool = False):
    values = vocab.values[column]
    return _lookup(values, mask=mask), tf.keras.layers.Embedding(len(values) + (2 if mask else 1), dim)


class UserTower(tf.keras.Model):
    def __init__(self, layout: TowerLayout, vocab: Vocabularies, settings: TwoTowerSettings, item_ids: ItemIds):
        super().__init__(name="user_tower")
        self.layout = layout
        self.item_ids = item_ids
        self.user_lookup = _lookup(vocab.users)
        self.user_embedding = tf.keras.layers.Embedding(len(vocab.users) + 1, settings.id_dim)
        self.cat = {c: _categorical(vocab, c, settings.feature_dim) for c in layout.user_categorical}
        # a bag is embedded in the vocabulary of the item field it matches
        self.bags = {c: _categorical(vocab, item_column, settings.feature_dim, mask=True)
                     for c, item_column in layout.user_bags.items()}
        self.numeric = _Normalise(vocab.numeric_stats, tuple(layout.user_numeric)) if layout.user_numeric else None
        self.mlp = _mlp(settings, "user_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.user_embedding(self.user_lookup(f["user_id"]))]
        parts += [emb(lookup(f[c])) for c, (lookup, emb) in self.cat.items()]
        if self.numeric is not None:
            parts.append(self.numeric(f))
        parts += [_bag(lookup, emb, f[c]) for c, (lookup, emb) in self.bags.items()]
        parts += [_bag(self.item_ids.lookup, self.item_ids.embedding, f[c]) for c in self.layout.user_item_lists]
        return tf.math.l2_normalize(self.mlp(tf.concat(parts, axis=1)), axis=1)


class ItemTower(tf.keras.Model):
    def __init__(self, layout: TowerLayout, vocab: Vocabularies, settings: TwoTowerSettings, item_ids: ItemIds):
        super().__init__(name="item_tower")
        self.item_ids = item_ids
        self.cat = {c: _categorical(vocab, c, settings.feature_dim) for c in layout.item_categorical}
        self.text = {c: _categorical(vocab, c, settings.feature_dim, mask=True) for c in layout.item_text}
        self.numeric = _Normalise(vocab.numeric_stats, tuple(layout.item_numeric)) if layout.item_numeric else None
        self.mlp = _mlp(settings, "item_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.item_ids.embedding(self.item_ids.lookup(f["item_id"]))]
        parts += [emb(lookup(f[c])) for c, (lookup, emb) in self.cat.items()]
        if self.numeric is not None:
            parts.append(self.numeric(f))
        parts += [_bag(lookup, emb, f[c]) for c, (lookup, emb) in self.text.items()]
        return tf.math.l2_normalize(self.mlp(tf.concat(parts, axis=1)), axis=1)


def user_specs(layout: TowerLayout) -> dict[str, tf.TensorSpec]:
    """The user tower's serving signature: one named input per column (and `user_id`)."""
    return {"user_id": tf.TensorSpec([None], tf.string),
            **{c: tf.TensorSpec([None], tf.string) for c in layout.user_categorical},
            **{c: tf.TensorSpec([None], tf.float32) for c in layout.user_numeric},
            **{c: tf.TensorSpec([None, LIST_WIDTH["bag"]], tf.string) for c in layout.user_bags},
            **{c: tf.TensorSpec([None, LIST_WIDTH["item_ids"]], tf.string) for c in layout.user_item_lists}}


def serving_function(tower: tf.keras.Model, specs: dict[str, tf.TensorSpec]):
    """A tf.function with one named argument per input (the SavedModel signature)."""
    names = list(specs)

    @tf.function(input_signature=[tf.TensorSpec(specs[n].shape, specs[n].dtype, name=n) for n in names])
    def serve(*args):
        return {"embedding": tower(dict(zip(names, args, strict=True)))}

    return serve


class TwoTowerModel(tfrs.Model):
    """Towers in, loss out: the retrieval task scores every user against every item of the batch."""

    def __init__(self, layout: TowerLayout, vocab: Vocabularies, settings: TwoTowerSettings):
        super().__init__()
        shared = ItemIds(vocab, settings.id_dim)
        self.user_tower = UserTower(layout, vocab, settings, shared)
        self.item_tower = ItemTower(layout, vocab, settings, shared)
        self.settings = settings
        self.task = tfrs.tasks.Retrieval(temperature=settings.temperature, remove_accidental_hits=True)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users = self.user_tower(features["user"])
        items = self.item_tower(features["item"])
        probability = features["item_probability"] if self.settings.log_q else None
        return self.task(users, items, candidate_sampling_probability=probability,
                         candidate_ids=features["item"]["item_id"], compute_metrics=not training)
