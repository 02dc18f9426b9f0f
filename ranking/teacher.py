"""The MMoE teacher as serving sees it: the SavedModel's `serving_default` signature and the
encoder's JSON, checked against the manifest before use. One call scores every candidate of
a request: user inputs have one row and are broadcast inside the model. Requests are scored
by the same forward pass in NumPy from the version's arrays when it ships them and they
reproduce the SavedModel on a probe batch (`ranking/teacher_numpy.py`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranking.features import BAG_WIDTH, SLOTS, Columns, TeacherEncoder, request_rows
from ranking.teacher_numpy import NumpyTeacher
from vitrine.versions import BadModelVersion, verify

log = logging.getLogger("ranking.teacher")

SAVED_MODEL = "saved_model"
ENCODER = "encoder.json"


@dataclass
class Teacher:
    directory: Path
    manifest: dict
    encoder: TeacherEncoder
    _serve: object
    # the same forward pass in NumPy (`ranking/teacher_numpy.py`), when the version ships its arrays
    # and they reproduce the SavedModel on a probe batch; None: every call goes through TensorFlow
    numpy: NumpyTeacher | None = None
    numpy_problem: str = ""

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
        teacher = cls(directory, manifest, encoder, serve)
        try:
            teacher.numpy = NumpyTeacher.load(directory, encoder.layout)
            problem = "" if teacher.numpy is None else teacher._probe()
        except (OSError, ValueError, KeyError, IndexError) as e:
            problem = f"unreadable arrays: {e}"
        if problem:
            teacher.numpy, teacher.numpy_problem = None, problem
            log.warning("teacher %s served with TensorFlow: %s", directory.name, problem)
        return teacher

    def _probe(self, n: int = 9, tolerance: float = 1e-5) -> str:
        """"" when the NumPy forward pass gives the SavedModel's probabilities on random valid
        inputs (one user and n candidates, and n users), else what differs."""
        rng = np.random.default_rng(0)
        sizes = self.encoder.vocabulary_sizes()
        layout = self.encoder.layout
        for m in (1, n):
            inputs = {"user_cat": np.stack([rng.integers(0, sizes[k], m) for k in layout.user_categorical], axis=1)
                      .reshape(m, len(layout.user_categorical)),
                      "row_cat": np.stack([rng.integers(0, sizes[k], n) for k in layout.row_categorical], axis=1),
                      "user_num": rng.normal(size=(m, len(self.encoder.user_numeric))).astype(np.float32),
                      "row_num": rng.normal(size=(n, len(self.encoder.row_numeric))).astype(np.float32),
                      "user_bucket": rng.integers(0, SLOTS, (m, len(self.encoder.user_numeric)))
                      + np.arange(len(self.encoder.user_numeric)) * SLOTS,
                      "row_bucket": rng.integers(0, SLOTS, (n, len(self.encoder.row_numeric)))
                      + np.arange(len(self.encoder.row_numeric)) * SLOTS}
            for bag in layout.bags:
                inputs[f"{bag}_bag"] = rng.integers(0, sizes[bag], (m, BAG_WIDTH))
                inputs[f"{bag}_bag_weights"] = rng.uniform(0, 1, (m, BAG_WIDTH)).astype(np.float32)
            want = self._run_tf(inputs)
            got = self.numpy.forward(inputs)
            for task, w in zip(("ctr", "cvr"), want, strict=True):
                diff = float(np.max(np.abs(got[f"p_{task}"] - w)))
                if not diff <= tolerance:
                    return f"NumPy forward pass differs from the SavedModel on p_{task} by {diff:.2e}"
        return ""

    def _run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self.numpy is not None:
            out = self.numpy.forward(inputs)
            return out["p_ctr"], out["p_cvr"]
        return self._run_tf(inputs)

    def _run_tf(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        names = self._serve.structured_input_signature[1]  # the signature's named inputs
        out = self._serve(**{k: tf.constant(v) for k, v in inputs.items() if k in names})
        return out["p_ctr"].numpy().astype(np.float32), out["p_cvr"].numpy().astype(np.float32)

    def score(self, user: Columns, items: Columns, request: Columns,
              item_part: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(p_ctr, p_cvr), each float32 [n], for the candidates of one request. pCTCVR is their
        product; inputs as for the server (Feast full names; missing or None means unknown).
        `item_part`: the candidates' rows of `encoder.item_part` (then `items` needs only the
        columns of `request_columns`)."""
        n = None if item_part is None else len(item_part["row_cat"])
        users, rows, n = request_rows(user, items, request, n=n)
        if n == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return self._run(self.encoder.encode(users, rows, 1, n, item_part=item_part))

    request_columns = TeacherEncoder.request_columns

    def item_part(self, items: Columns, n: int) -> dict[str, np.ndarray]:
        """The inputs that depend on the item alone, for a table of `n` items (`score`'s `item_part`)."""
        return self.encoder.item_part(items, n)

    def score_frame(self, frame, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(p_ctr, p_cvr) for training-set rows (one user per row), in batches, with TensorFlow."""
        ctr, cvr = [], []
        for i in range(0, len(frame), batch):
            part = frame.iloc[i:i + batch]
            a, b = self._run_tf(self.encoder.encode_frame(part))
            ctr.append(a)
            cvr.append(b)
        return (np.concatenate(ctr), np.concatenate(cvr)) if ctr else (np.zeros(0, np.float32),) * 2
