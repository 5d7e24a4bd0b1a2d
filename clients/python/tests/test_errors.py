"""Bad input and failure modes: the C library's checks and error codes."""
from __future__ import annotations

import math
import uuid

import pytest

import gtask
from conftest import free_port


@pytest.mark.parametrize("make,arg", [
    (gtask.int8, 128), (gtask.int8, -129), (gtask.int16, 1 << 15), (gtask.int32, 1 << 31),
    (gtask.int64, 1 << 63), (gtask.int, -(1 << 63) - 1), (gtask.uint, -1), (gtask.uint8, 256),
    (gtask.uint16, 1 << 16), (gtask.uint32, 1 << 32), (gtask.uint64, 1 << 64),
    (gtask.float32, 0.1), (gtask.float32, 1e39), (gtask.float32, 16777217),
    (gtask.float64, (1 << 53) + 1),
])
def test_out_of_range(make, arg):
    with pytest.raises(gtask.OutOfRange) as e:
        make(arg)
    assert e.value.code == -14 and e.value.name == "ERANGE"
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("make,arg", [
    (gtask.int64, True), (gtask.int64, 1.5), (gtask.int64, "1"), (gtask.bool, 1),
    (gtask.float64, "1.0"), (gtask.string, 5), (gtask.string, b"\xff"),
    (gtask.string, "\ud800"),
])
def test_wrong_python_type(make, arg):
    with pytest.raises(gtask.InvalidArgument):
        make(arg)


def test_inference_mapping():
    assert gtask.infer(True) == gtask.bool(True)
    assert gtask.infer(7) == gtask.int64(7)
    assert gtask.infer(7.0) == gtask.float64(7.0)
    assert gtask.infer("s") == gtask.string("s")
    with pytest.raises(gtask.OutOfRange):
        gtask.infer(1 << 63)
    for bad in (None, b"x", [1], object(), 1j):
        with pytest.raises(gtask.InvalidArgument):
            gtask.infer(bad)
    assert gtask.float32(math.nan) == gtask.float32(math.nan)
    assert gtask.float64(0.0) != gtask.float64(-0.0)
    assert gtask.int32(1) != gtask.int64(1)
    assert gtask.float32(0.1, round=True).value == 0.10000000149011612


def test_bad_send_arguments(redis_server, client):
    for name in ("", "a\nb", "tab\t", "del\x7f", "x" * 257, 5):
        with pytest.raises(gtask.InvalidArgument):
            client.send(name)
    client.send("é" * 128)  # 256 bytes: allowed
    with pytest.raises(gtask.InvalidArgument):
        client.send("add", queue="no spaces")
    with pytest.raises(gtask.InvalidArgument):
        client.send("add", queue="x" * 129)
    with pytest.raises(gtask.InvalidArgument):
        client.send("add", timeout=-1)
    with pytest.raises(gtask.InvalidArgument):
        client.send("add", retry=-1)
    with pytest.raises(gtask.InvalidArgument):
        client.send("add", backoff=(2, 1))
    with pytest.raises(gtask.InvalidArgument):
        client.send("add", object())
    with pytest.raises(gtask.OutOfRange):
        client.send("add", 1 << 64)
    with pytest.raises(gtask.TooBig):
        client.send("echo", "x" * (600 * 1024))
    with pytest.raises(gtask.InvalidArgument):
        gtask.Client(redis_server.url, queue="a b")
    with pytest.raises(gtask.InvalidArgument):
        client.send_many("add", ["12"])
    # nothing above was queued but the 256-byte name
    assert client.stats().pending == 1


def test_ids(redis_server, client):
    for bad in ("", "not-a-uuid", str(uuid.uuid4())[:-1], str(uuid.uuid4()) + "0", None):
        with pytest.raises(gtask.InvalidArgument):
            client.status(bad)
        with pytest.raises(gtask.InvalidArgument):
            client.wait(bad, timeout=0)
    unknown = str(uuid.uuid4())
    with pytest.raises(gtask.NotFound) as e:
        client.status(unknown)
    assert e.value.code == -6
    with pytest.raises(gtask.NotFound):
        client.result(unknown)
    with pytest.raises(gtask.NotFound):
        client.wait(unknown, timeout=5)  # at once: not one this client sent
    with pytest.raises(gtask.NotFound):
        client.is_finished(unknown)
    with pytest.raises(gtask.NotFound):  # upper-case ids are ids, as in C
        client.status(unknown.upper())


def test_unreachable_redis():
    c = gtask.Client("redis://127.0.0.1:%d/0" % free_port(), timeout=0.5)
    with pytest.raises(gtask.ConnectionError) as e:
        c.send("add", 1, 2)
    assert e.value.code == -3
    with pytest.raises(gtask.ConnectionError):
        c.status(str(uuid.uuid4()))
    with pytest.raises(gtask.InvalidArgument):
        gtask.Client("redis://127.0.0.1:1/notadb")


def test_wrong_type_key_refused_whole(redis_server, client):
    """issue 14: push.lua changes nothing when a key holds the wrong type."""
    raw = redis_server.raw()
    raw.set("gtask:{default}:pending", "garbage")
    with pytest.raises(gtask.RedisError) as e:
        client.send("add", 1, 2)
    assert "push.lua changed nothing" in str(e.value) and e.value.code == -4
    assert raw.xlen("gtask:{default}:stream") == 0


def test_in_doubt(redis_server):
    """A send whose reply is lost (CLIENT PAUSE holds it past the timeout) is
    InDoubt, with the id to check."""
    c = gtask.Client(redis_server.url, timeout=0.3)
    c.send("add", 1, 1)  # scripts loaded
    raw = redis_server.raw()
    raw.execute_command("CLIENT", "PAUSE", 1000, "WRITE")
    with pytest.raises(gtask.InDoubt) as e:
        c.send("add", 2, 2)
    assert e.value.code == -20
    (tid,) = e.value.ids
    assert tid is not None
    # Redis drops a paused command of a client that hung up, so here it was
    # not applied; the caller finds that out from the id, as the C API says.
    c2 = gtask.Client(redis_server.url, timeout=3)
    try:
        queued = c2.status(tid) == gtask.Status.PENDING  # blocks until the pause ends
    except gtask.NotFound:
        queued = False
    assert c2.stats().pending == 1 + queued


def test_noscript_reload(redis_server, client):
    client.send("add", 1, 1)
    redis_server.raw().script_flush()
    client.send("add", 1, 1)  # NOSCRIPT: loaded again, run once
    assert client.stats().pending == 2


def test_error_classes():
    assert gtask.error_class(-5) is gtask.Timeout
    assert gtask.strerror(-20).startswith("sent, but the reply was lost")
    assert gtask.err_name(-18) == "ELOST"
    assert issubclass(gtask.NotFound, gtask.GtaskError)
