"""User features at request time: one Redis read of the user's hash, decoded exactly as
Feast's `get_online_features` decodes it — and with each view's TTL enforced, as the
point-in-time join of training enforces it (Feast 0.67 does not enforce TTL online).

TTL at read time: a view's row older than the feature clock minus the view's TTL is not
served (its features read as missing, the view as unknown). The feature clock is the newest
materialised end of the user views (the data's clock, not the wall clock, so a replayed older
log is served as of its own time). Without this, a user idle for more than 30 days was served
the last `clicks_30d` snapshot while every training row saw null (the 36-hour TTL of the
daily snapshot views); `vitrine skew` compares served values with the offline join.

Feast keeps every view of an entity in one Redis hash (layout: `vitrine/featurestore/encode.py`,
docs/notes/feast-internals.md §4). Feast's own read path costs milliseconds per call
(registry lookups, proto → Arrow → dict); this reader does one HGETALL and decodes the
ValueProtos with Feast's own converter, so the values are the same — `benchmarks/serving`
measures both side by side, and tests compare them field by field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vitrine.featurestore.encode import decode_timestamp, decode_value, entity_keys, field_key, timestamp_field


@dataclass(frozen=True)
class ViewSpec:
    """One online feature view of an entity: its name, (feature, Feast dtype) pairs, its TTL
    in microseconds (0: none) and its last materialised end (epoch µs, None: never)."""

    name: str
    features: tuple[tuple[str, Any], ...]
    ttl_us: int = 0
    materialised_us: int | None = None


def _us(td) -> int:
    return 0 if td is None else int(td.total_seconds() * 1_000_000)


def materialised_end(view) -> datetime | None:
    """A view's last materialised end in UTC (the registry keeps it naive), None if never."""
    end = view.most_recent_end_time
    if end is None:
        return None
    return end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)


def entity_views(store, entity: str) -> list[ViewSpec]:
    """Every online batch/push feature view of `entity` in the store's registry."""
    out = []
    for view in sorted(store.list_feature_views(), key=lambda v: v.name):
        if view.online and list(view.entities) == [entity]:
            end = materialised_end(view)
            out.append(ViewSpec(view.name, tuple((f.name, f.dtype) for f in view.features), _us(view.ttl),
                                None if end is None else int(end.timestamp() * 1_000_000)))
    return out


def feature_clock(views: Iterable[ViewSpec]) -> int | None:
    """The newest materialised end of `views` (epoch µs): "now" for the data being served."""
    ends = [v.materialised_us for v in views if v.materialised_us is not None]
    return max(ends) if ends else None


@dataclass
class UserFeatures:
    """Feast full names (`view__feature`) → Python values (None = missing), and each view's
    row time (epoch microseconds) where the user has one."""

    values: dict[str, Any]
    timestamps: dict[str, int] = field(default_factory=dict)
    shown: frozenset[str] = frozenset()  # items shown `shown_limit` times already (serving/shown.py)

    @property
    def known(self) -> bool:
        return bool(self.timestamps)


class UserFeatureReader:
    """Reads one user's online features straight from Redis (raises redis errors as they are),
    with each view's TTL enforced against `clock_us` (default: the views' feature clock)."""

    def __init__(self, client, project: str, views: Iterable[ViewSpec], clock_us: int | None = -1) -> None:
        self.client, self.project = client, project
        self.views = list(views)
        self.clock_us = feature_clock(self.views) if clock_us == -1 else clock_us
        self._fields: dict[bytes, str] = {}
        self._ts_fields: dict[bytes, str] = {}
        self._columns: dict[str, list[str]] = {}
        self._ttl = {v.name: v.ttl_us for v in self.views if v.ttl_us > 0}
        for view in self.views:
            self._ts_fields[timestamp_field(view.name)] = view.name
            self._columns[view.name] = [f"{view.name}__{name}" for name, _ in view.features]
            for name, _ in view.features:
                self._fields[field_key(view.name, name)] = f"{view.name}__{name}"
        self.names = list(self._fields.values())
        self.fields = [*self._fields, *self._ts_fields]  # the hash fields `decode` reads (for HMGET)

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
        if self.clock_us is not None and self._ttl:
            for view, ts in list(stamps.items()):
                ttl = self._ttl.get(view)
                if ttl and ts < self.clock_us - ttl:  # expired, as the training join sees it
                    del stamps[view]
                    for column in self._columns[view]:
                        values[column] = None
        return UserFeatures(values, stamps)
