"""`vitrine ingest`: validate external logs and catalogues into a home.

Order: merchants → items → users → events, so each table can check references against
the ones before it (items name known merchants; events name known items). Bad rows go to
`<home>/rejects/<batch>-<table>.csv` with their source row, field and reason and the
original row; good rows are kept; duplicates are counted, never written twice.
"""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from vitrine.config import Home
from vitrine.data.catalog import Catalog
from vitrine.data.eventlog import EventLog, fill_event_ids
from vitrine.data.readers import MalformedRow, expand, read_batches
from vitrine.data.schemas import CATALOG_TABLES, EVENTS, ITEMS, MERCHANTS, TableSchema
from vitrine.data.validate import REJECT_COLUMNS, check_batch

DEFAULT_BATCH_ROWS = 1_000_000


@dataclass
class TableReport:
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicate: int = 0
    inserted: int = 0  # catalogues only
    updated: int = 0
    superseded: int = 0
    rejects_file: str | None = None


@dataclass
class IngestReport:
    batch_id: str
    home: str
    tables: dict[str, TableReport] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "home": self.home, "seconds": round(self.seconds, 3),
                "tables": {k: asdict(v) for k, v in self.tables.items()}}

    def render(self) -> str:
        lines = [f"ingest {self.batch_id} into {self.home} ({self.seconds:.1f}s)",
                 f"{'table':<10}{'read':>11}{'accepted':>11}{'rejected':>10}{'duplicate':>11}"]
        for name, t in self.tables.items():
            lines.append(f"{name:<10}{t.read:>11,}{t.accepted:>11,}{t.rejected:>10,}{t.duplicate:>11,}")
            if name in CATALOG_TABLES:
                lines.append(f"{'':<10}inserted {t.inserted:,}, updated {t.updated:,}, "
                             f"superseded versions kept in history {t.superseded:,}")
            if t.rejects_file:
                lines.append(f"{'':<10}rejects: {t.rejects_file}")
        return "\n".join(lines)


@contextmanager
def home_lock(home: Home) -> Iterator[None]:
    """One writer per home at a time (ingest, collector, feature jobs)."""
    home.root.mkdir(parents=True, exist_ok=True)
    with open(home.lock_file, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _RejectWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def write(self, df: pd.DataFrame) -> None:
        if df.empty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # CRLF rows: a value holding a bare CR or LF is then quoted, so the file reads back as
        # written (with "\n" rows a CR in a rejected value broke its row; found by fuzzing)
        df.to_csv(self.path, mode="a", header=not self.path.exists(), index=False, lineterminator="\r\n")
        self.count += len(df)


def _malformed_rejects(rows: list[MalformedRow]) -> pd.DataFrame:
    return pd.DataFrame([{"source": m.source, "row": m.row, "field": "", "value": m.text,
                          "reason": f"malformed CSV row: {m.reason}", "record": m.text} for m in rows],
                        columns=list(REJECT_COLUMNS))


def _references(home: Home, schema: TableSchema) -> dict[str, tuple[pa.Array, str]]:
    if schema is EVENTS:
        items = Catalog(home.catalog, ITEMS)
        return {"item_id": (items.keys(), "item")} if items.exists() else {}
    if schema is ITEMS:
        merchants = Catalog(home.catalog, MERCHANTS)
        return {"merchant_id": (merchants.keys(), "merchant")} if merchants.exists() else {}
    return {}


HISTORY_START = pd.Timestamp("1970-01-01", tz="UTC")
FUTURE_SLACK = pd.Timedelta(days=1)


def history_window() -> tuple[pd.Timestamp, pd.Timestamp]:
    """Event times `vitrine ingest` accepts: any history since 1970, nothing more than a day
    ahead of this machine's clock (an event dated 2262 would move every feature clock there)."""
    return HISTORY_START, pd.Timestamp.now(tz="UTC").floor("s") + FUTURE_SLACK


def _ingest_table(home: Home, schema: TableSchema, files: Sequence[Path], batch_id: str,
                  batch_rows: int, progress: bool) -> TableReport:
    report = TableReport()
    rejects = _RejectWriter(home.rejects / f"{batch_id}-{schema.name}.csv")
    references = _references(home, schema)
    bounds = {"event_time": history_window()} if schema is EVENTS else None
    log = EventLog(home.events) if schema is EVENTS else None
    catalog = Catalog(home.catalog, schema) if schema is not EVENTS else None
    bar = _progress(progress, schema.name)
    for path in files:
        malformed: list[MalformedRow] = []
        for batch in read_batches(path, schema, batch_rows, malformed):
            checked = check_batch(batch.table, schema, source=batch.source, first_row=batch.rows,
                                  references=references, time_bounds=bounds)
            rejects.write(checked.rejects)
            report.read += batch.table.num_rows
            report.rejected += checked.rejected_count
            if log is not None:
                accepted = fill_event_ids(checked.accepted)
                written, dups = log.append(accepted, batch_id)
                report.accepted += written
                report.duplicate += dups
            else:
                counts = catalog.upsert(checked.accepted)
                report.accepted += checked.accepted.num_rows - counts.duplicate
                report.duplicate += counts.duplicate
                report.inserted += counts.inserted
                report.updated += counts.updated
                report.superseded += counts.superseded
            if bar is not None:
                bar.update(batch.table.num_rows)
            rejects.write(_malformed_rejects(malformed))
            report.read += len(malformed)
            report.rejected += len(malformed)
            malformed.clear()
    if bar is not None:
        bar.close()
    if rejects.count:
        report.rejects_file = str(rejects.path)
    return report


def _progress(enabled: bool, name: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"ingest {name}", unit=" rows", unit_scale=True, leave=False)


def ingest(home: Home, *, events: Sequence[str | Path] = (), users: Sequence[str | Path] = (),
           items: Sequence[str | Path] = (), merchants: Sequence[str | Path] = (),
           batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False) -> IngestReport:
    """Validate and load the given files into `home`. Safe to re-run with the same files."""
    if not any((events, users, items, merchants)):
        raise ValueError("nothing to ingest: give at least one of events, users, items, merchants")
    plan = [(schema, [f for p in paths for f in expand(p)])  # every input readable before any write
            for schema, paths in ((MERCHANTS, merchants), (ITEMS, items),
                                  (CATALOG_TABLES["users"], users), (EVENTS, events)) if paths]
    home.ensure()
    started = time.perf_counter()
    batch_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    report = IngestReport(batch_id=batch_id, home=str(home.root))
    with home_lock(home):
        for schema, files in plan:
            report.tables[schema.name] = _ingest_table(home, schema, files, batch_id, batch_rows, progress)
    report.seconds = time.perf_counter() - started
    return report
