"""The client: sends tasks and reads their states and results, over the keys and
scripts of docs/PROTOCOL.md, as src/client.c, src/admin.c and the Redis broker
and backend (src/redis/) do."""
from __future__ import annotations

import enum
import hashlib
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple,
                    TypeVar, Union)
from urllib.parse import parse_qsl, unquote, urlparse

import redis
import redis.exceptions as rx
from redis.cluster import REDIS_ALLOWED_KEYS
from redis.crc import key_slot

from . import _errors as E
from ._codec import (BACKOFF_FIRST_MS, BACKOFF_MAX_MS, PRIORITY_MAX, RETRY_ON_NAMES,
                     RETRY_ON_TIMEOUT, Record, TaskMessage, decode_result, decode_task,
                     encode_task, id_valid, unique_digest)
from ._scripts import load_all
from ._values import Value, infer

__all__ = ["Client", "Result", "Status", "Stats", "DeadEntry", "Sent", "Progress", "CancelOutcome"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MAX_PAYLOAD = 512 * 1024
PUSH_CHUNK = 512
REQUEUE_CHUNK = 256
CLAIM_ROUNDS = 16   # claim.lua retried while an until-done lock's holder keeps changing
CANCEL_ROUNDS = 4   # cancel.lua: looks for the message, then records the cancel anyway
SCAN_COUNT = 1000
CANCEL_RECORD = b'{"v":1,"s":"CANCELLED","err":"cancelled","ec":-23}'
SENT_RING = 16
GROUP = "workers"
KEYS_VERSION = 5    # the key schema (GTASK__KEYS_VERSION): priority levels need it
_QUEUE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")

T = TypeVar("T")


class Status(str, enum.Enum):
    """A task's state (gtask_status)."""
    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"  # cancelled (gtask cancel, gtask_client_cancel): final

    @property
    def is_final(self) -> bool:
        return self in (Status.SUCCESS, Status.FAILURE, Status.CANCELLED)

    def __str__(self) -> str:
        return self.value


@dataclass
class Result:
    """A task's result (gtask_result): ``values`` are typed (``gtask.Value``);
    ``py_values`` the plain Python values."""
    id: str
    status: Status
    values: List[Value] = field(default_factory=list)
    error: Optional[str] = None
    error_code: int = 0
    attempts: int = 0

    @property
    def py_values(self) -> List[Any]:
        return [v.value for v in self.values]

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCESS


@dataclass
class Sent:
    """One task of ``send_batch``: its id, or with ``duplicate`` the id of the
    existing task it duplicates (it was not sent)."""
    id: str
    duplicate: bool = False


class CancelOutcome(str, enum.Enum):
    """What ``Client.cancel`` did: the task is CANCELLED either way."""
    REMOVED = "removed"  # it was queued, delayed or waiting for a retry: it never runs
    RUNNING = "running"  # a worker held it: its handler is told to stop

    def __str__(self) -> str:
        return self.value


class Progress(NamedTuple):
    """A running task's latest progress (gtask_progress): total 0 is unknown."""
    done: int
    total: int
    message: str


def _progress_parse(v: bytes) -> Optional[Progress]:
    """"DONE TOTAL MESSAGE" (the `p` field of the task's hash), or None when
    malformed (src/progress.c progress_parse)."""
    m = re.match(rb"([+-]?[0-9]+) ([+-]?[0-9]+)(?: (.*))?\Z", v, re.S)
    if m is None:
        return None
    done, total = int(m.group(1)), int(m.group(2))
    if not 0 <= done <= (1 << 63) - 1 or not 0 <= total <= (1 << 63) - 1:
        return None
    return Progress(done, total, (m.group(3) or b"").decode("utf-8", "replace"))


@dataclass
class Stats:
    """A queue's counts (gtask_queue_stats)."""
    pending: int
    active: int
    scheduled: int
    dead: int
    succeeded: int
    failed: int
    cancelled: int = 0  # tasks cancelled in the queue (cancel.lua counts them)


@dataclass
class DeadEntry:
    """A task of a dead set (gtask_dead_entry): name None for a message that
    does not decode; error "" when neither its record nor its message says."""
    id: str
    name: Optional[str]
    error: str


def queue_valid(q: Any) -> bool:
    return isinstance(q, str) and 0 < len(q) <= 128 and all(c in _QUEUE_CHARS for c in q)


def _check_queue(q: Any, what: str = "queue") -> str:
    if not queue_valid(q):
        raise E.InvalidArgument('invalid %s name %r (1..128 of [A-Za-z0-9_.:-])' % (what, q))
    return q


def task_name_check(name: Any) -> str:
    """The C library's rule (gtask__task_name_check): 1..256 bytes, no control
    characters (below 0x20, and 0x7f)."""
    if not isinstance(name, str):
        raise E.InvalidArgument("a task name must be a str, not %r" % (name,))
    try:
        n = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise E.InvalidArgument("a task name must be valid UTF-8") from None
    if n == 0 or n > 256:
        raise E.InvalidArgument("a task name of 1..256 bytes is required (got %d)" % n)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise E.InvalidArgument("a task name must not contain a control character: %r" % name)
    return name


def _ms(seconds: Optional[float], what: str, allow_zero: bool = True) -> int:
    """Seconds (float) as whole milliseconds; a positive time under 1 ms is 1 ms."""
    if seconds is None:
        return 0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise E.InvalidArgument("%s must be a number of seconds, not %r" % (what, seconds))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise E.InvalidArgument("%s must be a finite number of seconds >= 0, not %r"
                                % (what, seconds))
    ms = int(round(seconds * 1000))
    if seconds > 0 and ms == 0:
        ms = 1
    if not allow_zero and ms == 0:
        raise E.InvalidArgument("%s must be positive" % what)
    if ms > (1 << 63) - 1:
        raise E.InvalidArgument("%s too large" % what)
    return ms


def _retry_on(names: Optional[Iterable[str]]) -> int:
    """The message's "ro" bits of some of "timeout", "error", "crash" (None:
    the default, timeouts)."""
    if names is None:
        return RETRY_ON_TIMEOUT
    if isinstance(names, str):
        names = [names]
    bits = 0
    try:
        for n in names:
            if n not in RETRY_ON_NAMES:
                raise E.InvalidArgument("retry_on: unknown outcome %r (some of timeout, error, "
                                        "crash)" % (n,))
            bits |= RETRY_ON_NAMES[n]
    except TypeError:
        raise E.InvalidArgument("retry_on must be some of (\"timeout\", \"error\", "
                                "\"crash\"), not %r" % (names,)) from None
    if bits == 0:
        raise E.InvalidArgument("retry_on must name at least one of timeout, error, crash")
    return bits


def _unique_ms(unique: Union[None, float, str]) -> Optional[int]:
    """A content lock's TTL in ms (0: until the task is final), or None for none."""
    if unique is None:
        return None
    if unique == "done":
        return 0
    if isinstance(unique, str):
        raise E.InvalidArgument('unique must be a positive number of seconds or "done", not %r'
                                % (unique,))
    ms = _ms(unique, "unique")
    if ms == 0:
        raise E.InvalidArgument('unique must be a positive number of seconds or "done", not %r'
                                % (unique,))
    return ms


def _priority(level: Any) -> int:
    """A send's priority level, checked as gtask_send_conf_set_priority does."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= PRIORITY_MAX:
        raise E.InvalidArgument("priority %r: the levels are 0 (normal), 1 (high) and 2 (urgent)"
                                % (level,))
    return level


def _levels_refused(rep: List[Any], q: str, level: int) -> E.GtaskError:
    """push.lua's or claim.lua's {0, worker, schema}: a live worker of the queue
    predates levels and would never read them (gtask__redis_levels_refused)."""
    who, ver = (_text(rep[k]) if len(rep) > k else "?" for k in (1, 2))
    return E.VersionMismatch("queue %s: worker %s of key schema %s never reads priority levels: "
                             "nothing was sent (priority %d needs schema %d workers; "
                             "docs/PROTOCOL.md)" % (q, who, ver, level, KEYS_VERSION))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- Redis errors

_RETRY_LATER = ("BUSY ", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "UNBLOCKED", "OOM")


def _reply_error(e: rx.ResponseError, where: str) -> E.GtaskError:
    """An error reply as the C library classes it (gtask__redis_reply_rc)."""
    msg = str(e)
    if isinstance(e, rx.NoScriptError):
        err = E.RedisError("%s: NOSCRIPT %s" % (where, msg))
        err.noscript = True  # type: ignore[attr-defined]
        return err
    if isinstance(e, rx.NoPermissionError):
        return E.PermissionDenied("%s: NOPERM %s" % (where, msg))
    if isinstance(e, rx.ReadOnlyError):
        return E.ConnectionError("%s: READONLY %s" % (where, msg))
    if isinstance(e, rx.BusyLoadingError):
        return E.ConnectionError("%s: LOADING %s" % (where, msg))
    if msg.startswith(_RETRY_LATER) or isinstance(e, getattr(rx, "OutOfMemoryError", ())):
        return E.ConnectionError("%s: %s" % (where, msg))
    return E.RedisError("%s: %s" % (where, msg))


class _Redirect(Exception):
    """A Redis Cluster reply meaning "not here, not now" (MOVED, ASK, TRYAGAIN,
    CLUSTERDOWN): the command ran nothing, so following it cannot apply it twice."""

    def __init__(self, kind: str, addr: Optional[Tuple[str, int]], text: str) -> None:
        super().__init__(text)
        self.kind, self.addr = kind, addr


def _redirect_of(msg: str) -> Optional[_Redirect]:
    parts = msg.split()
    if parts and parts[0] in ("MOVED", "ASK") and len(parts) == 3:
        host, _, port = parts[2].rpartition(":")
        try:
            return _Redirect(parts[0], (host.strip("[]"), int(port)), msg)
        except ValueError:
            return None
    if parts and parts[0] in ("TRYAGAIN", "CLUSTERDOWN"):
        return _Redirect("wait", None, msg)
    return None


class _Node:
    """One Redis server (and db): the connection pool for short commands and a
    separate pool for waits (a wait blocks; it never holds a connection the
    short commands need)."""

    def __init__(self, pool: redis.ConnectionPool, wait_pool: redis.ConnectionPool,
                 describe: str) -> None:
        self.pool, self.wait_pool, self.describe = pool, wait_pool, describe

    def close(self) -> None:
        self.pool.disconnect()
        self.wait_pool.disconnect()

    def conn(self, pool: redis.ConnectionPool, what: str) -> Any:
        try:
            return pool.get_connection(what)
        except rx.AuthenticationError as e:
            raise E.PermissionDenied("redis %s: %s" % (self.describe, e)) from None
        except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
            raise E.ConnectionError("redis %s: %s" % (self.describe, e)) from None


# rediss-cluster:// parameters, named as the C library names them (src/redis/conf.c),
# and the redis-py connection arguments they set.
_CLUSTER_TLS_PARAMS = {"cacert": "ssl_ca_certs", "capath": "ssl_ca_path", "cert": "ssl_certfile",
                       "key": "ssl_keyfile"}


def _cluster_url(url: str) -> Tuple[List[Tuple[str, int]], Dict[str, Any], str]:
    """redis-cluster://[[user]:password@]h1[:p1],h2[:p2],...[/0] and
    rediss-cluster://...[?cacert=F&capath=D&cert=F&key=F&insecure=1]: the seed
    nodes, the redis-py connection arguments, and a description without the
    password."""
    scheme, _, rest = url.partition("://")
    tls = scheme.lower() == "rediss-cluster"
    rest, _, query = rest.partition("?")
    rest, slash, db = rest.partition("/")
    if slash and db not in ("", "0"):
        raise E.InvalidArgument("invalid Redis URL %r: a Redis Cluster has db 0 only" % scheme)
    kw: Dict[str, Any] = {}
    userinfo, at, nodes = rest.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            kw["password"] = unquote(password)
            if user:
                kw["username"] = unquote(user)
        elif userinfo:
            kw["password"] = unquote(userinfo)  # as redis-cli reads "redis://secret@h"
    seeds: List[Tuple[str, int]] = []
    for n in nodes.split(","):
        if n.startswith("["):
            host, _, port = n[1:].partition("]")
            port = port[1:] if port.startswith(":") else port
        else:
            host, _, port = n.partition(":")
        try:
            p = int(port) if port else 6379
        except ValueError:
            p = -1
        if not host or not 0 < p < 65536:
            raise E.InvalidArgument("invalid Redis URL %s://...: bad cluster node %r"
                                    % (scheme, n))
        seeds.append((host, p))
    if query and not tls:
        raise E.InvalidArgument("invalid Redis URL: redis-cluster:// takes no parameters (TLS "
                                "ones need rediss-cluster://)")
    if tls:
        kw["ssl"] = True
    for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if k == "capath" and "ssl_ca_path" not in REDIS_ALLOWED_KEYS:
            raise E.InvalidArgument("invalid Redis URL %s://...: capath: this redis-py's "
                                    "RedisCluster cannot take it (use cacert)" % scheme)
        if k in _CLUSTER_TLS_PARAMS and v:
            kw[_CLUSTER_TLS_PARAMS[k]] = v
        elif k == "insecure" and v in ("1", "0", "true", "yes"):
            if v != "0":
                kw["ssl_cert_reqs"] = "none"
        else:
            raise E.InvalidArgument("invalid Redis URL %s://...: parameter %r (TLS: cacert, "
                                    "capath, cert, key, insecure)" % (scheme, k))
    if ("ssl_certfile" in kw) != ("ssl_keyfile" in kw):
        raise E.InvalidArgument("invalid Redis URL %s://...: cert and key go together" % scheme)
    return seeds, kw, "%s://%s" % (scheme, ",".join("%s:%d" % s for s in seeds))


class _Cluster:
    """A Redis Cluster: the slot map, read from any seed node by redis-py's
    RedisCluster (and read again after a MOVED or a failed connection), and a
    _Node per master.  Every command names keys of one slot: a queue's."""

    def __init__(self, seeds: List[Tuple[str, int]], kw: Dict[str, Any], timeout: float,
                 describe: str) -> None:
        self.seeds, self.kw, self.timeout, self.describe = seeds, kw, timeout, describe
        self.rc: Any = None
        self.stale = False
        self.nodes: Dict[Tuple[str, int], _Node] = {}

    def close(self) -> None:
        for n in self.nodes.values():
            n.close()
        self.nodes.clear()
        if self.rc is not None:
            self.rc.close()
            self.rc = None

    def _map(self) -> Any:
        from redis.cluster import ClusterNode, RedisCluster
        try:
            if self.rc is None:
                self.rc = RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in self.seeds],
                    require_full_coverage=False, socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout, **self.kw)
            elif self.stale:
                self.rc.nodes_manager.initialize()
        except rx.AuthenticationError as e:
            raise E.PermissionDenied("redis %s: %s" % (self.describe, e)) from None
        except (rx.RedisClusterException, rx.RedisError, OSError) as e:
            raise E.ConnectionError("redis %s: reading the slot map: %s"
                                    % (self.describe, e)) from None
        self.stale = False
        return self.rc

    def node_for(self, key: Union[str, bytes]) -> _Node:
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        try:
            n = self._map().nodes_manager.get_node_from_slot(slot)
        except (rx.RedisClusterException, IndexError, KeyError) as e:
            self.stale = True
            raise E.ConnectionError("redis %s: no master serves slot %d (%s)"
                                    % (self.describe, slot, e)) from None
        return self.node_at((n.host, int(n.port)))

    def node_at(self, addr: Tuple[str, int]) -> _Node:
        node = self.nodes.get(addr)
        if node is None:
            cls = redis.SSLConnection if self.kw.get("ssl") else redis.Connection
            kw = {k: v for k, v in self.kw.items() if k != "ssl"}
            mk = lambda t: redis.ConnectionPool(  # noqa: E731
                connection_class=cls, host=addr[0], port=addr[1], socket_timeout=t,
                socket_connect_timeout=self.timeout, **kw)
            node = _Node(mk(self.timeout), mk(None), "%s:%d" % addr)
            self.nodes[addr] = node
        return node


