"""The event stream on Redis Streams: one stream key, consumer groups, pending-entry lists.

Append is one Lua script, so it is atomic: for each event id it sets `<key>:seen:<id>` (NX,
expiring after the de-duplication window); the batch goes into the stream with the indices
of the events whose id was already set (`skip`), which readers drop. Either the ids are
marked and the entry exists, or neither: a batch whose reply was lost can be re-sent, to
any process, and is taken once.

Durability is Redis's: the script's reply is sent after the write reached the append-only
file's buffer. With `appendonly yes` (the managed server's setting) and the default
`appendfsync everysec`, a kill -9 of Redis loses no acknowledged entry and a crash of the
machine at most the last second; `appendfsync always` closes that second at a cost per
write (docs/stream.md). The de-duplication keys take ~100 bytes per event in Redis: the
window (default 1 hour) bounds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from vitrine.stream.base import GROUPS, Appended, Entry, EventStream, StreamUnavailable, decode_events, encode_events

STREAM_KEY = "vitrine:events"
DEDUP_WINDOW_S = 3600

# KEYS[1] the stream; ARGV[1] window (s), ARGV[2] payload, ARGV[3..] the batch's event ids
_APPEND = """
local skip = {}
for i = 3, #ARGV do
  if not redis.call('SET', KEYS[1] .. ':seen:' .. ARGV[i], '1', 'NX', 'EX', ARGV[1]) then
    skip[#skip + 1] = tostring(i - 3)
  end
end
if #skip == #ARGV - 2 then
  return {'', #skip}
end
local id = redis.call('XADD', KEYS[1], '*', 'events', ARGV[2], 'skip', table.concat(skip, ','))
return {id, #skip}
"""

# KEYS[1] the stream, KEYS[2..] hashes; ARGV[1] group, ARGV[2] consumer, ARGV[3] n, ARGV[4..3+n] entry
# ids, then per hash its field count m and m field/value pairs. Nothing is written unless every
# entry is still pending for this consumer (not claimed by another since it was read).
_COMMIT = """
local n = tonumber(ARGV[3])
for i = 4, 3 + n do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) == 0 then
    return 0
  end
end
local a = 4 + n
for k = 2, #KEYS do
  local m = tonumber(ARGV[a])
  if m > 0 then
    redis.call('HSET', KEYS[k], unpack(ARGV, a + 1, a + 2 * m))
  end
  a = a + 1 + 2 * m
end
if n > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4, 3 + n))
end
return 1
"""

# KEYS[1] the lease; ARGV[1] owner, ARGV[2] ttl (ms)
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisEventStream(EventStream):
    def __init__(self, client, key: str = STREAM_KEY, dedup_window_s: int = DEDUP_WINDOW_S,
                 groups: Sequence[str] = GROUPS, id_column: str | None = "event_id") -> None:
        """`id_column`: the column whose values are de-duplicated (None: append every batch as is)."""
        self.client, self.key, self.dedup_window_s = client, key, int(dedup_window_s)
        self.id_column = id_column
        self._append = client.register_script(_APPEND)
        self._lease = client.register_script(_LEASE)
        self._commit = client.register_script(_COMMIT)
        self._groups: set[str] = set()
        for group in groups:
            self.ensure_group(group)

    def _call(self, fn, *args, **kwargs):
        from vitrine.online.redis_local import redis_unavailable

        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if redis_unavailable(e):
                raise StreamUnavailable(f"the event stream (Redis at {self._where()}) is unavailable: {e}") from e
            raise

    def _where(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"

    def ensure_group(self, group: str) -> None:
        """Create the group (reading from the stream's start) if missing; creates the stream too."""
        if group in self._groups:
            return
        import redis

        try:
            self._call(self.client.xgroup_create, self.key, group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._groups.add(group)

    def append(self, events: pa.Table) -> Appended:
        if not events.num_rows:
            return Appended(None, 0, 0)
        if self.id_column is None:
            entry_id = self._call(self.client.xadd, self.key, {"events": encode_events(events), "skip": ""})
            return Appended(_text(entry_id), events.num_rows, 0)
        ids = events.column(self.id_column).to_pylist()
        entry_id, skipped = self._call(self._append, keys=[self.key],
                                       args=[self.dedup_window_s, encode_events(events), *ids])
        entry_id = _text(entry_id)
        return Appended(entry_id or None, len(ids) - int(skipped), int(skipped))

    def _entries(self, raw) -> list[Entry]:
        out = []
        for entry_id, fields in raw:
            if not fields:  # trimmed while pending: nothing left to do with it
                continue
            table = decode_events(fields[b"events"])
            skip = fields.get(b"skip", b"")
            if skip:
                drop = {int(i) for i in skip.split(b",")}
                keep = [i for i in range(table.num_rows) if i not in drop]
                table = table.take(pa.array(keep, pa.int64()))
            out.append(Entry(_text(entry_id), table))
        return out

    def read(self, group: str, consumer: str, count: int, block_ms: int | None = None,
             pending: bool = False) -> list[Entry]:
        self.ensure_group(group)
        if pending:  # every pending entry, paging by id (trimmed ones are acknowledged and skipped)
            out: list[Entry] = []
            start = "0"
            while True:
                got = self._call(self.client.xreadgroup, group, consumer, {self.key: start}, count=count)
                raw = got[0][1] if got else []
                if not raw:
                    return out
                gone = [_text(i) for i, fields in raw if not fields]
                if gone:
                    self.ack(group, gone)
                out += self._entries(raw)
                start = _text(raw[-1][0])
        got = self._call(self.client.xreadgroup, group, consumer, {self.key: ">"}, count=count, block=block_ms)
        return self._entries(got[0][1]) if got else []

    def claim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        self.ensure_group(group)
        got = self._call(self.client.xautoclaim, self.key, group, consumer, min_idle_ms, start_id="0-0", count=count)
        deleted = [_text(i) for i in (got[2] if len(got) > 2 else [])]
        if deleted:
            self.ack(group, deleted)
        return self._entries(got[1])

    def ack(self, group: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            self._call(self.client.xack, self.key, group, *entry_ids)

    def commit(self, group: str, consumer: str, entry_ids: Sequence[str],
               hashes: Mapping[bytes, Mapping[bytes, bytes]], pipe=None) -> bool | None:
        """Write `hashes` (key → fields, HSET) and acknowledge `entry_ids` in one atomic step,
        only if every entry is still pending for `consumer`: an entry another consumer claimed
        (this one was too slow, or presumed dead) is applied by that one, never by both. Returns
        whether it wrote; None when queued on `pipe` (a transaction: its `execute()` answers)."""
        args: list = [group, consumer, len(entry_ids), *entry_ids]
        for fields in hashes.values():
            args.append(len(fields))
            for field, value in fields.items():
                args += (field, value)
        done = self._call(self._commit, keys=[self.key, *hashes], args=args, client=pipe)
        return None if pipe is not None else bool(done)

    def pending_for(self, group: str, consumer: str, entry_ids: Sequence[str]) -> set[str]:
        """The entries among `entry_ids` still pending for `consumer` (not acknowledged, not
        claimed by another)."""
        with self.client.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(self.key, group, min=entry_id, max=entry_id, count=1, consumername=consumer)
            got = self._call(pipe.execute)
        return {entry_id for entry_id, rows in zip(entry_ids, got, strict=True) if rows}

    def lag(self, group: str) -> tuple[int, int]:
        """(entries not yet delivered to `group`, delivered and not acknowledged). Redis's own
        `lag` is only a hint: after deletions it is unknown, and after a restart from the
        append-only file it can stay wrong for good (seen: lag 820 on a stream of 466 entries,
        every one delivered), so "nothing left" is decided by the ids."""
        newest = _text(self._call(self.client.xinfo_stream, self.key)["last-generated-id"])
        for info in self._call(self.client.xinfo_groups, self.key):
            if _text(info["name"]) == group:
                delivered = _text(info["last-delivered-id"])
                if _id_key(delivered) >= _id_key(newest):
                    return 0, int(info["pending"])
                lag = info.get("lag")
                if not lag:  # unknown (or 0 although entries follow): count them, up to the cap
                    lag = len(self._call(self.client.xrange, self.key, min=f"({delivered}", count=LAG_COUNT_CAP))
                return int(lag), int(info["pending"])
        return 0, 0

    def lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(self._call(self._lease, keys=[f"{self.key}:lease:{name}"], args=[owner, int(ttl_ms)]))

    def trim(self) -> int:
        """XTRIM MINID to the oldest entry some group still needs (its oldest pending, or the
        one after its last delivered)."""
        floor = None
        for info in self._call(self.client.xinfo_groups, self.key):
            if int(info["pending"]):
                oldest = _text(self._call(self.client.xpending, self.key, _text(info["name"]))["min"])
            else:
                oldest = _text(info["last-delivered-id"])
                oldest = "0-0" if oldest == "0-0" else _next_id(oldest)
            floor = oldest if floor is None or _id_key(oldest) < _id_key(floor) else floor
        if floor is None or floor == "0-0":
            return 0
        return int(self._call(self.client.xtrim, self.key, minid=floor, approximate=False))

    def length(self) -> int:
        return int(self._call(self.client.xlen, self.key))


LAG_COUNT_CAP = 100_000  # entries counted when Redis's lag is not to be trusted


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"
