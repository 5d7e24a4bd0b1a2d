"""Issue 18's controls from Python, against real servers and the C worker:
chosen ids and content locks (claim.lua), the retry policy, cancel, progress,
the failed set and rerun, pause.  Every bad input raises and changes nothing."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable

import pytest

import gtask
from gtask._codec import decode_task
from conftest import Redis, Worker, run_cli

STREAM = "gtask:{default}:stream"


def wait_until(cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    """cond()'s first truthy value, polled until timeout (then the test fails)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, "condition not met within %.1f s" % timeout
        time.sleep(0.02)


def snapshot(raw) -> dict:
    """Every key with its type and contents: to show a refused call changed nothing."""
    out = {}
    for k in sorted(raw.keys("*")):
        t = raw.type(k)
        if t == b"string":
            v: Any = raw.get(k)
        elif t == b"set":
            v = sorted(raw.smembers(k))
        elif t == b"hash":
            v = sorted(raw.hgetall(k).items())
        elif t == b"zset":
            v = raw.zrange(k, 0, -1)
        elif t == b"list":
            v = raw.lrange(k, 0, -1)
        else:
            v = [e[1] for e in raw.xrange(k)]
        out[k] = (t, v)
    return out


# ---------------------------------------------------------------- send: id, unique, retry_on

def test_send_with_a_chosen_id(redis_server, client):
    raw = redis_server.raw()
    tid = str(uuid.uuid4())
    assert client.send("add", 1, 2, task_id=tid) == tid
    assert client.status(tid) == gtask.Status.PENDING
    before = snapshot(raw)
    with pytest.raises(gtask.AlreadyExists) as e:
        client.send("add", 5, 6, task_id=tid)
    assert e.value.existing_id == tid and e.value.code == gtask.Exists.code
    assert tid in str(e.value)
    assert snapshot(raw) == before  # the existing task is untouched
    for bad in ("not-a-uuid", tid.upper(), tid + "0", "", 42):
        with pytest.raises(gtask.InvalidArgument):
            client.send("add", 1, 2, task_id=bad)
    assert snapshot(raw) == before
    # the C CLI refuses the same id (exit 7, the existing id printed)
    p = run_cli(redis_server.url, "send", "add", "1", "2", "--id", tid)
    assert p.returncode == 7 and p.stdout.decode().strip() == tid


def test_unique_with_a_ttl(redis_server, client):
    raw = redis_server.raw()
    a = client.send("add", 1, 2, unique=60)
    with pytest.raises(gtask.AlreadyExists) as e:
        client.send("add", 1, 2, unique=60)
    assert e.value.existing_id == a
    assert "same name and arguments" in str(e.value)
    b = client.send("add", 1, 3, unique=60)          # other arguments
    c = client.send("add", gtask.int32(1), gtask.int32(2), unique=60)  # other types
    d = client.send("add", 1, 2)                     # no lock asked: sent
    e = client.send("add", 9, 9, unique=60, delay=30)  # claimed into the schedule
    assert len({a, b, c, d, e}) == 5
    assert raw.xlen(STREAM) == 4 and raw.zcard("gtask:{default}:sched") == 1
    with pytest.raises(gtask.AlreadyExists):
        client.send("add", 9, 9, unique=60)
    (ukey,) = [k for k in raw.keys("gtask:{default}:u:*") if raw.get(k) == a.encode()]
    assert 55000 < raw.pttl(ukey) <= 60000
    # the C client computes the same content key: its send is a duplicate too
    p = run_cli(redis_server.url, "send", "add", "1", "2", "--unique", "1m")
    assert p.returncode == 7 and p.stdout.decode().strip() == a
    before = snapshot(raw)
    for bad in (-1, 0, -0.5, float("nan"), float("inf"), "forever", "", True, [1]):
        with pytest.raises(gtask.InvalidArgument):
            client.send("add", 7, 7, unique=bad)
    assert snapshot(raw) == before


