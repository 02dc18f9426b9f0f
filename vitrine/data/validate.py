"""Row-level validation of one batch against a table contract, vectorised with Arrow.

A batch comes in as read (CSV text or typed Parquet); it goes out as a table typed
exactly as the contract says, plus one reject record per failing (row, field). A row with
any failure is rejected whole; every other row is kept.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from vitrine.data.schemas import Column, Kind, TableSchema

REJECT_COLUMNS = ("source", "row", "field", "value", "reason", "record")
INT64_RANGE = (-(2.0 ** 63), 2.0 ** 63)


@dataclass
class Checked:
    """The accepted rows of a batch (typed) and the reject records of the rest."""

    accepted: pa.Table
    accepted_rows: np.ndarray  # source row numbers of the accepted rows
    rejects: pd.DataFrame
    rejected_count: int


@dataclass
class _Failure:
    mask: np.ndarray  # True where the row fails
    field: str
    reason: str


def _blank_to_null(arr: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(arr)
    blank = pc.equal(trimmed, "")
    if not blank.true_count:
        return trimmed
    return pc.if_else(blank, pa.scalar(None, pa.string()), trimmed)


def _as_text(arr: pa.Array) -> pa.Array:
    if arr.null_count == len(arr):  # an absent field (every row missing)
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        if pa.types.is_floating(arr.type):
            # an id column read as float (e.g. CSV-to-Parquet tools) must not become "12.0"
            as_int = pc.cast(arr, pa.int64(), safe=False)
            whole = pc.equal(pc.cast(as_int, arr.type), arr)
            arr = pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(arr, pa.string()))
        else:
            arr = pc.cast(arr, pa.string())
    return _blank_to_null(arr if arr.type == pa.string() else arr.cast(pa.string()))


def _np_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count:  # each compute call costs ~10 µs: a server's batch of 100 makes ~70 of them
        arr = pc.fill_null(arr, False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


# A server validates a few events per call, where each compute call's fixed cost (~10 µs, twice
# that when the process has been idle) is the price: the checks below count first (`true_count`,
# `null_count`: no call) and build a row mask only when some row fails.
@functools.cache
def _value_set(allowed: tuple[str, ...]) -> pa.Array:
    return pa.array(allowed, pa.string())


# the instants pandas can hold (datetime64[ns]), in µs: beyond them a value is unparsable, as
# pandas would say, whoever parses it
_PANDAS_RANGE = (pd.Timestamp.min.value // 1000 + 1, pd.Timestamp.max.value // 1000)


def _parse_timestamp(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Timestamp column → (timestamp[us, UTC], mask of present-but-unparsable)."""
    target = pa.timestamp("us", tz="UTC")
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = pa.Array.from_buffers(pa.timestamp(arr.type.unit, tz="UTC"), len(arr), arr.buffers(),
                                        null_count=arr.null_count, offset=arr.offset)
        return pc.cast(arr, target, safe=False), np.zeros(len(arr), dtype=bool)
    if pa.types.is_date(arr.type):
        return pc.cast(pc.cast(arr, pa.timestamp("us")), target), np.zeros(len(arr), dtype=bool)
    text = _as_text(arr)
    try:  # every value ISO-8601 with a zone (what servers and exports send): Arrow parses it alone
        parsed = pc.cast(text, target)
        lo, hi = pc.min_max(parsed).values()
        if lo.as_py() is None or (_PANDAS_RANGE[0] <= lo.value and hi.value <= _PANDAS_RANGE[1]):
            return parsed, np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # no zone, nanoseconds, beyond pandas' years, unparsable: pandas decides value by value
    present = _np_mask(pc.is_valid(text))
    series = pd.Series(text.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    bad = present & parsed.isna().to_numpy()
    values = parsed.dt.as_unit("us") if hasattr(parsed.dt, "as_unit") else parsed
    return pa.Array.from_pandas(values, type=target), bad


def _parse_number(arr: pa.Array, kind: Kind) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """Numeric column → (typed array, mask of unparsable, mask of non-integer for INT, mask of
    integers outside int64)."""
    n = len(arr)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
        # past 2^53 an integer rounds (a typed 2^63 - 1 then reads as outside int64, as its text does)
        values = pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        unparsable = np.zeros(n, dtype=bool)
    else:
        text = _as_text(arr)
        present = _np_mask(pc.is_valid(text))
        try:  # every value a plain number: Arrow parses it alone
            values = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = pd.to_numeric(pd.Series(text.to_numpy(zero_copy_only=False), dtype=object),
                                   errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        values = np.where(present, values, np.nan)
        unparsable = present & np.isnan(values)
    values = np.asarray(values, dtype=float)
    unparsable |= np.isinf(values)
    not_int = np.zeros(n, dtype=bool)
    too_big = np.zeros(n, dtype=bool)
    if kind is Kind.INT:
        with np.errstate(invalid="ignore"):
            too_big = (values < INT64_RANGE[0]) | (values >= INT64_RANGE[1])  # never cast past int64
        values = np.where(too_big | unparsable, np.nan, values)
        finite = np.isfinite(values)
        not_int = finite & (np.floor(values) != values)
        out = pa.array(np.where(finite, values, 0).astype(np.int64), mask=~finite)
    else:
        out = pa.array(values, mask=~np.isfinite(values), type=pa.float64())
    return out, unparsable, not_int, too_big


def _check_column(col: Column, raw: pa.Array | None, n: int, failures: list[_Failure],
                  time_bounds: tuple[datetime, datetime] | None = None) -> pa.Array:
    if raw is None:
        if col.required:
            failures.append(_Failure(np.ones(n, dtype=bool), col.name,
                                     f"required column {col.name!r} is missing from the file"))
        return pa.nulls(n, col.arrow_type)
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()

    if col.kind is Kind.TIMESTAMP:
        out, bad = _parse_timestamp(raw)
        if bad.any():
            failures.append(_Failure(bad, col.name, "unparsable timestamp (use ISO-8601, e.g. "
                                                    "2024-05-01T12:30:00Z)"))
        if time_bounds is not None and out.null_count < len(out):
            lo, hi = (pa.scalar(pd.Timestamp(t).to_pydatetime(), pa.timestamp("us", tz="UTC")) for t in time_bounds)
            first, last = pc.min_max(out).values()
            outside = np.zeros(n, dtype=bool)
            if first.value < lo.value or last.value > hi.value:
                outside = _np_mask(pc.or_(pc.less(out, lo), pc.greater(out, hi))) & ~bad
            if outside.any():
                failures.append(_Failure(outside, col.name, f"outside the accepted window {time_bounds[0].isoformat()} "
                                                            f".. {time_bounds[1].isoformat()}"))
    elif col.kind in (Kind.INT, Kind.FLOAT):
        out, unparsable, not_int, too_big = _parse_number(raw, col.kind)
        if unparsable.any():
            failures.append(_Failure(unparsable, col.name, f"not a number ({col.kind.value} expected)"))
        if too_big.any():
            failures.append(_Failure(too_big, col.name, "outside the 64-bit integer range"))
        if not_int.any():
            failures.append(_Failure(not_int, col.name, "not an integer"))
        values = pc.cast(out, pa.float64(), safe=False).to_numpy(zero_copy_only=False)  # |x| > 2^53: no error
        with np.errstate(invalid="ignore"):
            if col.min_value is not None:
                low = values < col.min_value
                if low.any():
                    failures.append(_Failure(low, col.name, f"below the minimum {col.min_value:g}"))
            if col.max_value is not None:
                high = values > col.max_value
                if high.any():
                    failures.append(_Failure(high, col.name, f"above the maximum {col.max_value:g}"))
    else:
        out = _as_text(raw)
        present = len(out) - out.null_count
        limit = col.length_limit
        if limit is not None and present:
            long = pc.greater(pc.utf8_length(out), limit)
            if long.true_count:
                failures.append(_Failure(_np_mask(long), col.name, f"longer than {limit:,} characters"))
        if col.kind is Kind.ENUM and present:
            out = pc.utf8_lower(out)
            known = pc.is_in(out, value_set=_value_set(col.allowed))  # a missing value: false
            if known.true_count < present:
                unknown = _np_mask(pc.and_(pc.is_valid(out), pc.invert(known)))
                failures.append(_Failure(unknown, col.name,
                                         "unknown value; allowed: " + ", ".join(col.allowed)))

    if col.required and out.null_count:
        missing = ~_np_mask(pc.is_valid(out))
        # a value that failed to parse already has its own, more precise reason
        already = np.zeros(n, dtype=bool)
        for f in failures:
            if f.field == col.name:
                already |= f.mask
        missing &= ~already
        if missing.any():
            failures.append(_Failure(missing, col.name, "required value is empty"))
    return out


def check_references(values: pa.Array, known, field_name: str, what: str) -> _Failure | None:
    """Rows whose (non-null) `values` are not in `known`: an Arrow array (bulk ingest), or any
    Python container with `in` (a server's few events against a 100k-item catalogue: Arrow
    would hash the whole catalogue on every call)."""
    if isinstance(known, (pa.Array, pa.ChunkedArray)):
        unknown = _np_mask(pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known))))
    else:
        unknown = np.array([v is not None and v not in known for v in values.to_pylist()], dtype=bool)
    if unknown.any():
        return _Failure(unknown, field_name, f"unknown {what} (not in the {what}s catalogue)")
    return None


