"""Priority levels from Python (issue 18, key schema 5), against real servers
and the C worker: a send's level picks its stream (P:{q}:stream:1, :2), the
worker leases the highest level first, the level stays with the task through
cancel, requeue and rerun, and a bad level or a worker that predates levels
refuses the send with nothing written."""
from __future__ import annotations

import time
import uuid

import pytest

import gtask
from gtask._codec import TaskMessage, decode_task, encode_task
from conftest import Redis, Worker, run_cli
from test_admin import bury
from test_controls import snapshot

P = "gtask:{default}:"
STREAM, STREAM1, STREAM2 = P + "stream", P + "stream:1", P + "stream:2"


def bodies(raw, key: str) -> dict:
    return {f[b"i"].decode(): f[b"m"] for _, f in raw.xrange(key)}


def test_urgent_runs_before_the_backlog(redis_server, client, tmp_path):
    raw = redis_server.raw()
    backlog = client.send_many("sleep", [[30]] * 50)
    urgent = client.send("add", 1, 2, priority=2)
    assert (raw.xlen(STREAM), raw.xlen(STREAM2), raw.get(P + "prio")) == (50, 1, b"1")
    assert decode_task(bodies(raw, STREAM2)[urgent], urgent, "default").priority == 2
    assert client.stats().pending == 51  # every level counts
    w = Worker(redis_server.url, tmp_path / "w.log", extra=["--concurrency", "1"])
    try:
        assert client.wait(urgent, timeout=10).values == [gtask.int64(3)]
        # In order of sending, the urgent task would wait for 50 x 30 ms.
        done = sum(client.status(t) == gtask.Status.SUCCESS for t in backlog)
        assert done < 5, "%d of the backlog ran before the urgent task" % done
        assert all(client.wait(t, timeout=20).ok for t in backlog)
    finally:
        w.stop()


def test_send_many_and_batch_at_a_level(redis_server, client):
    raw = redis_server.raw()
    ids = client.send_many("add", [[1, 1], [2, 2]], priority=1)
    sent = client.send_batch("add", [[3, 3]], priority=2, unique=60)
    assert sent[0].duplicate is False
    assert set(bodies(raw, STREAM1)) == set(ids)
    assert set(bodies(raw, STREAM2)) == {sent[0].id}  # claim.lua queued it at its level
    tid = str(uuid.uuid4())
    assert client.send("add", 1, 2, task_id=tid, priority=1) == tid
    d = client.send("add", 4, 4, priority=2, delay=60)  # scheduled: its "pr" routes it
    m = decode_task(raw.zrange(P + "sched", 0, -1)[0][36:], d, "default")
    assert m.priority == 2
    assert raw.xlen(STREAM) == 0 and raw.xlen(STREAM1) == 3
    client.send("add", 0, 0, priority=0)
    assert b'"pr"' not in list(bodies(raw, STREAM).values())[0]  # level 0: message unchanged


def test_bad_priority_raises_and_queues_nothing(redis_server, client):
    raw = redis_server.raw()
    client.send("add", 1, 1)
    before = snapshot(raw)
    for bad in (-1, 3, 1 << 40, 1.0, "2", True, None, [2]):
        with pytest.raises(gtask.InvalidArgument) as e:
            client.send("add", 1, 2, priority=bad)
        assert "levels are 0 (normal), 1 (high) and 2 (urgent)" in str(e.value)
        with pytest.raises(gtask.InvalidArgument):
            client.send_many("add", [[1, 2]], priority=bad)
        with pytest.raises(gtask.InvalidArgument):
            client.send_batch("add", [[1, 2]], priority=bad, unique=60)
        with pytest.raises(gtask.InvalidArgument):
            client.send("add", 1, 2, priority=bad, task_id=str(uuid.uuid4()))
    assert snapshot(raw) == before


def test_a_worker_without_levels_refuses_a_level(redis_server, client):
    """push.lua and claim.lua refuse a level while a live worker of key schema
    < 5 serves the queue (it would never read the level streams)."""
    raw = redis_server.raw()
    till = int(time.time() * 1000) + 60000
    raw.hset(P + "workers", "old-host:1:abc", "4 %d" % till)
    before = snapshot(raw)
    for kw in ({}, {"task_id": str(uuid.uuid4())}, {"unique": 60}, {"delay": 30}):
        with pytest.raises(gtask.VersionMismatch) as e:
            client.send("add", 1, 2, priority=1, **kw)
        assert "worker old-host:1:abc of key schema 4 never reads priority levels" in \
            str(e.value) and e.value.code == gtask.VersionMismatch.code
    with pytest.raises(gtask.VersionMismatch):
        client.send_many("add", [[1, 2]] * 3, priority=2)
    assert snapshot(raw) == before
    assert client.send("add", 1, 2)  # a plain send mixes freely
    raw.hset(P + "workers", "old-host:1:abc", "4 1")  # expired: not live
    assert client.send("add", 1, 2, priority=1)


