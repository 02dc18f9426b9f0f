"""The FM student: NumPy scoring and the distillation loss against hand-computed values, the
feature map's encoding, save → load giving identical scores, and the serving path agreeing
with the training path."""

import math

import numpy as np
import pytest

from ranking.fm import FeatureMap, Field, FMStudent, fm_logits
from tests.unit.ranking_synthetic import student_spec, synthetic_frame
from vitrine.versions import BadModelVersion, write_manifest

BIAS = 0.5
LINEAR = np.array([0.1, -0.2, 0.3, 0.4], dtype=np.float32)
FACTORS = np.array([[1, 0], [0, 1], [1, 1], [2, -1]], dtype=np.float32)


def test_fm_logits_by_hand():
    idx = np.array([[0, 2], [1, 3]])
    # row 0: 0.5 + (0.1 + 0.3) + <v0, v2> = 0.5 + 0.4 + 1 = 1.9
    # row 1: 0.5 + (−0.2 + 0.4) + <v1, v3> = 0.5 + 0.2 − 1 = −0.3
    assert fm_logits(BIAS, LINEAR, FACTORS, idx) == pytest.approx([1.9, -0.3])
    # three fields: 0.5 + 0.3 + (<v0,v1> + <v0,v3> + <v1,v3>) = 0.5 + 0.3 + (0 + 2 − 1) = 1.8
    assert fm_logits(BIAS, LINEAR, FACTORS, np.array([[0, 1, 3]])) == pytest.approx([1.8])


def test_one_user_scoring_equals_the_full_sum():
    from ranking.fm import fm_logits_one_user

    rng = np.random.default_rng(0)
    linear, factors = rng.normal(size=50).astype(np.float32), rng.normal(size=(50, 4)).astype(np.float32)
    user, rows = np.array([3, 17]), rng.integers(20, 50, size=(6, 3))
    full = np.concatenate([np.broadcast_to(user, (6, 2)), rows], axis=1)
    assert fm_logits_one_user(0.1, linear, factors, user, rows) == pytest.approx(
        fm_logits(0.1, linear, factors, full), abs=1e-5)


def test_distillation_loss_by_hand():
    from training.ranking.task import distillation_loss

    def loss(y, t, s, alpha, temp):
        return float(distillation_loss(np.array([y]), np.array([t], np.float32), np.array([s], np.float32),
                                       alpha, temp))

    # y=1, teacher 0, student 0, α=½, T=2: hard = ln 2; soft target ½, soft = ln 2;
    # ½·ln 2 + ½·4·ln 2 = 2.5 ln 2
    assert loss(1, 0.0, 0.0, 0.5, 2.0) == pytest.approx(2.5 * math.log(2), rel=1e-6)
    # y=0, teacher 2, student −1, α=¼, T=2: hard = ln(1 + e^−1) = 0.3132617;
    # q = σ(1) = 0.7310586, s/T = −0.5: soft = q·softplus(0.5) + (1−q)·softplus(−0.5)
    #   = 0.7310586·0.9740770 + 0.2689414·0.4740770 = 0.8396052; ¼·0.3132617 + ¾·4·0.8396052 = 2.5971310
    assert loss(0, 2.0, -1.0, 0.25, 2.0) == pytest.approx(2.5971310, rel=1e-5)
    # α = 1 is the plain hard-label loss whatever the teacher says
    assert loss(1, -9.0, 0.0, 1.0, 3.0) == pytest.approx(math.log(2), rel=1e-6)


def test_feature_map_offsets_and_encoding():
    fields = [Field("seg", "user_behaviour__segment", "categorical", "user", vocabulary=["high_value", "normal"]),
              Field("price", "item_attributes__price", "bucket", "row", edges=[0.0, 1.0])]
    fmap = FeatureMap(fields)
    assert [f.offset for f in fmap.fields] == [0, 3] and fmap.size == 3 + 4
    rows = {"item_attributes__price": np.array([0.0, math.e - 1, -5.0, np.nan, 100.0])}
    idx = fmap.encode({"user_behaviour__segment": ["normal"]}, rows, 5)
    assert idx[:, 0].tolist() == [2] * 5  # "normal" is value 2 of the segment field, broadcast
    # edges 0, 1 on the raw values: 0 → bucket 2; e−1 → 3; −5 → 1; NaN → 0 (unknown); 100 → 3
    assert (idx[:, 1] - 3).tolist() == [2, 3, 1, 0, 3]
    assert fmap.encode({}, rows, 5)[:, 0].tolist() == [0] * 5  # no segment (a new user) → unknown
    again = FeatureMap.from_json(fmap.to_json())
    assert np.array_equal(again.encode({}, rows, 5), fmap.encode({}, rows, 5))


