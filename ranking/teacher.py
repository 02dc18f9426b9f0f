"""The MMoE teacher as serving sees it: the SavedModel's `serving_default` signature and the
encoder's JSON, checked against the manifest before use. One call scores every candidate of
a request: user inputs have one row and are broadcast inside the model."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranking.features import Columns, TeacherEncoder, request_rows
from vitrine.versions import BadModelVersion, verify

SAVED_MODEL = "saved_model"
ENCODER = "encoder.json"


@dataclass
class Teacher:
    directory: Path
    manifest: dict
    encoder: TeacherEncoder
    _serve: object

    @property
    def version(self) -> str:
        return self.directory.name

    @property
    def feature_service(self) -> str:
        return self.manifest["feature_service"]

    @classmethod
    def load(cls, directory: Path) -> Teacher:
        """Verify the manifest (raises `BadModelVersion`), then load the signature (no pickle)."""
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf

        directory = Path(directory)
        manifest = verify(directory)
        if manifest.get("model") != "ranker":
            raise BadModelVersion(f"{directory} holds a {manifest.get('model')!r} model, not the ranker teacher")
        try:
            encoder = TeacherEncoder.from_json(json.loads((directory / ENCODER).read_text()))
            serve = tf.saved_model.load(str(directory / SAVED_MODEL)).signatures["serving_default"]
        except (OSError, ValueError, KeyError) as e:
            raise BadModelVersion(f"{directory}: unreadable teacher: {e}") from e
        return cls(directory, manifest, encoder, serve)

    def _run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        names = self._serve.structured_input_signature[1]  # the signature's named inputs
        out = self._serve(**{k: tf.constant(v) for k, v in inputs.items() if k in names})
        return out["p_ctr"].numpy().astype(np.float32), out["p_cvr"].numpy().astype(np.float32)

    def score(self, user: Columns, items: Columns, request: Columns) -> tuple[np.ndarray, np.ndarray]:
        """(p_ctr, p_cvr), each float32 [n], for the candidates of one request. pCTCVR is their
        product; inputs as for the server (Feast full names; missing or None means unknown)."""
        users, rows, n = request_rows(user, items, request)
        if n == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return self._run(self.encoder.encode(users, rows, 1, n))

    def score_frame(self, frame, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(p_ctr, p_cvr) for training-set rows (one user per row), in batches."""
        ctr, cvr = [], []
        for i in range(0, len(frame), batch):
            part = frame.iloc[i:i + batch]
            a, b = self._run(self.encoder.encode_frame(part))
            ctr.append(a)
            cvr.append(b)
        return (np.concatenate(ctr), np.concatenate(cvr)) if ctr else (np.zeros(0, np.float32),) * 2