REDIRECT_HOPS = 16         # MOVED / ASK followed at most this often for one command
REDIRECT_WAIT_S = 5.0      # TRYAGAIN / CLUSTERDOWN retried for about this long
REDIRECT_FIRST_S = 0.01    # ... after 10, 20, 40 ... 320 ms


class _Server:
    """A Redis server (and db) or a Redis Cluster.  Every command is routed by
    one of its keys (on one server, to the server): on a cluster to the master
    of its slot, following MOVED and ASK, and retrying TRYAGAIN and
    CLUSTERDOWN for about 5 s, as src/redis/cluster.c does."""

    def __init__(self, url: str, timeout: float) -> None:
        if not isinstance(url, str) or not url:
            raise E.InvalidArgument("a Redis URL is required")
        self.timeout = timeout
        self.shas: Dict[str, str] = {}
        self.cluster: Optional[_Cluster] = None
        if url.lower().startswith(("redis-cluster://", "rediss-cluster://")):
            seeds, kw, self.describe = _cluster_url(url)
            self.cluster = _Cluster(seeds, kw, timeout, self.describe)
            self.identity: Tuple[Any, ...] = ("cluster", self.describe)
            return
        if "://" not in url:
            if url.startswith("unix:"):
                url = "unix://" + url[len("unix:"):]
            else:  # g_task's host:port
                url = "redis://" + url
        u = urlparse(url)
        if u.scheme in ("redis", "rediss") and u.path not in ("", "/") and \
                not u.path[1:].isdigit():
            raise E.InvalidArgument("invalid Redis URL %r: db %r is not a number"
                                    % (url, u.path[1:]))
        try:
            pool = redis.ConnectionPool.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout)
            wait_pool = redis.ConnectionPool.from_url(
                url, socket_timeout=None, socket_connect_timeout=timeout)
        except (ValueError, TypeError) as e:
            raise E.InvalidArgument("invalid Redis URL %r: %s" % (url, e)) from None
        kw = pool.connection_kwargs
        self.describe = (kw.get("path") or "%s:%s" % (kw.get("host"), kw.get("port"))) + \
            "/%s" % kw.get("db", 0)
        self.identity = (u.scheme == "unix", kw.get("path"), kw.get("host"), kw.get("port"),
                         int(kw.get("db", 0) or 0))
        self.single = _Node(pool, wait_pool, self.describe)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
        else:
            self.single.close()

    def node(self, key: Union[str, bytes]) -> _Node:
        """The server that holds key."""
        return self.single if self.cluster is None else self.cluster.node_for(key)

    def lost(self) -> None:
        """A connection failed: on a cluster, read the slot map again before the
        next command (a failover may have moved the slot)."""
        if self.cluster is not None:
            self.cluster.stale = True

    def _routed(self, key: Union[str, bytes], once: Callable[[_Node, bool], T]) -> T:
        """once(node, asking) on the node of key, following redirections."""
        if self.cluster is None:
            return once(self.single, False)
        node, asking = self.cluster.node_for(key), False
        hops, delay, deadline = 0, REDIRECT_FIRST_S, time.monotonic() + REDIRECT_WAIT_S
        while True:
            try:
                return once(node, asking)
            except _Redirect as r:
                if r.kind in ("MOVED", "ASK") and r.addr is not None and hops < REDIRECT_HOPS:
                    hops += 1
                    if r.kind == "MOVED":
                        self.cluster.stale = True
                    node, asking = self.cluster.node_at(r.addr), r.kind == "ASK"
                    continue
                if time.monotonic() >= deadline or r.kind != "wait":
                    raise E.ConnectionError("redis %s: %s: %s" % (
                        self.describe, node.describe, r)) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.32)
                node, asking, hops = self.cluster.node_for(key), False, 0
            except (E.ConnectionError, E.InDoubt):
                self.lost()
                raise

    def call(self, *args: Any, write: bool = False, key: Any = None) -> Any:
        """One command, routed by key (default: its first argument).  No reply:
        InDoubt for a write whose bytes all went out, else ConnectionError (a
        command Redis did not get whole never runs)."""
        return self._routed(args[1] if key is None else key,
                            lambda node, asking: self._call(node, asking, args, write))

    def _call(self, node: _Node, asking: bool, args: Tuple[Any, ...], write: bool) -> Any:
        what = str(args[0])
        conn = node.conn(node.pool, what)
        try:
            try:
                if asking:
                    conn.send_packed_command(conn.pack_commands([("ASKING",), args]))
                else:
                    conn.send_command(*args)
            except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                conn.disconnect()
                raise E.ConnectionError("redis %s: %s: %s" % (node.describe, what, e)) from None
            try:
                if asking:
                    conn.read_response()
                return conn.read_response()
            except rx.ResponseError as e:
                r = _redirect_of(str(e)) if self.cluster is not None else None
                if r is not None:
                    raise r from None
                raise _reply_error(e, "redis %s: %s" % (node.describe, what)) from None
            except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                conn.disconnect()
                if write:
                    raise E.InDoubt("redis %s: %s: sent, but no reply (%s): its outcome is "
                                    "unknown" % (node.describe, what, e)) from None
                raise E.ConnectionError("redis %s: %s: %s" % (node.describe, what, e)) from None
        finally:
            node.pool.release(conn)

    def pipeline(self, cmds: Sequence[Tuple[Any, ...]], key: Any) -> List[Any]:
        """Read commands on key's node in one write, replies in order (an error
        reply is returned, as an exception object, not raised).  On a cluster a
        redirection of any of them redirects them all (ASK waits: ASKING
        applies to one command, not a transaction)."""
        def once(node: _Node, asking: bool) -> List[Any]:
            out = self._pipeline(node, cmds)
            for x in out:
                r = _redirect_of(str(x)) if isinstance(x, rx.ResponseError) and \
                    self.cluster is not None else None
                if r is not None:
                    raise r if r.kind == "MOVED" else _Redirect("wait", None, str(r))
            return out
        return self._routed(key, once)

    @staticmethod
    def _pipeline(node: _Node, cmds: Sequence[Tuple[Any, ...]]) -> List[Any]:
        conn = node.conn(node.pool, "pipeline")
        try:
            try:
                conn.send_packed_command(conn.pack_commands(cmds))
                out: List[Any] = []
                for _ in cmds:
                    try:
                        out.append(conn.read_response())
                    except rx.ResponseError as e:
                        out.append(e)
                return out
            except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                conn.disconnect()
                raise E.ConnectionError("redis %s: %s" % (node.describe, e)) from None
        finally:
            node.pool.release(conn)

    def eval(self, name: str, src: str, keys: Sequence[Any], argv: Sequence[Any],
             write: bool = True) -> Any:
        """EVALSHA of a script on its keys' node; on NOSCRIPT, SCRIPT LOAD on that
        node and once more (a script that did not run changed nothing).  Its keys
        must all be in one slot (a queue's): on a cluster anything else is
        refused unsent, as a bug."""
        if self.cluster is not None:  # (one server has no slots to cross)
            slots = {key_slot(k.encode() if isinstance(k, str) else k) for k in keys}
            if len(slots) > 1:
                raise E.InvalidArgument("%s.lua: keys in %d hash slots (a bug: a script takes "
                                        "the keys of one queue)" % (name, len(slots)))
        sha = self.shas.get(name)
        if sha is None:
            sha = self.shas[name] = hashlib.sha1(src.encode("utf-8")).hexdigest()
        cmd = ("EVALSHA", sha, len(keys), *keys, *argv)

        def once(node: _Node, asking: bool) -> Any:
            try:
                return self._call(node, asking, cmd, write)
            except E.RedisError as e:
                if not getattr(e, "noscript", False):
                    raise
            # Not loaded on this node (a restart, a node new to us): load it
            # there and run it once more.
            self._call(node, False, ("SCRIPT", "LOAD", src), False)
            return self._call(node, asking, cmd, write)
        try:
            return self._routed(keys[0], once)
        except E.GtaskError as e:
            err = type(e)("%s (%s.lua)" % (e, name))
            err.__dict__.update(e.__dict__)
            raise err from None


