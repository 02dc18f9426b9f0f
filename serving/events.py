"""TrackEvents / POST /collect: validate, append durably, update real-time user features.

1. Each event is checked against the event contract (`vitrine.data.validate.check_batch`,
   the same checks as `vitrine ingest`, items against the served catalogue); a bad event is
   rejected with its index, field and reason, the others are kept. A batch with no valid
   event at all is an invalid request.
2. Accepted events get their stable id (given, or a content hash) and are appended to the
   event log under the home's writer lock. `EventLog.append` writes, fsyncs and renames the
   file (and fsyncs the directory) before returning, so an event is acknowledged only once
   it is on disk. A re-sent event (same id) is a duplicate: acknowledged, not applied twice.
3. The user's real-time features (`user_realtime`: counts since the last daily snapshot,
   last event time, recent and bought items) are read, updated and written back under a
   per-user lock, so the next request sees them: a click feeds recall's recent items, a
   purchase the bought filter. The write goes straight to Redis in the layout of Feast's
   push source `user_realtime_push` (`direct_pusher`: the bytes `store.push` would write,
   tested against it), not through `store.push`, which costs ~60 ms a call.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Container, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from serving.api import Rejection, TrackResult
from serving.config import ServingConfig
from serving.features import UserFeatureReader, UserFeatures
from serving.metrics import Metrics
from serving.validation import InvalidRequest, Unavailable, event_batch
from vitrine.config import Home
from vitrine.data.eventlog import EventLog, fill_event_ids
from vitrine.data.ingest import home_lock
from vitrine.data.schemas import EVENTS
from vitrine.data.validate import check_batch
from vitrine.featurestore.realtime import PUSH_SOURCE
from vitrine.online.redis_local import redis_unavailable

log = logging.getLogger("serving.events")

RT_VIEW = "user_realtime"
SNAPSHOT_VIEW = "user_behaviour"
COUNTS = {"impression": "rt_impressions", "click": "rt_clicks", "add_to_cart": "rt_carts", "purchase": "rt_purchases"}
ENGAGED = ("click", "add_to_cart", "purchase")
APPLIED_MEMORY = 200_000  # event ids remembered as applied (a retried batch is not counted twice)
LOCK_STRIPES = 64


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def events_table(events: Sequence[dict[str, Any]], now: datetime) -> pa.Table:
    """Events as text columns (as a CSV would give them); an empty event time is `now`."""
    columns = {}
    for name in EVENTS.names:
        values = [_text(e.get(name)) for e in events]
        if name == "event_time":
            values = [v or now.isoformat() for v in values]
        columns[name] = pa.array(values, type=pa.string())
    return pa.table(columns)


def updated_realtime(user_id: str, current: UserFeatures, events: pd.DataFrame, now_us: int,
                     recent_max: int, bought_max: int) -> dict[str, Any]:
    """The user's next `user_realtime` row from the stored one and the new events."""
    v = current.values
    last = v.get(f"{RT_VIEW}__rt_last_event_at")
    snapshot_us = current.timestamps.get(SNAPSHOT_VIEW)
    # counters run since the last daily snapshot: once a snapshot covers them, start again
    stale = last is None or (snapshot_us is not None and int(pd.Timestamp(last).timestamp() * 1e6) < snapshot_us)
    row: dict[str, Any] = {"user_id": user_id}
    for event_type, name in COUNTS.items():
        before = 0 if stale else int(v.get(f"{RT_VIEW}__{name}") or 0)
        row[name] = before + int((events["event_type"] == event_type).sum())
    recent = [] if stale else list(v.get(f"{RT_VIEW}__rt_recent_items") or [])
    bought = list(v.get(f"{RT_VIEW}__rt_bought_items") or [])
    for item, event_type in zip(events["item_id"], events["event_type"], strict=True):  # oldest first
        if event_type in ENGAGED:
            recent = [item, *[r for r in recent if r != item]]
        if event_type == "purchase":
            bought = [item, *[b for b in bought if b != item]]
    newest = pd.Timestamp(events["event_time"].max())
    if last is not None and not stale:
        newest = max(newest, pd.Timestamp(last).tz_convert("UTC") if pd.Timestamp(last).tzinfo else
                     pd.Timestamp(last).tz_localize("UTC"))
    row["rt_last_event_at"] = newest.to_pydatetime()
    row["rt_recent_items"] = recent[:recent_max]
    row["rt_bought_items"] = bought[:bought_max]
    # Feast keeps a row only if its timestamp is newer than the stored one
    previous = current.timestamps.get(RT_VIEW, 0)
    row["event_timestamp"] = pd.Timestamp(max(now_us, previous + 1), unit="us", tz="UTC").to_pydatetime()
    return row


