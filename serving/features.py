"""User features at request time: one Redis read of the user's hash, decoded exactly as
Feast's `get_online_features` decodes it.

Feast keeps every view of an entity in one Redis hash (layout: `vitrine/featurestore/encode.py`,
docs/notes/feast-internals.md §4). Feast's own read path costs milliseconds per call
(registry lookups, proto → Arrow → dict); this reader does one HGETALL and decodes the
ValueProtos with Feast's own converter, so the values are the same — `benchmarks/serving`
measures both side by side, and tests compare them field by field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vitrine.featurestore.encode import decode_timestamp, decode_value, entity_keys, field_key, timestamp_field


@dataclass(frozen=True)
class ViewSpec:
    """One online feature view of an entity: its name and (feature, Feast dtype) pairs."""

    name: str
    features: tuple[tuple[str, Any], ...]


def entity_views(store, entity: str) -> list[ViewSpec]:
    """Every online batch/push feature view of `entity` in the store's registry."""
    out = []
    for view in sorted(store.list_feature_views(), key=lambda v: v.name):
        if view.online and list(view.entities) == [entity]:
            out.append(ViewSpec(view.name, tuple((f.name, f.dtype) for f in view.features)))
    return out


@dataclass
class UserFeatures:
    """Feast full names (`view__feature`) → Python values (None = missing), and each view's
    row time (epoch microseconds) where the user has one."""

    values: dict[str, Any]
    timestamps: dict[str, int] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return bool(self.timestamps)


class UserFeatureReader:
    """Reads one user's online features straight from Redis (raises redis errors as they are)."""

    def __init__(self, client, project: str, views: Iterable[ViewSpec]) -> None:
        self.client, self.project = client, project
        self.views = list(views)
        self._fields: dict[bytes, str] = {}
        self._ts_fields: dict[bytes, str] = {}
        for view in self.views:
            self._ts_fields[timestamp_field(view.name)] = view.name
            for name, _ in view.features:
                self._fields[field_key(view.name, name)] = f"{view.name}__{name}"
        self.names = list(self._fields.values())

    def key(self, user_id: str) -> bytes:
        return entity_keys({"user_id": [user_id]}, self.project)[0]

    def read(self, user_id: str) -> UserFeatures:
        return self.decode(self.client.hgetall(self.key(user_id)))

    def decode(self, raw: dict[bytes, bytes]) -> UserFeatures:
        values: dict[str, Any] = dict.fromkeys(self.names)
        stamps: dict[str, int] = {}
        for k, v in raw.items():
            name = self._fields.get(k)
            if name is not None:
                values[name] = decode_value(v)
            elif k in self._ts_fields and v:
                stamps[self._ts_fields[k]] = decode_timestamp(v)
        return UserFeatures(values, stamps)