def _text(b: Any) -> str:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


class Client:
    """A gtask client on Redis (gtask_client with the Redis broker and backend).

    ``url`` is the broker (where tasks queue); ``backend`` where states and
    results live (default: the same).  ``queue`` is the queue that sends
    default to and that status, result and wait read (results are kept per
    queue).  ``prefix`` is the key prefix, ``expire`` the state TTL in seconds
    (and a queued message's lifetime, as in the C library), ``timeout`` the
    connect and command timeout in seconds.

    Not thread-safe (as the C client): use one per thread.
    """

    def __init__(self, url: str = DEFAULT_URL, *, backend: Optional[str] = None,
                 queue: str = "default", prefix: str = "gtask", expire: float = 86400.0,
                 timeout: float = 2.0, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self._queue = _check_queue(queue)
        self._prefix = _check_queue(prefix, "key prefix")
        self._expire_ms = _ms(expire, "expire", allow_zero=False)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise E.InvalidArgument("timeout must be a positive number of seconds")
        if not isinstance(max_payload, int) or max_payload < 256:
            raise E.InvalidArgument("max_payload must be at least 256 bytes")
        self._max_payload = max_payload
        self._broker = _Server(url, float(timeout))
        self._backend = _Server(backend, float(timeout)) if backend else self._broker
        self._colocated = self._backend is self._broker or \
            self._backend.identity == self._broker.identity
        self._scripts = load_all()
        self._sent: List[str] = []

    # -- housekeeping

    def close(self) -> None:
        self._broker.close()
        if self._backend is not self._broker:
            self._backend.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def queue(self) -> str:
        return self._queue

    @queue.setter
    def queue(self, q: str) -> None:
        self._queue = _check_queue(q)
        self._sent = []

    def _key(self, queue: str, suffix: str, task_id: Optional[str] = None) -> str:
        k = "%s:{%s}:%s" % (self._prefix, queue, suffix)
        return k + ":" + task_id if task_id else k

    def _stream(self, queue: str, level: int) -> str:
        """The stream of a priority level: P:{q}:stream (0), P:{q}:stream:1, :2."""
        return self._key(queue, "stream", str(level) if level else None)

    @staticmethod
    def script_sha(src: str) -> str:
        return hashlib.sha1(src.encode("utf-8")).hexdigest()

    # -- send

    def send(self, name: str, *args: Any, timeout: Optional[float] = None, retry: int = 0,
             retry_on: Optional[Iterable[str]] = None,
             backoff: Optional[Tuple[float, float]] = None, delay: Optional[float] = None,
             queue: Optional[str] = None, task_id: Optional[str] = None,
             unique: Union[None, float, str] = None, priority: int = 0) -> str:
        """Sends one task and returns its id (a random v4 UUID, or task_id).  The
        task is queued and PENDING when this returns.

        args are ``gtask.Value`` s or plain values (see ``gtask.infer``).
        timeout: seconds one run may last (None/0: none); retry: retries after a
        timeout or a handler's retry request; retry_on: which outcomes retry
        covers, some of ``("timeout", "error", "crash")`` (default: timeouts
        only; never retried whatever it says: no handler, argument types, a
        malformed or expired message); backoff: (first, max) seconds before
        retry k: min(max, first * 2^(k-1)) +-25% (default (1, 60)); delay: do
        not run before now + delay seconds; queue: the queue to send to
        (default: the client's); priority: the task's level
        (gtask_send_conf_set_priority), 0 normal (the default), 1 high or 2
        urgent: a worker leases the highest level of a queue that has tasks
        first, in order of sending within a level, and the level stays with
        the task through delays, retries and requeues.  Another value raises
        InvalidArgument; a level above 0 raises VersionMismatch, sending
        nothing, while a live worker of the queue predates levels (key schema
        < 5: it would never read them).

        task_id: send under this id (a lower-case UUID) instead of a random
        one.  unique: a content lock (asynq's Unique): refused while another
        task of the same name, queue and arguments (as encoded: int64 5 and
        int32 5 differ) sent with unique holds it -- for unique seconds
        after it was sent, or with ``"done"`` until that task is final (at
        most the state expiry).  A duplicate of either kind raises
        ``AlreadyExists`` (``e.existing_id``): nothing was sent, the existing
        task is untouched.

        InDoubt: the reply was lost; ``e.ids[0]`` may or may not be queued:
        check it with status (NotFound: not queued) before sending again."""
        ids, dups = self._send(name, [args], timeout=timeout, retry=retry, retry_on=retry_on,
                               backoff=backoff, delay=delay, queue=queue, task_id=task_id,
                               unique=unique, priority=priority)
        if dups[0]:
            q = queue if queue is not None else self._queue
            raise E.AlreadyExists("send %s: task %s already exists in queue %s%s"
                                  % (name, ids[0], q, "" if task_id else
                                     " with the same name and arguments"), ids[0])
        return ids[0]

    def send_many(self, name: str, arglists: Iterable[Sequence[Any]], *,
                  timeout: Optional[float] = None, retry: int = 0,
                  retry_on: Optional[Iterable[str]] = None,
                  backoff: Optional[Tuple[float, float]] = None, delay: Optional[float] = None,
                  queue: Optional[str] = None, unique: Union[None, float, str] = None,
                  priority: int = 0) -> List[str]:
        """Sends one task per argument list, all of the same name and options, in
        one round trip per 512 tasks (each such chunk queued atomically).
        Returns their ids in order.  Options as for ``send``.

        With unique, a task whose content lock is held (by an existing task or
        an earlier one of this call) is not sent: if any was, AlreadyExists is
        raised once all are sent, with ``e.ids`` (every task's id, the
        existing task's for a duplicate) and ``e.duplicates`` (their indices);
        the others were queued.  ``send_batch`` reports the same without
        raising.

        On another error the exception's ``ids`` lists every task's id, None
        for the tasks that were not queued: the chunks before the failing one
        are queued; with InDoubt the failing chunk's tasks keep their ids (they
        may or may not be queued: check them before sending again); later ones
        were not sent.  Retrying exactly the tasks whose id is None never
        duplicates one."""
        ids, dups = self._send(name, arglists, timeout=timeout, retry=retry, retry_on=retry_on,
                               backoff=backoff, delay=delay, queue=queue, task_id=None,
                               unique=unique, priority=priority)
        if any(dups):
            which = [k for k, d in enumerate(dups) if d]
            raise E.AlreadyExists("send %s: %d of %d tasks were duplicates of existing ones (the "
                                  "others were queued)" % (name, len(which), len(ids)),
                                  ids[which[0]], ids, which)
        return ids

    def send_batch(self, name: str, arglists: Iterable[Sequence[Any]], *,
                   timeout: Optional[float] = None, retry: int = 0,
                   retry_on: Optional[Iterable[str]] = None,
                   backoff: Optional[Tuple[float, float]] = None, delay: Optional[float] = None,
                   queue: Optional[str] = None, unique: Union[None, float, str] = None,
                   priority: int = 0) -> List["Sent"]:
        """``send_many`` that reports duplicates per task instead of raising
        (gtask_client_send_batch): one ``Sent(id, duplicate)`` per task, in
        order; a duplicate's id is the existing task's, and it was not sent."""
        ids, dups = self._send(name, arglists, timeout=timeout, retry=retry, retry_on=retry_on,
                               backoff=backoff, delay=delay, queue=queue, task_id=None,
                               unique=unique, priority=priority)
        return [Sent(i, d) for i, d in zip(ids, dups)]

    def _send(self, name: str, arglists: Iterable[Sequence[Any]], *, timeout: Optional[float],
              retry: int, retry_on: Optional[Iterable[str]],
              backoff: Optional[Tuple[float, float]], delay: Optional[float],
              queue: Optional[str], task_id: Optional[str],
              unique: Union[None, float, str], priority: int) -> Tuple[List[str], List[bool]]:
        """The sends: (ids, duplicate flags).  Everything is checked before
        anything is sent."""
        task_name_check(name)
        q = _check_queue(queue) if queue is not None else self._queue
        timeout_ms = _ms(timeout, "timeout")
        delay_ms = _ms(delay, "delay")
        if isinstance(retry, bool) or not isinstance(retry, int) or not 0 <= retry <= 1000000:
            raise E.InvalidArgument("retry must be an integer 0..1000000, not %r" % (retry,))
        ro = _retry_on(retry_on)
        bf, bm = BACKOFF_FIRST_MS, BACKOFF_MAX_MS
        if backoff is not None:
            try:
                first, most = backoff
            except (TypeError, ValueError):
                raise E.InvalidArgument("backoff must be (first, max) in seconds") from None
            bf, bm = _ms(first, "backoff first", False), _ms(most, "backoff max", False)
            if bm < bf:
                raise E.InvalidArgument("backoff max must be >= backoff first")
        if task_id is not None and (not id_valid(task_id) or task_id != task_id.lower()):
            raise E.InvalidArgument("%r is not a task id (a lower-case UUID)" % (task_id,))
        lock_ms = _unique_ms(unique)
        level = _priority(priority)
        values: List[List[Value]] = []
        for i, args in enumerate(arglists):
            if isinstance(args, (str, bytes)):
                raise E.InvalidArgument("send_many takes a list of argument lists (task %d "
                                        "is a string)" % (i + 1))
            row = []
            for k, a in enumerate(args):
                try:
                    row.append(infer(a))
                except E.GtaskError as e:
                    raise type(e)("send %s: task %d, argument %d: %s" % (name, i + 1, k + 1, e))
            if len(row) > 1024:
                raise E.InvalidArgument("send: %d arguments (at most 1024)" % len(row))
            values.append(row)
        claiming = task_id is not None or lock_ms is not None
        now = _now_ms()
        due = now + delay_ms if delay_ms else 0
        ids: List[Optional[str]] = [None] * len(values)
        dups = [False] * len(values)
        for done in range(0, len(values), PUSH_CHUNK):
            chunk = values[done:done + PUSH_CHUNK]
            msgs: List[Tuple[str, bytes]] = []
            digests: List[Optional[str]] = []
            for row in chunk:
                tid = task_id or str(uuid.uuid4())
                body = encode_task(TaskMessage(
                    name=name, args=row, timeout_ms=timeout_ms, retry_max=retry, retry_on=ro,
                    backoff_first_ms=bf, backoff_max_ms=bm, created_ms=now,
                    expires_ms=now + delay_ms + self._expire_ms, priority=level))
                if len(body) > self._max_payload:
                    err = E.TooBig("send %s: message of %d bytes exceeds the limit of %d"
                                   % (name, len(body), self._max_payload))
                    err.ids = list(ids)  # type: ignore[attr-defined]
                    raise err
                msgs.append((tid, body))
                digests.append(unique_digest(name, row) if lock_ms is not None else None)
            try:
                if claiming:
                    existing = self._claim(q, msgs, due, digests, lock_ms, level)
                else:
                    self._push(q, msgs, due, level)
                    existing = [None] * len(msgs)
            except E.GtaskError as e:
                if isinstance(e, E.InDoubt):
                    for k, (tid, _) in enumerate(msgs):
                        ids[done + k] = tid
                    e = E.InDoubt("send %s: in doubt (%s): tasks %d..%d may or may not be "
                                  "queued; check their ids with status (NotFound: not queued)"
                                  % (name, e, done + 1, done + len(msgs)))
                else:
                    e = type(e)("send %s: %s" % (name, e))
                e.ids = list(ids)  # type: ignore[attr-defined]
                raise e from None
            for k, (tid, _) in enumerate(msgs):
                ids[done + k] = existing[k] or tid
                dups[done + k] = existing[k] is not None
        out = [i for i in ids if i is not None]
        if q == self._queue:
            self._sent = (self._sent + out[-SENT_RING:])[-SENT_RING:]
        return out, dups

    def _push(self, q: str, msgs: List[Tuple[str, bytes]], due_ms: int, level: int,
              state: bool = True) -> None:
        """push.lua (with the PENDING record in it when colocated, else an SADD on
        the backend first: a worker can never finish a task before its PENDING
        record exists).  state False: the record is written already (claim).
        At a level above 0 into that level's stream, with the queue's marker
        and workers hash (src/redis/broker.c rb_push)."""
        pending = [m[0] for m in msgs] if state and not self._colocated else []
        if pending:
            self._backend.call("SADD", self._key(q, "pending"), *pending, write=True)
        keys = [self._stream(q, level), self._key(q, "sched"), self._key(q, "pending")]
        if level:
            keys += [self._key(q, "prio"), self._key(q, "workers")]
        argv: List[Any] = ["1" if state and self._colocated else "0", _now_ms(),
                           "3" if due_ms else "2"]
        for tid, body in msgs:
            argv += [tid, body] + ([due_ms] if due_ms else [])
        rep = self._broker.eval("push", self._scripts["push"], keys, argv)
        if isinstance(rep, list):
            if pending:  # (fresh ids: the records no task will ever end)
                self._backend.call("SREM", self._key(q, "pending"), *pending, write=True)
            raise _levels_refused(rep, q, level)
        if rep != len(msgs):
            raise E.ProtocolError("redis %s: push.lua replied %r, not %d"
                                  % (self._broker.describe, rep, len(msgs)))

    def _claim(self, q: str, msgs: List[Tuple[str, bytes]], due_ms: int,
               digests: List[Optional[str]], lock_ms: Optional[int],
               level: int) -> List[Optional[str]]:
        """claim.lua (src/redis/claim.c): per message None (claimed and queued) or
        the id of the task it duplicates.  Colocated, the script queues too;
        else it claims on the backend and push.lua queues the claimed ones.
        The holders of until-done locks are read first (the script must be
        given their keys by name); a holder that changed meanwhile makes the
        script change nothing and answer -1: read again, at most 16 times.  A
        level above 0 is queued by the script when colocated (ARGV[1] "2"),
        else by push.lua (src/redis/claim.c)."""
        be = self._backend
        lv = level if self._colocated else 0
        for _ in range(CLAIM_ROUNDS):
            until_done = [k for k, d in enumerate(digests) if d is not None and lock_ms == 0]
            holders = [""] * len(msgs)
            if until_done:
                rep = be.call("MGET", *[self._key(q, "u", digests[k]) for k in until_done])
                if not isinstance(rep, list) or len(rep) != len(until_done):
                    raise E.ProtocolError("redis %s: MGET replied %r, not the keys' values"
                                          % (be.describe, rep))
                for k, v in zip(until_done, rep):
                    if isinstance(v, bytes):
                        if len(v) != 36:
                            raise E.ProtocolError("redis %s: MGET: %r is no task id in a unique "
                                                  "key" % (be.describe, v[:60]))
                        holders[k] = v.decode("ascii", "replace")
            keys = [self._stream(q, lv), self._key(q, "sched"), self._key(q, "pending")]
            argv: List[Any] = ["2" if lv else "1" if self._colocated else "0", _now_ms(),
                               self._expire_ms]
            for (tid, body), digest, holder in zip(msgs, digests, holders):
                keys += [self._key(q, "t", tid), self._key(q, "n", tid)]
                if digest is not None:
                    keys.append(self._key(q, "u", digest))
                    if holder:
                        keys += [self._key(q, "t", holder), self._key(q, "n", holder)]
                argv += [tid, body, due_ms, "" if digest is None else lock_ms, holder]
            if lv:
                keys += [self._key(q, "prio"), self._key(q, "workers")]
            rep = be.eval("claim", self._scripts["claim"], keys, argv)
            if rep == -1:
                continue
            if isinstance(rep, list) and len(rep) == 3 and rep[0] == 0:
                raise _levels_refused(rep, q, lv)
            if not isinstance(rep, list) or len(rep) != len(msgs):
                raise E.ProtocolError("redis %s: claim.lua replied %r, not one reply per task"
                                      % (be.describe, rep))
            out: List[Optional[str]] = []
            for r in rep:
                if r == 1:
                    out.append(None)
                elif isinstance(r, bytes) and len(r) == 36:
                    out.append(r.decode("ascii", "replace"))
                else:
                    raise E.ProtocolError("redis %s: claim.lua replied %r, not 1 or a task id"
                                          % (be.describe, r))
            if not self._colocated:
                claimed = [m for m, x in zip(msgs, out) if x is None]
                if claimed:
                    self._push(q, claimed, due_ms, level, state=False)
            return out
        raise E.RedisError("claim.lua: the unique keys of queue %s kept changing (%d tries)"
                           % (q, CLAIM_ROUNDS))

    # -- states and results

    def _check_id(self, task_id: Any) -> str:
        if not id_valid(task_id):
            raise E.InvalidArgument("%r is not a task id (a UUID)" % (task_id,))
        return task_id

    def _retrying(self, fn: Callable[[], T], deadline: float) -> T:
        """A read tried again with backoff while Redis cannot be reached (a read
        changes nothing), until deadline (time.monotonic())."""
        delay = 0.02
        while True:
            try:
                return fn()
            except (E.ConnectionError, E.InDoubt):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)

    def _read_state(self, queue: str, task_id: str) -> Tuple[Status, int, Optional[bytes]]:
        """MULTI: SISMEMBER pending, HMGET t s a r, LINDEX n 0, EXEC.  The list's
        element wins (the final record), else the hash, else PENDING, else NotFound."""
        reps = self._backend.pipeline([
            ("MULTI",), ("SISMEMBER", self._key(queue, "pending"), task_id),
            ("HMGET", self._key(queue, "t", task_id), "s", "a", "r"),
            ("LINDEX", self._key(queue, "n", task_id), 0), ("EXEC",)],
            key=self._key(queue, "pending"))
        for r in reps:
            if isinstance(r, Exception):
                raise _reply_error(r, "redis %s: reading a task's state" % self._backend.describe)
        ex = reps[-1]
        if not isinstance(ex, list) or len(ex) != 3 or not isinstance(ex[1], list) \
                or len(ex[1]) != 3:
            raise E.ProtocolError("redis %s: reading a task's state: unexpected reply"
                                  % self._backend.describe)
        member, h, fin = ex
        if isinstance(fin, bytes):
            rec = self._decode_record(fin, task_id)
            return Status(rec.status), rec.attempts, fin
        if isinstance(h[0], bytes):
            try:
                st = Status(h[0].decode())
            except (ValueError, UnicodeDecodeError):
                raise E.ProtocolError("task %s: stored status %r is not one gtask knows"
                                      % (task_id, h[0])) from None
            try:
                att = int(h[1]) if isinstance(h[1], bytes) else 0
            except ValueError:
                att = 0
            return st, att, h[2] if isinstance(h[2], bytes) else None
        if member == 1:
            return Status.PENDING, 0, None
        raise E.NotFound("no task %s in queue %s (unknown or expired)" % (task_id, queue))

    @staticmethod
    def _decode_record(buf: bytes, task_id: str) -> Record:
        try:
            return decode_result(buf)
        except E.ProtocolError as e:
            raise E.ProtocolError("result of %s: %s" % (task_id, e)) from None

    def status(self, task_id: str) -> Status:
        """The task's state (g_task Status).  NotFound for an unknown or expired id."""
        self._check_id(task_id)
        return self._retrying(lambda: self._read_state(self._queue, task_id),
                              time.monotonic() + 3.0)[0]

    def is_finished(self, task_id: str) -> bool:
        """True if SUCCESS, FAILURE or CANCELLED (g_task IsFinish)."""
        return self.status(task_id).is_final

    def result(self, task_id: str) -> Result:
        """The result as it stands now (g_task GetTaskResult), whatever the state."""
        self._check_id(task_id)
        st, att, buf = self._retrying(lambda: self._read_state(self._queue, task_id),
                                      time.monotonic() + 3.0)
        if buf is not None:
            r = self._result(task_id, self._decode_record(buf, task_id))
        else:
            r = Result(task_id, st, attempts=att)
        r.status = st  # the state field is authoritative (a RETRY record keeps the error)
        if st in (Status.STARTED, Status.PENDING):
            r.attempts = max(att, r.attempts)
        return r

    @staticmethod
    def _result(task_id: str, rec: Record) -> Result:
        return Result(task_id, Status(rec.status), rec.values, rec.error, rec.error_code,
                      rec.attempts)

    def wait(self, task_id: str, timeout: Optional[float] = None) -> Result:
        """Waits up to timeout seconds (None: for ever) for the task to finish,
        without polling (BLMOVE on its notification list, which the finishing
        worker writes), and returns its result.  Timeout if it has not finished
        by then; NotFound for an unknown or expired id (at once, except for one
        of the last 16 tasks this client sent to its queue)."""
        self._check_id(task_id)
        timeout_ms = -1 if timeout is None else _ms(timeout, "timeout")
        start = time.monotonic()
        known = task_id in self._sent
        deadline = float("inf") if timeout_ms < 0 else start + timeout_ms / 1000.0
        delay = 0.02
        while True:
            left = -1 if timeout_ms < 0 else max(0, timeout_ms - int((time.monotonic() - start)
                                                                    * 1000))
            try:
                buf = self._wait_on(self._queue, task_id, left, known)
                break
            except (E.ConnectionError, E.InDoubt):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)
            except E.Timeout:
                raise E.Timeout("task %s did not finish within %d ms"
                                % (task_id, timeout_ms)) from None
        if buf is None:
            return self.result(task_id)
        return self._result(task_id, self._decode_record(buf, task_id))

    def _wait_on(self, queue: str, task_id: str, timeout_ms: int, known: bool) -> Optional[bytes]:
        """src/redis/backend.c wait_on: the final record, or None when final but
        not handed over (read it), or Timeout / NotFound."""
        be = self._backend
        nkey = self._key(queue, "n", task_id)
        if not known or timeout_ms == 0:
            rec = be.call("LINDEX", nkey, 0)
            if isinstance(rec, bytes):
                return rec
            st, _, buf = self._read_state(queue, task_id)
            if st.is_final:
                return buf
            if timeout_ms == 0:
                raise E.Timeout()
        secs = "%.3f" % (0.0 if timeout_ms < 0 else timeout_ms / 1000.0)
        node = be.node(nkey)
        conn = node.conn(node.wait_pool, "BLMOVE")
        try:
            try:
                conn.send_command("BLMOVE", nkey, nkey, "RIGHT", "LEFT", secs)
                # The connection must outwait the block (BLMOVE 0 blocks for ever).
                if timeout_ms >= 0 and not conn.can_read(timeout=timeout_ms / 1000.0 + be.timeout):
                    raise rx.TimeoutError("no reply to BLMOVE")
                rep = conn.read_response()
            except rx.ResponseError as e:
                if be.cluster is not None and _redirect_of(str(e)) is not None:
                    # The slot moved: a wait is a read, tried again on the new map.
                    be.lost()
                    raise E.ConnectionError("redis %s: BLMOVE: %s" % (node.describe, e)) from None
                raise _reply_error(e, "redis %s: BLMOVE" % node.describe) from None
            except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                conn.disconnect()
                be.lost()
                raise E.ConnectionError("redis %s: BLMOVE: %s" % (node.describe, e)) from None
        finally:
            node.wait_pool.release(conn)
        if isinstance(rep, bytes):
            return rep
        # Timed out: the state may still have become final if its notice expired.
        st, _, buf = self._read_state(queue, task_id)
        if st.is_final:
            return buf
        raise E.Timeout()

    # -- cancel and progress

    def cancel(self, task_id: str) -> "CancelOutcome":
        """Cancels a task of the client's queue (gtask_client_cancel): it ends
        CANCELLED at once, and its waiters wake with that record.

        Returns ``CancelOutcome.REMOVED`` when the task was queued, delayed or
        waiting for a retry: its message is removed and it never runs; or
        ``CancelOutcome.RUNNING`` when a worker held it (running, or leased in
        its prefetch): within about a second its handler's
        ``gtask_ctx_cancelled()`` turns true (a prefetched one is not run), and
        whatever it returns is dropped.  Cancel racing the task's end ends in
        exactly one final state, whichever is written first.

        Raises InvalidArgument for a malformed id, or when broker and backend
        are separate servers (cancel needs them in one); NotFound for an
        unknown or expired task; InvalidState (``e.status``) for a task that
        is final already (SUCCESS, FAILURE, CANCELLED): nothing changed."""
        self._check_id(task_id)
        if not self._colocated:
            raise E.InvalidArgument("cancel: not supported with the broker and the backend on "
                                    "separate servers (it needs them in one)")
        q, br = self._queue, self._broker
        keys = [self._key(q, "stream"), self._key(q, "sched"), self._key(q, "pending"),
                self._key(q, "t", task_id), self._key(q, "n", task_id),
                self._key(q, "stats")]  # counted in `cancelled`, as the C library does
        for round_ in range(CANCEL_ROUNDS):
            member = self._find_member(q, "sched", task_id, SCAN_COUNT)
            eid = b""
            # The stream of each priority level, highest first (one never
            # written is empty to XRANGE); the level-0 stream when none has it.
            for level in range(PRIORITY_MAX, -1, -1) if member is None else ():
                keys[0] = self._stream(q, level)
                eid = self._find_entry(keys[0], task_id)
                if eid:
                    break
            rep = br.eval("cancel", self._scripts["cancel"], keys,
                          [GROUP, task_id, CANCEL_RECORD, self._expire_ms, eid, member or b"",
                           "1" if round_ + 1 == CANCEL_ROUNDS else "0"])
            if rep == 1:
                return CancelOutcome.REMOVED
            if rep == 2:
                return CancelOutcome.RUNNING
            if rep == 0:
                try:
                    st: Optional[Status] = self.status(task_id)
                except E.GtaskError:
                    st = None
                err = E.InvalidState("task %s has finished already (%s): nothing to cancel"
                                     % (task_id, st or "final"))
                err.status = st  # type: ignore[attr-defined]
                raise err
            if rep == -1:
                raise E.NotFound("no task %s in queue %s (unknown or expired)" % (task_id, q))
            if rep != 3:
                raise E.ProtocolError("redis %s: cancel.lua replied %r, not an integer -1..3"
                                      % (br.describe, rep))
        raise AssertionError("unreachable: the last round records the cancel")

    def _find_member(self, q: str, zset: str, task_id: str, count: int) -> Optional[bytes]:
        """The first member of zset `sched` or `failed` that starts with task_id
        (ZSCAN MATCH <id>* until the cursor is 0), or None."""
        key = self._key(q, zset)
        cursor: Any = b"0"
        while True:
            rep = self._broker.call("ZSCAN", key, cursor, "MATCH", task_id + "*", "COUNT", count)
            if not isinstance(rep, list) or len(rep) != 2 or not isinstance(rep[1], list):
                raise E.ProtocolError("redis %s: ZSCAN %s: unexpected reply"
                                      % (self._broker.describe, key))
            cursor, kv = rep
            if len(kv) >= 2 and isinstance(kv[0], bytes):
                return kv[0]
            if cursor in (b"0", 0, "0"):
                return None

    def _find_entry(self, key: str, task_id: str) -> bytes:
        """The entry id of task_id's message in stream key (XRANGE, 1000 entries
        a command), or b"" when the stream holds none."""
        want = task_id.encode()
        start: Any = "-"
        while True:
            rep = self._broker.call("XRANGE", key, start, "+", "COUNT", SCAN_COUNT)
            if not isinstance(rep, list):
                raise E.ProtocolError("redis %s: XRANGE %s: unexpected reply"
                                      % (self._broker.describe, key))
            for entry in rep:
                if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list):
                    f = entry[1]
                    for j in range(0, len(f) - 1, 2):
                        if f[j] == b"i" and f[j + 1] == want:
                            return entry[0]
            if len(rep) < SCAN_COUNT:
                return b""
            start = b"(" + rep[-1][0]

    def progress(self, task_id: str) -> Optional["Progress"]:
        """The latest progress the running task reported (gtask_ctx_progress):
        ``Progress(done, total, message)`` (total 0: unknown), or None when
        there is none: the task never reported any, has not started, is final
        (a final state drops it) or is unknown.  InvalidArgument for a
        malformed id; ProtocolError for a stored value that does not parse."""
        self._check_id(task_id)
        v = self._retrying(lambda: self._backend.call("HGET", self._key(self._queue, "t", task_id),
                                                      "p"),
                           time.monotonic() + 3.0)
        if v is None:
            return None
        p = _progress_parse(v) if isinstance(v, bytes) else None
        if p is None:
            raise E.ProtocolError("task %s: stored progress %r is malformed" % (task_id, v))
        return p

    # -- pause

    def pause(self, queue: Optional[str] = None) -> None:
        """Pauses queue (default: the client's) for every worker
        (gtask_client_queue_pause): workers stop leasing from it within a
        second; tasks they hold run on and finish; sends still queue, and
        delayed tasks and retries still come due into it.  It stays paused,
        across worker restarts, until resume()."""
        q = _check_queue(queue) if queue is not None else self._queue
        self._broker.call("SET", self._key(q, "paused"), "1", write=True)

    def resume(self, queue: Optional[str] = None) -> None:
        """Resumes a paused queue: workers lease from it within half a second."""
        q = _check_queue(queue) if queue is not None else self._queue
        self._broker.call("DEL", self._key(q, "paused"), write=True)

    def paused(self, queue: Optional[str] = None) -> bool:
        """Whether queue (default: the client's) is paused."""
        q = _check_queue(queue) if queue is not None else self._queue
        return self._broker.call("EXISTS", self._key(q, "paused")) == 1

    # -- queue inspection

    def stats(self, queue: Optional[str] = None) -> Stats:
        """A queue's counts (default: the client's queue): XLEN, XPENDING (of each
        priority level's stream), ZCARD, HLEN, HMGET stats, in one round trip,
        not atomically."""
        q = _check_queue(queue) if queue is not None else self._queue
        stream = self._key(q, "stream")
        # The level streams (priorities): pending and active count all levels.
        levels: List[Tuple[Any, ...]] = []
        for level in range(1, PRIORITY_MAX + 1):
            key = self._stream(q, level)
            levels += [("XLEN", key), ("XPENDING", key, GROUP)]
        r = self._broker.pipeline([
            ("XLEN", stream), ("XPENDING", stream, GROUP), ("ZCARD", self._key(q, "sched")),
            ("HLEN", self._key(q, "dead")),
            ("HMGET", self._key(q, "stats"), "succeeded", "failed", "cancelled")] + levels, key=stream)

        def num(x: Any) -> int:
            if isinstance(x, int):
                return x
            if isinstance(x, bytes):
                try:
                    return int(x)
                except ValueError:
                    return 0
            return 0
        length = sum(num(r[k]) for k in range(5, len(r), 2)) + num(r[0])
        active = sum(num(x[0]) for x in [r[1]] + r[6::2] if isinstance(x, list) and x)
        fields = r[4] if isinstance(r[4], list) and len(r[4]) == 3 else [None, None, None]
        return Stats(pending=max(0, length - active), active=active, scheduled=num(r[2]),
                     dead=num(r[3]), succeeded=num(fields[0]), failed=num(fields[1]),
                     cancelled=num(fields[2]))

    def _dead_read(self, task_id: Optional[str]) -> List[Tuple[str, bytes]]:
        """The dead set's (id, body) pairs, sorted by id: HSCAN until the cursor is
        0 (never HGETALL), or HGET of one id."""
        key = self._key(self._queue, "dead")
        if task_id is not None:
            body = self._broker.call("HGET", key, task_id)
            return [(task_id, body)] if isinstance(body, bytes) else []
        seen: Dict[str, bytes] = {}
        cursor: Any = b"0"
        while True:
            rep = self._broker.call("HSCAN", key, cursor, "COUNT", 500)
            if not isinstance(rep, list) or len(rep) != 2 or not isinstance(rep[1], list):
                raise E.ProtocolError("redis %s: HSCAN %s: unexpected reply"
                                      % (self._broker.describe, key))
            cursor, kv = rep
            for k in range(0, len(kv) - 1, 2):
                seen[_text(kv[k])] = kv[k + 1]
            if cursor in (b"0", 0, "0"):
                break
        return sorted(seen.items())

    def dead_list(self) -> List[DeadEntry]:
        """The dead set of the client's queue, sorted by id, each with its last
        error (its result record's, else its message's)."""
        return self._entries(self._queue, self._dead_read(None))

    def _entries(self, q: str, pairs: List[Tuple[str, bytes]]) -> List[DeadEntry]:
        """DeadEntry of each (id, message): name and error from the message, the
        error of its final record (the more recent) if it has one."""
        out = []
        for tid, body in pairs:
            name, error = None, None
            try:
                m = decode_task(body, tid, q)
                name, error = m.name, m.last_error
            except E.ProtocolError:
                pass
            if id_valid(tid):
                try:
                    _, _, buf = self._read_state(q, tid)
                    if buf is not None:
                        rec = decode_result(buf)
                        if rec.error:
                            error = rec.error
                except (E.NotFound, E.ProtocolError):
                    pass
            out.append(DeadEntry(tid if id_valid(tid) else "", name, error or ""))
        return out

    def _failed_read(self, q: str, task_id: Optional[str]) -> List[Tuple[str, bytes]]:
        """The failed set's (id, message) pairs whose time is not past, sorted by
        id, each once: ZSCAN (MATCH <id>* for one id) until the cursor is 0."""
        key = self._key(q, "failed")
        now = _now_ms()
        seen = set()
        cursor: Any = b"0"
        while True:
            rep = self._broker.call("ZSCAN", key, cursor, "MATCH", (task_id or "") + "*",
                                    "COUNT", 500)
            if not isinstance(rep, list) or len(rep) != 2 or not isinstance(rep[1], list):
                raise E.ProtocolError("redis %s: ZSCAN %s: unexpected reply"
                                      % (self._broker.describe, key))
            cursor, kv = rep
            for k in range(0, len(kv) - 1, 2):
                mem, score = kv[k], kv[k + 1]
                try:
                    until = int(float(score))
                except (TypeError, ValueError):
                    continue
                if isinstance(mem, bytes) and len(mem) >= 36 and until >= now:
                    seen.add((_text(mem[:36]), mem[36:]))
            if cursor in (b"0", 0, "0"):
                break
        return sorted(seen)

    def failed_list(self, queue: Optional[str] = None) -> List[DeadEntry]:
        """The failed set of queue (default: the client's): tasks that ended
        FAILURE (their retries used up, or an error never retried) within the
        workers' failed retention, sorted by id, each with its name and last
        error (gtask_client_failed_list).  Tasks lost too often are in the
        dead set (dead_list), not here."""
        q = _check_queue(queue) if queue is not None else self._queue
        return self._entries(q, self._failed_read(q, None))

    def rerun(self, task_id: str) -> None:
        """Runs a failed task of the client's queue again (gtask_client_rerun):
        same id, fresh attempts (its runs count from 1 again, with all its
        retries), state PENDING; the old result is dropped and waiters started
        before keep waiting for the new one.  Taken from the failed set, else
        the dead set.  Two reruns at once run it once (compare-and-swap).

        Raises InvalidArgument for a malformed id; NotFound for an unknown or
        expired task, or a failed one whose message is no longer kept;
        InvalidState (``e.status``) for a task that has not failed (PENDING,
        STARTED, RETRY, SUCCESS, CANCELLED); ProtocolError for a dead message
        that does not decode."""
        self._check_id(task_id)
        q = self._queue
        for source in ("failed", "dead"):
            pairs = self._failed_read(q, task_id) if source == "failed" else \
                self._dead_read(task_id)
            # One entry: a second would be of an earlier failure, rerun and
            # failed again, and goes with its expiry.
            if pairs and self._requeue_chunk(pairs[:1], True, source, fresh=True):
                return
        st = self.status(task_id)
        if st == Status.FAILURE:
            raise E.NotFound("task %s failed, but its message is no longer kept (the failed "
                             "retention passed, or its worker keeps none)" % task_id)
        err = E.InvalidState("task %s is %s: only a failed task can be rerun" % (task_id, st))
        err.status = st  # type: ignore[attr-defined]
        raise err

    def dead_requeue(self, task_id: Optional[str] = None) -> int:
        """Moves dead tasks of the client's queue back to it: the task task_id, or
        every one (None).  Each gets a fresh delivery count, a fresh expiry, and
        its state reset to PENDING (its old FAILURE dropped).  Returns how many
        moved.  NotFound when task_id is not in the dead set; ProtocolError when
        its message does not decode (it stays: dead_purge removes it); with None
        such messages are skipped."""
        if task_id is not None and (not isinstance(task_id, str) or not task_id
                                    or len(task_id) > 36):
            raise E.InvalidArgument("%r is not a task id" % (task_id,))
        entries = self._dead_read(task_id)
        moved = 0
        for k in range(0, len(entries), REQUEUE_CHUNK):
            moved += self._requeue_chunk(entries[k:k + REQUEUE_CHUNK], task_id is not None)
        if task_id is not None and moved == 0:
            raise E.NotFound("no task %s in the dead set of queue %s" % (task_id, self._queue))
        return moved

    def _requeue_chunk(self, entries: List[Tuple[str, bytes]], one_id: bool,
                       source: str = "dead", fresh: bool = False) -> int:
        """dead_requeue.lua or failed_requeue.lua (source "dead", "failed") of
        entries: each re-encoded with l = 0 and a fresh expiry, and when fresh (a
        rerun) at = 0 and no previous error; each queued at the level its
        message carries.  Returns how many moved."""
        q = self._queue
        live: List[Tuple[str, bytes, bytes]] = []
        levels: List[int] = []
        for tid, body in entries:
            try:
                m = decode_task(body, tid, q)
            except E.ProtocolError as e:
                if one_id:
                    raise E.ProtocolError(
                        "task %s in queue %s: its message does not decode (%s); it stays in the "
                        "%s set, since no worker could run it" % (tid, q, e, source)) from None
                continue
            m.lost = 0
            if fresh:
                m.attempts, m.last_error = 0, None
            if m.expires_ms:
                m.expires_ms = _now_ms() + self._expire_ms
            live.append((tid, body, encode_task(m)))
            levels.append(m.priority)
        moved = 0
        # In runs of one level: each message goes back to the stream of the
        # level it carries (src/redis/broker.c requeue_from).
        i = 0
        while i < len(live):
            j = i + 1
            while j < len(live) and levels[j] == levels[i]:
                j += 1
            moved += self._requeue_run(live[i:j], levels[i], source)
            i = j
        return moved

    def _requeue_run(self, live: List[Tuple[str, bytes, bytes]], level: int, source: str) -> int:
        """dead_requeue.lua or failed_requeue.lua of (id, body held, body to
        queue) triples of one level.  Returns how many moved."""
        q = self._queue
        keys = [self._stream(q, level), self._key(q, source)]
        if self._colocated:
            for tid, _, _ in live:
                keys += [self._key(q, "t", tid), self._key(q, "n", tid)]
        else:
            # Separate backend: PENDING first, then the message (a fast worker
            # could otherwise finish the new run before the reset wiped it).
            rkeys: List[str] = []
            for tid, _, _ in live:
                rkeys += [self._key(q, "t", tid), self._key(q, "n", tid)]
            self._backend.eval("reset", self._scripts["reset"], rkeys, [self._expire_ms])
        argv: List[Any] = ["1" if self._colocated else "0",
                           self._expire_ms if self._colocated else 0]
        for tid, old, new in live:
            argv += [tid, old, new]
        script = source + "_requeue"
        rep = self._broker.eval(script, self._scripts[script], keys, argv)
        if not isinstance(rep, list) or len(rep) != len(live) or \
                not all(isinstance(x, int) for x in rep):
            raise E.ProtocolError("redis %s: %s.lua replied %r, not an array of %d integers"
                                  % (self._broker.describe, script, rep, len(live)))
        return sum(1 for x in rep if x == 1)

    def dead_purge(self) -> int:
        """Empties the dead set of the client's queue; returns how many entries it
        held.  The tasks' FAILURE records stay until they expire."""
        rep = self._broker.eval("dead_purge", self._scripts["dead_purge"],
                                [self._key(self._queue, "dead")], [])
        return rep if isinstance(rep, int) else 0
