"""The event stream on a real Redis: atomic de-duplicated appends, consumer groups, the
event-log writer's exactly-once commits across crashes, and real-time updates from two
`vitrine consume` processes at once (no lost update)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from tests.integration.serving_fixtures import served_copy
from vitrine.data.eventlog import EventLog
from vitrine.data.schemas import EVENTS
from vitrine.online.redis_local import ManagedRedis
from vitrine.stream.base import LOG_GROUP, REALTIME_GROUP
from vitrine.stream.log_writer import event_log_writer
from vitrine.stream.redis_streams import RedisEventStream

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def batch(ids: list[str], user: str = "u1", item: str = "i1", event_type: str = "click",
          start: datetime | None = None) -> pa.Table:
    start = start or datetime(2024, 5, 3, 12, tzinfo=UTC)
    rows = [{"event_id": i, "event_time": start + timedelta(seconds=n), "user_id": user, "item_id": item,
             "event_type": event_type} for n, i in enumerate(ids)]
    schema = EVENTS.arrow_schema()
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


@pytest.fixture
def redis_url(tmp_path):
    managed = ManagedRedis(tmp_path / "redis")
    url = managed.start()
    yield url
    managed.stop()


@pytest.fixture
def stream(redis_url):
    import redis

    return RedisEventStream(redis.Redis.from_url(redis_url))


def test_appends_drop_ids_already_taken_and_every_group_reads_every_entry(stream):
    first = stream.append(batch(["e1", "e2"]))
    again = stream.append(batch(["e2", "e3"]))  # e2: a resend, taken once
    none = stream.append(batch(["e1", "e3"]))
    assert (first.written, first.duplicates, again.written, again.duplicates) == (2, 0, 1, 1)
    assert none.entry_id is None and (none.written, none.duplicates) == (0, 2)
    for group in (LOG_GROUP, REALTIME_GROUP):
        entries = stream.read(group, "c", count=10)
        assert [e.events.column("event_id").to_pylist() for e in entries] == [["e1", "e2"], ["e3"]]
        assert stream.lag(group) == (0, 2)  # delivered, not acknowledged
        assert stream.read(group, "c", count=10, pending=True)[1].entry_id == entries[1].entry_id
        stream.ack(group, [e.entry_id for e in entries])
        assert stream.lag(group) == (0, 0)
    assert stream.trim() == 2 and stream.length() == 0


def test_entries_are_compressed_and_plain_ones_from_before_still_read(stream):
    events = batch([f"c{i}" for i in range(100)])
    stream.append(events)
    raw = stream.client.xrange(stream.key)[-1][1][b"events"]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, events.schema) as writer:
        writer.write_table(events)
    plain = sink.getvalue().to_pybytes()
    assert len(raw) < len(plain) / 2  # zstd over the whole IPC message
    stream.client.xadd(stream.key, {"events": plain, "skip": ""})  # as appended before compression
    got = stream.read(REALTIME_GROUP, "c", count=10)
    assert [e.events.equals(events) for e in got] == [True, True]


def test_lag_is_decided_by_ids_when_redis_miscounts(stream):
    """After a restart from the append-only file Redis's own lag counter was seen stuck at 820
    on a stream of 466 entries, all delivered (benchmarks/faults/redis_restart.py): `vitrine
    consume --drain` then waited forever. The group's counter is set wrong here on purpose."""
    stream.append(batch(["a1", "a2"]))
    stream.append(batch(["a3"]))
    entries = stream.read(LOG_GROUP, "c", count=10)
    stream.ack(LOG_GROUP, [e.entry_id for e in entries])
    stream.client.execute_command("XGROUP", "SETID", stream.key, LOG_GROUP, entries[-1].entry_id, "ENTRIESREAD", 0)
    assert stream.client.xinfo_groups(stream.key)[0]["lag"] != 0  # Redis: "2 behind"
    assert stream.lag(LOG_GROUP) == (0, 0)
    stream.append(batch(["a4"]))
    stream.client.execute_command("XGROUP", "SETID", stream.key, LOG_GROUP, entries[-1].entry_id, "ENTRIESREAD", 3)
    assert stream.lag(LOG_GROUP) == (1, 0)  # one entry follows the group's last delivered


