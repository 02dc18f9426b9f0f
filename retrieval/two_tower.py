"""A trained two-tower version as serving sees it: the SavedModel user tower, the item
embeddings and their ids — checked against the manifest before use, no pickle anywhere."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from retrieval.tower_inputs import TowerLayout, user_inputs, user_inputs_from_rows
from vitrine.versions import BadModelVersion, verify

LAYOUT = "tower_layout.json"


@dataclass
class TwoTowerArtifact:
    directory: Path
    manifest: dict
    layout: TowerLayout
    item_ids: list[str]
    item_embeddings: np.ndarray
    _serve: object
    user_vectors: np.ndarray | None = None  # embeddings of the snapshot's users at training time
    user_row: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> TwoTowerArtifact:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf

        manifest = verify(directory)
        if manifest.get("model") != "two_tower":
            raise BadModelVersion(f"{directory} holds a {manifest.get('model')!r} model, not two_tower")
        if not (directory / LAYOUT).exists():
            raise BadModelVersion(f"{directory}: no {LAYOUT} (trained before feature-service layouts): retrain it")
        try:
            layout = TowerLayout.from_json(json.loads((directory / LAYOUT).read_text()))
        except (ValueError, KeyError) as e:
            raise BadModelVersion(f"{directory}: unreadable {LAYOUT}: {e}") from e
        ids = json.loads((directory / "item_ids.json").read_text())
        embeddings = np.load(directory / "item_embeddings.npy", allow_pickle=False)
        if len(ids) != len(embeddings):
            raise BadModelVersion(f"{directory}: {len(ids)} item ids but {len(embeddings)} embeddings")
        serve = tf.saved_model.load(str(directory / "user_tower")).signatures["serving_default"]
        artifact = cls(directory, manifest, layout, ids, embeddings, serve)
        if (directory / "user_ids.json").exists():
            users = json.loads((directory / "user_ids.json").read_text())
            vectors = np.load(directory / "user_embeddings.npy", allow_pickle=False)
            if len(users) != len(vectors):
                raise BadModelVersion(f"{directory}: {len(users)} user ids but {len(vectors)} user embeddings")
            artifact.user_vectors = vectors
            artifact.user_row = {u: i for i, u in enumerate(users)}
        return artifact

    def precomputed(self, user_id: str) -> np.ndarray | None:
        """The user's embedding from the training-time snapshot, if they were in it."""
        row = self.user_row.get(user_id)
        return None if row is None else self.user_vectors[row]

    def user_embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """Embeddings for rows of (user_id + the layout's user columns)."""
        import tensorflow as tf

        inputs = {k: tf.constant(v) for k, v in user_inputs(self.layout, frame).items()}
        return self._serve(**inputs)["embedding"].numpy()

    def embed_rows(self, user_ids: list[str], rows: list[dict]) -> np.ndarray:
        """Embeddings for online feature dicts (Feast full names): the serving path."""
        import tensorflow as tf

        inputs = {k: tf.constant(v) for k, v in user_inputs_from_rows(self.layout, user_ids, rows).items()}
        return self._serve(**inputs)["embedding"].numpy()
