"""Exceptions mirroring the C library's GTASK_E* codes (include/gtask/gtask.h).

Every exception the package raises for a gtask condition is a ``GtaskError``
with ``code`` (the C library's negative value) and ``name`` (``"ENOTFOUND"``).
There is one class per code, so ``except gtask.NotFound`` reads as the C
``rc == GTASK_ENOTFOUND``.
"""
from __future__ import annotations

import builtins
from typing import Dict, List, Optional, Tuple, Type

__all__ = [
    "GtaskError", "InvalidArgument", "OutOfMemory", "ConnectionError", "RedisError",
    "Timeout", "NotFound", "ProtocolError", "TooBig", "NoHandler", "Exists", "Shutdown",
    "AlreadyExists", "LeaseLost", "TypeMismatch", "OutOfRange", "InvalidState", "HandlerError",
    "TaskTimeout", "Lost", "Crashed", "InDoubt", "PermissionDenied", "VersionMismatch",
    "Cancelled",
    "error_class", "strerror", "err_name",
]

# (name, value, message): GTASK_ERRNO_MAP of include/gtask/gtask.h.
_CODES: List[Tuple[str, int, str]] = [
    ("EINVAL", -1, "invalid argument"),
    ("ENOMEM", -2, "out of memory"),
    ("ECONN", -3, "cannot reach redis"),
    ("EREDIS", -4, "redis replied with an error"),
    ("ETIMEDOUT", -5, "timed out"),
    ("ENOTFOUND", -6, "no such task"),
    ("EPROTO", -7, "malformed message"),
    ("ETOOBIG", -8, "payload too large"),
    ("ENOHANDLER", -9, "no handler registered under that name"),
    ("EEXIST", -10, "already exists"),
    ("ESHUTDOWN", -11, "shutting down"),
    ("ELEASE", -12, "lease lost to another worker"),
    ("ETYPE", -13, "argument type mismatch"),
    ("ERANGE", -14, "value out of range"),
    ("ESTATE", -15, "invalid state for this call"),
    ("EHANDLER", -16, "the task handler reported an error"),
    ("ETASKTIMEOUT", -17, "the task ran past its timeout"),
    ("ELOST", -18, "the task was lost too many times (worker died)"),
    ("ECRASH", -19, "the task crashed its executor"),
    ("EINDOUBT", -20, "sent, but the reply was lost: outcome unknown"),
    ("ENOPERM", -21, "redis denied a command to this user (ACL)"),
    ("EVERSION", -22, "workers of an incompatible version serve this queue"),
    ("ECANCELED", -23, "the task was cancelled"),
]
_BY_VALUE: Dict[int, Tuple[str, str]] = {v: (n, m) for n, v, m in _CODES}


def strerror(code: int) -> str:
    """The C library's short message for a GTASK_E* code (gtask_strerror)."""
    return _BY_VALUE.get(code, ("?", "unknown error"))[1]


def err_name(code: int) -> str:
    """The code's name, such as ``"ETIMEDOUT"`` (gtask_err_name)."""
    return _BY_VALUE.get(code, ("?", ""))[0]


class GtaskError(Exception):
    """Base of every gtask error: ``code`` is the GTASK_E* value, ``name`` its name."""

    code: int = 0
    name: str = ""

    def __init__(self, message: Optional[str] = None) -> None:
        super().__init__(message if message is not None else strerror(self.code))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidArgument(GtaskError, ValueError):
    code, name = -1, "EINVAL"


class OutOfMemory(GtaskError, MemoryError):
    code, name = -2, "ENOMEM"


class ConnectionError(GtaskError, builtins.ConnectionError):  # noqa: A001 (gtask.ConnectionError)
    """Redis could not be reached, or cannot serve now (LOADING, READONLY, ...).
    Nothing was applied."""
    code, name = -3, "ECONN"


class RedisError(GtaskError):
    """Redis replied with an error (a script refusing a key of the wrong type, ...)."""
    code, name = -4, "EREDIS"


class Timeout(GtaskError, TimeoutError):
    """A wait ended before the task finished."""
    code, name = -5, "ETIMEDOUT"


class NotFound(GtaskError, LookupError):
    """No such task (unknown or expired id), or no such dead-set entry."""
    code, name = -6, "ENOTFOUND"


class ProtocolError(GtaskError):
    """A record or message that does not decode, or a reply of a shape its script never returns."""
    code, name = -7, "EPROTO"


class TooBig(GtaskError, ValueError):
    code, name = -8, "ETOOBIG"


class NoHandler(GtaskError):
    code, name = -9, "ENOHANDLER"


class Exists(GtaskError):
    code, name = -10, "EEXIST"


class AlreadyExists(Exists):
    """A send with a chosen id or a content lock (``task_id=``, ``unique=``)
    met a task that exists: nothing was sent and the existing task is
    untouched.  ``existing_id`` is that task's id.  From ``send_many``,
    ``ids`` holds every task's id (the existing one for a duplicate) and
    ``duplicates`` the indices of the duplicates: the others were queued."""

    def __init__(self, message: str, existing_id: str, ids: Optional[List[str]] = None,
                 duplicates: Optional[List[int]] = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id
        self.ids: List[str] = ids if ids is not None else [existing_id]
        self.duplicates: List[int] = duplicates if duplicates is not None else [0]


class Shutdown(GtaskError):
    code, name = -11, "ESHUTDOWN"


class LeaseLost(GtaskError):
    code, name = -12, "ELEASE"


class TypeMismatch(GtaskError, TypeError):
    code, name = -13, "ETYPE"


class OutOfRange(GtaskError, ValueError):
    """A value outside its type's range (``gtask.int8(300)``, ``gtask.float32(0.1)``)."""
    code, name = -14, "ERANGE"


class InvalidState(GtaskError):
    code, name = -15, "ESTATE"


class HandlerError(GtaskError):
    code, name = -16, "EHANDLER"


class TaskTimeout(GtaskError):
    code, name = -17, "ETASKTIMEOUT"


class Lost(GtaskError):
    code, name = -18, "ELOST"


class Crashed(GtaskError):
    code, name = -19, "ECRASH"


class InDoubt(GtaskError):
    """The command reached Redis but its reply was lost: it may or may not have
    been applied.  For a send, ``ids`` holds the ids to check with
    ``Client.status`` (``NotFound``: not queued) before sending again."""
    code, name = -20, "EINDOUBT"


class PermissionDenied(GtaskError, PermissionError):
    code, name = -21, "ENOPERM"


class VersionMismatch(GtaskError):
    code, name = -22, "EVERSION"


class Cancelled(GtaskError):
    """The task was cancelled (``gtask cancel``): the error code of a CANCELLED
    result."""
    code, name = -23, "ECANCELED"


_CLASSES: Dict[int, Type[GtaskError]] = {
    cls.code: cls
    for cls in (InvalidArgument, OutOfMemory, ConnectionError, RedisError, Timeout, NotFound,
                ProtocolError, TooBig, NoHandler, Exists, Shutdown, LeaseLost, TypeMismatch,
                OutOfRange, InvalidState, HandlerError, TaskTimeout, Lost, Crashed, InDoubt,
                PermissionDenied, VersionMismatch, Cancelled)
}


def error_class(code: int) -> Type[GtaskError]:
    """The exception class of a GTASK_E* code (``GtaskError`` for an unknown one)."""
    return _CLASSES.get(code, GtaskError)
