"""What is hot now: item popularity counted from the event stream in real time, for the hot
recall route (`ServingConfig.hot_live_share`; 0 = off, and then nothing here runs).

The daily heat changes once a day; a product that sells out by noon is hot before the next
batch knows it. A consumer group of its own on the event stream (`hot-counts`) adds each
event's weight (`EVENT_WEIGHTS`: click 1, add to cart 3, purchase 5; impressions nothing) to
its item in a sorted set per time bucket of the event's time (`vitrine:hot:<bucket start>`,
expiring once the bucket has left the window). Every server process, on its refresh cycle,
sums the window's buckets in Redis (ZUNIONSTORE), takes the top items and hands them, as
catalogue rows, to the hot route: the first `hot_live_share` of the route's list is then what
is hot in the last `hot_live_window_s`, the rest the daily order.

Counting is at least once: a consumer killed between its writes and its acknowledgement
counts that batch again when it recovers (a few events counted twice in one hour's window).
Events older than the window when read are not counted.
"""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vitrine.data.schemas import EVENT_WEIGHTS
from vitrine.stream.base import Entry, EventStream

HOT_GROUP = "hot-counts"
READ_COUNT = 100  # stream entries (one TrackEvents batch each) per read
KEY_PREFIX = "vitrine:hot:"


def bucket_key(start_s: int) -> str:
    return f"{KEY_PREFIX}{start_s}"


class HotCounter:
    def __init__(self, stream: EventStream, client, window_s: int, bucket_s: int) -> None:
        self.stream, self.client = stream, client
        self.window_s, self.bucket_s = window_s, bucket_s
        self.consumer = "hot"  # one name for every process: a killed one's pending entries are taken over

    def recover(self) -> int:
        """This consumer's pending entries (read before a crash, not acknowledged)."""
        return self._apply(self.stream.read(HOT_GROUP, self.consumer, READ_COUNT, pending=True))

    def step(self, block_ms: int = 200) -> int:
        return self._apply(self.stream.read(HOT_GROUP, self.consumer, READ_COUNT, block_ms=block_ms))

    def _apply(self, entries: list[Entry], now_s: float | None = None) -> int:
        if not entries:
            return 0
        now_s = time.time() if now_s is None else now_s
        oldest = now_s - self.window_s
        sums: dict[tuple[int, str], float] = {}
        for entry in entries:
            rows = entry.events
            times_us = pc.cast(rows.column("event_time"), pa.int64()).to_pylist()
            for time_us, item, kind in zip(times_us, rows.column("item_id").to_pylist(),
                                           rows.column("event_type").to_pylist(), strict=True):
                weight = EVENT_WEIGHTS.get(kind, 0.0)
                at = time_us / 1e6
                if weight and item and at >= oldest:
                    start = int(at // self.bucket_s) * self.bucket_s
                    sums[start, item] = sums.get((start, item), 0.0) + weight
        if sums:
            pipe = self.client.pipeline(transaction=False)
            for (start, item), weight in sums.items():
                pipe.zincrby(bucket_key(start), weight, item)
            for start in {start for start, _ in sums}:
                pipe.expireat(bucket_key(start), start + self.bucket_s + self.window_s + 60)
            pipe.execute()
        self.stream.ack(HOT_GROUP, [e.entry_id for e in entries])
        return len(entries)


def hot_now(client, window_s: int, bucket_s: int, top: int, now_s: float | None = None) -> list[tuple[str, float]]:
    """The `top` items of the last `window_s` seconds, hottest first: (item id, weight)."""
    now_s = time.time() if now_s is None else now_s
    last = int(now_s // bucket_s) * bucket_s
    keys = [bucket_key(start) for start in range(last - (window_s // bucket_s) * bucket_s, last + 1, bucket_s)]
    union = f"{KEY_PREFIX}union:{socket.gethostname()}-{os.getpid()}"
    pipe = client.pipeline(transaction=True)
    pipe.zunionstore(union, keys)
    pipe.zrevrange(union, 0, top - 1, withscores=True)
    pipe.delete(union)
    _, ranked, _ = pipe.execute()
    return [(item.decode() if isinstance(item, bytes) else str(item), float(score)) for item, score in ranked]


def live_rows(ranked: list[tuple[str, float]], row_of: dict[str, int]) -> np.ndarray:
    """The ranked items that are in the catalogue, as its rows (unknown ids left out)."""
    rows = [row_of[item] for item, _ in ranked if item in row_of]
    return np.asarray(rows, dtype=np.int64)
