"""Round trips through the C worker: send -> `gtask worker --builtin` -> wait."""
from __future__ import annotations

import math
import struct
import time

import pytest

import gtask
from conftest import Worker, run_cli


def test_readme_example(redis_server, worker):
    c = gtask.Client(redis_server.url)
    tid = c.send("add", gtask.int64(1), gtask.int64(2), timeout=5.0, retry=2)
    r = c.wait(tid, timeout=10)
    assert r.status == gtask.Status.SUCCESS and r.status == "SUCCESS"
    assert r.values == [gtask.int64(3)]
    assert r.py_values == [3]
    assert r.error is None and r.error_code == 0 and r.attempts == 1
    assert r.id == tid
    # a random v4 UUID in lower case
    import uuid
    u = uuid.UUID(tid)
    assert u.version == 4 and str(u) == tid


def test_status_transitions(redis_server, tmp_path):
    c = gtask.Client(redis_server.url)
    tid = c.send("sleep", gtask.int64(400))
    assert c.status(tid) == gtask.Status.PENDING
    assert not c.is_finished(tid)
    r = c.result(tid)
    assert r.status == gtask.Status.PENDING and r.values == [] and r.attempts == 0
    with pytest.raises(gtask.Timeout):
        c.wait(tid, timeout=0.1)
    with pytest.raises(gtask.Timeout):
        c.wait(tid, timeout=0)
    w = Worker(redis_server.url, tmp_path / "w.log")
    try:
        seen = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            st = c.status(tid)
            seen.add(st)
            if st.is_final:
                break
            time.sleep(0.01)
        assert gtask.Status.STARTED in seen
        assert c.result(tid).attempts >= 1 or gtask.Status.SUCCESS in seen
        r = c.wait(tid, timeout=10)
        assert r.status == gtask.Status.SUCCESS and r.values == [gtask.int64(400)]
        assert c.is_finished(tid)
        assert c.status(tid) == gtask.Status.SUCCESS
        assert c.result(tid) == r
        # a waiter that starts after the notice returns at once, with the record
        c2 = gtask.Client(redis_server.url)
        assert c2.wait(tid, timeout=1) == r
    finally:
        w.stop()


def test_failing_task(redis_server, worker, client):
    tid = client.send("fail", "it broke: ünïcödé")
    r = client.wait(tid, timeout=10)
    assert r.status == gtask.Status.FAILURE
    assert r.error == "it broke: ünïcödé"
    assert r.error_code == gtask.HandlerError.code == -16
    assert r.attempts == 1 and r.values == []
    # wrong argument types fail too (the handler's own message)
    r = client.wait(client.send("sleep", "x"), timeout=10)
    assert r.status == gtask.Status.FAILURE and "sleep" in (r.error or "")


def test_unknown_task_name(redis_server, worker, client):
    r = client.wait(client.send("no_such_task", 1), timeout=10)
    assert r.status == gtask.Status.FAILURE and r.error_code == gtask.NoHandler.code


def test_timeout_with_retry(redis_server, worker, client):
    tid = client.send("sleep", gtask.int64(5000), timeout=0.3, retry=1, backoff=(0.3, 0.3))
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = client.status(tid)
        seen.add(st)
        if st.is_final:
            break
        time.sleep(0.01)
    assert gtask.Status.RETRY in seen
    r = client.wait(tid, timeout=10)
    assert r.status == gtask.Status.FAILURE
    assert r.error_code == gtask.TaskTimeout.code == -17
    assert r.attempts == 2
    assert "timeout" in (r.error or "")


def test_retry_then_success(redis_server, worker, client):
    # no retry needed: succeeds first time even with retry allowed
    r = client.wait(client.send("sleep", gtask.int64(10), timeout=2.0, retry=3), timeout=10)
    assert r.status == gtask.Status.SUCCESS and r.attempts == 1


F32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
F32_MIN_SUB = struct.unpack("<f", b"\x01\x00\x00\x00")[0]

EXTREMES = [
    gtask.bool(True), gtask.bool(False),
    gtask.int(-(1 << 63)), gtask.int((1 << 63) - 1),
    gtask.int8(-128), gtask.int8(127), gtask.int16(-32768), gtask.int16(32767),
    gtask.int32(-(1 << 31)), gtask.int32((1 << 31) - 1),
    gtask.int64(-(1 << 63)), gtask.int64((1 << 63) - 1), gtask.int64(0),
    gtask.uint(0), gtask.uint((1 << 64) - 1), gtask.uint8(255), gtask.uint16(65535),
    gtask.uint32((1 << 32) - 1), gtask.uint64(0), gtask.uint64((1 << 63) - 1),
    gtask.uint64(1 << 63), gtask.uint64((1 << 64) - 1),
    gtask.float32(F32_MAX), gtask.float32(-F32_MAX), gtask.float32(F32_MIN_SUB),
    gtask.float32(0.5), gtask.float32(-0.0), gtask.float32(math.nan), gtask.float32(math.inf),
    gtask.float32(-math.inf), gtask.float32(0.1, round=True), gtask.float32(16777217.0 - 1),
    gtask.float64(0.1), gtask.float64(-0.0), gtask.float64(5e-324), gtask.float64(1.7976931348623157e308),
    gtask.float64(math.nan), gtask.float64(math.inf), gtask.float64(-math.inf),
    gtask.float64(1e22), gtask.float64(1 / 3), gtask.float64(123456789.0),
    gtask.string(""), gtask.string("a\x00b\x00"), gtask.string("\x00"),
    gtask.string("héllo wörld ✓ 𝄞 \U0010ffff"), gtask.string('quote " back \\ slash / '),
    gtask.string("\x01\x07\b\f\n\r\t\x1f\x7f"), gtask.string("x" * 10000),
]


