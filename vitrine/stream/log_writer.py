"""The log writers: a stream's group committed to a dated Parquet log — the event log (the
event stream's `event-log` group) and the exposure log (`serving.exposures`).

It collects entries until `max_events` events or `max_delay_s` after the first, then writes
one Parquet file per date the batch touches — named after the batch's first and last entry
ids, written to a hidden name, fsynced and renamed (`write_parquet_atomic`) — and only then
acknowledges the entries and trims the stream. Killed at any moment, it finds the batch it
was working on pending on restart (`recover`): exactly the entries it had read and not
acknowledged, so it rewrites the same files under the same names, and each acknowledged
event is in the log exactly once. Duplicates were dropped at append (by event id, within the
stream's window), so nothing here holds the day's ids: memory is one batch.

One writer per log runs at a time (a lease in the stream, renewed each step): a second
process's writer waits, and takes over once the first stops renewing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from vitrine.data.eventlog import write_parquet_atomic
from vitrine.data.schemas import EVENTS
from vitrine.stream.base import LOG_GROUP, Entry, EventStream

log = logging.getLogger("vitrine.stream.log_writer")

CONSUMER = "writer"
LEASE_MS = 15_000


class StreamLogWriter:
    """`group` of `stream` into `<root>/date=YYYY-MM-DD/` by the UTC day of `time_column`,
    rows cast to `schema`."""

    def __init__(self, stream: EventStream, root, *, group: str, schema: pa.Schema, time_column: str,
                 max_events: int = 50_000, max_delay_s: float = 5.0, owner: str | None = None) -> None:
        self.stream, self.root, self.group = stream, Path(root), group
        self.schema, self.time_column = schema, time_column
        self.max_events, self.max_delay_s = max_events, max_delay_s
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self._batch: list[Entry] = []
        self._events = 0
        self._since = 0.0
        self._recovered = False
        self.committed = 0  # events written by this writer

    def active(self) -> bool:
        """Whether this writer holds the lease (taking or renewing it)."""
        return self.stream.lease(f"{self.group}-writer", self.owner, LEASE_MS)

    def recover(self) -> int:
        """Commit the batch a previous writer left pending (same entries, same files)."""
        pending = self.stream.read(self.group, CONSUMER, count=1000, pending=True)
        self._recovered = True
        return self._commit(pending) if pending else 0

    def step(self, block_ms: int = 500) -> int:
        """Read what is new (waiting up to `block_ms`) and commit when the batch is full or
        old enough. Returns the events committed (0 most of the time); without the lease nothing,
        after waiting `block_ms`."""
        if not self.active():
            self._batch, self._events = [], 0  # another writer has them (they stay pending there)
            self._recovered = False
            time.sleep(block_ms / 1000)  # wait as a read would: asking again at once spun a core
            return 0
        if not self._recovered:
            return self.recover()
        room = max(1, self.max_events - self._events)
        wait = block_ms if not self._batch else max(1, int(min(block_ms, self._left_s() * 1000)))
        for entry in self.stream.read(self.group, CONSUMER, count=min(room, 1000), block_ms=wait):
            if not self._batch:
                self._since = time.monotonic()
            self._batch.append(entry)
            self._events += entry.events.num_rows
        if self._batch and (self._events >= self.max_events or self._left_s() <= 0):
            return self.flush()
        return 0

    def _left_s(self) -> float:
        return self.max_delay_s - (time.monotonic() - self._since)

    def flush(self) -> int:
        """Commit the batch being collected now."""
        batch, self._batch, self._events = self._batch, [], 0
        return self._commit(batch) if batch else 0

    def _commit(self, entries: list[Entry]) -> int:
        schema = self.schema
        table = pa.concat_tables([_conform(e.events, schema) for e in entries])
        name = f"part-stream-{entries[0].entry_id}-{entries[-1].entry_id}.parquet"
        if table.num_rows:
            dates = pc.strftime(table.column(self.time_column), format="%Y-%m-%d")
            for date in pc.unique(dates).to_pylist():
                write_parquet_atomic(table.filter(pc.equal(dates, date)), self.root / f"date={date}" / name)
        self.stream.ack(self.group, [e.entry_id for e in entries])
        self.stream.trim()
        self.committed += table.num_rows
        log.info("committed to the log", extra={"log": self.root.name, "events": table.num_rows,
                                                 "entries": len(entries), "first": entries[0].entry_id,
                                                 "last": entries[-1].entry_id})
        return table.num_rows


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in order (nulls for columns an older writer did not have)."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def event_log_writer(stream: EventStream, log_root, **kwargs) -> StreamLogWriter:
    """The event log's writer: the event stream's `event-log` group into `<home>/events`."""
    return StreamLogWriter(stream, log_root, group=LOG_GROUP, schema=EVENTS.arrow_schema(), time_column="event_time",
                           **kwargs)
