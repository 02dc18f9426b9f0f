"""The pipeline evaluation's splits and converters, against hand-made logs."""

from __future__ import annotations

import pandas as pd
import pytest

from evaluation.split import cuts, global_cut, user_cut


def _log(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_time"])
    df["event_time"] = pd.to_datetime(df["event_time"], utc=True)
    df["_row"] = range(len(df))
    return df


LOG = _log([
    ("u1", "a", "click", "2024-05-01T10:00Z"), ("u1", "b", "impression", "2024-05-02T10:00Z"),
    ("u1", "b", "click", "2024-05-03T10:00Z"), ("u2", "a", "click", "2024-05-04T10:00Z"),
    ("u2", "c", "purchase", "2024-05-05T10:00Z"), ("u1", "a", "click", "2024-05-06T10:00Z"),
    ("u1", "d", "click", "2024-05-07T10:00Z"), ("u3", "e", "click", "2024-05-08T10:00Z"),
    ("u2", "d", "impression", "2024-05-09T10:00Z"), ("u2", "d", "add_to_cart", "2024-05-10T10:00Z"),
])


def test_global_cut_trains_strictly_before_and_holds_out_new_items():
    cut = global_cut(LOG, 0.3, "test")
    assert (cut.events["event_time"] < pd.Timestamp(cut.time)).all()
    after = LOG[LOG["event_time"] >= pd.Timestamp(cut.time)]
    assert len(cut.events) + len(after) == len(LOG)
    # positives from the cut on: u1 a (seen before: not new), u1 d, u3 e, u2 d
    assert cut.held_out == {"u1": {"d"}, "u3": {"e"}, "u2": {"d"}}


def test_validation_cut_sees_only_the_test_cuts_training_log():
    val, test = cuts(LOG, "global", 0.3)
    assert val.time < test.time
    assert set(val.events["_row"]) < set(test.events["_row"])
    assert (val.events["event_time"] < pd.Timestamp(val.time)).all()
    for user, items in val.held_out.items():
        rows = LOG[(LOG["user_id"] == user) & LOG["item_id"].isin(items)]
        assert (rows["event_time"] < pd.Timestamp(test.time)).any()


def test_user_cut_holds_out_each_users_last_positives_and_drops_their_later_events():
    cut = user_cut(LOG, 0.5, "test")
    # u1 positives a b a d: the last 2 (a again, d) held out -> new item d; u2: a c d -> last 1 (d)
    assert cut.held_out == {"u1": {"d"}, "u2": {"d"}}
    kept = cut.events
    assert not ((kept["user_id"] == "u1") & (kept["event_time"] >= pd.Timestamp("2024-05-06T10:00Z"))).any()
    assert ((kept["user_id"] == "u2") & (kept["event_type"] == "impression")).any()  # before its held-out cart
    assert (kept["user_id"] == "u3").sum() == 1  # a single positive stays in training


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        cuts(LOG, "random")
    with pytest.raises(ValueError, match="fraction"):
        cuts(LOG, "global", 1.5)


def test_converters_map_behaviours_to_the_contract(tmp_path):
    from vitrine.data.convert import convert

    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "u.data").write_text("1\t10\t5\t881250949\n1\t11\t2\t881250950\n2\t10\t4\t881250951\n")
    _, paths = convert("movielens", ml, tmp_path / "out")
    ev = pd.read_csv(paths["events"])
    assert ev["event_type"].value_counts().to_dict() == {"click": 3, "purchase": 2}  # ratings >= 4 bought
    assert ev["event_id"].is_unique and "items" not in paths

    tb = tmp_path / "tb.csv"
    tb.write_text("7,100,5,pv,1511658000\n7,100,5,cart,1511658060\n7,101,6,fav,1511658120\n8,100,5,buy,1511658180\n")
    _, paths = convert("taobao", tb, tmp_path / "out2")
    ev = pd.read_csv(paths["events"])
    assert ev["event_type"].tolist() == ["click", "add_to_cart", "add_to_cart", "purchase"]
    items = pd.read_csv(paths["items"])
    assert dict(zip(items["item_id"].astype(str), items["category"], strict=True)) == {"100": "cat/5",
                                                                                      "101": "cat/6"}


def test_shipped_extracts_convert(tmp_path):
    from vitrine.data.convert import convert, shipped

    for kind, users in (("movielens", 943), ("taobao", 157)):
        converted, _ = convert(kind, shipped(kind), tmp_path / kind)
        assert converted.events["user_id"].nunique() == users
