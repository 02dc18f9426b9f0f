"""Catalogue tables (merchants, items, users): current state plus an append-only history.

Upsert rule: per key, the row with the latest version time (`updated_at`) wins; a row
without one replaces the stored row. A row identical to a version already accepted is a
duplicate and changes nothing. Every accepted new version is appended to the history, so point-in-time
attributes (an item's price last Tuesday) stay recoverable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vitrine.data.eventlog import write_parquet_atomic
from vitrine.data.schemas import TableSchema


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    # not current after the upsert (older than stored, or replaced in the same input);
    # kept in the history
    superseded: int = 0
    duplicate: int = 0

    def add(self, other: UpsertCounts) -> None:
        for name in ("inserted", "updated", "superseded", "duplicate"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _row_hashes(df: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(df, index=False).to_numpy()


@dataclass
class Catalog:
    """One catalogue table on disk."""

    root: Path
    schema: TableSchema
    _current: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def current_path(self) -> Path:
        return self.root / f"{self.schema.name}.parquet"

    @property
    def history_dir(self) -> Path:
        return self.root / f"{self.schema.name}_history"

    def exists(self) -> bool:
        return self.current_path.exists()

    def read(self) -> pd.DataFrame:
        if self._current is None:
            if self.exists():
                self._current = pq.read_table(self.current_path).to_pandas(types_mapper=None)
            else:
                self._current = self.schema.arrow_schema().empty_table().to_pandas()
        return self._current

    def keys(self) -> pa.Array:
        if self.exists():
            return pq.read_table(self.current_path, columns=[self.schema.key]).column(0).combine_chunks()
        return pa.array([], type=pa.string())

    def history(self) -> pa.Table:
        files = sorted(self.history_dir.glob("*.parquet")) if self.history_dir.exists() else []
        if not files:
            return self.schema.arrow_schema().empty_table()
        return pa.concat_tables([pq.read_table(f) for f in files])

    def upsert(self, incoming: pa.Table) -> UpsertCounts:
        """Merge validated rows into the current table; append new versions to history."""
        counts = UpsertCounts()
        if incoming.num_rows == 0:
            return counts
        key, version = self.schema.key, self.schema.version_column
        new = incoming.select(self.schema.names).to_pandas()
        current = self.read()

        # a row identical to any version already accepted (or repeated in this input)
        # changes nothing, so re-ingesting a file is a no-op
        new_hash = _row_hashes(new)
        history = self.history().to_pandas()
        seen = set(_row_hashes(history).tolist()) if len(history) else set()
        is_dup = np.zeros(len(new), dtype=bool)
        for i, h in enumerate(new_hash.tolist()):
            if h in seen:
                is_dup[i] = True
            else:
                seen.add(h)
        counts.duplicate = int(is_dup.sum())
        new = new[~is_dup]
        if new.empty:
            return counts

        # order the versions: by version time, undated rows last (they replace), input order on ties
        new = new.assign(_order=np.arange(len(new)))
        if version is not None:
            new = new.assign(_undated=new[version].isna()).sort_values(
                ["_undated", version, "_order"], kind="stable", na_position="last")
        latest_new = new.drop_duplicates(key, keep="last")
        counts.superseded += len(new) - len(latest_new)  # superseded within this input

        stored = current.set_index(key, drop=False)
        in_store = latest_new[key].isin(stored.index).to_numpy()
        wins = np.ones(len(latest_new), dtype=bool)
        if version is not None and in_store.any():
            old_version = stored.loc[latest_new[key][in_store], version].to_numpy()
            new_version = latest_new[version][in_store].to_numpy()
            older = (~pd.isna(new_version)) & (~pd.isna(old_version)) & (new_version < old_version)
            wins[np.flatnonzero(in_store)[older]] = False
        counts.inserted = int((~in_store).sum())
        counts.updated = int((in_store & wins).sum())
        counts.superseded += int((~wins).sum())

        winners = latest_new[wins].drop(columns=[c for c in ("_order", "_undated") if c in latest_new])
        merged = pd.concat([current[~current[key].isin(winners[key])], winners], ignore_index=True)
        merged = merged.sort_values(key, kind="stable").reset_index(drop=True)
        table = pa.Table.from_pandas(merged, schema=self.schema.arrow_schema(), preserve_index=False)
        write_parquet_atomic(table, self.current_path)
        history = pa.Table.from_pandas(new.drop(columns=[c for c in ("_order", "_undated") if c in new]),
                                       schema=self.schema.arrow_schema(), preserve_index=False)
        write_parquet_atomic(history, self.history_dir / f"part-{uuid.uuid4().hex[:12]}.parquet")
        self._current = merged
        return counts
