"""Typed values: the argument and result types of g_task (PROTOCOL.md section 3).

``gtask.int64(1)``, ``gtask.float32(0.5)``, ``gtask.string("x")`` ... build a
``Value``; every constructor checks its type's range at once (``OutOfRange``),
as the C library does before it encodes.  Plain Python values are inferred by
``infer`` with this fixed mapping (no guessing by magnitude):

    bool  -> bool       (checked before int: True is not int64 1)
    int   -> int64      (outside int64: OutOfRange; say gtask.uint64(x))
    float -> float64
    str   -> string
    Value -> itself

anything else is ``InvalidArgument``.
"""
from __future__ import annotations

import math
import operator
import struct
from typing import Any, Union

from ._errors import InvalidArgument, OutOfRange

__all__ = ["Value", "TYPES", "PyValue", "infer", "make", "bool_", "int_", "int8", "int16",
           "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32",
           "float64", "string"]

PyValue = Union[bool, int, float, str]

#: The g_task type names, in the order of the C enum gtask_type.
TYPES = ("bool", "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16",
         "uint32", "uint64", "float32", "float64", "string")

_INT_RANGES = {
    "int": (-(1 << 63), (1 << 63) - 1),
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint": (0, (1 << 64) - 1),
    "uint8": (0, (1 << 8) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
    "uint64": (0, (1 << 64) - 1),
}
FLT_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


def float32_exact(f: float) -> bool:
    """True if the double f is a binary32 value (NaN and the infinities are)."""
    if not math.isfinite(f):
        return True
    if abs(f) > FLT_MAX:
        return False
    return struct.unpack("<f", struct.pack("<f", f))[0] == f


def _float_eq(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


class Value:
    """One typed value: ``type`` is a g_task type name, ``value`` the Python value
    (bool, int, float or str).  Equality is exact: same type, same value, NaN
    equal to NaN and 0.0 not equal to -0.0, so that round trips compare with ==."""

    __slots__ = ("type", "value")
    type: str
    value: PyValue

    def __init__(self, type: str, value: Any) -> None:  # noqa: A002
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "value", _check(type, value))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("gtask.Value is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Value):
            return NotImplemented
        if self.type != other.type:
            return False
        if isinstance(self.value, float) and isinstance(other.value, float):
            return _float_eq(self.value, other.value)
        return self.value == other.value

    def __hash__(self) -> int:
        v = self.value
        if isinstance(v, float) and math.isnan(v):
            return hash((self.type, "NaN"))
        return hash((self.type, v))

    def __repr__(self) -> str:
        return "gtask.%s(%r)" % ({"bool": "bool_", "int": "int_", "uint": "uint"}.get(
            self.type, self.type), self.value)


def _check(t: str, v: Any) -> PyValue:
    """v as the Python value of type t, range-checked; OutOfRange / InvalidArgument."""
    if t == "bool":
        if not isinstance(v, bool):
            raise InvalidArgument("bool value must be True or False, not %r" % (v,))
        return v
    if t in _INT_RANGES:
        if isinstance(v, bool):
            raise InvalidArgument("%s value must be an integer, not %r" % (t, v))
        try:
            v = operator.index(v)
        except TypeError:
            raise InvalidArgument("%s value must be an integer, not %r" % (t, v)) from None
        lo, hi = _INT_RANGES[t]
        if not lo <= v <= hi:
            raise OutOfRange("%d is out of range of %s (%d..%d)" % (v, t, lo, hi))
        return int(v)
    if t in ("float32", "float64"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidArgument("%s value must be a number, not %r" % (t, v))
        if isinstance(v, int):
            try:
                f = float(v)
            except OverflowError:
                raise OutOfRange("%d is out of range of %s" % (v, t)) from None
            if int(f) != v:
                raise OutOfRange("%d is not exactly a %s" % (v, t))
        else:
            f = float(v)
        if t == "float32" and not float32_exact(f):
            if abs(f) > FLT_MAX:
                raise OutOfRange("%r is out of range of float32" % f)
            raise OutOfRange("%r is not representable in binary32 (the protocol does not "
                             "round; use gtask.float32(x, round=True))" % f)
        return f
    if t == "string":
        if isinstance(v, (bytes, bytearray, memoryview)):
            try:
                v = bytes(v).decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidArgument("string is not valid UTF-8: %s" % e) from None
        if not isinstance(v, str):
            raise InvalidArgument("string value must be str (or UTF-8 bytes), not %r" % (v,))
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidArgument("string is not valid UTF-8 (%s)" % e.reason) from None
        return v
    raise InvalidArgument("unknown type %r (one of %s)" % (t, " ".join(TYPES)))


def make(t: str, v: Any) -> Value:
    """A Value of type name t (one of TYPES)."""
    return Value(t, v)


def bool_(v: bool) -> Value:
    return Value("bool", v)


def int_(v: int) -> Value:
    """Go's int: 64 bits."""
    return Value("int", v)


def int8(v: int) -> Value:
    return Value("int8", v)


def int16(v: int) -> Value:
    return Value("int16", v)


def int32(v: int) -> Value:
    return Value("int32", v)


def int64(v: int) -> Value:
    return Value("int64", v)


def uint(v: int) -> Value:
    """Go's uint: 64 bits."""
    return Value("uint", v)


def uint8(v: int) -> Value:
    return Value("uint8", v)


def uint16(v: int) -> Value:
    return Value("uint16", v)


def uint32(v: int) -> Value:
    return Value("uint32", v)


def uint64(v: int) -> Value:
    return Value("uint64", v)


def float32(v: float, round: bool = False) -> Value:  # noqa: A002
    """A binary32 value.  v must be exactly representable (0.5, not 0.1), as the
    protocol requires; round=True rounds it to the nearest binary32 first."""
    if round and isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            v = struct.unpack("<f", struct.pack("<f", float(v)))[0]
        except OverflowError:
            raise OutOfRange("%r is out of range of float32" % (v,)) from None
    return Value("float32", v)


def float64(v: float) -> Value:
    return Value("float64", v)


def string(v: Union[str, bytes]) -> Value:
    """A UTF-8 string (NUL characters allowed); bytes must be valid UTF-8."""
    return Value("string", v)


def infer(v: Any) -> Value:
    """The Value of a plain Python value, by the mapping in this module's doc."""
    if isinstance(v, Value):
        return v
    if isinstance(v, bool):
        return Value("bool", v)
    if isinstance(v, int):
        if not -(1 << 63) <= v <= (1 << 63) - 1:
            raise OutOfRange("%d is out of range of int64, which a Python int maps to: "
                             "pass gtask.uint64(x) for a larger unsigned value" % v)
        return Value("int64", v)
    if isinstance(v, float):
        return Value("float64", v)
    if isinstance(v, str):
        return Value("string", v)
    raise InvalidArgument("cannot infer a gtask type for %r (%s): wrap it, e.g. "
                          "gtask.int32(x), gtask.string(s)" % (v, type(v).__name__))