def test_unique_until_done(redis_server, worker, client):
    a = client.send("sleep", 300, unique="done")
    with pytest.raises(gtask.AlreadyExists) as e:
        client.send("sleep", 300, unique="done")
    assert e.value.existing_id == a
    assert client.wait(a, timeout=10).ok
    b = client.send("sleep", 300, unique="done")     # a is final: the lock is free
    assert b != a
    assert client.wait(b, timeout=10).ok


def test_send_batch_and_send_many_report_duplicates(redis_server, client):
    raw = redis_server.raw()
    sent = client.send_batch("add", [[1, 1], [1, 1], [2, 2]], unique=60)
    assert [s.duplicate for s in sent] == [False, True, False]
    assert sent[1].id == sent[0].id and sent[2].id != sent[0].id
    assert raw.xlen(STREAM) == 2
    with pytest.raises(gtask.AlreadyExists) as e:
        client.send_many("add", [[3, 3], [1, 1], [2, 2]], unique=60)
    assert e.value.duplicates == [1, 2]
    assert e.value.ids[1:] == [sent[0].id, sent[2].id]
    assert client.status(e.value.ids[0]) == gtask.Status.PENDING  # the new one was queued
    assert raw.xlen(STREAM) == 3
    # plain batches are unchanged: every task new
    assert [s.duplicate for s in client.send_batch("add", [[1, 1], [1, 1]])] == [False, False]


def test_unique_with_a_separate_backend(tmp_path):
    """Claimed on the backend (claim.lua without queueing), then queued on the
    broker (push.lua without state), as the C client does."""
    (tmp_path / "b").mkdir()
    broker, backend = Redis(tmp_path), Redis(tmp_path / "b")
    w = Worker(broker.url, tmp_path / "w.log", backend=backend.url)
    c = gtask.Client(broker.url, backend=backend.url)
    try:
        a = c.send("add", 20, 22, unique=60)
        with pytest.raises(gtask.AlreadyExists) as e:
            c.send("add", 20, 22, unique=60)
        assert e.value.existing_id == a
        assert broker.raw().keys("gtask:{default}:u:*") == []
        assert len(backend.raw().keys("gtask:{default}:u:*")) == 1
        assert c.wait(a, timeout=10).values == [gtask.int64(42)]
        tid = str(uuid.uuid4())
        assert c.send("add", 1, 1, task_id=tid) == tid
        with pytest.raises(gtask.AlreadyExists):
            c.send("add", 1, 1, task_id=tid)
        assert c.wait(tid, timeout=10).values == [gtask.int64(2)]
        with pytest.raises(gtask.InvalidArgument):
            c.cancel(tid)  # cancel needs broker and backend in one server
    finally:
        c.close()
        w.stop()
        broker.stop()
        backend.stop()


def test_retry_on(redis_server, client, tmp_path):
    raw = redis_server.raw()
    a = client.send("fail", "boom", retry=1, retry_on=("error", "crash"), backoff=(0.01, 0.01))
    b = client.send("fail", "boom", retry=1, backoff=(0.01, 0.01))  # default: timeouts only
    bodies = {f[b"i"].decode(): f[b"m"] for _, f in raw.xrange(STREAM)}
    assert decode_task(bodies[a], a, "default").retry_on == 6
    assert b'"ro"' not in bodies[b]
    before = snapshot(raw)
    for bad in ((), ("bogus",), ("timeout", "nope"), 5, [None]):
        with pytest.raises(gtask.InvalidArgument):
            client.send("fail", "x", retry_on=bad)
    assert snapshot(raw) == before
    w = Worker(redis_server.url, tmp_path / "w.log")
    try:
        ra, rb = client.wait(a, timeout=10), client.wait(b, timeout=10)
        assert (ra.status, ra.attempts, ra.error) == (gtask.Status.FAILURE, 2, "boom")
        assert (rb.status, rb.attempts) == (gtask.Status.FAILURE, 1)
    finally:
        w.stop()
    assert client.send("fail", "x", retry_on="error")  # one name alone is fine