def test_the_log_writer_writes_each_event_once_across_crashes(stream, tmp_path):
    root = tmp_path / "events"
    for n in range(4):
        stream.append(batch([f"e{n}-{i}" for i in range(50)], start=datetime(2024, 5, 3, 23, 59, 30, tzinfo=UTC)))
    # a writer crashes after reading the entries, before committing: they stay pending
    crashed = event_log_writer(stream, root, max_events=10_000, max_delay_s=3600, owner="a")
    crashed.recover()
    crashed.step(block_ms=10)
    assert stream.lag(LOG_GROUP)[1] == 4 and EventLog(root).count() == 0
    # the next one (after the lease expires) commits them; it crashes after writing the files
    # (two dates: the batch crosses midnight), before acknowledging
    stream.client.delete(f"{stream.key}:lease:event-log-writer")
    second = event_log_writer(stream, root, owner="b")
    real_ack = stream.ack
    stream.ack = lambda *a: (_ for _ in ()).throw(ConnectionError("killed"))
    with pytest.raises(ConnectionError):
        second.step()
    stream.ack = real_ack
    assert EventLog(root).count() == 200 and stream.lag(LOG_GROUP)[1] == 4
    stream.client.delete(f"{stream.key}:lease:event-log-writer")
    third = event_log_writer(stream, root, max_delay_s=0.01, owner="c")
    assert third.step() == 200  # the same entries, the same file names: overwritten, not doubled
    stream.append(batch(["late"]))
    while stream.lag(LOG_GROUP) != (0, 0):
        third.step(block_ms=20)
    ids = EventLog(root).read(columns=["event_id"]).column(0).to_pylist()
    assert len(ids) == 201 == len(set(ids))
    assert EventLog(root).dates() == ["2024-05-03", "2024-05-04"]
    # a second writer waits while the first holds the lease, and waits its turn rather than
    # asking again at once (under `serve --processes 2` the waiting process spun a core on it)
    waiting = event_log_writer(stream, root, owner="d")
    assert not waiting.active()
    asked, real_lease = [], stream.lease
    stream.lease = lambda *a: asked.append(1) or real_lease(*a)
    start = time.monotonic()
    while time.monotonic() - start < 0.5:
        assert waiting.step(block_ms=100) == 0
    stream.lease = real_lease
    assert len(asked) <= 6


@pytest.fixture(scope="module")
def served(small_home, tmp_path_factory):
    yield from served_copy(small_home, tmp_path_factory.mktemp("served-stream"))


def _consume(home) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--home", str(home.root), "consume"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().startswith("consuming"), "vitrine consume did not start"
    return proc


