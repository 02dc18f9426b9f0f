"""The MMoE teacher end to end on synthetic rows: context features by hand, the ESMM loss,
per-segment task weights, training that learns, save → load identical scores, the serving
call agreeing with the training rows, and the whole train/evaluate pipeline publishing."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ranking.context import context_features
from ranking.features import TeacherEncoder
from tests.unit.ranking_synthetic import layout, synthetic_frame


def test_context_features_by_hand():
    sat_13h = 2 * 86400 + 13 * 3600 + 59  # 1970-01-03 13:00:59 UTC, a Saturday
    c = context_features(sat_13h, 1, [10.0, None, 30.0], 20.0)
    assert c["context__hour_of_day"].tolist() == [13] * 3 and c["context__day_of_week"].tolist() == [5] * 3
    assert c["context__is_weekend"].tolist() == [1] * 3 and c["context__device_idx"].tolist() == [1] * 3
    assert c["context__price_vs_user"][[0, 2]].tolist() == [0.5, 1.5] and math.isnan(c["context__price_vs_user"][1])
    thu = context_features(0, None, [5.0], None)  # the epoch was a Thursday; unknown device and price level
    assert thu["context__day_of_week"].tolist() == [3] and thu["context__is_weekend"].tolist() == [0]
    assert thu["context__device_idx"].tolist() == [-1] and math.isnan(thu["context__price_vs_user"][0])
    assert context_features(0, 0, [5.0], 0.0)["context__price_vs_user"][0] == math.inf  # as pandas divides


def test_esmm_loss_is_the_purchase_loss_of_the_product():
    import tensorflow as tf

    from training.ranking.task import per_example_losses

    a, b = np.array([0.3, -1.0], np.float32), np.array([-2.0, 0.5], np.float32)
    losses = per_example_losses({"ctr": tf.constant(a), "cvr": tf.constant(b)}, tf.constant([1.0, 0.0]),
                                tf.constant([1.0, 0.0])).numpy()
    p_ctr, p = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-a)) / (1 + np.exp(-b))
    assert losses[:, 0] == pytest.approx([-np.log(p_ctr[0]), -np.log(1 - p_ctr[1])], rel=1e-5)
    assert losses[:, 1] == pytest.approx([-np.log(p[0]), -np.log(1 - p[1])], rel=1e-5)


def test_detached_ctr_gets_no_gradient_from_the_ctcvr_loss():
    import tensorflow as tf

    from training.ranking.task import per_example_losses

    ctr, cvr = tf.Variable([0.3, -1.0, 2.0]), tf.Variable([-2.0, 0.5, 0.1])
    click, purchase = tf.constant([1.0, 0.0, 1.0]), tf.constant([1.0, 0.0, 0.0])
    for detach in (False, True):
        with tf.GradientTape(persistent=True) as tape:
            losses = per_example_losses({"ctr": ctr, "cvr": cvr}, click, purchase, detach_ctr=detach)
            ctcvr = tf.reduce_sum(losses[:, 1])
        d_ctr, d_cvr = tape.gradient(ctcvr, ctr), tape.gradient(ctcvr, cvr)
        assert (np.abs(d_ctr.numpy()).max() == 0.0) == detach  # detached: CTR learns from clicks only
        assert np.abs(d_cvr.numpy()).min() > 0.0
        # the loss values themselves do not change
        assert losses.numpy() == pytest.approx(per_example_losses({"ctr": ctr, "cvr": cvr}, click, purchase).numpy())


def test_ctcvr_weight_scales_every_segment():
    from training.ranking.task import SegmentTaskWeights

    w = SegmentTaskWeights(["high_value"], [("high_value", 1.0, 2.0)], adapt=False, ctcvr_scale=3.0)
    assert w.variable.numpy().tolist() == [[1.0, 3.0], [1.0, 6.0]]


def test_segment_task_weights_configured_then_adapted():
    from training.ranking.task import SegmentTaskWeights

    w = SegmentTaskWeights(["high_value", "normal"], [("high_value", 1.0, 2.0), ("", 0.5, 0.5)], adapt=True,
                           temperature=2.0)
    assert w.variable.numpy().tolist() == [[0.5, 0.5], [1.0, 2.0], [1.0, 1.0]]
    counts = np.array([1.0, 1.0, 1.0])
    w.end_epoch(np.array([[1.0, 0.5]] * 3), counts)  # first epoch: nothing to compare with yet
    assert w.variable.numpy()[1].tolist() == [1.0, 2.0]
    adapted = w.end_epoch(np.array([[0.5, 0.5]] * 3), counts)
    # loss ratios r = (0.5, 1.0): 2·softmax(r / 2) = 2·(e^0.25, e^0.5) / (e^0.25 + e^0.5) = (0.87565, 1.12435)
    assert adapted[1] == pytest.approx([1.0 * 0.875650, 2.0 * 1.124350], rel=1e-4)
    assert adapted[0] == pytest.approx([0.5 * 0.875650, 0.5 * 1.124350], rel=1e-4)


@pytest.fixture(scope="module")
def frames():
    f = synthetic_frame(6000, seed=0)
    day = f["event_timestamp"].dt.floor("D")
    days = sorted(day.unique())
    return (f[day < days[-2]].reset_index(drop=True), f[day == days[-2]].reset_index(drop=True),
            f[day == days[-1]].reset_index(drop=True))


@pytest.fixture(scope="module")
def teacher_version(frames, tmp_path_factory):
    from training.ranking.mmoe import MMoERanker, MMoESettings, save_teacher
    from training.ranking.pipeline import labelled
    from training.ranking.teacher_fit import fit, predict
    from vitrine.versions import write_manifest

    train_f, val_f, test_f = frames
    enc = TeacherEncoder.fit(train_f, layout())
    settings = MMoESettings(epochs=3, batch_size=256, learning_rate=0.01, experts=2, expert_units=16)
    model = MMoERanker(enc, settings)
    result = fit(model, labelled(enc, train_f), labelled(enc, val_f), settings, enc.segments)
    directory = tmp_path_factory.mktemp("ranker") / "v7"
    save_teacher(model, enc, directory)
    write_manifest(directory, model="ranker", feature_service="ranker_v1")
    return directory, predict(model, labelled(enc, test_f).inputs), result


@pytest.mark.slow  # the module's teacher fit: ~10 s
def test_teacher_learns_and_reloads_to_identical_scores(frames, teacher_version):
    from ranking.teacher import Teacher
    from training.ranking.metrics import auc

    directory, in_memory, result = teacher_version
    test_f = frames[2]
    assert result.best_val_auc > 0.65 and len(result.history) >= 2
    assert auc(test_f["label_click"], in_memory["p_ctr"]) > 0.65
    teacher = Teacher.load(directory)
    assert teacher.version == "v7" and teacher.feature_service == "ranker_v1"
    p_ctr, p_cvr = teacher.score_frame(test_f)
    assert p_ctr == pytest.approx(in_memory["p_ctr"], abs=1e-6) and p_cvr == pytest.approx(in_memory["p_cvr"], abs=1e-6)


@pytest.mark.slow
def test_teacher_serving_call_equals_training_rows_and_handles_new_users(frames, teacher_version):
    from ranking.teacher import Teacher

    teacher = Teacher.load(teacher_version[0])
    test_f = frames[2]
    rows = test_f[test_f["user_id"] == test_f["user_id"].iloc[3]].reset_index(drop=True)
    user = {c: rows[c].iloc[0] for c in rows if c.startswith(("user_behaviour__", "user_preferences__",
                                                              "user_profile__"))}
    items = {c: rows[c].to_numpy() for c in rows if c.startswith(("item_", "merchant_"))}
    request = {"request_unix_s": 1714824000, "device_code": 3}
    ctx = context_features(1714824000, 3, items["item_attributes__price"], user["user_behaviour__price_level"])
    p_ctr, p_cvr = teacher.score(user, items, request)
    want_ctr, want_cvr = teacher.score_frame(rows.assign(**ctx))
    assert p_ctr.shape == p_cvr.shape == (len(rows),) and p_ctr.dtype == np.float32
    assert p_ctr == pytest.approx(want_ctr, abs=1e-6) and p_cvr == pytest.approx(want_cvr, abs=1e-6)
    # the server's path: item-only inputs encoded once for a whole item table (every test row),
    # the request's rows taken from it, only `request_columns` passed
    table = {c: test_f[c].to_numpy() for c in test_f if c.startswith(("item_", "merchant_"))}
    part = teacher.encoder.item_part(table, len(test_f))
    mine = np.flatnonzero(test_f["user_id"].to_numpy() == test_f["user_id"].iloc[3])
    few = {c: items[c] for c in teacher.request_columns}
    fast_ctr, fast_cvr = teacher.score(user, few, request, item_part={k: v[mine] for k, v in part.items()})
    assert np.array_equal(fast_ctr, p_ctr) and np.array_equal(fast_cvr, p_cvr)
    new_ctr, new_cvr = teacher.score({}, {"item_attributes__price": np.array([3.0, np.nan]),
                                          "item_stats__heat": np.array([None, 1.0], dtype=object)},
                                     {"request_unix_s": 1714824000})
    assert new_ctr.shape == (2,) and np.isfinite(new_ctr).all() and np.isfinite(new_cvr).all()


@pytest.mark.slow
def test_train_and_evaluate_ranking_publish_versions_and_report(frames, home, tmp_path):
    from evaluation.ranking import evaluate_ranking
    from training.ranking.data import RankingData
    from training.ranking.fm_student import FMSettings
    from training.ranking.mmoe import MMoESettings
    from training.ranking.pipeline import train_ranking
    from vitrine.versions import latest

    frame = pd.concat(frames, ignore_index=True)
    split = pd.Series(["train"] * len(frames[0]) + ["val"] * len(frames[1]) + ["test"] * len(frames[2]))
    data = RankingData(frame, tmp_path / "synthetic.parquet", {"service": "ranker_v1", "fraction": 1.0,
                                                               "eval_fraction": 1.0, "seed": 0}, split,
                       {"ranker_v1": layout(), "coarse_v1": layout("coarse_v1")})
    logs = []
    # budget 1: the search's first trial is the base configuration (kept without a second full fit)
    run = train_ranking(home, "redis://unused", teacher=MMoESettings(epochs=1, batch_size=256, learning_rate=0.01),
                        student=FMSettings(epochs=1, learning_rate=0.05, buckets=8), tune="pso", budget=1,
                        data=data, log=logs.append)
    assert latest(home, "ranker") == run.teacher_dir and latest(home, "coarse") == run.student_dir
    m = run.teacher_manifest
    assert m["feature_service"] == "ranker_v1" and m["tuning"]["method"] == "pso"
    assert len(m["tuning"]["best_so_far"]) == 1 and m["metrics"]["test"]["ctr"]["auc"] > 0.6
    assert m["tuning"]["best"]["params"]["learning_rate"] == pytest.approx(0.01)
    assert run.student_manifest["teacher_version"] == run.teacher_dir.name
    assert (run.report_dir / "training_curves.png").exists() and (run.report_dir / "tuning-pso.jsonl").exists()
    out = evaluate_ranking(home, "redis://unused", data=data, out=tmp_path / "report", log=logs.append)
    names = list(out["models"])
    assert names[0].startswith("MMoE teacher") and "CTR-only DNN" in names and "CVR-only DNN" in names
    assert (tmp_path / "report" / "metrics.md").read_text().count("\n") == len(names) + 2
    assert (tmp_path / "report" / "metrics.png").exists()


@pytest.mark.parametrize("options", [{"fm_tasks": ("cvr",), "fm_into_experts": True},
                                     {"fm_tasks": (), "fm_into_experts": True, "task_experts": 2}],
                         ids=["fm-on-cvr+fm-into-experts", "fm-only-into-experts+cgc"])
def test_fm_read_out_for_named_tasks_and_fm_into_experts(tmp_path, options):
    """`fm_tasks` / `fm_into_experts`: the FM read-out only on the named logits, the bi-interaction
    vector widening the experts' input; the server's NumPy forward pass equals the SavedModel."""
    from ranking.teacher import Teacher
    from training.ranking.mmoe import MMoERanker, MMoESettings, save_teacher
    from vitrine.versions import write_manifest

    f = synthetic_frame(300, seed=1)
    enc = TeacherEncoder.fit(f, layout())
    inputs = enc.encode_frame(f.head(5))
    small = {"experts": 2, "expert_units": 8, "tower_units": 4, "embedding_dim": 4, "seed": 1}
    plain = MMoERanker(enc, MMoESettings(**small, fm_tasks=None, fm_into_experts=False, task_experts=0))
    plain(inputs)
    model = MMoERanker(enc, MMoESettings(**small, **options))
    out = model(inputs)
    assert set(model.fm_heads) == set(options["fm_tasks"]) and out["ctr"].shape == out["cvr"].shape == (5,)
    widen = model.settings.embedding_dim  # the experts' input gains the bi-interaction vector
    assert model.experts[0].layers[0].kernel.shape[0] == plain.experts[0].layers[0].kernel.shape[0] + widen
    rng = np.random.default_rng(2)  # random weights everywhere (first-order terms start at 0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    save_teacher(model, enc, tmp_path / "v1")
    write_manifest(tmp_path / "v1", model="ranker", feature_service="ranker_v1")
    teacher = Teacher.load(tmp_path / "v1")
    assert teacher.numpy is not None and teacher.numpy_problem == ""
    rows = f.iloc[:40]
    tf_ctr, tf_cvr = teacher.score_frame(rows)
    np_ctr, np_cvr = teacher._run(enc.encode_frame(rows))
    assert np_ctr == pytest.approx(tf_ctr, abs=1e-5) and np_cvr == pytest.approx(tf_cvr, abs=1e-5)


@pytest.mark.slow  # a small fit: ~10 s
def test_task_experts_and_task_linear_build_train_and_reload(frames, tmp_path):
    """CGC (shared + per-task experts) with per-task first-order terms and a detached pCTR: the
    model builds with the extra weights, scores with the usual shapes, and save → load gives
    identical scores through the unchanged serving signature."""
    import tensorflow as tf

    from ranking.teacher import SAVED_MODEL, Teacher
    from training.ranking.mmoe import MMoERanker, MMoESettings, input_specs, save_teacher
    from training.ranking.pipeline import labelled
    from training.ranking.teacher_fit import fit, predict
    from vitrine.versions import write_manifest

    train_f, val_f, test_f = frames
    enc = TeacherEncoder.fit(train_f, layout())
    settings = MMoESettings(epochs=1, batch_size=256, learning_rate=0.01, experts=2, expert_units=16,
                            task_experts=1, task_linear=True, detach_ctr_in_ctcvr=True, ctcvr_weight=2.0,
                            fm_tasks=None)
    model = MMoERanker(enc, settings)
    fit(model, labelled(enc, train_f), labelled(enc, val_f), settings, enc.segments)
    plain = MMoERanker(enc, MMoESettings(experts=2, expert_units=16, task_experts=0, fm_tasks=None))
    plain(labelled(enc, test_f.head(4)).inputs)
    assert set(model.first_order) == set(model.num_linear) == {"ctr", "cvr"} and set(plain.first_order) == {""}
    default = MMoERanker(enc, MMoESettings(experts=2, expert_units=16))  # no logit reads the FM part out
    default(labelled(enc, test_f.head(4)).inputs)
    assert default.first_order == {} and default.num_linear == {} and default.fm_heads == {}
    assert all(len(model.task_expert_nets[t]) == 1 and model.task_expert_nets[t][0].weights for t in ("ctr", "cvr"))
    assert plain.task_expert_nets == {"ctr": [], "cvr": []}
    assert model.gates["ctr"].units == 3 and plain.gates["ctr"].units == 2
    in_memory = predict(model, labelled(enc, test_f).inputs)
    assert in_memory["p_ctr"].shape == in_memory["p_cvr"].shape == (len(test_f),)

    directory = tmp_path / "v1"
    save_teacher(model, enc, directory)
    write_manifest(directory, model="ranker", feature_service="ranker_v1")
    signature = tf.saved_model.load(str(directory / SAVED_MODEL)).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"p_ctr", "p_cvr"}
    assert set(signature.structured_input_signature[1]) == set(input_specs(enc))
    p_ctr, p_cvr = Teacher.load(directory).score_frame(test_f)
    assert p_ctr == pytest.approx(in_memory["p_ctr"], abs=1e-6) and p_cvr == pytest.approx(in_memory["p_cvr"], abs=1e-6)


def test_selection_score_ctr_or_mean_of_ctr_and_clicked_row_cvr():
    from training.ranking.teacher_fit import Labelled, selection_score, validation_aucs

    click = np.array([1, 1, 1, 1, 0, 0])
    buy = np.array([1, 0, 1, 0, 0, 0])
    data = Labelled({}, click, buy, np.arange(6))
    probs = {"p_ctr": np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2]),  # every click above every non-click: 1.0
             "p_cvr": np.array([0.5, 0.6, 0.3, 0.2, 0.9, 0.9])}  # clicked rows: 2 of 4 pairs right: 0.5
    aucs = validation_aucs(probs, data)
    assert aucs == pytest.approx({"ctr": 1.0, "cvr": 0.5})  # on every row pCVR would score 2/8 = 0.25
    assert selection_score(aucs) == selection_score(aucs, "ctr") == pytest.approx(1.0)
    assert selection_score(aucs, "ctr+cvr") == pytest.approx(0.75)
    # the CVR-only baseline (no CTR head; its validation rows are the clicked ones): its own AUC
    only_cvr = validation_aucs({"p_cvr": probs["p_cvr"][:4]}, data.subset(click == 1))
    assert only_cvr == pytest.approx({"cvr": 0.5}) and selection_score(only_cvr, "ctr+cvr") == pytest.approx(0.5)
    assert selection_score({"ctr": 0.7}, "ctr+cvr") == pytest.approx(0.7)
    with pytest.raises(ValueError, match="select_on"):
        selection_score(aucs, "cvr")


@pytest.mark.slow  # a small fit: ~10 s
def test_fit_selects_and_stops_on_the_mean_of_both_heads(frames):
    from training.ranking.mmoe import MMoERanker, MMoESettings
    from training.ranking.pipeline import labelled
    from training.ranking.teacher_fit import fit, predict, validation_aucs

    train_f, val_f, _ = frames
    enc = TeacherEncoder.fit(train_f, layout())
    settings = MMoESettings(epochs=3, batch_size=256, learning_rate=0.01, experts=2, expert_units=16,
                            select_on="ctr+cvr")
    model = MMoERanker(enc, settings)
    val = labelled(enc, val_f)
    result = fit(model, labelled(enc, train_f), val, settings, enc.segments)
    scores = [h["val_auc"] for h in result.history]
    for h in result.history:
        assert h["val_auc"] == pytest.approx((h["val_ctr_auc"] + h["val_cvr_auc"]) / 2)
    assert result.best_val_auc == max(scores) and scores[result.best_epoch - 1] == max(scores)
    kept = validation_aucs(predict(model, val.inputs), val)  # the best epoch's weights are restored
    assert (kept["ctr"] + kept["cvr"]) / 2 == pytest.approx(result.best_val_auc, abs=1e-6)
    with pytest.raises(ValueError, match="select_on"):
        fit(model, labelled(enc, train_f), val, MMoESettings(select_on="cvr"), enc.segments)


def test_weight_average_by_hand_bias_corrected_with_swaps():
    import tensorflow as tf

    from training.ranking.teacher_fit import WeightAverage

    model = tf.keras.Sequential([tf.keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")])
    model(np.zeros((1, 2), np.float32))
    average = WeightAverage(model, 0.5)
    values = (1.0, 3.0, -2.0, 4.0)
    for value in values:
        for v in model.trainable_variables:
            v.assign(tf.fill(v.shape, value))
        average.update()
    # Σ_i (1 − d)·d^(t−i)·w_i / (1 − d^t) with d = 0.5, t = 4
    expected = (0.5 * (0.125 * 1.0 + 0.25 * 3.0 + 0.5 * -2.0 + 1.0 * 4.0)) / (1 - 0.5 ** 4)
    raw = average.swap_in()
    assert model.layers[0].kernel.numpy().ravel() == pytest.approx([expected] * 2, rel=1e-6)
    assert model.layers[0].bias.numpy() == pytest.approx([expected], rel=1e-6)
    average.swap_out(raw)
    assert model.layers[0].kernel.numpy().ravel() == pytest.approx([4.0, 4.0])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, 1.0)


@pytest.mark.slow  # a small fit: ~10 s
def test_fit_with_weight_averaging_keeps_the_validated_averaged_weights(frames):
    from training.ranking.mmoe import MMoERanker, MMoESettings
    from training.ranking.pipeline import labelled
    from training.ranking.teacher_fit import fit, predict, validation_aucs

    train_f, val_f, _ = frames
    enc = TeacherEncoder.fit(train_f, layout())
    settings = MMoESettings(epochs=2, batch_size=256, learning_rate=0.01, experts=2, expert_units=16,
                            ema_epochs=1.0)
    model = MMoERanker(enc, settings)
    val = labelled(enc, val_f)
    result = fit(model, labelled(enc, train_f), val, settings, enc.segments)
    assert result.best_val_auc > 0.6
    # what was validated (and kept) is the average: the restored model scores exactly that
    assert validation_aucs(predict(model, val.inputs), val)["ctr"] == pytest.approx(result.best_val_auc, abs=1e-9)
    plain = replace(settings, ema_epochs=0.0)  # the same seed and batches without averaging: other scores
    again = fit(MMoERanker(enc, plain),
                labelled(enc, train_f), val, plain, enc.segments)
    assert [h["val_auc"] for h in again.history] != pytest.approx([h["val_auc"] for h in result.history], abs=1e-4)
    with pytest.raises(ValueError, match="ema_epochs"):
        fit(model, labelled(enc, train_f), val, replace(settings, ema_epochs=-1.0), enc.segments)