def check_batch(batch: pa.Table | pa.RecordBatch, schema: TableSchema, *, source: str,
                first_row: int | np.ndarray, references: dict[str, tuple[object, str]] | None = None,
                time_bounds: dict[str, tuple[datetime, datetime]] | None = None) -> Checked:
    """Validate one batch. `first_row` is the 1-based source row of its first row (or an
    explicit array of row numbers); `references` maps a column to (known ids, what): an
    Arrow array or a Python set/dict; `time_bounds` a timestamp column to its accepted
    (earliest, latest), both inclusive (aware datetimes or pandas Timestamps)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    n = table.num_rows
    rows = (np.arange(first_row, first_row + n, dtype=np.int64) if np.isscalar(first_row)
            else np.asarray(first_row, dtype=np.int64))
    failures: list[_Failure] = []
    columns = {}
    for col in schema.columns:
        raw = table.column(col.name) if col.name in table.column_names else None
        columns[col.name] = _check_column(col, raw, n, failures, (time_bounds or {}).get(col.name))
    for name, (known, what) in (references or {}).items():
        f = check_references(columns[name], known, name, what)
        if f is not None:
            failures.append(f)

    clean = pa.table(columns, schema=schema.arrow_schema())
    bad = np.zeros(n, dtype=bool)
    for f in failures:
        bad |= f.mask
    rejects = _reject_records(table, failures, rows, source) if bad.any() else _empty_rejects()
    keep = np.flatnonzero(~bad)
    accepted = clean if keep.size == n else clean.take(pa.array(keep))
    return Checked(accepted=accepted, accepted_rows=rows[keep], rejects=rejects,
                   rejected_count=int(bad.sum()))


_EMPTY_REJECTS = None


def _empty_rejects() -> pd.DataFrame:
    global _EMPTY_REJECTS
    if _EMPTY_REJECTS is None:  # built once: a server checks a handful of events per call
        _EMPTY_REJECTS = pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "object")
                                       for c in REJECT_COLUMNS})
    return _EMPTY_REJECTS.copy()


def _reject_records(table: pa.Table, failures: list[_Failure], rows: np.ndarray,
                    source: str) -> pd.DataFrame:
    """One record per (row, field) failure, carrying the original row as JSON so nothing is lost."""
    bad_idx = np.flatnonzero(np.logical_or.reduce([f.mask for f in failures]))
    originals = table.take(pa.array(bad_idx)).to_pylist()
    original_by_idx = dict(zip(bad_idx.tolist(), originals, strict=True))
    out = []
    for f in failures:
        for i in np.flatnonzero(f.mask).tolist():
            record = original_by_idx[i]
            value = record.get(f.field)
            out.append({
                "source": source,
                "row": int(rows[i]),
                "field": f.field,
                "value": "" if value is None else str(value),
                "reason": f.reason,
                "record": json.dumps(record, default=str, sort_keys=True),
            })
    return pd.DataFrame(out, columns=list(REJECT_COLUMNS)).sort_values(["row", "field"], kind="stable")
