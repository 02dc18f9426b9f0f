"""Feast's Redis online-store layout, owned here: keys, field names, values and row
timestamps, encoded exactly as Feast writes them (column at a time) and decoded exactly as
Feast reads them. Materialisation, the real-time writer and serving's reader all go through
this module; nothing else builds a key or a field.

Feast 0.67 (entity_key_serialization_version 3) stores one Redis hash per entity:
  key   = serialize_entity_key(join keys sorted by name) + project
  field = murmur3_32("<view>:<feature>") as 4 little-endian bytes → ValueProto bytes
  field = b"_ts:<view>" → google.protobuf.Timestamp of the row's event time (µs)
A null is stored as b"" (an empty Value). Layout notes with source references:
docs/notes/feast-internals.md §4. Values go through Feast's own converters; the speed comes
from converting each distinct value once and from packing float columns with NumPy.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import mmh3
import numpy as np
import pandas as pd

_U32 = struct.Struct("<I")
_STRING_TYPE = 2  # ValueType.STRING in the entity-key encoding


def field_key(view: str, feature: str) -> bytes:
    return _U32.pack(mmh3.hash(f"{view}:{feature}", signed=False))


def timestamp_field(view: str) -> bytes:
    """The field holding a view's row time in the entity's hash."""
    return f"_ts:{view}".encode()


def entity_keys(columns: dict[str, Sequence[str]], project: str) -> list[bytes]:
    """Redis keys for string join keys (`columns`: join key → values)."""
    names = sorted(columns)
    prefix = [_U32.pack(len(names))]
    for name in names:
        b = name.encode()
        prefix += [_U32.pack(_STRING_TYPE), _U32.pack(len(b)), b]
    head, tail = b"".join(prefix), project.encode()
    value_lists = [columns[n] for n in names]
    out = []
    for values in zip(*value_lists, strict=True):
        parts = [head]
        for v in values:
            b = str(v).encode()
            parts += [_U32.pack(_STRING_TYPE), _U32.pack(len(b)), b]
        parts.append(tail)
        out.append(b"".join(parts))
    return out


_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)


def varints(values: np.ndarray) -> list[bytes]:
    """Protobuf varints of int64 values (negatives as 10-byte two's complement), vectorised."""
    v = np.asarray(values).astype(np.int64).view(np.uint64)
    if len(v) == 0:
        return []
    shifted = v[:, None] >> _SHIFTS
    length = np.maximum((shifted != 0).sum(axis=1), 1)
    position = np.arange(10)[None, :]
    groups = (shifted & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(position < (length[:, None] - 1), 0x80, 0).astype(np.uint8)
    buf = groups[position < length[:, None]].tobytes()
    ends = np.cumsum(length).tolist()
    starts = [0, *ends[:-1]]
    return [buf[a:b] for a, b in zip(starts, ends, strict=True)]


def _tagged(tag: bytes, values: np.ndarray, present: np.ndarray) -> list[bytes]:
    out = [b""] * len(values)
    idx = np.flatnonzero(present)
    for i, enc in zip(idx.tolist(), varints(values[idx]), strict=True):
        out[i] = tag + enc
    return out


def timestamps(ts: pd.Series) -> list[bytes]:
    """google.protobuf.Timestamp bytes (µs precision, as Feast keeps it); naive means UTC."""
    us = pd.to_datetime(ts, utc=True).dt.as_unit("us").astype("int64").to_numpy()
    uniq, inverse = np.unique(us, return_inverse=True)
    sec, micro = np.divmod(uniq, 1_000_000)
    secs, nanos = _tagged(b"\x08", sec, sec != 0), _tagged(b"\x10", micro * 1000, micro != 0)
    encoded = [a + b for a, b in zip(secs, nanos, strict=True)]
    return [encoded[i] for i in inverse]


def _packed_floats(values: np.ndarray, tag: int, dtype: str) -> list[bytes]:
    width = np.dtype(dtype).itemsize + 1
    rec = np.empty(len(values), dtype=[("t", "u1"), ("v", dtype)])
    rec["t"], rec["v"] = tag, values
    buf = rec.tobytes()
    out = [buf[i:i + width] for i in range(0, len(buf), width)]
    for i in np.flatnonzero(np.isnan(values)):
        out[i] = b""
    return out


def _via_feast(values: list, value_type) -> list[bytes]:
    from feast.type_map import python_values_to_proto_values

    return [v.SerializeToString() for v in python_values_to_proto_values(values, value_type)]


def _is_null(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and v != v:
        return True
    return v is pd.NaT


def column(values: pd.Series, feast_dtype) -> list[bytes]:
    """ValueProto bytes for one feature column of Feast type `feast_dtype` (feast.types)."""
    from feast.types import Bool, Float32, Float64, Int64, UnixTimestamp

    if feast_dtype == Int64:  # int64_val: field 4, varint
        x = pd.to_numeric(values, errors="coerce")
        present = x.notna().to_numpy()
        return _tagged(b"\x20", x.fillna(0).to_numpy(dtype=np.int64), present)
    if feast_dtype == UnixTimestamp:  # unix_timestamp_val: field 8, whole seconds
        t = pd.to_datetime(values, utc=True)
        present = t.notna().to_numpy()
        us = t.dt.as_unit("us").astype("int64").to_numpy() if present.any() else np.zeros(len(t), np.int64)
        seconds = us // 1_000_000 + ((us < 0) & (us % 1_000_000 != 0))  # toward zero, as Feast's int(ts)
        return _tagged(b"\x40", np.where(present, seconds, 0), present)
    if feast_dtype == Bool:  # bool_val: field 7
        return [b"" if _is_null(v) else (b"\x38\x01" if v else b"\x38\x00") for v in values.tolist()]
    if feast_dtype == Float64:
        return _packed_floats(pd.to_numeric(values, errors="coerce").to_numpy(dtype="<f8", na_value=np.nan),
                              0x29, "<f8")
    if feast_dtype == Float32:
        return _packed_floats(pd.to_numeric(values, errors="coerce").to_numpy(dtype="<f4", na_value=np.nan),
                              0x35, "<f4")
    value_type = feast_dtype.to_value_type()
    items = values.tolist()
    if items and isinstance(next((v for v in items if not _is_null(v)), None), (list, np.ndarray)):
        # lists: mostly distinct per row, so convert in bulk
        present = [i for i, v in enumerate(items) if v is not None and not (isinstance(v, float) and v != v)]
        out = [b""] * len(items)
        encoded = _via_feast([list(items[i]) for i in present], value_type) if present else []
        for i, e in zip(present, encoded, strict=True):
            out[i] = e
        return out
    # scalars: convert each distinct value once
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    encoded = _via_feast(list(uniques), value_type) if len(uniques) else []
    table = [*encoded, b""]  # code -1 (null) → the last entry
    return [table[c] for c in codes.tolist()]


@dataclass(frozen=True)
class ViewLayout:
    """How one feature view's rows land in Redis: the entity's join keys, (feature, Feast
    dtype, field) per feature, the timestamp field and the source's timestamp column."""

    name: str
    keys: tuple[str, ...]
    features: tuple[tuple[str, Any, bytes], ...]
    ts_field: bytes
    ts_column: str

    @classmethod
    def of(cls, view) -> ViewLayout:
        """From a Feast `FeatureView`."""
        return cls(view.name, tuple(c.name for c in view.entity_columns),
                   tuple((f.name, f.dtype, field_key(view.name, f.name)) for f in view.features),
                   timestamp_field(view.name), view.batch_source.timestamp_field)

    @property
    def columns(self) -> list[str]:
        return [*self.keys, self.ts_column, *(name for name, _, _ in self.features)]

    def rows(self, df: pd.DataFrame, project: str) -> Iterator[tuple[bytes, list[tuple[bytes, bytes]]]]:
        """(Redis key, [(field, value bytes), ..., (timestamp field, stamp)]) per row of `df`."""
        rkeys = entity_keys({k: df[k].astype(str).tolist() for k in self.keys}, project)
        stamps = timestamps(df[self.ts_column])
        cols = [(fk, column(df[name], dtype)) for name, dtype, fk in self.features]
        for i, rkey in enumerate(rkeys):
            yield rkey, [*((fk, col[i]) for fk, col in cols), (self.ts_field, stamps[i])]

    @cached_property
    def _encoders(self) -> list[tuple[str, Callable[[Any], bytes], bytes]]:
        return [(name, encoder(dtype), fk) for name, dtype, fk in self.features]

    def row(self, values: dict[str, Any], project: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """One row (a dict with the join keys, the timestamp column and the features) as `rows`
        gives it, without pandas: for writers of a handful of rows, whose cost is pandas'
        fixed cost per column."""
        rkey = entity_keys({k: [str(values[k])] for k in self.keys}, project)[0]
        return rkey, [*((fk, encode(values.get(name))) for name, encode, fk in self._encoders),
                      (self.ts_field, timestamp_value(_epoch_us(values[self.ts_column])))]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DOUBLE, _FLOAT = struct.Struct("<d"), struct.Struct("<f")


def _varint(n: int) -> bytes:
    """One protobuf varint (negatives as 10-byte two's complement), as `varints` writes it."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _epoch_us(t) -> int:
    """A datetime (naive = UTC) or pandas Timestamp → epoch microseconds (floored)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _MICROSECOND


def timestamp_value(us: int) -> bytes:
    """A row time (epoch µs) as `timestamps` encodes it."""
    seconds, micros = divmod(us, 1_000_000)
    return (b"\x08" + _varint(seconds) if seconds else b"") + (b"\x10" + _varint(micros * 1000) if micros else b"")


def value(v: Any, feast_dtype) -> bytes:
    """One value's ValueProto bytes, the same bytes `column` gives (tested against it)."""
    return encoder(feast_dtype)(v)


_ENCODERS: dict[str, Callable[[Any], bytes]] = {}


def encoder(feast_dtype) -> Callable[[Any], bytes]:
    """`value` for one Feast type, resolved once (comparing Feast types costs more than encoding)."""
    key = repr(feast_dtype)
    found = _ENCODERS.get(key)
    if found is None:
        found = _ENCODERS[key] = _encoder(feast_dtype)
    return found


def _null(v: Any) -> bool:
    return v is None or (not isinstance(v, (list, np.ndarray)) and _is_null(v))


def _timestamp_seconds(v: Any) -> bytes:
    us = _epoch_us(v)
    return b"\x40" + _varint(us // 1_000_000 if us >= 0 else -(-us // 1_000_000))  # toward zero, as Feast


def _string_list(v: Any) -> bytes:
    from feast.protos.feast.types.Value_pb2 import StringList, Value

    return Value(string_list_val=StringList(val=[str(x) for x in v])).SerializeToString()


def _encoder(feast_dtype) -> Callable[[Any], bytes]:
    from feast.types import Array, Bool, Float32, Float64, Int64, String, UnixTimestamp

    if feast_dtype == Int64:
        encode = lambda v: b"\x20" + _varint(int(v))  # noqa: E731
    elif feast_dtype == UnixTimestamp:
        encode = _timestamp_seconds
    elif feast_dtype == Float64:
        encode = lambda v: b"\x29" + _DOUBLE.pack(v)  # noqa: E731
    elif feast_dtype == Float32:
        encode = lambda v: b"\x35" + _FLOAT.pack(v)  # noqa: E731
    elif feast_dtype == Bool:
        encode = lambda v: b"\x38\x01" if v else b"\x38\x00"  # noqa: E731
    elif feast_dtype == Array(String):
        encode = _string_list
    else:
        value_type = feast_dtype.to_value_type()
        encode = lambda v: _via_feast([list(v) if isinstance(v, np.ndarray) else v], value_type)[0]  # noqa: E731
    return lambda v: b"" if _null(v) else encode(v)


_SCALARS = frozenset({"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val", "bytes_val"})
_LISTS = frozenset({"int32_list_val", "int64_list_val", "float_list_val", "double_list_val", "string_list_val",
                    "bool_list_val", "bytes_list_val"})


def decode_value(raw: bytes) -> Any:
    """A stored ValueProto → the Python value Feast's `get_online_features` returns (b"" → None).
    Plain scalars and lists are read off the message (what Feast's converter does for them,
    at a fifth of its cost); every other kind goes through Feast's converter."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    if not raw:
        return None
    proto = Value.FromString(raw)
    kind = proto.WhichOneof("val")
    if kind in _SCALARS:
        return getattr(proto, kind)
    if kind in _LISTS:
        return list(getattr(proto, kind).val)
    return feast_value_type_to_python_type(proto)


def decode_timestamp(raw: bytes) -> int:
    """A stored row time → epoch microseconds."""
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp.FromString(raw)
    return ts.seconds * 1_000_000 + ts.nanos // 1000
