"""The event log: append-only Parquet partitioned by UTC date, readable by pandas and Spark.

Layout: `<home>/events/date=YYYY-MM-DD/part-<batch>-<n>.parquet`, microsecond UTC
timestamps, one schema (`schemas.EVENTS`). Files are written to a hidden temporary name,
fsynced and renamed, so readers (which skip names starting with `.` or `_`) never see a
partial file. Event ids make appends idempotent: an id already in the log is a duplicate.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vitrine.data.schemas import EVENTS

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HASH_KEYS = ("vitrine-events-1", "vitrine-events-2")  # 16 bytes each, fixed forever
_NULL_SENTINEL = np.uint64(0x9E3779B97F4A7C15)
# the columns a derived event id hashes: fixed forever (a column added to the contract later,
# like `request_id`, is not part of an event's identity, so ids of logs already ingested hold)
IDENTITY_COLUMNS = ("event_time", "user_id", "item_id", "event_type", "session_id", "device", "region", "scene",
                    "position", "price", "quantity", "merchant_id")


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a cheap, well-spread 64-bit mix."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@functools.cache
def _salt(key: str) -> np.uint64:
    return np.uint64(pd.util.hash_array(np.array([key], dtype=object))[0])


def _column_hashes(arr: pa.Array, keys: tuple[str, ...]) -> list[np.ndarray]:
    """Per key, a 64-bit hash per value of one column; nulls hash to a fixed sentinel. The
    column's parsing (validity, dictionary, raw bits) is shared by the keys, and an absent
    column costs nothing: a server derives ids for a few events per call."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if arr.null_count == n:
        return [np.full(n, _NULL_SENTINEL, dtype=np.uint64) for _ in keys]
    if pa.types.is_string(arr.type):
        enc = pc.dictionary_encode(arr)
        dictionary = enc.dictionary.to_numpy(zero_copy_only=False).astype(object)
        indices = pc.fill_null(enc.indices, 0) if enc.indices.null_count else enc.indices
        idx = indices.to_numpy(zero_copy_only=False)
        out = [pd.util.hash_array(dictionary, hash_key=key, categorize=False)[idx] for key in keys]
    else:
        if pa.types.is_timestamp(arr.type):
            arr = pc.cast(arr, pa.int64())
        raw = (pc.fill_null(arr, 0) if arr.null_count else arr).to_numpy(zero_copy_only=False)
        bits = (raw.astype(np.float64) if raw.dtype.kind == "f" else raw.astype(np.int64)).view(np.uint64)
        out = [_mix(bits ^ _salt(key)) for key in keys]
    if arr.null_count:
        valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
        out = [np.where(valid, h, _NULL_SENTINEL) for h in out]
    return [h.astype(np.uint64, copy=False) for h in out]


def derive_event_ids(table: pa.Table) -> pa.Array:
    """A 128-bit content hash (32 hex chars) over the event's identity (`IDENTITY_COLUMNS`).

    The same event read from CSV or Parquet hashes the same, because it is hashed after
    validation has given it the contract's types.
    """
    n = table.num_rows
    columns = [_column_hashes(table.column(name), _HASH_KEYS) for name in IDENTITY_COLUMNS]
    lanes = []
    for k, key in enumerate(_HASH_KEYS):
        h = np.full(n, np.uint64(len(key)), dtype=np.uint64)
        for hashes in columns:
            h = _mix(h * np.uint64(31) ^ hashes[k])
        lanes.append(h)
    raw = np.stack(lanes, axis=1).astype(">u8").view(np.uint8).reshape(n, 16)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 15]
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(hexed.tobytes())])
    return fixed.cast(pa.binary()).cast(pa.string())


def fill_event_ids(table: pa.Table) -> pa.Table:
    """Keep given ids; derive the missing ones from content."""
    ids = table.column("event_id").combine_chunks()
    if ids.null_count == 0:
        return table
    derived = derive_event_ids(table)
    merged = pc.if_else(pc.is_valid(ids), ids, derived) if ids.null_count < len(ids) else derived
    return table.set_column(table.schema.get_field_index("event_id"), "event_id", merged)


def first_occurrences(ids: pa.Array) -> np.ndarray:
    """Indices of the first occurrence of each distinct id, in order."""
    enc = pc.dictionary_encode(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids)
    _, first = np.unique(enc.indices.to_numpy(zero_copy_only=False), return_index=True)
    return np.sort(first)


def event_dates(table: pa.Table) -> pa.Array:
    return pc.strftime(table.column("event_time"), format="%Y-%m-%d")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write, fsync, rename: a reader sees the whole file or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=False,
                       compression="zstd")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk keeps no half-written file (and gets its space back)
        raise
    _fsync_dir(path.parent)


class EventLog:
    """Append and read the date-partitioned event log under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: dict[str, list[pa.Array]] = {}

    def partition(self, date: str) -> Path:
        return self.root / f"date={date}"

    def dates(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name.split("=", 1)[1] for p in self.root.glob("date=*") if p.is_dir())

    def _ids_for(self, date: str) -> list[pa.Array]:
        """Ids already in a date partition, read once per EventLog and kept up to date."""
        if date not in self._known:
            part = self.partition(date)
            files = sorted(p for p in part.glob("*.parquet") if not p.name.startswith((".", "_")))
            self._known[date] = [pq.read_table(f, columns=["event_id"]).column(0).combine_chunks()
                                 for f in files]
        return self._known[date]

    def append(self, table: pa.Table, batch_id: str) -> tuple[int, int]:
        """Append rows whose event id is new. Returns (written, duplicates)."""
        table = table.select(EVENTS.names)
        keep = first_occurrences(table.column("event_id"))
        duplicates = table.num_rows - keep.size
        table = table.take(pa.array(keep))
        dates = event_dates(table)
        written = 0
        for date in pc.unique(dates).to_pylist():
            part = table.filter(pc.equal(dates, date))
            known = self._ids_for(date)
            if known:
                value_set = pa.chunked_array(known).combine_chunks()
                new = pc.invert(pc.is_in(part.column("event_id"), value_set=value_set))
                before = part.num_rows
                part = part.filter(new)
                duplicates += before - part.num_rows
            if part.num_rows == 0:
                continue
            n = len(known)
            write_parquet_atomic(part, self.partition(date) / f"part-{batch_id}-{n:05d}.parquet")
            known.append(part.column("event_id").combine_chunks())
            written += part.num_rows
        return written, duplicates

    def dataset(self) -> ds.Dataset:
        return ds.dataset(self.root, format="parquet", partitioning="hive",
                          ignore_prefixes=[".", "_"])

    def read(self, columns: list[str] | None = None, filter: pc.Expression | None = None) -> pa.Table:
        if not self.dates():
            return EVENTS.arrow_schema().empty_table()
        return self.dataset().to_table(columns=columns, filter=filter)

    def count(self) -> int:
        return self.dataset().count_rows() if self.dates() else 0
