"""Two-tower training on small structured data: it learns, it exports, it loads back the same."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrieval.tower_inputs import TowerLayout
from training.retrieval.two_tower import TwoTowerSettings, train
from vitrine.featurestore.contract import repo_fields
from vitrine.versions import BadModelVersion, verify

LAYOUT = TowerLayout("two_tower_v1", repo_fields("two_tower_v1"))
# feature name → its column (Feast full name), per tower
USER_COLUMNS = {c.split("__", 1)[1]: c for c in LAYOUT.user_columns}
ITEM_COLUMNS = {c.split("__", 1)[1]: c for c in LAYOUT.item_columns}

pytestmark = pytest.mark.slow


def frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two taste groups: users u0..u39 click category a/x, users u40..u79 click b/y."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(60)]})
    items[ITEM_COLUMNS["category"]] = ["a/x" if k < 30 else "b/y" for k in range(60)]
    items[ITEM_COLUMNS["top_category"]] = items[ITEM_COLUMNS["category"]].str[0]
    items[ITEM_COLUMNS["brand"]] = [f"brand{k % 5}" for k in range(60)]
    items[ITEM_COLUMNS["price"]] = rng.uniform(5, 50, 60)
    items[ITEM_COLUMNS["title"]] = [("red shoe " if k < 30 else "blue lamp ") + f"m{k}" for k in range(60)]
    for name in ("ctr_30d", "heat", "age_days"):
        items[ITEM_COLUMNS[name]] = rng.uniform(0, 1, 60)
    rows = []
    for u in range(80):
        group = 0 if u < 40 else 1
        for _ in range(12):
            rows.append((f"u{u}", f"i{rng.integers(0, 30) + 30 * group}", "a/x" if group == 0 else "b/y"))
    pos = pd.DataFrame(rows, columns=["user_id", "item_id", "pref"])
    pos = pos.merge(items, on="item_id")
    pos[USER_COLUMNS["segment"]] = "potential"
    pos[USER_COLUMNS["top_categorys"]] = pos["pref"].map(lambda c: [c])
    pos[USER_COLUMNS["recent_items"]] = [[] for _ in range(len(pos))]
    for name in ("age_band", "gender", "region"):
        pos[USER_COLUMNS[name]] = "x"
    for name in ("clicks_30d", "purchases_30d", "ctr_30d", "cvr_30d", "price_level"):
        pos[USER_COLUMNS[name]] = 1.0
    return pos.drop(columns="pref"), items


def test_train_learns_export_and_round_trip(tmp_path):
    from retrieval.two_tower import TwoTowerArtifact

    positives, items = frames()
    users = positives.drop_duplicates("user_id")
    result = train(LAYOUT, positives, items, out_dir=tmp_path / "v1", users=users.iloc[:5],
                   settings=TwoTowerSettings(epochs=8, batch_size=64, learning_rate=0.2, embedding_dim=16))
    assert result.item_embeddings.shape == (60, 16)
    # users of group a should find a/x items above b/y items
    art = TwoTowerArtifact.load(tmp_path / "v1")
    emb = art.user_embeddings(users)
    scores = emb @ art.item_embeddings.T
    group_a = users["user_id"].str[1:].astype(int).to_numpy() < 40
    top = np.argsort(-scores, axis=1)[:, :10]
    in_own = np.where(group_a[:, None], top < 30, top >= 30).mean()
    assert in_own > 0.9, in_own

    # save → load gives the same embeddings as the in-memory towers
    import tensorflow as tf

    from retrieval.tower_inputs import user_inputs

    direct = result.user_tower({k: tf.constant(v) for k, v in user_inputs(LAYOUT, users).items()})
    np.testing.assert_allclose(direct.numpy(), emb, rtol=1e-5, atol=1e-6)
    # the snapshot's users are embedded at export: the same vectors as the tower gives online
    first = users["user_id"].iloc[0]
    np.testing.assert_allclose(art.precomputed(first), emb[0], rtol=1e-5, atol=1e-6)
    assert art.precomputed(users["user_id"].iloc[6]) is None  # not in the snapshot given
    manifest = verify(tmp_path / "v1")
    assert manifest["feature_service"] == "two_tower_v1" and manifest["metrics"]["positives"] == len(positives)


def test_tampered_version_is_refused(tmp_path):
    from retrieval.two_tower import TwoTowerArtifact

    positives, items = frames()
    train(LAYOUT, positives, items, out_dir=tmp_path / "v1", settings=TwoTowerSettings(epochs=1, batch_size=64))
    ids = json.loads((tmp_path / "v1" / "item_ids.json").read_text())
    (tmp_path / "v1" / "item_ids.json").write_text(json.dumps(ids[::-1]))
    with pytest.raises(BadModelVersion, match="differ from the manifest"):
        TwoTowerArtifact.load(tmp_path / "v1")


def test_online_rows_give_the_same_user_inputs_as_frames():
    from retrieval.tower_inputs import user_inputs, user_inputs_from_rows

    rows = [
        {USER_COLUMNS["segment"]: "potential", USER_COLUMNS["clicks_30d"]: 12, USER_COLUMNS["ctr_30d"]: 0.07,
         USER_COLUMNS["price_level"]: None, USER_COLUMNS["recent_items"]: [f"i{k}" for k in range(25)],
         USER_COLUMNS["top_categorys"]: ["a/b"], USER_COLUMNS["region"]: float("nan")},
        {},  # a new user: nothing known
    ]
    frame = pd.DataFrame([{c: r.get(c) for c in USER_COLUMNS.values()} for r in rows])
    frame.insert(0, "user_id", ["u1", "u2"])
    expected, got = user_inputs(LAYOUT, frame), user_inputs_from_rows(LAYOUT, ["u1", "u2"], rows)
    assert expected.keys() == got.keys()
    for name in expected:
        assert expected[name].dtype == got[name].dtype, name
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)


def test_the_towers_read_their_feature_service():
    """Every field of `two_tower_v1` is a tower input, encoded as its type and tags say; a new
    field in a service version becomes one more input."""
    from vitrine.featurestore.contract import ServiceField

    service = [f.column for f in repo_fields("two_tower_v1")]
    assert sorted([*LAYOUT.user_columns, *LAYOUT.item_columns]) == sorted(service) and not LAYOUT.ignored
    assert LAYOUT.user_bags == {"user_preferences__top_categorys": "item_attributes__category"}
    assert LAYOUT.user_item_lists == ["user_preferences__recent_items"]
    assert LAYOUT.item_text == ["item_attributes__title"]
    v2 = TowerLayout("two_tower_v2", [*LAYOUT.fields, ServiceField("item_quality", "return_rate", "float", "item")])
    assert v2.item_numeric[-1] == "item_quality__return_rate" and v2.views("item")[-1] == "item_quality"