@pytest.fixture(scope="module")
def trained_student(tmp_path_factory):
    from training.ranking.fm_student import FMSettings, train_student
    from training.ranking.metrics import auc

    frame = synthetic_frame(4000, seed=1)
    train, val = frame.iloc[:3000].reset_index(drop=True), frame.iloc[3000:].reset_index(drop=True)
    teacher_logits = np.where(train["label_click"] == 1, 1.0, -2.0).astype(np.float32)  # a confident teacher
    trained = train_student(train, teacher_logits, val, student_spec(),
                            settings=FMSettings(epochs=3, learning_rate=0.05, buckets=8))
    assert auc(val["label_click"], trained.logits(val)) > 0.65  # the preference crosses carry the signal
    directory = tmp_path_factory.mktemp("coarse") / "v1"
    directory.mkdir()
    trained.save(directory)
    write_manifest(directory, model="coarse", feature_service="coarse_v1")
    return trained, directory, val


def test_saved_student_scores_identically(trained_student):
    trained, directory, val = trained_student
    student = FMStudent.load(directory)
    assert student.version == "v1" and student.feature_service == "coarse_v1"
    assert np.array_equal(student.score_frame(val), trained.logits(val))


def test_serving_score_equals_the_training_rows(trained_student):
    _, directory, val = trained_student
    student = FMStudent.load(directory)
    uid = val["user_id"].iloc[0]
    rows = val[val["user_id"] == uid].reset_index(drop=True)
    user = {c: rows[c].iloc[0] for c in rows if c.startswith(("user_behaviour__", "user_preferences__"))}
    items = {c: rows[c].to_numpy() for c in rows if c.startswith(("item_", "merchant_"))}
    request = {"request_unix_s": 1714560000 + 3600 * 9, "device_code": 2}  # 2024-05-01 09:00 UTC
    from ranking.context import context_features

    ctx = context_features(request["request_unix_s"], 2, items["item_attributes__price"],
                           user["user_behaviour__price_level"])
    same_request = rows.assign(**ctx)
    served = student.score(user, items, request)
    assert served.dtype == np.float32 and served.shape == (len(rows),)
    assert served == pytest.approx(student.score_frame(same_request), abs=1e-6)
    # the server's path: the item-only fields' factor and weight sums computed once for a whole
    # item table (here every validation row), the request's rows taken from it, only
    # `request_columns` passed: the same logits up to float rounding
    table = {c: val[c].to_numpy() for c in val if c.startswith(("item_", "merchant_"))}
    part = student.item_part(table, len(val))
    mine = np.flatnonzero(val["user_id"].to_numpy() == uid)
    few = {c: items[c] for c in student.request_columns if c in items}
    assert len(few) < len(items)
    fast = student.score(user, few, request, item_part={k: v[mine] for k, v in part.items()})
    assert fast.dtype == np.float32 and fast == pytest.approx(served, abs=1e-5)
    unknown = student.score({}, {"item_attributes__price": [None, 10.0]}, {"request_unix_s": 0})
    assert unknown.shape == (2,) and np.isfinite(unknown).all()


def test_tampered_or_wrong_versions_are_refused(trained_student, tmp_path):
    import shutil

    _, directory, _ = trained_student
    copy = tmp_path / "v2"
    shutil.copytree(directory, copy)
    np.save(copy / "linear.npy", np.zeros(3, np.float32))
    with pytest.raises(BadModelVersion, match="differ from the manifest"):
        FMStudent.load(copy)
    write_manifest(copy, model="ranker", feature_service="ranker_v1")
    with pytest.raises(BadModelVersion, match="not the coarse FM student"):
        FMStudent.load(copy)
    write_manifest(copy, model="coarse", feature_service="coarse_v1")
    with pytest.raises(BadModelVersion, match="do not match"):
        FMStudent.load(copy)


def test_one_value_encodes_as_an_array_of_one():
    """A request's user and context fields go through `encode_one`; it must agree with `encode`."""
    from ranking.fm import Field

    cat = Field("c", "col", "categorical", "user", vocabulary=["1", "2.5", "True", "abc", "7"])
    num = Field("x", "col", "bucket", "user", edges=[-1.0, 0.0, 2.5, 10.0])
    values = [None, np.nan, np.inf, 1, 1.0, np.float32(1.0), np.int64(7), 7.0, 2.5, np.float64(2.5), True,
              np.bool_(True), "abc", np.str_("abc"), "zzz", -5.0, 0.0, 10.0, 11, "2.5", -np.inf, 0]
    for v in values:
        arr = np.array([v], dtype=object)
        assert cat.encode_one(v) == cat.encode(arr, 1)[0], v
        if not isinstance(v, str) or v == "2.5":
            assert num.encode_one(v) == num.encode(np.array([v]) if isinstance(v, str) else arr, 1)[0], v


