"""The Lua scripts of src/redis/ that a client runs, read from the package
data (gtask/lua/, byte copies kept equal to src/redis/ by tools/sync_lua.py and
checked by tests/test_scripts.py).  A line ``-- @include NAME`` is replaced by
include/NAME.lua, exactly as cmake/embed_lua.cmake does for the C library, so
both run the same text (and so the same SHA1)."""
from __future__ import annotations

import re
from typing import Callable, Dict

try:
    from importlib.resources import files as _files
except ImportError:  # pragma: no cover - Python < 3.9
    _files = None  # type: ignore[assignment]

#: The scripts the client runs (file names without .lua).
SCRIPTS = ("push", "claim", "cancel", "dead_requeue", "failed_requeue", "dead_purge", "reset")

_INCLUDE = re.compile(r"-- @include [a-z_]+")


def expand(raw: str, read_include: Callable[[str], str], where: str = "script") -> str:
    """raw with each ``-- @include NAME`` line replaced by the text of NAME.lua
    (embed_lua.cmake: every match, then the match and its newline replaced)."""
    for inc in _INCLUDE.findall(raw):
        name = inc[len("-- @include "):]
        try:
            body = read_include(name)
        except FileNotFoundError:
            raise RuntimeError("%s: %s: no include/%s.lua" % (where, inc, name)) from None
        raw = raw.replace(inc + "\n", body)
    return raw


def _read(rel: str) -> str:
    assert _files is not None
    return (_files("gtask") / "lua" / rel).read_text(encoding="utf-8")


def load_all() -> Dict[str, str]:
    """name -> expanded source of every script in SCRIPTS."""
    out = {}
    for name in SCRIPTS:
        out[name] = expand(_read(name + ".lua"), lambda n: _read("include/%s.lua" % n),
                           name + ".lua")
    return out
