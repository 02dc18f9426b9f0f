"""The direct materialiser's bytes are Feast's own bytes (keys, fields, values, timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.types import Array, Bool, Float32, Float64, Int64, String, UnixTimestamp
from google.protobuf.timestamp_pb2 import Timestamp

from vitrine.featurestore import encode


def test_entity_keys_match_feast():
    ours = encode.entity_keys({"user_id": ["u1", "ü-2"], "item_id": ["i9", "i10"]}, "proj")
    for (user, item), key in zip([("u1", "i9"), ("ü-2", "i10")], ours, strict=True):
        ek = EntityKey(join_keys=["item_id", "user_id"],  # Feast sorts join keys by name
                       entity_values=[Value(string_val=item), Value(string_val=user)])
        assert key == serialize_entity_key(ek, entity_key_serialization_version=3) + b"proj"


def test_field_keys_match_feast():
    assert encode.field_key("user_behaviour", "clicks_7d") == _mmh3("user_behaviour:clicks_7d")


@pytest.mark.parametrize(("dtype", "values"), [
    (Float64, [1.5, np.nan, 0.0, -2.25]),
    (Float32, [1.5, np.nan, 3.25]),
    (Int64, [0, 5, 5, None, -3, 2**40, 127, 128, -(2**63)]),
    (String, ["a", None, "a", "ünï"]),
    (Bool, [True, False, None]),
    (Array(String), [["a", "b"], None, [], ["c"]]),
    (Array(Float32), [[0.5, 0.25], None, [1.0]]),
    (UnixTimestamp, [pd.Timestamp("2024-05-01T10:00:00Z"), None, datetime(2024, 5, 1, 10, 0, 0, 999999),
                     datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)]),
])
def test_values_match_feast(dtype, values):
    series = pd.Series(values, dtype=object if dtype not in (Float64, Float32) else float)
    ours = encode.column(series, dtype)
    # a row at a time (the real-time writer's path) gives the same bytes as a column at a time
    assert [encode.value(v, dtype) for v in values] == ours
    for value, got in zip(values, ours, strict=True):
        is_null = value is None or (isinstance(value, float) and np.isnan(value))
        if is_null:
            assert got == b""  # Feast stores a null as an empty Value
            continue
        expected = python_values_to_proto_values([value], dtype.to_value_type())[0]
        assert Value.FromString(got) == expected, (dtype, value)


def test_decoded_values_match_feasts_converter():
    from feast.type_map import feast_value_type_to_python_type

    for dtype, values in [(Int64, [0, -3, 2**40]), (Float64, [1.5]), (Float32, [0.1]), (String, ["ünï", ""]),
                          (Bool, [True, False]), (Array(String), [["a", "b"], []]), (Array(Float32), [[0.5, 0.1]]),
                          (Array(Int64), [[1, -2]]), (UnixTimestamp, [pd.Timestamp("2024-05-01T10:00:00Z")])]:
        for proto in python_values_to_proto_values(values, dtype.to_value_type()):
            raw = proto.SerializeToString()
            assert encode.decode_value(raw) == feast_value_type_to_python_type(Value.FromString(raw)), (dtype, raw)
    assert encode.decode_value(b"") is None


def test_varints_hand_values_and_empty_input():
    assert encode.varints(np.array([0, 1, 127, 128, 300, -1])) == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\xff" * 9 + b"\x01"]
    assert encode.varints(np.array([], dtype=np.int64)) == []
    assert encode.timestamps(pd.Series(pd.to_datetime(["2024-01-01T00:00:00Z"], utc=True))) != [b""]


def test_timestamps_keep_microseconds():
    stamps = pd.Series(pd.to_datetime(["2024-05-01T10:00:00.123456Z", "1970-01-01T00:00:00.000000Z"], utc=True))
    first, epoch = encode.timestamps(stamps)
    assert [encode.timestamp_value(t.value // 1000) for t in stamps] == [first, epoch]
    ts = Timestamp.FromString(first)
    assert ts.ToDatetime(tzinfo=UTC) == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert epoch == b""  # all-zero Timestamp
