"""TrackEvents / POST /collect: validate, then append to the event stream.

1. Each event is checked against the event contract (`vitrine.data.validate.check_batch`,
   the same checks as `vitrine ingest`, items against the served catalogue, times within a
   window around the server's clock); a bad event is rejected with its index, field and
   reason, the others are kept. A batch with no valid event at all is an invalid request.
2. Accepted events get their stable id (given, or a content hash) and are appended to the
   event stream (`vitrine.stream`) as one entry. The call is acknowledged only once the
   stream holds them; an id the stream already took (within its window, from any process)
   is a duplicate: acknowledged, not taken twice. Redis down: `UNAVAILABLE`, nothing stored.
3. Everything downstream reads the stream: the event-log writer (the dated Parquet log) and
   the real-time user features (`serving.realtime`), run by `serving.consumers`.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from serving.api import Rejection, TrackResult
from serving.config import ServingConfig
from serving.metrics import Metrics
from serving.validation import InvalidRequest, Unavailable, batch_size, event_batch
from vitrine.data.eventlog import fill_event_ids, first_occurrences
from vitrine.data.schemas import EVENTS
from vitrine.data.validate import check_batch
from vitrine.stream.base import EventStream, StreamUnavailable


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def events_table(events: Sequence[dict[str, Any]]) -> pa.Table:
    """Events as text columns (as a CSV would give them)."""
    return pa.table({name: pa.array([_text(e.get(name)) for e in events], type=pa.string()) for name in EVENTS.names})


def _now_if_blank(table: pa.Table, now: datetime) -> pa.Table:
    """A missing or blank event time is `now`."""
    if "event_time" not in table.column_names:
        return table.append_column("event_time", pa.array([now.isoformat()] * table.num_rows, pa.string()))
    times = table.column("event_time")
    blank = pc.equal(pc.utf8_trim_whitespace(times), "")
    if not times.null_count and not any(chunk.true_count for chunk in blank.chunks):
        return table
    filled = pc.if_else(pc.fill_null(blank, True), pa.scalar(now.isoformat(), pa.string()), times)
    return table.set_column(table.column_names.index("event_time"), "event_time", filled)


class EventCollector:
    def __init__(self, config: ServingConfig, metrics: Metrics, stream: EventStream,
                 known_items: Callable[[], Container[str] | None]) -> None:
        self.config, self.metrics, self.stream, self.known_items = config, metrics, stream, known_items

    def track(self, events: Sequence[Any] | pa.Table) -> TrackResult:
        """`events`: objects (JSON, `POST /collect`), or a table of the event fields as sent
        (`TrackEvents`: text, and the optional numbers typed; built column by column, without
        a dict per event)."""
        now = datetime.now(UTC)
        if isinstance(events, pa.Table):
            batch_size(self.config, events.num_rows)
        else:
            events = events_table(event_batch(self.config, events))
        table = _now_if_blank(events, now)
        known = self.known_items()
        clock = now.replace(microsecond=0)
        window = (clock - timedelta(days=self.config.event_past_days),
                  clock + timedelta(minutes=self.config.event_future_minutes))
        checked = check_batch(table, EVENTS, source="track", first_row=0,
                              references={"item_id": (known, "item")} if known is not None else None,
                              time_bounds={"event_time": window})
        rejections = [Rejection(int(r.row), str(r.field), str(r.reason))
                      for r in checked.rejects.itertuples(index=False)] if checked.rejected_count else []
        self.metrics.events.labels("rejected").inc(checked.rejected_count)
        if checked.accepted.num_rows == 0:
            detail = "; ".join(f"events[{r.index}].{r.field}: {r.reason}" for r in rejections[:10])
            raise InvalidRequest(f"no valid event in the batch: {detail}")
        accepted = fill_event_ids(checked.accepted).select(EVENTS.names)
        first = first_occurrences(accepted.column("event_id"))  # an id twice in one batch: once
        in_batch = accepted.num_rows - len(first)
        if in_batch:
            accepted = accepted.take(pa.array(first))
        try:
            appended = self.stream.append(accepted)
        except StreamUnavailable as e:
            self.metrics.events.labels("not_stored").inc(len(first))
            raise Unavailable(f"{e}; none of the {len(first)} valid event(s) was stored: resend the batch "
                              "when it is back (events already taken count as duplicates)") from e
        self.metrics.events.labels("accepted").inc(appended.written)
        self.metrics.events.labels("duplicate").inc(appended.duplicates + in_batch)
        return TrackResult(accepted=appended.written, duplicates=appended.duplicates + in_batch,
                           rejections=rejections)