# ---------------------------------------------------------------- cancel

def test_cancel_queued_and_delayed(redis_server, client):
    raw = redis_server.raw()
    a = client.send("add", 1, 2)
    b = client.send("add", 1, 2, delay=60)
    assert client.cancel(a) == gtask.CancelOutcome.REMOVED
    assert client.cancel(b) == gtask.CancelOutcome.REMOVED
    assert raw.xlen(STREAM) == 0 and raw.zcard("gtask:{default}:sched") == 0
    for tid in (a, b):
        assert client.status(tid) == gtask.Status.CANCELLED
        r = client.wait(tid, timeout=1)
        assert (r.status, r.error, r.error_code) == (gtask.Status.CANCELLED, "cancelled",
                                                     gtask.Cancelled.code)
    # the record is the C library's byte for byte
    assert raw.lindex("gtask:{default}:n:" + a, 0) == \
        b'{"v":1,"s":"CANCELLED","err":"cancelled","ec":-23}'
    before = snapshot(raw)
    with pytest.raises(gtask.InvalidState) as e:
        client.cancel(a)
    assert e.value.status == gtask.Status.CANCELLED and "finished already" in str(e.value)
    with pytest.raises(gtask.NotFound):
        client.cancel(str(uuid.uuid4()))
    for bad in ("nope", a + "x", None):
        with pytest.raises(gtask.InvalidArgument):
            client.cancel(bad)
    assert snapshot(raw) == before
    # a task the C CLI sent, cancelled here; one sent here, cancelled by the CLI
    p = run_cli(redis_server.url, "send", "add", "1", "2")
    c_id = p.stdout.decode().strip()
    assert client.cancel(c_id) == gtask.CancelOutcome.REMOVED
    d = client.send("add", 3, 4)
    assert run_cli(redis_server.url, "cancel", d).returncode == 0
    assert client.status(d) == gtask.Status.CANCELLED
    # every cancel that changed something is counted, here and by the CLI
    assert client.stats().cancelled == 4


def test_cancel_running_and_progress(redis_server, worker, client):
    tid = client.send("sleep", 20000)
    p = wait_until(lambda: client.progress(tid))
    assert p.total == 20000 and 0 <= p.done < 20000 and p.message == "sleeping"
    assert client.status(tid) == gtask.Status.STARTED
    t0 = time.monotonic()
    assert client.cancel(tid) == gtask.CancelOutcome.RUNNING
    r = client.wait(tid, timeout=5)
    assert r.status == gtask.Status.CANCELLED and r.error_code == gtask.Cancelled.code
    assert client.progress(tid) is None  # a final state drops the progress
    with pytest.raises(gtask.InvalidState):
        client.cancel(tid)
    # the worker stopped the handler (its executor is free again, well within 20 s)
    assert client.wait(client.send("add", 1, 1), timeout=5).ok
    assert time.monotonic() - t0 < 10
    assert client.result(tid).status == gtask.Status.CANCELLED  # its late return was dropped


def test_progress_bad_input(redis_server, client):
    raw = redis_server.raw()
    assert client.progress(str(uuid.uuid4())) is None
    tid = client.send("add", 1, 2)
    assert client.progress(tid) is None  # not started
    raw.hset("gtask:{default}:t:" + tid, "p", "7 10 half way")
    assert client.progress(tid) == gtask.Progress(7, 10, "half way")
    raw.hset("gtask:{default}:t:" + tid, "p", "3 0")
    assert client.progress(tid) == (3, 0, "")
    for bad in ("x 10 m", "-1 10 m", "5", "5 -2 m", ""):
        raw.hset("gtask:{default}:t:" + tid, "p", bad)
        with pytest.raises(gtask.ProtocolError):
            client.progress(tid)
    with pytest.raises(gtask.InvalidArgument):
        client.progress("123")


# ---------------------------------------------------------------- failed set, rerun

