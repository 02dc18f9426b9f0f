"""Feature services as the models' contract: the rankers' layout follows the service's fields,
types and tags (vitrine/featurestore/contract.py, ranking/layout.py), a field added to a
service reaches the model's inputs, and a service a model cannot read is refused with what to
fix."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.features import TeacherEncoder
from ranking.fm import FeatureMap
from ranking.layout import Layout
from tests.unit.ranking_synthetic import layout, synthetic_frame
from vitrine.featurestore.contract import ContractError, ServiceField, repo_fields


def test_ranker_v1_layout_follows_types_and_tags():
    lay = layout("ranker_v1")
    # String → categorical; an Int64 tagged categorical (member level, the context's hour) too
    assert list(lay.user_categorical) == ["segment", "age_band", "gender", "region", "member_level"]
    assert list(lay.row_categorical) == ["category", "top_category", "brand", "merchant_id", "hour_of_day",
                                         "day_of_week", "device_idx"]
    assert "user_behaviour__price_level" in lay.user_numeric and "item_attributes__is_online" in lay.row_numeric
    # bags share the candidate field's vocabulary and give one cross each
    assert lay.bags["category"].lists == "user_preferences__top_categorys"
    assert lay.bags["category"].row_column == "item_attributes__category"
    assert lay.crosses == {"category_pref": "category", "brand_pref": "brand"}
    assert lay.user_known == {"user_behaviour_known": "user_behaviour__segment",
                              "user_preferences_known": "user_preferences__top_categorys"}
    # request positions: the context's fields and the crosses, computed per request
    cat = list(lay.row_categorical.values())
    assert [cat[j] for j in lay.request_categorical] == ["context__hour_of_day", "context__day_of_week",
                                                         "context__device_idx"]
    inputs = lay.row_inputs
    assert [inputs[j] for j in lay.request_numeric] == ["context__is_weekend", "context__price_vs_user",
                                                        "category_pref", "brand_pref"]
    assert Layout.from_json(lay.to_json()).row_inputs == inputs


def test_two_tower_text_fields_are_not_ranker_inputs():
    fields = [f for f in repo_fields("two_tower_v1") if f.view in ("item_attributes", "user_preferences")
              and f.feature != "top_categorys" and f.feature != "top_brands"]
    lay = Layout("two_tower_items", fields)
    assert lay.ignored["item_attributes__title"].startswith("encoding text")
    assert "user_preferences__recent_items" in lay.ignored  # a list without weights: no encoding
    assert "item_attributes__brand" in lay.row_categorical.values()


def _field(view, feature, dtype, entity="item", **tags):
    return ServiceField(view, feature, dtype, entity, tags)


def test_a_field_added_to_a_service_becomes_an_input():
    """ranker_v1 + a new numeric item field: one more candidate input, fitted and encoded."""
    base = layout("ranker_v1")
    v2 = Layout("ranker_v2", [*base.fields, _field("item_quality", "return_rate", "float"),
                              _field("item_quality", "grade", "string")])
    assert v2.row_inputs[len(base.row_numeric)] == "item_quality__return_rate"
    assert list(v2.row_categorical)[-1] == "grade"
    assert [v2.row_inputs[j] for j in v2.request_numeric] == [base.row_inputs[j] for j in base.request_numeric]
    frame = synthetic_frame(400, seed=2)
    with pytest.raises(ContractError, match="item_quality__return_rate"):
        TeacherEncoder.fit(frame, v2)  # rows joined without the new service lack it: rebuild
    frame["item_quality__return_rate"] = np.linspace(0, 1, len(frame))
    frame["item_quality__grade"] = np.where(np.arange(len(frame)) % 2, "A", "B")
    enc = TeacherEncoder.fit(frame, v2)
    out = enc.encode_frame(frame.iloc[:10])
    assert out["row_num"].shape == (10, len(base.row_inputs) + 1) and out["row_cat"].shape == (10, 8)
    again = TeacherEncoder.from_json(enc.to_json())
    assert np.array_equal(again.encode_frame(frame.iloc[:10])["row_num"], out["row_num"])
    spec = FeatureMap.spec_of(Layout("coarse_v2", [*layout("coarse_v1").fields,
                                                   _field("item_quality", "return_rate", "float")]))
    assert spec["item_quality__return_rate"] == ("item_quality__return_rate", "bucket", "row")


@pytest.mark.parametrize(("fields", "message"), [
    ([_field("v", "x", "string", encoding="onehot")], "not one of"),
    ([_field("u", "top", "string_list", "user", encoding="bag", weights="w")], "needs tags"),
    ([_field("u", "top", "string_list", "user", encoding="bag", weights="w", matches="category"),
      _field("u", "w", "float_list", "user")], "does not list"),
    ([_field("u", "top", "string_list", "user", encoding="bag", weights="w", matches="category"),
      _field("i", "category", "string")], "weights u__w must be in"),
    ([_field("context", "weather", "int", None)], "ranking/context.py"),
])
def test_a_service_a_ranker_cannot_read_is_refused_with_what_to_fix(fields, message):
    with pytest.raises(ContractError, match=message):
        Layout("bad", fields)


def test_known_flag_must_name_a_field_of_its_view():
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    from vitrine.featurestore.contract import fields_of

    view = FeatureView(name="v", entities=[Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)],
                       schema=[Field(name="x", dtype=Float64)], tags={"known_flag": "nope"},
                       source=FileSource(path="/nonexistent", timestamp_field="event_timestamp"))
    with pytest.raises(ContractError, match="known_flag 'nope'"):
        fields_of(FeatureService(name="s", features=[view]), {"v": view}.__getitem__)