def test_two_consumer_processes_and_kill_9_lose_no_update_and_log_each_event_once(served):
    """Users' events spread over two `vitrine consume` processes updating the same rows at
    once, one of them killed with -9 three times and restarted: every click counted exactly
    once in each user's real-time row, every event exactly once in the log."""
    import redis

    from serving.config import ServingConfig
    from serving.consumers import Consumers

    home, url = served
    client = redis.Redis.from_url(url)
    stream = RedisEventStream(client)
    users = [f"rt-{u}" for u in range(4)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    procs = [_consume(home), _consume(home)]
    sent = 0
    try:
        for n in range(60):
            for u, user in enumerate(users):
                ids = [f"{user}-{n}-{i}" for i in range(5)]
                stream.append(batch(ids, user=user, item=f"i{1 + (n + u) % 3}", start=start + timedelta(seconds=n)))
                sent += 5
            if n in (15, 30, 45):  # kill -9 one consumer mid-stream, start another
                victim = procs.pop(n // 15 % 2 - 1)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                procs.append(_consume(home))
            time.sleep(0.02)
        local = Consumers.for_home(home, ServingConfig(), url)
        deadline = time.monotonic() + 120
        while not local.settled():  # the survivors (and the restarted ones) catch up
            assert time.monotonic() < deadline, {g: stream.lag(g) for g in (LOG_GROUP, REALTIME_GROUP)}
            # entries a killed consumer left pending: another consumer claims them once idle
            # (30 s in service; 1 s here)
            local.updater.apply(stream.claim(REALTIME_GROUP, local.updater.consumer, 1000, 500))
            time.sleep(0.5)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    reader = local.updater.reader
    assert [reader.read(u).values["user_realtime__rt_clicks"] for u in users] == [300] * 4
    logged = [i for i in EventLog(home.events).read(columns=["event_id"]).column(0).to_pylist() if i.startswith("rt-")]
    assert len(logged) == sent == len(set(logged))


def test_an_entry_claimed_from_a_slow_consumer_is_applied_by_the_claimer_alone(served):
    """A consumer reads an entry and stalls; another claims it (as after 30 s idle) and applies
    it. The slow one's commit then writes nothing: the click counts once, the entry is
    acknowledged, and the slow consumer records it as taken over."""
    import redis

    from serving.config import ServingConfig
    from serving.consumers import Consumers
    from serving.realtime import RealtimeUpdater

    home, url = served
    base = Consumers.for_home(home, ServingConfig(), url).updater
    base.recover(min_idle_ms=0)
    while base.step(block_ms=10):  # what earlier tests left
        pass
    slow, fast = (RealtimeUpdater(base.stream, base.reader, base.hashes, base.config, consumer=name)
                  for name in ("slow", "fast"))
    user = f"claimed-{time.time_ns()}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    base.stream.append(batch([f"{user}-{i}" for i in range(3)], user=user, start=start))
    read = slow.stream.read(REALTIME_GROUP, "slow", count=10, block_ms=100)
    assert [len(e.events) for e in read] == [3]
    claimed = fast.stream.claim(REALTIME_GROUP, "fast", 0, 10)
    assert fast.apply(claimed) == 3
    assert slow.apply(read) == 0 and slow.taken_over == 1
    assert base.reader.read(user).values["user_realtime__rt_clicks"] == 3
    client = redis.Redis.from_url(url)
    assert client.xpending(base.stream.key, REALTIME_GROUP)["pending"] == 0
    # and a slow consumer that commits first leaves nothing to claim
    base.stream.append(batch([f"{user}-x{i}" for i in range(2)], user=user, start=start + timedelta(seconds=9)))
    read = slow.stream.read(REALTIME_GROUP, "slow", count=10, block_ms=100)
    assert slow.apply(read) == 2
    assert fast.stream.claim(REALTIME_GROUP, "fast", 0, 10) == []
    assert base.reader.read(user).values["user_realtime__rt_clicks"] == 5
    # two entries read together, one of them claimed: the other is still applied by the slow one
    for n in range(2):
        base.stream.append(batch([f"{user}-y{n}{i}" for i in range(n + 1)], user=user,
                                 start=start + timedelta(seconds=20 + n)))
    read = slow.stream.read(REALTIME_GROUP, "slow", count=10, block_ms=100)
    assert [len(e.events) for e in read] == [1, 2]
    assert fast.apply(fast.stream.claim(REALTIME_GROUP, "fast", 0, 1)) == 1
    assert slow.apply(read) == 2 and slow.taken_over == 2
    assert base.reader.read(user).values["user_realtime__rt_clicks"] == 8
    assert client.xpending(base.stream.key, REALTIME_GROUP)["pending"] == 0


_FULL_DISK_WRITER = """
import resource, signal, sys
import redis
from vitrine.stream.log_writer import event_log_writer
from vitrine.stream.redis_streams import RedisEventStream
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as ENOSPC on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))
writer = event_log_writer(RedisEventStream(redis.Redis.from_url(sys.argv[1])), sys.argv[2], max_delay_s=0.01)
try:
    while not writer.step(block_ms=10):
        pass
except OSError as e:
    print("refused", e.errno)
"""


def test_a_full_log_disk_stores_nothing_half_and_loses_nothing(stream, redis_url, tmp_path):
    """The event log's disk full: the writer's commit fails (a real write failure: the writer
    runs in a process whose files may not pass 512 bytes), no file or half-written file is
    left in the log, nothing is acknowledged, and once there is room the next writer commits
    every event once."""
    root = tmp_path / "events"
    stream.append(batch([f"f{i}" for i in range(300)]))
    child = subprocess.run([sys.executable, "-c", _FULL_DISK_WRITER, redis_url, str(root)], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=120)
    assert child.stdout.startswith("refused"), child.stderr[-2000:]
    assert [p for p in root.rglob("*") if p.is_file()] == []  # not even a hidden temporary file
    assert stream.lag(LOG_GROUP) == (0, 1)  # read, not acknowledged: pending for the next writer
    stream.client.delete(f"{stream.key}:lease:event-log-writer")
    writer = event_log_writer(stream, root, max_delay_s=0.01)
    assert writer.step() == 300
    ids = EventLog(root).read(columns=["event_id"]).column(0).to_pylist()
    assert sorted(ids) == sorted(f"f{i}" for i in range(300)) and stream.lag(LOG_GROUP) == (0, 0)


def test_redis_refusing_writes_is_unavailable_not_an_error(stream, redis_url, tmp_path):
    """Redis whose disk is full answers writes with MISCONF (here a real one: its snapshot file's
    path is made a directory, so a save fails and stop-writes-on-bgsave-error holds writes): an
    append is StreamUnavailable — TrackEvents answers UNAVAILABLE, the caller resends — and
    works again once Redis can save."""
    from vitrine.stream.base import StreamUnavailable

    dump = tmp_path / "redis" / "dump.rdb"
    dump.unlink(missing_ok=True)
    dump.mkdir()
    stream.client.bgsave()
    while stream.client.info("persistence")["rdb_bgsave_in_progress"]:
        time.sleep(0.05)
    try:
        with pytest.raises(StreamUnavailable, match="MISCONF"):
            stream.append(batch(["m1"]))
    finally:
        dump.rmdir()
        stream.client.bgsave()
        while stream.client.info("persistence")["rdb_last_bgsave_status"] != "ok":
            time.sleep(0.05)
    assert stream.append(batch(["m1"])).written == 1


def test_hot_counts_weigh_each_event_in_its_bucket_and_forget_the_old(stream):
    """The live hot counter (serving/trending.py): clicks 1, carts 3, purchases 5, impressions
    nothing, summed over the window's buckets; events older than the window not counted."""
    from serving.trending import HOT_GROUP, HotCounter, hot_now

    now = datetime.now(UTC).replace(microsecond=0)
    stream.ensure_group(HOT_GROUP)
    stream.append(batch(["h1", "h2", "h3"], item="a", start=now - timedelta(minutes=5)))  # 3 clicks
    stream.append(batch(["h4"], item="b", event_type="purchase", start=now - timedelta(minutes=50)))
    stream.append(batch(["h5", "h6"], item="c", event_type="impression", start=now))
    stream.append(batch(["h7"], item="d", event_type="purchase", start=now - timedelta(hours=3)))  # too old
    stream.append(batch(["h8"], item="a", event_type="add_to_cart", start=now - timedelta(seconds=10)))
    counter = HotCounter(stream, stream.client, window_s=3600, bucket_s=60)
    while counter.step(block_ms=10):
        pass
    assert stream.lag(HOT_GROUP) == (0, 0)
    assert hot_now(stream.client, 3600, 60, top=10) == [("a", 6.0), ("b", 5.0)]
    assert hot_now(stream.client, 600, 60, top=10) == [("a", 6.0)]  # b's purchase is 50 minutes old
    assert hot_now(stream.client, 3600, 60, top=1) == [("a", 6.0)]
    assert not [k for k in stream.client.keys("vitrine:hot:*") if stream.client.ttl(k) < 0]  # all expire
