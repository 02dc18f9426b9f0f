"""The MMoE ranking teacher (Keras 2): field embeddings → an FM part (second-order
interactions, the bi-interaction vector) and DNN experts mixed by one softmax gate per task →
CTR and CVR towers.

Default (measured on `demo`, docs/benchmarks.md "Ranking"): the FM vector feeds the experts
and gates next to the embeddings (NFM-style, `fm_into_experts`), and each task's gate mixes the
4 shared experts with 4 experts of its own (CGC, `task_experts`); each logit is its tower's
output. With `fm_tasks` a task's logit also adds a read-out of the FM part and first-order
terms (DeepFM-style, the first default — 0.002 CTR AUC lower on `demo`).

The same class with one expert, no FM part and one task is the single-task DNN baseline.
The model only computes logits; `training/ranking/task.py` owns the losses.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Keras 2 (tf-keras), as the rest of Vitrine

from dataclasses import dataclass

import tensorflow as tf

from ranking.features import BAG_WIDTH, SLOTS, TeacherEncoder


@dataclass(frozen=True)
class MMoESettings:
    """Teacher hyper-parameters (PSO tunes learning_rate, experts, expert_units, embedding_dim, dropout)."""

    embedding_dim: int = 8
    experts: int = 4
    expert_units: int = 64
    tower_units: int = 32
    dropout: float = 0.1
    learning_rate: float = 0.002
    l2: float = 1e-6
    epochs: int = 5
    batch_size: int = 1024
    patience: int = 2  # epochs without a better selection score (`select_on`) before stopping (best epoch kept)
    # per behaviour segment: (CTR weight, CTCVR weight); "" is users without a segment (new users)
    segment_weights: tuple[tuple[str, float, float], ...] = (
        ("high_value", 1.0, 2.0), ("potential", 1.0, 1.5), ("normal", 1.0, 1.0), ("", 1.0, 1.0))
    adapt_weights: bool = True  # dynamic weight average per segment, by each task's loss trend
    adapt_temperature: float = 2.0
    tasks: tuple[str, ...] = ("ctr", "cvr")
    fm: bool = True
    # also embed each numeric input's quantile bucket, as the FM student does (on demo it overfits
    # sooner: test CTR AUC 0.752 vs 0.757 without)
    numeric_buckets: bool = False
    # ESMM with pCTR detached in pCTCVR = pCTR × pCVR: the CTR head learns from the click loss
    # only; the CVR tower still learns from every impression's purchase label
    detach_ctr_in_ctcvr: bool = False
    # CGC (single-level PLE): each task's gate mixes the shared experts plus its own experts
    task_experts: int = 4
    # one first-order (linear) term per task instead of one shared by both logits (with `fm`)
    task_linear: bool = False
    ctcvr_weight: float = 1.0  # multiplies every segment's CTCVR loss weight
    # the tasks whose logit adds the FM read-out and the first-order term (None: every task)
    # (default: none — the FM part feeds the experts instead, `fm_into_experts`, and no
    # first-order weights are built)
    fm_tasks: tuple[str, ...] | None = ()
    fm_into_experts: bool = True  # the FM bi-interaction vector also feeds the experts and gates (NFM-style)
    # the validation score that picks the kept epoch and drives early stopping: "ctr" (CTR AUC on
    # impressions) or "ctr+cvr" (the mean of that and the CVR AUC on clicked rows, pCVR vs purchase);
    # a single-task model (the baselines) is always scored on its own task
    select_on: str = "ctr"
    # an exponential moving average of the weights (Polyak averaging, bias-corrected) over about
    # this many epochs (decay 1 − 1 / (ema_epochs · steps per epoch)), 0 = off: validation, the
    # kept epoch and the saved model use the averaged weights; training goes on from the raw ones
    ema_epochs: float = 1.0
    seed: int = 0


def input_specs(encoder: TeacherEncoder) -> dict[str, tf.TensorSpec]:
    """The serving signature: user inputs with 1 row (broadcast) or one per candidate, candidate inputs [n]."""
    layout = encoder.layout
    n_user_num, n_row_num = len(encoder.user_numeric), len(encoder.row_numeric)
    specs = {"user_cat": tf.TensorSpec([None, len(layout.user_categorical)], tf.int64, name="user_cat"),
             "user_num": tf.TensorSpec([None, n_user_num], tf.float32, name="user_num")}
    for b in layout.bags:
        specs[f"{b}_bag"] = tf.TensorSpec([None, BAG_WIDTH], tf.int64, name=f"{b}_bag")
        specs[f"{b}_bag_weights"] = tf.TensorSpec([None, BAG_WIDTH], tf.float32, name=f"{b}_bag_weights")
    specs["row_cat"] = tf.TensorSpec([None, len(layout.row_categorical)], tf.int64, name="row_cat")
    specs["row_num"] = tf.TensorSpec([None, n_row_num], tf.float32, name="row_num")
    specs["user_bucket"] = tf.TensorSpec([None, n_user_num], tf.int64, name="user_bucket")
    specs["row_bucket"] = tf.TensorSpec([None, n_row_num], tf.int64, name="row_bucket")
    return specs


class MMoERanker(tf.keras.Model):
    def __init__(self, encoder: TeacherEncoder, settings: MMoESettings, **kw):
        super().__init__(name="mmoe_ranker", **kw)
        s = settings
        self.settings = s
        vocabulary_sizes = encoder.vocabulary_sizes()
        n_user_num, n_row_num = len(encoder.user_numeric), len(encoder.row_numeric)
        # the input fields' names in the signature's order
        self.user_categorical = list(encoder.layout.user_categorical)
        self.row_categorical = list(encoder.layout.row_categorical)
        self.bags = list(encoder.layout.bags)
        reg = tf.keras.regularizers.l2(s.l2) if s.l2 else None
        d = s.embedding_dim
        self.tables = {name: tf.keras.layers.Embedding(size, d, embeddings_regularizer=reg, name=f"emb_{name}")
                       for name, size in sorted(vocabulary_sizes.items())}
        fm_tasks = s.tasks if s.fm_tasks is None else tuple(t for t in s.tasks if t in s.fm_tasks)
        fm_tasks = fm_tasks if s.fm else ()
        # first-order weights, only where a logit reads the FM part out: one set shared by the
        # tasks (key ""), or one per task (`task_linear`)
        linear_keys = (s.tasks if s.task_linear else ("",)) if fm_tasks else ()
        self.first_order = {k: {name: tf.keras.layers.Embedding(size, 1, embeddings_initializer="zeros",
                                                                name=f"w_{k}_{name}" if k else f"w_{name}")
                                for name, size in sorted(vocabulary_sizes.items())} for k in linear_keys}
        init = tf.keras.initializers.RandomNormal(stddev=0.05, seed=s.seed)
        self.user_num_v = self.add_weight(name="user_num_factors", shape=(n_user_num, d), initializer=init)
        self.row_num_v = self.add_weight(name="row_num_factors", shape=(n_row_num, d), initializer=init)
        self.num_linear = {k: tf.keras.layers.Dense(1, name=f"numeric_linear_{k}" if k else "numeric_linear")
                           for k in linear_keys}
        if s.numeric_buckets:
            self.bucket_tables = {side: tf.keras.layers.Embedding(count * SLOTS, d, embeddings_regularizer=reg,
                                                                  name=f"emb_{side}_buckets")
                                  for side, count in (("user", n_user_num), ("row", n_row_num))}
        def expert(name: str) -> tf.keras.Sequential:
            return tf.keras.Sequential([tf.keras.layers.Dense(s.expert_units, "relu", kernel_regularizer=reg),
                                        tf.keras.layers.Dropout(s.dropout),
                                        tf.keras.layers.Dense(s.expert_units // 2, "relu")], name=name)

        self.experts = [expert(f"expert_{i}") for i in range(s.experts)]
        self.task_expert_nets = {t: [expert(f"expert_{t}_{i}") for i in range(s.task_experts)] for t in s.tasks}
        self.gates = {t: tf.keras.layers.Dense(s.experts + s.task_experts, "softmax", name=f"gate_{t}")
                      for t in s.tasks}
        self.towers = {t: tf.keras.Sequential([tf.keras.layers.Dense(s.tower_units, "relu"),
                                               tf.keras.layers.Dropout(s.dropout),
                                               tf.keras.layers.Dense(1)], name=f"tower_{t}") for t in s.tasks}
        self.fm_heads = {t: tf.keras.layers.Dense(1, name=f"fm_{t}") for t in fm_tasks}

    def call(self, f: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        n = tf.shape(f["row_cat"])[0]

        def rows(x: tf.Tensor) -> tf.Tensor:  # user inputs: 1 row (broadcast) or one per candidate
            return tf.broadcast_to(x, tf.concat([[n], tf.shape(x)[1:]], axis=0))

        user_cat, user_num = rows(f["user_cat"]), rows(f["user_num"])
        # (ops in the order they always had: graph-level random seeds, hence dropout masks and
        # the default configuration's results, depend on it)
        fields, linear = [], {k: [] for k in self.first_order}
        for j, name in enumerate(self.user_categorical):
            fields.append(self.tables[name](user_cat[:, j]))
            for k, weights in self.first_order.items():
                linear[k].append(weights[name](user_cat[:, j])[:, 0])
        for j, name in enumerate(self.row_categorical):
            fields.append(self.tables[name](f["row_cat"][:, j]))
            for k, weights in self.first_order.items():
                linear[k].append(weights[name](f["row_cat"][:, j])[:, 0])
        for bag in self.bags:  # weighted bag of the user's top categories / brands, in the candidate's table
            ids, w = rows(f[f"{bag}_bag"]), rows(f[f"{bag}_bag_weights"])
            fields.append(tf.reduce_sum(self.tables[bag](ids) * w[..., None], axis=1))
        if self.settings.numeric_buckets:
            fields.append(self.bucket_tables["user"](rows(f["user_bucket"])))
            fields.append(self.bucket_tables["row"](f["row_bucket"]))
        numeric = tf.concat([user_num, f["row_num"]], axis=1)
        num_fields = numeric[..., None] * tf.concat([self.user_num_v, self.row_num_v], axis=0)[None]
        cat = tf.concat([x if len(x.shape) == 3 else x[:, None] for x in fields], axis=1)  # [n, Fc, d]
        x = tf.concat([tf.reshape(cat, [n, cat.shape[1] * cat.shape[2]]), numeric], axis=1)

        def bi_interaction() -> tf.Tensor:
            all_fields = tf.concat([cat, num_fields], axis=1)
            s = tf.reduce_sum(all_fields, axis=1)
            return 0.5 * (s * s - tf.reduce_sum(all_fields * all_fields, axis=1))    # [n, d]

        if self.settings.fm and self.settings.fm_into_experts:  # NFM-style: also an input of the experts
            bi = bi_interaction()
            x = tf.concat([x, bi], axis=1)
        experts = tf.stack([e(x, training=training) for e in self.experts], axis=1)  # [n, E, u]
        out = {}
        if self.settings.fm:
            if not self.settings.fm_into_experts:
                bi = bi_interaction()
            first = {k: tf.add_n(terms) + self.num_linear[k](numeric)[:, 0] for k, terms in linear.items()}
        for t in self.settings.tasks:
            pool = experts
            if self.task_expert_nets[t]:  # CGC: the shared experts, then this task's own
                own = tf.stack([e(x, training=training) for e in self.task_expert_nets[t]], axis=1)
                pool = tf.concat([experts, own], axis=1)
            gate = self.gates[t](x)[..., None]                             # [n, E (+ own), 1]
            logit = self.towers[t](tf.reduce_sum(pool * gate, axis=1), training=training)[:, 0]
            if t in self.fm_heads:
                logit = logit + self.fm_heads[t](bi)[:, 0] + first[t if t in first else ""]
            out[t] = logit
        return out


def serving_function(model: MMoERanker, specs: dict[str, tf.TensorSpec]):
    """The SavedModel signature: p_ctr and p_cvr for every candidate of one request."""
    names = list(specs)

    @tf.function(input_signature=[specs[n] for n in names])
    def serve(*args):
        logits = model(dict(zip(names, args, strict=True)), training=False)
        return {f"p_{t}": tf.sigmoid(logits[t]) for t in model.settings.tasks}

    return serve


def save_teacher(model: MMoERanker, encoder, directory) -> None:
    """The SavedModel (signature `serving_default`) and the encoder's JSON, into `directory`."""
    import json
    from pathlib import Path

    from ranking.teacher import ENCODER, SAVED_MODEL
    from ranking.teacher_numpy import export_arrays

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specs = input_specs(encoder)
    tf.saved_model.save(model, str(directory / SAVED_MODEL),
                        signatures={"serving_default": serving_function(model, specs)})
    (directory / ENCODER).write_text(json.dumps(encoder.to_json()))
    export_arrays(model, directory)  # the same weights as plain arrays, for serving in NumPy
