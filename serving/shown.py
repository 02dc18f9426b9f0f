"""How often each item was shown to each user, counted from the exposure stream, for the
optional "already shown N times" filter (`ServingConfig.shown_limit`; 0 = off, and then nothing
here runs).

A consumer group of its own on `vitrine:exposures` adds one to `vitrine:shown:<user>`'s field
`<item>` per item shown (the user's hash expires `shown_ttl_s` after the last answer). Serving
reads the hash with the user's features and leaves out items shown `shown_limit` times or more.
Counting is at least once: a consumer killed between its writes and its acknowledgement counts
that batch again when it recovers (a count one high, an item left out one answer early).
"""

from __future__ import annotations

from vitrine.stream.base import Entry, EventStream

SHOWN_GROUP = "shown-counts"
READ_COUNT = 200  # stream entries (one answer each) per read


def shown_key(user_id: str) -> str:
    return f"vitrine:shown:{user_id}"


class ShownCounter:
    def __init__(self, stream: EventStream, client, ttl_s: int) -> None:
        self.stream, self.client, self.ttl_s = stream, client, ttl_s
        # one consumer name for every process: what a killed one left pending, the next start
        # (or `vitrine consume --drain`) takes over; at least once, like the counts
        self.consumer = "shown"

    def recover(self) -> int:
        """This consumer's pending entries (read before a crash, not acknowledged)."""
        return self._apply(self.stream.read(SHOWN_GROUP, self.consumer, READ_COUNT, pending=True))

    def step(self, block_ms: int = 200) -> int:
        return self._apply(self.stream.read(SHOWN_GROUP, self.consumer, READ_COUNT, block_ms=block_ms))

    def _apply(self, entries: list[Entry]) -> int:
        if not entries:
            return 0
        pipe = self.client.pipeline(transaction=False)
        users = set()
        for entry in entries:
            rows = entry.events
            for user, item in zip(rows.column("user_id").to_pylist(), rows.column("item_id").to_pylist(),
                                  strict=True):
                if user and item:
                    pipe.hincrby(shown_key(user), item, 1)
                    users.add(user)
        for user in users:
            pipe.expire(shown_key(user), self.ttl_s)
        pipe.execute()
        self.stream.ack(SHOWN_GROUP, [e.entry_id for e in entries])
        return len(entries)


def shown_reader(client, limit: int):
    """user id → the items shown to the user `limit` times or more."""
    def read(user_id: str) -> frozenset[str]:
        counts = client.hgetall(shown_key(user_id))
        return frozenset(item.decode() for item, n in counts.items() if int(n) >= limit)

    return read