def test_failed_list_and_rerun(redis_server, client, tmp_path):
    raw = redis_server.raw()
    w = Worker(redis_server.url, tmp_path / "w.log")
    try:
        tid = client.send("fail", "boom")
        ok = client.send("add", 1, 1)
        assert client.wait(tid, timeout=10).status == gtask.Status.FAILURE
        assert client.wait(ok, timeout=10).ok
        assert client.failed_list() == [gtask.DeadEntry(tid, "fail", "boom")]
        assert client.failed_list("other") == []
    finally:
        w.stop()
    before = snapshot(raw)
    with pytest.raises(gtask.InvalidState) as e:
        client.rerun(ok)
    assert e.value.status == gtask.Status.SUCCESS
    with pytest.raises(gtask.NotFound):
        client.rerun(str(uuid.uuid4()))
    for bad in ("x", None, tid[:-1]):
        with pytest.raises(gtask.InvalidArgument):
            client.rerun(bad)
    with pytest.raises(gtask.InvalidArgument):
        client.failed_list("bad queue")
    assert snapshot(raw) == before

    client.rerun(tid)
    assert client.status(tid) == gtask.Status.PENDING
    assert client.failed_list() == []
    (_, f), = raw.xrange(STREAM)
    m = decode_task(f[b"m"], tid, "default")
    assert (m.attempts, m.lost, m.last_error) == (0, 0, None)
    with pytest.raises(gtask.InvalidState):
        client.rerun(tid)  # PENDING now: not failed
    w = Worker(redis_server.url, tmp_path / "w2.log")
    try:
        r = client.wait(tid, timeout=10)  # the C worker ran it again
        assert (r.status, r.error, r.attempts) == (gtask.Status.FAILURE, "boom", 1)
        assert client.stats().failed == 2
    finally:
        w.stop()
    # the CLI lists what Python reran and the worker failed again
    p = run_cli(redis_server.url, "failed", "list")
    assert p.returncode == 0 and tid in p.stdout.decode()


def test_rerun_from_the_dead_set(redis_server, client):
    from test_admin import bury
    raw = redis_server.raw()
    tid = bury(raw, "default", "add", [gtask.int64(1), gtask.int64(2)])
    client.rerun(tid)
    assert client.status(tid) == gtask.Status.PENDING and client.dead_list() == []
    (_, f), = raw.xrange(STREAM)
    m = decode_task(f[b"m"], tid, "default")
    assert (m.lost, m.attempts, m.last_error) == (0, 0, None)


# ---------------------------------------------------------------- pause

def test_pause_and_resume(redis_server, client, tmp_path):
    raw = redis_server.raw()
    assert client.paused() is False
    client.pause()
    assert client.paused() is True and raw.get("gtask:{default}:paused") == b"1"
    assert client.paused("other") is False
    tid = client.send("add", 2, 3)  # sends still queue
    w = Worker(redis_server.url, tmp_path / "w.log")
    try:
        other = client.send("add", 1, 1, queue="other")
        w2 = Worker(redis_server.url, tmp_path / "w2.log", extra=["--queues", "other"])
        try:
            c2 = gtask.Client(redis_server.url, queue="other")
            assert c2.wait(other, timeout=10).ok  # another queue runs
        finally:
            w2.stop()
        time.sleep(1.0)  # two pause checks of the worker
        assert client.status(tid) == gtask.Status.PENDING
        client.resume()
        assert client.paused() is False
        assert client.wait(tid, timeout=10).values == [gtask.int64(5)]
    finally:
        w.stop()
    # the C CLI sees a pause set here
    client.pause()
    p = run_cli(redis_server.url, "stats", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["paused"] is True
    client.resume()
    assert json.loads(run_cli(redis_server.url, "stats", "--json").stdout)["paused"] is False
    before = snapshot(raw)
    for bad in ("bad queue", "", "x" * 129, 5):
        for call in (client.pause, client.resume, client.paused):
            with pytest.raises(gtask.InvalidArgument):
                call(bad)
    assert snapshot(raw) == before