class EventCollector:
    def __init__(self, home: Home, config: ServingConfig, metrics: Metrics, reader: UserFeatureReader,
                 push: Callable[[pd.DataFrame], None], known_items: Callable[[], Container[str] | None]) -> None:
        self.home, self.config, self.metrics = home, config, metrics
        self.reader, self.push, self.known_items = reader, push, known_items
        self.log = EventLog(home.events)
        self._log_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._applied: OrderedDict[str, None] = OrderedDict()
        self._applied_lock = threading.Lock()

    def track(self, events: Sequence[Any]) -> TrackResult:
        batch = event_batch(self.config, events)
        now = datetime.now(UTC)
        known = self.known_items()
        clock = pd.Timestamp(now).floor("s")
        window = (clock - pd.Timedelta(days=self.config.event_past_days),
                  clock + pd.Timedelta(minutes=self.config.event_future_minutes))
        checked = check_batch(events_table(batch, now), EVENTS, source="track", first_row=0,
                              references={"item_id": (known, "item")} if known is not None else None,
                              time_bounds={"event_time": window})
        rejections = [Rejection(int(r.row), str(r.field), str(r.reason))
                      for r in checked.rejects.itertuples(index=False)]
        self.metrics.events.labels("rejected").inc(checked.rejected_count)
        if checked.accepted.num_rows == 0:
            detail = "; ".join(f"events[{r.index}].{r.field}: {r.reason}" for r in rejections[:10])
            raise InvalidRequest(f"no valid event in the batch: {detail}")
        accepted = fill_event_ids(checked.accepted)
        with self._log_lock, home_lock(self.home):
            written, duplicates = self.log.append(accepted, batch_id=f"rt-{uuid.uuid4().hex[:12]}")
        self.metrics.events.labels("accepted").inc(written)
        self.metrics.events.labels("duplicate").inc(duplicates)
        fresh = self._not_yet_applied(accepted)
        if len(fresh):
            try:
                self._apply(fresh)
            except Exception as e:
                self._forget(fresh["event_id"])  # a resent batch applies them
                if not redis_unavailable(e):
                    raise
                self.metrics.events.labels("not_applied").inc(len(fresh))
                raise Unavailable(
                    f"the online store (Redis) is unavailable: the {len(fresh)} valid event(s) are stored in the "
                    "event log but the real-time features were not updated; resend the same batch when it is "
                    "back (stored events count as duplicates, and are applied then)") from e
        return TrackResult(accepted=written, duplicates=duplicates, rejections=rejections)

    def _not_yet_applied(self, accepted: pa.Table) -> pd.DataFrame:
        """The events whose real-time update this process has not applied (nor is applying):
        claimed here, released by `_forget` when the update fails, so a resent batch is applied
        once and a plain duplicate never."""
        df = accepted.select(["event_id", "event_time", "user_id", "item_id", "event_type"]).to_pandas()
        with self._applied_lock:
            keep = [i not in self._applied for i in df["event_id"]]
            for i in df["event_id"]:
                self._applied[i] = None
            while len(self._applied) > APPLIED_MEMORY:
                self._applied.popitem(last=False)
        return df[keep]

    def _forget(self, ids) -> None:
        with self._applied_lock:
            for i in ids:
                self._applied.pop(i, None)

    def _apply(self, events: pd.DataFrame) -> None:
        """Read-modify-push each user's real-time row, holding the users' lock stripes."""
        users = sorted(events["user_id"].unique().tolist())
        stripes = sorted({hash(u) % LOCK_STRIPES for u in users})
        for s in stripes:
            self._stripes[s].acquire()
        try:
            with self.reader.client.pipeline(transaction=False) as pipe:
                for u in users:
                    pipe.hgetall(self.reader.key(u))
                raw = pipe.execute()
            now_us = time.time_ns() // 1000
            rows = []
            for u, r in zip(users, raw, strict=True):
                group = events[events["user_id"] == u].sort_values("event_time", kind="stable")
                rows.append(updated_realtime(u, self.reader.decode(r), group, now_us,
                                             self.config.recent_items_max, self.config.bought_items_max))
            self.push(pd.DataFrame(rows))
        finally:
            for s in reversed(stripes):
                self._stripes[s].release()


def direct_pusher(store, client, project: str) -> Callable[[pd.DataFrame], None]:
    """Write rows of the push source `user_realtime_push` into every online view it feeds,
    byte for byte as Feast's `store.push(..., ONLINE)` does (vitrine/featurestore/encode.py,
    the encoder materialisation uses; tested against Feast's own push), in one Redis pipeline.

    Feast's push spends ~60 ms a call deserialising its registry (every feature view and
    service, with runtime type checks) before writing; the views are resolved here once."""
    from vitrine.featurestore import encode

    views = [v for v in store.list_feature_views()
             if v.online and getattr(v.stream_source, "name", None) == PUSH_SOURCE]
    if not views:
        raise ValueError(f"no online feature view is fed by the push source {PUSH_SOURCE!r}: run feast apply")
    layouts = [encode.ViewLayout.of(view) for view in views]

    def push(df: pd.DataFrame) -> None:
        with client.pipeline(transaction=False) as pipe:
            for layout in layouts:
                for rkey, fields in layout.rows(df, project):
                    pipe.hset(rkey, mapping=dict(fields))
            pipe.execute()

    return push


def feast_pusher(store) -> Callable[[pd.DataFrame], None]:
    """Write rows to the online store through Feast's push source (online only)."""
    from feast.data_source import PushMode

    def push(df: pd.DataFrame) -> None:
        store.push(PUSH_SOURCE, df, to=PushMode.ONLINE)

    return push
