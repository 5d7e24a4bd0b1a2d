"""stats and the dead set (list, requeue, purge), against the C worker and CLI."""
from __future__ import annotations

import uuid
from typing import Optional

import pytest

import gtask
from gtask._codec import TaskMessage, encode_task
from conftest import run_cli


def bury(raw, queue: str, name: str, args, lost: int = 5, body: Optional[bytes] = None) -> str:
    """Puts a task in the dead set as a worker does after max_deliveries losses
    (finish.lua kind dead): the message in the dead hash, a FAILURE record
    (ec -18) as its final state, counted in failed."""
    tid = str(uuid.uuid4())
    if body is None:
        body = encode_task(TaskMessage(name=name, args=args, lost=lost, created_ms=1,
                                       expires_ms=2, last_error="lost in message"))
    p = "gtask:{%s}:" % queue
    raw.hset(p + "dead", tid, body)
    raw.rpush(p + "n:" + tid, b'{"v":1,"s":"FAILURE","err":"lost 5 times","ec":-18,"at":0}')
    raw.hincrby(p + "stats", "failed", 1)
    return tid


def test_stats(redis_server, client):
    assert client.stats() == gtask.Stats(0, 0, 0, 0, 0, 0)
    client.send("add", 1, 2)
    client.send("add", 1, 2, delay=60)
    s = client.stats()
    assert (s.pending, s.scheduled, s.active) == (1, 1, 0)
    with pytest.raises(gtask.InvalidArgument):
        client.stats("bad queue")


def test_dead_list_requeue_purge(redis_server, worker, client):
    raw = redis_server.raw()
    a = bury(raw, "default", "add", [gtask.int64(40), gtask.int64(2)])
    b = bury(raw, "default", "echo", [gtask.string("x\x00y")])
    bad = bury(raw, "default", "", [], body=b'{"v":2,"n":"add","a":[["int8",300]]}')
    assert client.stats().dead == 3
    entries = client.dead_list()
    assert [e.id for e in entries] == sorted([a, b, bad])
    by = {e.id: e for e in entries}
    assert by[a].name == "add" and by[a].error == "lost 5 times"
    assert by[b].name == "echo"
    assert by[bad].name is None
    # the C CLI reads what Python wrote
    p = run_cli(redis_server.url, "dead", "list")
    assert p.returncode == 0 and a in p.stdout.decode() and b in p.stdout.decode()

    assert client.status(a) == gtask.Status.FAILURE
    assert client.dead_requeue(a) == 1
    r = client.wait(a, timeout=10)  # the C worker runs it again
    assert r.status == gtask.Status.SUCCESS and r.values == [gtask.int64(42)]
    with pytest.raises(gtask.NotFound):
        client.dead_requeue(a)
    with pytest.raises(gtask.NotFound):
        client.dead_requeue(str(uuid.uuid4()))
    with pytest.raises(gtask.ProtocolError):
        client.dead_requeue(bad)  # does not decode: stays
    assert client.dead_requeue() == 1  # b; bad is skipped
    assert client.wait(b, timeout=10).values == [gtask.string("x\x00y")]
    assert [e.id for e in client.dead_list()] == [bad]
    assert client.dead_purge() == 1
    assert client.dead_list() == [] and client.dead_purge() == 0
    s = client.stats()
    assert s.dead == 0 and s.succeeded == 2


def test_requeued_message_is_reset(redis_server, client):
    """No worker: the requeued message is in the stream with l = 0, a new
    expiry, everything else as it was; the state is PENDING."""
    raw = redis_server.raw()
    tid = bury(raw, "default", "echo", [gtask.float32(0.25), gtask.uint64(1 << 64 - 1)])
    assert client.dead_requeue(tid) == 1
    assert client.status(tid) == gtask.Status.PENDING
    (eid, fields), = raw.xrange("gtask:{default}:stream")
    assert fields[b"i"].decode() == tid
    from gtask._codec import decode_task
    m = decode_task(fields[b"m"], tid, "default")
    assert m.lost == 0 and m.expires_ms > 2 and m.created_ms == 1
    assert m.args == [gtask.float32(0.25), gtask.uint64(1 << 64 - 1)]
    assert m.last_error == "lost in message"
