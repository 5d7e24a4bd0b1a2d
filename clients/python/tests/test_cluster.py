"""The client on a Redis Cluster (redis-cluster://): a real 3-master cluster,
started once for the session (conftest.py), and the C worker on it.  Every
script call names keys of one slot (the queue's), and each command goes to
the master of that slot, following MOVED when the slot moves."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Dict, List

import pytest
import redis

import gtask
from gtask._codec import TaskMessage, encode_task
from conftest import Cluster, Worker, run_cli
from test_admin import bury
from test_controls import wait_until


def queues_on_every_master(cluster: Cluster, tag: str) -> List[str]:
    """One queue name per master (the queue's hash tag decides its slot)."""
    by_port: Dict[int, str] = {}
    for k in range(1000):
        q = "%s%d" % (tag, k)
        by_port.setdefault(cluster.master_of("{%s}" % q).port, q)
        if len(by_port) == len(cluster.nodes):
            return sorted(by_port.values())
    raise AssertionError("no queue names found for every master")


def worker_on(cluster: Cluster, qs: List[str], log: Path) -> Worker:
    """The C worker on the cluster (plain ports), serving queues qs."""
    return Worker(cluster.url, log, extra=["--queues", ",".join(qs)])


def test_send_and_wait_on_every_master(cluster, tmp_path):
    qs = queues_on_every_master(cluster, "rt")
    w = worker_on(cluster, qs, tmp_path / "w.log")
    c = gtask.Client(cluster.url)
    try:
        for q in qs:
            c.queue = q
            ids = c.send_many("add", [[k, 1] for k in range(20)])
            one = c.send("echo", "x", gtask.uint64(1 << 63))
            assert [c.wait(t, timeout=10).values for t in ids] == \
                [[gtask.int64(k + 1)] for k in range(20)]
            assert c.wait(one, timeout=10).values == [gtask.string("x"), gtask.uint64(1 << 63)]
            assert c.status(one) == gtask.Status.SUCCESS
            assert wait_until(lambda: c.stats(q).succeeded == 21)
            # the queue's keys live on its slot's master only
            raw = cluster.master_of("{%s}" % q).raw()
            assert raw.exists("gtask:{%s}:n:%s" % (q, one)) == 1
            raw.close()
    finally:
        c.close()
        w.stop()


def test_controls_on_the_cluster(cluster, tmp_path):
    """Every script the client runs (push, claim, cancel, failed_requeue,
    dead_requeue, dead_purge) and the reads, on queues of different masters."""
    qs = queues_on_every_master(cluster, "ctl")
    c = gtask.Client(cluster.url)
    try:
        for q in qs:
            c.queue = q
            tid = str(uuid.uuid4())
            assert c.send("add", 1, 2, task_id=tid) == tid
            with pytest.raises(gtask.AlreadyExists):
                c.send("add", 1, 2, task_id=tid)
            a = c.send("add", 2, 2, unique="done")
            with pytest.raises(gtask.AlreadyExists) as e:
                c.send("add", 2, 2, unique="done")
            assert e.value.existing_id == a
            assert [s.duplicate for s in c.send_batch("add", [[5, 5], [5, 5]], unique=60)] == \
                [False, True]
            d = c.send("add", 3, 3, delay=60)
            assert c.cancel(d) == gtask.CancelOutcome.REMOVED
            assert c.cancel(tid) == gtask.CancelOutcome.REMOVED
            assert c.status(tid) == gtask.Status.CANCELLED
            with pytest.raises(gtask.InvalidState):
                c.cancel(tid)
            c.pause()
            assert c.paused() and not c.paused(qs[0] if q != qs[0] else qs[1])
            c.resume()
            assert not c.paused()
            # the dead set, on the queue's master
            raw = cluster.master_of("{%s}" % q).raw()
            dead = bury(raw, q, "add", [gtask.int64(1), gtask.int64(1)])
            raw.close()
            assert [x.id for x in c.dead_list()] == [dead]
            c.rerun(dead)
            assert c.status(dead) == gtask.Status.PENDING and c.dead_list() == []
            assert c.dead_purge() == 0
            s = c.stats()
            assert (s.pending, s.scheduled) == (3, 0)  # a, one of the batch, the rerun
        w = worker_on(cluster, qs, tmp_path / "w.log")
        try:
            for q in qs:
                c.queue = q
                f = c.send("fail", "boom")
                assert c.wait(f, timeout=10).status == gtask.Status.FAILURE
                assert [x.id for x in c.failed_list()] == [f]
                c.rerun(f)
                assert c.wait(f, timeout=10).attempts == 1
                s = c.send("sleep", 20000)
                p = wait_until(lambda: c.progress(s))
                assert p.total == 20000
                assert c.cancel(s) == gtask.CancelOutcome.RUNNING
                assert c.wait(s, timeout=5).status == gtask.Status.CANCELLED
        finally:
            w.stop()
    finally:
        c.close()


def errors(node, kind: str) -> int:
    """How many replies of an error kind (MOVED, ASK) a node has sent."""
    v = node.raw().info("errorstats").get("errorstat_" + kind, "count=0")
    return int(v["count"] if isinstance(v, dict) else v.split("=")[1])


def test_follows_ask_tryagain_and_moved(cluster):
    """The slot of a queue migrates to another master after the client read the
    map.  During the migration a one-key command meets ASK (its key is not on
    the source) and runs on the target; a send (push.lua, three keys, none
    there yet) meets TRYAGAIN there and waits until the migration ends; after
    it, a read meets MOVED and reads the map again."""
    q = queues_on_every_master(cluster, "mv")[0]
    src = cluster.master_of("{%s}" % q)
    dst = next(n for n in cluster.nodes if n is not src)
    c, c2 = gtask.Client(cluster.url, queue=q), gtask.Client(cluster.url, queue=q)
    try:
        for x in (c, c2):
            assert x.stats() == gtask.Stats(0, 0, 0, 0, 0, 0)  # the map is read: q on src
        slot = src.raw().execute_command("CLUSTER", "KEYSLOT", "{%s}" % q)
        src_id = src.raw().execute_command("CLUSTER", "MYID")
        dst_id = dst.raw().execute_command("CLUSTER", "MYID")
        dst.raw().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.raw().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        asks = errors(src, "ASK")
        c.pause()  # SET: ASK from src, ASKING + SET on dst
        assert c.paused() is True
        assert errors(src, "ASK") >= asks + 2
        tries = errors(dst, "TRYAGAIN")
        sent: List[str] = []
        t = threading.Thread(target=lambda: sent.append(c2.send("add", 1, 2)))
        t.start()
        wait_until(lambda: errors(dst, "TRYAGAIN") > tries)  # the send waits
        assert not sent
        # the migration ends: the new owner first, then the others
        for n in [dst, src] + [n for n in cluster.nodes if n not in (src, dst)]:
            n.raw().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        t.join(10)
        assert len(sent) == 1
        tid = sent[0]
        cluster.wait_ok()
        assert dst.raw().exists("gtask:{%s}:stream" % q, "gtask:{%s}:paused" % q) == 2
        with pytest.raises(redis.ResponseError, match="MOVED"):  # src holds it no more
            src.raw().exists("gtask:{%s}:stream" % q)
        moved = errors(src, "MOVED")
        assert c.status(tid) == gtask.Status.PENDING  # c's map still said src
        assert errors(src, "MOVED") > moved
        assert c.cancel(tid) == gtask.CancelOutcome.REMOVED
        assert c.wait(tid, timeout=1).status == gtask.Status.CANCELLED
    finally:
        c.close()
        c2.close()


def test_tls_cluster(cluster, tmp_path):
    """rediss-cluster:// with the C library's TLS parameters: the same cluster
    over its TLS ports (its nodes give TLS clients their TLS ports), the C
    worker on the plain ones."""
    qs = queues_on_every_master(cluster, "tls")
    w = worker_on(cluster, qs, tmp_path / "w.log")
    c = gtask.Client(cluster.tls_url)
    try:
        for q in qs:
            c.queue = q
            tid = c.send("add", 2, 3, unique=60)
            with pytest.raises(gtask.AlreadyExists):
                c.send("add", 2, 3, unique=60)
            assert c.wait(tid, timeout=10).values == [gtask.int64(5)]
            d = c.send("add", 1, 1, delay=60)
            assert c.cancel(d) == gtask.CancelOutcome.REMOVED
        assert all(isinstance(n.pool.connection_class, type) and
                   issubclass(n.pool.connection_class, redis.SSLConnection)
                   for n in c._broker.cluster.nodes.values())
        assert sorted(a[1] for a in c._broker.cluster.nodes) == \
            sorted(n.tls_port for n in cluster.nodes)
    finally:
        c.close()
        w.stop()
    # a CA that did not sign the servers' certificates: no connection
    port = cluster.nodes[0].tls_port
    bad = gtask.Client("rediss-cluster://127.0.0.1:%d?cacert=%s" % (
        port, cluster.certs / "s.crt"), timeout=1)
    with pytest.raises(gtask.ConnectionError):
        bad.send("add", 1, 2)
    with pytest.raises(gtask.InvalidArgument):
        gtask.Client("rediss-cluster://127.0.0.1:%d?capath=/etc/ssl/certs" % port)


def test_cluster_urls(cluster):
    for bad in ("redis-cluster://", "redis-cluster://127.0.0.1:1/1", "redis-cluster://h:x",
                "redis-cluster://h:1?cacert=/x", "rediss-cluster://h:1?nope=1",
                "rediss-cluster://h:1?cert=/c", "redis-cluster://h:99999"):
        with pytest.raises(gtask.InvalidArgument):
            gtask.Client(bad)
    # TLS parameters are the C library's names, given to redis-py's connections
    c = gtask.Client("rediss-cluster://u:p%40ss@127.0.0.1:7000,[::1]:7001/0?cacert=/ca.crt&"
                     "cert=/c.crt&key=/c.key&insecure=1")
    kw = c._broker.cluster.kw
    assert kw == {"username": "u", "password": "p@ss", "ssl": True, "ssl_ca_certs": "/ca.crt",
                  "ssl_certfile": "/c.crt", "ssl_keyfile": "/c.key", "ssl_cert_reqs": "none"}
    assert c._broker.cluster.seeds == [("127.0.0.1", 7000), ("::1", 7001)]
    assert "p@ss" not in c._broker.describe
    # nothing listens: the first command fails with ConnectionError, not at construction
    c = gtask.Client("redis-cluster://127.0.0.1:1", timeout=0.5)
    with pytest.raises(gtask.ConnectionError):
        c.send("add", 1, 2)
    # a script's keys must be one queue's (one slot): anything else is refused unsent
    c = gtask.Client(cluster.url)
    with pytest.raises(gtask.InvalidArgument):
        c._broker.eval("dead_purge", c._scripts["dead_purge"],
                       ["gtask:{a}:dead", "gtask:{b}:dead"], [])
    c.close()
    # the C CLI reads what Python sent on the cluster
    c = gtask.Client(cluster.url, queue="cli")
    tid = c.send("add", 1, 2)
    p = run_cli(cluster.url, "--queue", "cli", "status", tid)
    assert p.returncode == 0 and b"PENDING" in p.stdout, p.stderr
    c.close()


def test_priority_levels_on_the_cluster(cluster, tmp_path):
    """A level's stream shares its queue's slot: send, cancel and requeue at a
    level on queues of different masters, and the C worker runs them."""
    qs = queues_on_every_master(cluster, "prio")
    c = gtask.Client(cluster.url)
    try:
        for q in qs:
            c.queue = q
            raw = cluster.master_of("{%s}" % q).raw()
            c.send("add", 1, 2, priority=2)
            gone = c.send("add", 1, 2, priority=1)
            assert c.cancel(gone) == gtask.CancelOutcome.REMOVED
            assert (raw.xlen("gtask:{%s}:stream:2" % q), raw.xlen("gtask:{%s}:stream:1" % q)) \
                == (1, 0)
            body = encode_task(TaskMessage(name="add", args=[gtask.int64(2), gtask.int64(2)],
                                           created_ms=1, priority=1))
            dead = bury(raw, q, "add", [], body=body)
            assert c.dead_requeue(dead) == 1
            assert raw.xlen("gtask:{%s}:stream:1" % q) == 1
            assert c.stats().pending == 2
            raw.close()
        w = worker_on(cluster, qs, tmp_path / "w.log")
        try:
            for q in qs:
                c.queue = q
                assert wait_until(lambda: c.stats().succeeded == 2)
        finally:
            w.stop()
    finally:
        c.close()
