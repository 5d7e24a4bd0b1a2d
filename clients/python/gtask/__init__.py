"""gtask: a Python client for gtask task queues on Redis (docs/PROTOCOL.md).

    import gtask
    c = gtask.Client("redis://127.0.0.1:6379/0")
    tid = c.send("add", gtask.int64(1), gtask.int64(2), timeout=5.0, retry=2)
    r = c.wait(tid, timeout=10)      # r.status, r.values, r.error, r.attempts

Sends run the C library's own Lua scripts (src/redis/*.lua, shipped in
gtask/lua/), so Python-sent tasks run on C workers and C-sent tasks are read
here, with the same states, errors and exact values.
"""
from ._client import CancelOutcome, Client, DeadEntry, Progress, Result, Sent, Stats, Status
from ._codec import MSG_VERSION, RESULT_VERSION
from ._errors import (AlreadyExists, Cancelled, ConnectionError, Crashed, Exists, GtaskError, HandlerError, InDoubt,
                      InvalidArgument, InvalidState, LeaseLost, Lost, NoHandler, NotFound,
                      OutOfMemory, OutOfRange, PermissionDenied, ProtocolError, RedisError,
                      Shutdown, TaskTimeout, Timeout, TooBig, TypeMismatch, VersionMismatch,
                      err_name, error_class, strerror)
from ._values import (TYPES, Value, bool_, float32, float64, infer, int8, int16, int32, int64,
                      int_, make, string, uint, uint8, uint16, uint32, uint64)

# g_task's type names as constructors: gtask.bool(True), gtask.int(5), gtask.uint(5).
bool = bool_  # noqa: A001
int = int_  # noqa: A001

__version__ = "0.1.0"

__all__ = [
    "Client", "Result", "Status", "Stats", "DeadEntry", "Sent", "Progress", "CancelOutcome", "Value", "TYPES", "infer", "make",
    "bool", "bool_", "int", "int_", "int8", "int16", "int32", "int64", "uint", "uint8",
    "uint16", "uint32", "uint64", "float32", "float64", "string",
    "GtaskError", "InvalidArgument", "OutOfMemory", "ConnectionError", "RedisError", "Timeout",
    "NotFound", "ProtocolError", "TooBig", "NoHandler", "Exists", "AlreadyExists", "Shutdown", "LeaseLost",
    "TypeMismatch", "OutOfRange", "InvalidState", "HandlerError", "TaskTimeout", "Lost",
    "Crashed", "InDoubt", "PermissionDenied", "VersionMismatch", "Cancelled", "error_class",
    "strerror",
    "err_name", "MSG_VERSION", "RESULT_VERSION", "__version__",
]
