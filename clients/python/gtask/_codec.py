"""Task messages (JSON v2) and result records (JSON v1): docs/PROTOCOL.md
sections 3 and 4.

The encoder writes the bytes src/encode.c writes (jansson's compact form with
17-digit reals), so a message sent from Python is byte for byte one the C
library could have sent.  The decoders check every field as src/decode.c does
and raise ``ProtocolError`` with a reason for anything malformed.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ._errors import InvalidArgument, ProtocolError
from ._values import TYPES, Value, _INT_RANGES, float32_exact

MSG_VERSION = 2
RESULT_VERSION = 1
MAX_BODY = 16 << 20
MAX_VALUES = 1024
BACKOFF_FIRST_MS = 1000
BACKOFF_MAX_MS = 60000
# The retry policy's outcomes (GTASK_RETRY_ON_*, the message field "ro").
RETRY_ON_TIMEOUT, RETRY_ON_ERROR, RETRY_ON_CRASH = 1, 2, 4
RETRY_ON_NAMES = {"timeout": RETRY_ON_TIMEOUT, "error": RETRY_ON_ERROR, "crash": RETRY_ON_CRASH}
# The priority levels (GTASK_PRIORITY_*, the message field "pr"): 0 normal,
# 1 high, 2 urgent.
PRIORITY_MAX = 2
STATUSES = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "CANCELLED")

_I64 = (1 << 63) - 1
_U32 = (1 << 32) - 1
_I32 = (1 << 31) - 1
# GTASK__TASK_INT_FIELDS: (attribute, key, least, greatest, absent, kept)
TASK_INT_FIELDS: Tuple[Tuple[str, str, int, int, int, bool], ...] = (
    ("timeout_ms", "t", 0, _I64, 0, False),
    ("retry_max", "r", 0, _I32, 0, False),
    ("attempts", "at", 0, _U32, 0, False),
    ("lost", "l", 0, _U32, 0, False),
    ("backoff_first_ms", "bf", 1, _I64, BACKOFF_FIRST_MS, False),
    ("backoff_max_ms", "bm", 1, _I64, BACKOFF_MAX_MS, False),
    ("created_ms", "c", 0, _I64, 0, True),
    ("expires_ms", "x", 0, _I64, 0, False),
    ("retry_on", "ro", 1, 7, RETRY_ON_TIMEOUT, False),
    ("priority", "pr", 0, PRIORITY_MAX, 0, False),
)
# GTASK__RESULT_INT_FIELDS
RESULT_INT_FIELDS: Tuple[Tuple[str, str, int, int, int, bool], ...] = (
    ("error_code", "ec", -(1 << 31), _I32, 0, False),
    ("attempts", "at", 0, _U32, 0, False),
)


@dataclass
class TaskMessage:
    """A decoded task message (the id and queue come from what holds it)."""
    name: str
    args: List[Value] = field(default_factory=list)
    timeout_ms: int = 0
    retry_max: int = 0
    attempts: int = 0
    lost: int = 0
    backoff_first_ms: int = BACKOFF_FIRST_MS
    backoff_max_ms: int = BACKOFF_MAX_MS
    created_ms: int = 0
    expires_ms: int = 0
    retry_on: int = RETRY_ON_TIMEOUT
    priority: int = 0
    last_error: Optional[str] = None


# ---------------------------------------------------------------- encoding

_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
        "\t": "\\t"}
_NEEDS_ESC = re.compile(r'[\x00-\x1f"\\]')


def _esc(m: "re.Match[str]") -> str:
    c = m.group(0)
    return _ESC.get(c) or "\\u%04X" % ord(c)


def json_str(s: str) -> str:
    """s as jansson writes a string: ", \\ and control characters escaped
    (\\b \\f \\n \\r \\t by name, the others \\u00XX), everything else as is."""
    return '"' + _NEEDS_ESC.sub(_esc, s) + '"'


def json_real(d: float) -> str:
    """A finite double as jansson writes a real (src/encode.c jw_real)."""
    s = "%.17g" % d
    if "." not in s and "e" not in s:
        s += ".0"
    if "e" in s:
        mant, exp = s.split("e")
        sign = "-" if exp.startswith("-") else ""
        digits = exp.lstrip("+-").lstrip("0") or "0"
        s = mant + "e" + sign + digits
    return s


def encode_value(v: Value) -> str:
    t, x = v.type, v.value
    if t == "bool":
        body = "true" if x else "false"
    elif t in _INT_RANGES:
        assert isinstance(x, int)
        body = '"%d"' % x if x > _I64 else "%d" % x
    elif t in ("float32", "float64"):
        assert isinstance(x, float)
        if math.isnan(x):
            body = '"NaN"'
        elif math.isinf(x):
            body = '"Infinity"' if x > 0 else '"-Infinity"'
        else:
            body = json_real(x)
    else:
        assert isinstance(x, str)
        body = json_str(x)
    return '["%s",%s]' % (t, body)


def encode_values(vals: List[Value]) -> str:
    if len(vals) > MAX_VALUES:
        raise InvalidArgument("too many values (%d, at most %d)" % (len(vals), MAX_VALUES))
    return "[" + ",".join(encode_value(v) for v in vals) + "]"


def encode_task(m: TaskMessage) -> bytes:
    """The task message, version 2 (src/encode.c gtask__task_encode)."""
    if not m.name:
        raise InvalidArgument("task encode: task name empty")
    parts = ['{"v":%d,"n":%s,"a":%s' % (MSG_VERSION, json_str(m.name), encode_values(m.args))]
    for attr, key, least, greatest, absent, kept in TASK_INT_FIELDS:
        x = getattr(m, attr) or absent
        if not least <= x <= greatest:
            raise InvalidArgument("task encode: %s=%d out of range" % (attr, x))
        if kept or x != absent:
            parts.append(',"%s":%d' % (key, x))
    if (m.backoff_max_ms or BACKOFF_MAX_MS) < (m.backoff_first_ms or BACKOFF_FIRST_MS):
        raise InvalidArgument("task encode: backoff max < first")
    if m.last_error is not None:
        parts.append(',"e":' + json_str(m.last_error))
    parts.append("}")
    return "".join(parts).encode("utf-8")


def unique_digest(name: str, args: List[Value]) -> str:
    """The content key of a unique send (src/client.c unique_key): the hex
    SHA-256 of the message that holds only the task's name and arguments (and
    the created time 0, which the encoder always writes)."""
    return hashlib.sha256(encode_task(TaskMessage(name=name, args=args))).hexdigest()


# ---------------------------------------------------------------- decoding

def _no_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


def _pairs_unique(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    d: Dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r" % k)
        d[k] = v
    return d


class _Real(float):
    """A JSON number written with a fraction or exponent (jansson's real)."""


def _load(buf: bytes, max_version: int, what: str) -> Dict[str, Any]:
    if len(buf) > MAX_BODY:
        raise ProtocolError("%s of %d bytes exceeds the limit of %d" % (what, len(buf), MAX_BODY))
    if not buf:
        raise ProtocolError("empty %s" % what)
    try:
        text = buf.decode("utf-8")
        root = json.loads(text, parse_constant=_no_constant, parse_float=_Real,
                          object_pairs_hook=_pairs_unique)
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError("%s: invalid JSON: %s" % (what, e)) from None
    if not isinstance(root, dict):
        raise ProtocolError("%s: not a JSON object" % what)
    v = root.get("v")
    if v is None:
        raise ProtocolError('%s: missing field "v"' % what)
    if not _is_int(v):
        raise ProtocolError('%s: field "v": not an integer' % what)
    if v > max_version:
        raise ProtocolError("%s: unsupported version %d" % (what, v))
    if v < 1:
        raise ProtocolError("%s: invalid version %d" % (what, v))
    return root


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _decimal(s: str) -> Optional[int]:
    if re.fullmatch(r"-?[0-9]+", s) is None:
        return None
    return int(s)


def decode_value(j: Any, label: str) -> Value:
    if not isinstance(j, list) or len(j) != 2 or not isinstance(j[0], str):
        raise ProtocolError("%s: not a [type, value] pair" % label)
    t, x = j
    if t not in TYPES:
        raise ProtocolError("%s: unknown type %r" % (label, t[:32]))
    if t == "bool":
        if not isinstance(x, bool):
            raise ProtocolError("%s: bool value is not true or false" % label)
        return Value(t, x)
    if t in _INT_RANGES:
        if _is_int(x):
            n = x
        elif isinstance(x, str):
            d = _decimal(x)
            if d is None:
                raise ProtocolError("%s: %s value %r is not an integer" % (label, t, x[:40]))
            n = d
        else:
            raise ProtocolError("%s: %s value is not an integer" % (label, t))
        lo, hi = _INT_RANGES[t]
        if not lo <= n <= hi:
            raise ProtocolError("%s: %s value %d out of range" % (label, t, n))
        return Value(t, n)
    if t in ("float32", "float64"):
        if isinstance(x, _Real):
            f = float(x)
        elif _is_int(x):
            if not -(1 << 63) <= x <= _I64:
                raise ProtocolError("%s: %s value out of range" % (label, t))
            f = float(x)
        elif isinstance(x, str):
            consts = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
            if x not in consts:
                raise ProtocolError("%s: %s value %r is not a number" % (label, t, x[:40]))
            f = consts[x]
        else:
            raise ProtocolError("%s: %s value is not a number" % (label, t))
        if math.isinf(f) and not isinstance(x, str):
            raise ProtocolError("%s: %s value out of range" % (label, t))
        if t == "float32" and not float32_exact(f):
            raise ProtocolError("%s: float32 value %.17g is not representable in binary32"
                                % (label, f))
        return Value(t, f)
    if not isinstance(x, str):
        raise ProtocolError("%s: string value is not a string" % label)
    try:
        x.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("%s: string is not valid UTF-8 (a lone surrogate)" % label) from None
    return Value(t, x)


def decode_values(j: Any, what: str) -> List[Value]:
    if not isinstance(j, list):
        raise ProtocolError('field "%s": not an array' % what)
    if len(j) > MAX_VALUES:
        raise ProtocolError("too many values (%d)" % len(j))
    return [decode_value(x, "%s %d" % (what, i + 1)) for i, x in enumerate(j)]


def _get_int(root: Dict[str, Any], key: str, least: int, greatest: int, absent: int) -> int:
    if key not in root:
        return absent
    x = root[key]
    if not _is_int(x):
        raise ProtocolError('field "%s": not an integer' % key)
    if not least <= x <= greatest:
        raise ProtocolError('field "%s": %d out of range' % (key, x))
    return x


def _get_str(root: Dict[str, Any], key: str, required: bool) -> Optional[str]:
    if key not in root:
        if required:
            raise ProtocolError('missing field "%s"' % key)
        return None
    x = root[key]
    if not isinstance(x, str):
        raise ProtocolError('field "%s": not a string' % key)
    return x


@dataclass
class Record:
    """A decoded result record."""
    status: str
    values: List[Value]
    error: Optional[str]
    error_code: int
    attempts: int


def decode_result(buf: bytes) -> Record:
    """A result record, version 1 (src/decode.c result_decode_jansson)."""
    root = _load(buf, RESULT_VERSION, "result record")
    try:
        s = _get_str(root, "s", True)
        if s not in STATUSES:
            raise ProtocolError('field "s": unknown status %r' % (s or "")[:32])
        vals = decode_values(root["vals"], "vals") if "vals" in root else []
        err = _get_str(root, "err", False)
        ints = {a: _get_int(root, k, lo, hi, ab) for a, k, lo, hi, ab, _ in RESULT_INT_FIELDS}
    except ProtocolError as e:
        raise ProtocolError("result record: %s" % e) from None
    assert s is not None
    return Record(s, vals, err, ints["error_code"], ints["attempts"])


_ID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def id_valid(s: Any) -> bool:
    return isinstance(s, str) and _ID_RE.match(s) is not None


def decode_task(buf: bytes, task_id: str, queue: str) -> TaskMessage:
    """A task message, version 2 or 1, held under task_id in queue."""
    root = _load(buf, MSG_VERSION, "task message")
    try:
        if "id" in root:
            if root["id"] != task_id:
                raise ProtocolError('field "id" differs from the id that holds the message')
        if "q" in root:
            if root["q"] != queue:
                raise ProtocolError('field "q" differs from the queue that holds the message')
        name = _get_str(root, "n", True)
        if not name:
            raise ProtocolError('field "n": empty task name')
        if "a" not in root:
            raise ProtocolError('missing field "a"')
        args = decode_values(root["a"], "argument")
        m = TaskMessage(name=name, args=args)
        for attr, key, lo, hi, absent, _ in TASK_INT_FIELDS:
            setattr(m, attr, _get_int(root, key, lo, hi, absent))
        if m.backoff_max_ms < m.backoff_first_ms:
            raise ProtocolError("backoff max below backoff first")
        m.last_error = _get_str(root, "e", False)
    except ProtocolError as e:
        raise ProtocolError("task message: %s" % e) from None
    return m
