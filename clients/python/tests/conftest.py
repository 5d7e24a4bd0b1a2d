"""Fixtures: a private redis-server per test (free loopback port, temp dir) and
the C worker `gtask worker --builtin` (the CLI named by $GTASK_CLI, default
build/gtask of this repository)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

HERE = Path(__file__).resolve().parent
PKG_ROOT = HERE.parent                       # clients/python
REPO = PKG_ROOT.parent.parent                # the repository
sys.path.insert(0, str(PKG_ROOT))            # the package as it is in the tree

import gtask  # noqa: E402


def cli_path() -> str:
    p = os.environ.get("GTASK_CLI") or str(REPO / "build" / "gtask")
    if not os.access(p, os.X_OK):
        pytest.fail("the gtask CLI %s is missing: build the C side (cmake --build build) or "
                    "set GTASK_CLI" % p, pytrace=False)
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A throwaway redis-server."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server")
        if not exe:
            pytest.fail("redis-server not found (apt-get install redis-server)", pytrace=False)
        self.dir = tmp
        for _ in range(5):  # another process may take the port between probe and bind
            self.port = free_port()
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp), "--logfile", str(tmp / "redis.log")]
                + self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._ready():
                return
            self.stop()
        pytest.fail("redis-server did not start: %s" % (tmp / "redis.log").read_text())

    def _args(self) -> List[str]:
        return []

    def _ready(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    def raw(self):  # a plain redis-py client, for looking at keys
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_cluster_port() -> int:
    """A free port at most 55535 whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        p = free_port()
        if p > 55535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
    pytest.fail("no free port pair for a cluster node", pytrace=False)


def make_certs(d: Path) -> Path:
    """A CA (d/ca.crt) and a server certificate for 127.0.0.1 (d/s.crt, d/s.key)."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=gtask-test-ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "s.key", "-out", "s.csr", "-subj",
        "/CN=localhost")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "s.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "s.crt", "-days", "2", "-extfile", "ext")
    return d


class ClusterNode(Redis):
    """A redis-server with --cluster-enabled yes in its own dir, serving clients
    in plain text on port and over TLS on tls_port.  Its cluster bus is TLS
    (tls-cluster yes), so the bus port is tls_port + 10000 and tls_port must be
    at most 55535.  A node tells each client the ports of its kind (CLUSTER
    SLOTS), so one cluster serves redis-cluster:// and rediss-cluster://."""

    def __init__(self, tmp: Path, certs: Path) -> None:
        self.certs = certs
        super().__init__(tmp)

    def _args(self) -> List[str]:
        self.tls_port = free_cluster_port()
        c = self.certs
        return ["--tls-port", str(self.tls_port), "--tls-cert-file", str(c / "s.crt"),
                "--tls-key-file", str(c / "s.key"), "--tls-ca-cert-file", str(c / "ca.crt"),
                "--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--cluster-allow-replica-migration", "no"]


class Cluster:
    """A 3-master Redis Cluster on loopback ports (no replicas), started with
    `redis-cli --cluster create` and torn down after the session."""

    def __init__(self, tmp: Path, masters: int = 3) -> None:
        self.nodes: List[ClusterNode] = []
        try:
            self.certs = make_certs(tmp)
            for i in range(masters):
                d = tmp / ("node%d" % i)
                d.mkdir()
                self.nodes.append(ClusterNode(d, self.certs))
            p = subprocess.run(["redis-cli", "--tls", "--cacert", str(self.certs / "ca.crt"),
                                "--cluster", "create"] +
                               ["127.0.0.1:%d" % n.tls_port for n in self.nodes] +
                               ["--cluster-replicas", "0", "--cluster-yes"],
                               capture_output=True, timeout=60)
            if p.returncode != 0:
                pytest.fail("redis-cli --cluster create failed: %s" % p.stdout.decode(),
                            pytrace=False)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every node says cluster_state:ok and all agree on the slot map."""
        deadline = time.monotonic() + timeout
        while True:
            views: List[List[Tuple[int, int, int]]] = []
            for n in self.nodes:
                r = n.raw()
                try:
                    if b"cluster_state:ok" in r.execute_command("CLUSTER", "INFO"):
                        views.append(sorted((s[0], s[1], s[2][1]) for s in
                                            r.execute_command("CLUSTER", "SLOTS")))
                finally:
                    r.close()
            if len(views) == len(self.nodes) and all(v == views[0] for v in views) and \
                    sum(b - a + 1 for a, b, _ in views[0]) == 16384:
                return
            if time.monotonic() > deadline:
                pytest.fail("the cluster did not reach cluster_state:ok", pytrace=False)
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return "redis-cluster://" + ",".join("127.0.0.1:%d" % n.port for n in self.nodes[:2])

    @property
    def tls_url(self) -> str:
        return "rediss-cluster://%s?cacert=%s" % (
            ",".join("127.0.0.1:%d" % n.tls_port for n in self.nodes[:2]),
            self.certs / "ca.crt")

    def master_of(self, key: str) -> ClusterNode:
        r = self.nodes[0].raw()
        try:
            slot = r.execute_command("CLUSTER", "KEYSLOT", key)
            for a, b, master, *_ in r.execute_command("CLUSTER", "SLOTS"):
                if a <= slot <= b:
                    return next(n for n in self.nodes if n.port == master[1])
        finally:
            r.close()
        raise AssertionError("no master serves %s" % key)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


class Worker:
    """`gtask [--backend B] --redis URL worker --builtin`, stopped with SIGTERM."""

    def __init__(self, url: str, log: Path, backend: Optional[str] = None,
                 extra: Optional[List[str]] = None) -> None:
        args = [cli_path(), "--redis", url]
        if backend:
            args += ["--backend", backend]
        args += ["worker", "--builtin", "--concurrency", "4"] + (extra or [])
        self.log = log
        self.proc = subprocess.Popen(args, stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    r = Redis(tmp_path)
    yield r
    r.stop()


@pytest.fixture
def worker(redis_server: Redis, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(redis_server.url, tmp_path / "worker.log")
    yield w
    w.stop()


@pytest.fixture
def client(redis_server: Redis) -> Iterator["gtask.Client"]:
    c = gtask.Client(redis_server.url)
    yield c
    c.close()


def run_cli(url: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([cli_path(), "--redis", url, *args], capture_output=True,
                          timeout=timeout)
