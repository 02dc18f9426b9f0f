"""The teacher's NumPy forward pass (what the server runs) against its SavedModel, for every
architecture option: the default (CGC, the FM vector into the experts), plain MMoE with
DeepFM read-outs, CGC task experts, per-task first-order terms, numeric bucket
embeddings, no FM part; and the load-time probe that falls back to TensorFlow on a mismatch."""

import numpy as np
import pytest

from ranking.features import TeacherEncoder
from tests.unit.ranking_synthetic import layout, synthetic_frame


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(600, seed=3)


def _save(frame, directory, **options):
    from training.ranking.mmoe import MMoERanker, MMoESettings, save_teacher
    from vitrine.versions import write_manifest

    enc = TeacherEncoder.fit(frame, layout())
    settings = MMoESettings(experts=2, expert_units=8, tower_units=4, embedding_dim=4, seed=1, **options)
    model = MMoERanker(enc, settings)
    model(enc.encode_frame(frame.iloc[:4]))  # build the weights
    rng = np.random.default_rng(2)  # random weights everywhere (first-order terms start at 0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    save_teacher(model, enc, directory)
    write_manifest(directory, model="ranker", feature_service="ranker_v1")
    return enc


DEEPFM = {"fm_tasks": None, "fm_into_experts": False}  # the FM read-out and first-order terms on every logit


@pytest.mark.parametrize("options", [
    {},
    {**DEEPFM, "task_experts": 0},
    {**DEEPFM, "task_experts": 1, "task_linear": True},
    {"numeric_buckets": True},
    {"fm": False},
], ids=["default", "mmoe-deepfm", "cgc+task-linear", "buckets", "no-fm"])
def test_numpy_forward_equals_the_saved_model(frame, tmp_path, options):
    from ranking.teacher import Teacher

    enc = _save(frame, tmp_path / "v1", **options)
    teacher = Teacher.load(tmp_path / "v1")
    assert teacher.numpy is not None and teacher.numpy_problem == ""
    rows = frame.iloc[:40]
    tf_ctr, tf_cvr = teacher.score_frame(rows)  # TensorFlow
    np_ctr, np_cvr = teacher._run(enc.encode_frame(rows))  # NumPy, as serving calls it
    assert np_ctr == pytest.approx(tf_ctr, abs=1e-5) and np_cvr == pytest.approx(tf_cvr, abs=1e-5)
    assert np_ctr.dtype == np.float32 and np.ptp(np_ctr) > 1e-3  # not a constant
    # one user, many candidates (the request shape): user inputs broadcast
    user = {c: rows[c].iloc[0] for c in rows if c.startswith(("user_behaviour__", "user_preferences__",
                                                              "user_profile__"))}
    items = {c: rows[c].to_numpy() for c in rows if c.startswith(("item_", "merchant_"))}
    served = teacher.score(user, items, {"request_unix_s": 1714824000, "device_code": 1})
    teacher.numpy = None
    assert served[0] == pytest.approx(teacher.score(user, items, {"request_unix_s": 1714824000,
                                                                  "device_code": 1})[0], abs=1e-5)


def test_a_mismatching_forward_pass_is_caught_by_the_probe(frame, tmp_path):
    from ranking.teacher import Teacher

    _save(frame, tmp_path / "v1")
    teacher = Teacher.load(tmp_path / "v1")
    assert teacher._probe() == ""
    teacher.numpy.a["tower.ctr.1.bias"] = teacher.numpy.a["tower.ctr.1.bias"] + 0.5  # a forward pass out of step
    assert "differs from the SavedModel on p_ctr" in teacher._probe()
