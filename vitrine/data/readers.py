"""Stream CSV or Parquet input files as Arrow batches with their 1-based source row numbers.

CSV columns named in the contract are read as text (so ids stay strings and validation
sees exactly what was written); rows with the wrong number of fields are reported, not
fatal. Row numbers count data rows: row 1 is the first line after the header.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vitrine.data.schemas import TableSchema
from vitrine.errors import VitrineError

SUFFIXES = (".csv", ".parquet", ".pq")


class InputError(VitrineError, ValueError):
    """An input path that cannot be read at all (missing, unknown format, unreadable)."""


@dataclass
class SourceBatch:
    source: str
    rows: np.ndarray  # 1-based data row numbers
    table: pa.Table


@dataclass
class MalformedRow:
    source: str
    row: int
    text: str
    reason: str


def expand(path: str | Path) -> list[Path]:
    """A file, or every CSV/Parquet file below a directory (sorted, hidden files skipped)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES
                       and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts))
        if not files:
            raise InputError(f"{p}: no .csv or .parquet files in this directory")
        return files
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.suffix.lower() not in SUFFIXES:
        raise InputError(f"{p}: unknown format (expected .csv or .parquet)")
    return [p]


def _csv_batches(path: Path, schema: TableSchema, batch_rows: int,
                 malformed: list[MalformedRow]) -> Iterator[SourceBatch]:
    skipped: list[int] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # row.number is the physical line (header is line 1) → data row = line - 1
        number = (row.number - 1) if row.number is not None else -1
        skipped.append(number)
        malformed.append(MalformedRow(str(path), number, row.text,
                                      f"expected {row.expected_columns} fields, got {row.actual_columns}"))
        return "skip"

    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in schema.names},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24, use_threads=False),
                                # a quoted field may hold line breaks (legal CSV; found by the fuzz test)
                                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid,
                                                                 newlines_in_values=True),
                                convert_options=convert)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: cannot read as CSV: {e}") from e
    next_row = 1
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush() -> SourceBatch:
        nonlocal next_row, pending, pending_rows
        table = pa.Table.from_batches(pending)
        # number the good rows, stepping over the malformed ones reported so far
        candidates = np.arange(next_row, next_row + table.num_rows + len(skipped), dtype=np.int64)
        rows = candidates[~np.isin(candidates, np.asarray(skipped, dtype=np.int64))][:table.num_rows]
        next_row = int(rows[-1]) + 1 if rows.size else next_row
        pending, pending_rows = [], 0
        return SourceBatch(str(path), rows, table)

    for batch in reader:
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= batch_rows:
            yield flush()
    if pending_rows:
        yield flush()


def _parquet_batches(path: Path, batch_rows: int) -> Iterator[SourceBatch]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: cannot read as Parquet: {e}") from e
    next_row = 1
    for batch in pf.iter_batches(batch_size=batch_rows):
        n = batch.num_rows
        yield SourceBatch(str(path), np.arange(next_row, next_row + n, dtype=np.int64),
                          pa.Table.from_batches([batch]))
        next_row += n


def read_batches(path: Path, schema: TableSchema, batch_rows: int,
                 malformed: list[MalformedRow]) -> Iterator[SourceBatch]:
    if path.suffix.lower() == ".csv":
        yield from _csv_batches(path, schema, batch_rows, malformed)
    else:
        yield from _parquet_batches(path, batch_rows)