def test_refused_level_with_a_separate_backend_writes_nothing(tmp_path):
    (tmp_path / "b").mkdir()
    broker, backend = Redis(tmp_path), Redis(tmp_path / "b")
    c = gtask.Client(broker.url, backend=backend.url)
    try:
        broker.raw().hset(P + "workers", "old:1:x", "3 %d" % (int(time.time() * 1000) + 60000))
        with pytest.raises(gtask.VersionMismatch):
            c.send("add", 1, 2, priority=2)
        assert backend.raw().keys("*") == [] and broker.raw().keys("*") == [P.encode() +
                                                                            b"workers"]
    finally:
        c.close()
        broker.stop()
        backend.stop()


def test_codec_keeps_the_level(redis_server, client):
    m = TaskMessage(name="add", args=[gtask.int64(1)], created_ms=5, priority=2)
    body = encode_task(m)
    assert body == b'{"v":2,"n":"add","a":[["int64",1]],"c":5,"pr":2}'
    back = decode_task(body, str(uuid.uuid4()), "q")
    assert back.priority == 2 and encode_task(back) == body
    for bad in (b'"pr":3', b'"pr":-1', b'"pr":"1"', b'"pr":1.0'):
        with pytest.raises(gtask.ProtocolError) as e:
            decode_task(b'{"v":2,"n":"add","a":[],"c":5,' + bad + b"}", "x", "q")
        assert '"pr"' in str(e.value)
    # what the C client sends with --priority decodes and re-encodes to its bytes
    p = run_cli(redis_server.url, "send", "add", "1", "2", "--priority", "1")
    assert p.returncode == 0, p.stderr
    tid = p.stdout.decode().strip()
    c_body = bodies(redis_server.raw(), STREAM1)[tid]
    m = decode_task(c_body, tid, "default")
    assert m.priority == 1 and encode_task(m) == c_body


def test_cancel_removes_a_queued_level_task(redis_server, client):
    raw = redis_server.raw()
    a = client.send("add", 1, 2, priority=2)
    b = client.send("add", 1, 2, priority=1)
    keep = client.send("add", 3, 4, priority=2)
    assert client.cancel(a) == gtask.CancelOutcome.REMOVED
    assert list(bodies(raw, STREAM2)) == [keep]  # out of its stream, the neighbour stays
    assert client.cancel(b) == gtask.CancelOutcome.REMOVED
    assert raw.xlen(STREAM1) == 0
    assert client.status(a) == client.status(b) == gtask.Status.CANCELLED
    # one the C CLI sent at a level, cancelled here
    p = run_cli(redis_server.url, "send", "add", "1", "2", "--priority", "2")
    assert client.cancel(p.stdout.decode().strip()) == gtask.CancelOutcome.REMOVED
    assert list(bodies(raw, STREAM2)) == [keep]


def test_requeue_and_rerun_keep_the_level(redis_server, client, tmp_path):
    raw = redis_server.raw()
    body = encode_task(TaskMessage(name="add", args=[gtask.int64(2), gtask.int64(3)], lost=5,
                                   created_ms=1, expires_ms=2, priority=1))
    one = bury(raw, "default", "add", [], body=body)
    zero = bury(raw, "default", "add", [gtask.int64(1), gtask.int64(1)])
    two = bury(raw, "default", "add", [], body=body.replace(b'"pr":1', b'"pr":2'))
    raw.set(P + "prio", "1")  # as the send of a level set it (push.lua), before it died
    assert client.dead_requeue() == 3
    assert (list(bodies(raw, STREAM)), list(bodies(raw, STREAM1)),
            list(bodies(raw, STREAM2))) == ([zero], [one], [two])
    m = decode_task(bodies(raw, STREAM1)[one], one, "default")
    assert (m.priority, m.lost) == (1, 0)
    # the CLI sees it at its level
    p = run_cli(redis_server.url, "inspect", "queue", "default")
    assert p.returncode == 0 and any(one in ln and ln.rstrip().endswith("priority 1")
                                     for ln in p.stdout.decode().splitlines()), p.stdout
    w = Worker(redis_server.url, tmp_path / "w.log")
    try:
        assert client.wait(one, timeout=10).values == [gtask.int64(5)]
        # a failed level-2 task, rerun from Python, comes back at level 2
        f = client.send("fail", "boom", priority=2)
        assert client.wait(f, timeout=10).status == gtask.Status.FAILURE
    finally:
        w.stop()
    client.rerun(f)
    assert f in bodies(raw, STREAM2) and client.status(f) == gtask.Status.PENDING