def _hand_student() -> FMStudent:
    """A student over every kind of field (user, request, item, per-candidate context, crosses)
    with random weights: enough to compare the serving paths without training."""
    fields = [Field("seg", "user_behaviour__segment", "categorical", "user", vocabulary=["high_value", "normal"]),
              Field("level", "user_behaviour__price_level", "bucket", "user", edges=[10.0, 50.0]),
              Field("hour", "context__hour_of_day", "categorical", "request", vocabulary=[str(h) for h in range(24)]),
              Field("top", "item_attributes__top_category", "categorical", "row", vocabulary=["a", "b"]),
              Field("price", "item_attributes__price", "bucket", "row", edges=[5.0, 20.0]),
              Field("pvu", "context__price_vs_user", "bucket", "row", edges=[0.5, 1.0, 2.0]),
              Field("cat_pref", "item_attributes__category", "cross", "category", edges=[0.1, 0.3, 0.6],
                    bag=["user_preferences__top_categorys", "user_preferences__top_category_weights"]),
              Field("brand_pref", "item_attributes__brand", "cross", "brand", edges=[0.2, 0.5],
                    bag=["user_preferences__top_brands", "user_preferences__top_brand_weights"])]
    fmap = FeatureMap(fields)
    rng = np.random.default_rng(3)
    return FMStudent(None, {}, fmap, 0.2, rng.normal(size=fmap.size).astype(np.float32),
                     rng.normal(size=(fmap.size, 4)).astype(np.float32))


@pytest.mark.parametrize("bags", [
    {"user_preferences__top_categorys": ["c1", "c2", "c3"], "user_preferences__top_category_weights": [0.5, 0.3, 0.2],
     "user_preferences__top_brands": ["b1"], "user_preferences__top_brand_weights": [1.0]},
    {},                                                                              # no preferences known
    {"user_preferences__top_categorys": np.nan, "user_preferences__top_brands": None},
    {"user_preferences__top_categorys": ["c1", "c1", None, "c9"],                    # a repeat: weights add up
     "user_preferences__top_category_weights": [0.25, 0.4, 0.3, 0.9],
     "user_preferences__top_brands": np.array(["b2", "b3"]), "user_preferences__top_brand_weights": None},
    {"user_preferences__top_categorys": [3, 4.0], "user_preferences__top_category_weights": [0.7, np.inf]},
])
def test_item_part_path_equals_full_encoding_for_any_preferences(bags):
    """The server's path (item fields pre-summed, crosses by `value_codes` per item table, one
    request's context as scalars) scores as full encoding with string comparisons does."""
    student = _hand_student()
    rng = np.random.default_rng(1)
    n = 40
    table = {"item_attributes__top_category": rng.choice(["a", "b", "zz", None], n),
             "item_attributes__price": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(1, 40, n)),
             "item_attributes__category": rng.choice(["c1", "c2", "c3", "c9", "3", "4", None], n).astype(object),
             "item_attributes__brand": rng.choice(["b1", "b2", "b3", "b4"], n)}
    user = {"user_behaviour__segment": "normal", "user_behaviour__price_level": 12.0, **bags}
    request = {"request_unix_s": 1714560000 + 3600 * 9, "device_code": 2}
    part = student.item_part(table, n)
    mine = rng.permutation(n)[:25]
    items = {k: v[mine] for k, v in table.items()}
    few = {c: items[c] for c in student.request_columns}
    assert student.request_columns == ["item_attributes__price"]
    full = student.score(user, items, request)
    fast = student.score(user, few, request, item_part={k: v[mine] for k, v in part.items()})
    assert fast == pytest.approx(full, abs=1e-5)
    # and the cross field's index is exactly what the weight-then-bucket path gives
    from ranking.features import preference_weight
    from ranking.fm import bag_entries

    f = student.feature_map.fields[6]
    users = {k: [v] for k, v in user.items()}
    assert f.kind == "cross" and f.side == "category"
    weights = preference_weight(users, items, f.bag_columns, 1, len(mine))
    entries = bag_entries(user.get("user_preferences__top_categorys"),
                          user.get("user_preferences__top_category_weights"))
    assert (f.encode_cross(entries, part["cross_codes"][mine, 0], len(mine)) == f.encode(weights, len(mine))).all()