def test_every_type_extreme_round_trips_through_echo(redis_server, worker, client):
    tid = client.send("echo", *EXTREMES)
    r = client.wait(tid, timeout=10)
    assert r.status == gtask.Status.SUCCESS, r.error
    assert len(r.values) == len(EXTREMES)
    for sent, got in zip(EXTREMES, r.values):
        assert got == sent, (sent, got)
        if isinstance(sent.value, float) and not math.isnan(sent.value):
            # bit for bit, sign of zero included
            assert struct.pack("<d", got.value) == struct.pack("<d", sent.value)


def test_inferred_types(redis_server, worker, client):
    r = client.wait(client.send("echo", True, -5, 2.5, "s\x00", (1 << 63) - 1), timeout=10)
    assert r.values == [gtask.bool(True), gtask.int64(-5), gtask.float64(2.5),
                        gtask.string("s\x00"), gtask.int64((1 << 63) - 1)]
    assert r.py_values == [True, -5, 2.5, "s\x00", (1 << 63) - 1]
    r = client.wait(client.send("echo"), timeout=10)  # no arguments, no values
    assert r.status == gtask.Status.SUCCESS and r.values == []


def test_send_many(redis_server, worker, client):
    n = 1100  # three chunks of at most 512
    ids = client.send_many("add", [(gtask.int64(i), gtask.int64(i)) for i in range(n)],
                           timeout=10.0)
    assert len(ids) == n and len(set(ids)) == n
    for i, tid in enumerate(ids):
        r = client.wait(tid, timeout=20)
        assert r.status == gtask.Status.SUCCESS and r.values == [gtask.int64(2 * i)]
    s = client.stats()
    assert s.succeeded == n and s.failed == 0 and s.pending == 0 and s.dead == 0
    assert client.send_many("add", []) == []


def test_delay_and_queue_option(redis_server, tmp_path):
    c = gtask.Client(redis_server.url)
    t0 = time.monotonic()
    tid = c.send("add", 20, 22, delay=0.5)
    assert c.stats().scheduled == 1 and c.status(tid) == gtask.Status.PENDING
    other = c.send("add", 1, 1, queue="other")
    with pytest.raises(gtask.NotFound):  # results are kept per queue
        c.status(other)
    w = Worker(redis_server.url, tmp_path / "w.log", extra=["--queues", "default,other"])
    try:
        r = c.wait(tid, timeout=10)
        assert time.monotonic() - t0 >= 0.45
        assert r.values == [gtask.int64(42)]
        c.queue = "other"
        assert c.wait(other, timeout=10).values == [gtask.int64(2)]
        assert c.stats().succeeded == 1 and c.stats("default").succeeded == 1
    finally:
        w.stop()


def test_c_sent_task_read_from_python(redis_server, worker, client):
    p = run_cli(redis_server.url, "send", "echo", "uint64:18446744073709551615",
                "float32:0.5", "string:hé", "int8:-128", "bool:true")
    assert p.returncode == 0, p.stderr
    tid = p.stdout.decode().strip()
    r = client.wait(tid, timeout=10)
    assert r.values == [gtask.uint64((1 << 64) - 1), gtask.float32(0.5), gtask.string("hé"),
                        gtask.int8(-128), gtask.bool(True)]


def test_python_sent_task_read_from_c(redis_server, worker, client):
    tid = client.send("echo", gtask.int64(-(1 << 63)), gtask.string("line"))
    p = run_cli(redis_server.url, "--json", "result", tid, "--wait", "10s")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "SUCCESS" in out and "-9223372036854775808" in out and "line" in out
    p = run_cli(redis_server.url, "status", tid)
    assert p.returncode == 0 and "SUCCESS" in p.stdout.decode()
    tid = client.send("fail", "nope")
    p = run_cli(redis_server.url, "result", tid, "--wait", "10s")
    assert p.returncode == 1  # FAILURE


def test_separate_backend(tmp_path):
    from conftest import Redis
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    broker, backend = Redis(tmp_path / "a"), Redis(tmp_path / "b")
    w = Worker(broker.url, tmp_path / "w.log", backend=backend.url)
    try:
        c = gtask.Client(broker.url, backend=backend.url)
        tid = c.send("add", 2, 3)
        r = c.wait(tid, timeout=10)
        assert r.values == [gtask.int64(5)]
        assert backend.raw().exists("gtask:{default}:n:" + tid)
        assert not broker.raw().exists("gtask:{default}:n:" + tid)
        # With separate servers the worker stores the result on the backend
        # first, then finishes (and counts) on the broker: the counter may
        # lag the result by that second step.
        deadline = time.monotonic() + 10
        while c.stats().succeeded != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.stats().succeeded == 1
    finally:
        w.stop()
        broker.stop()
        backend.stop()
