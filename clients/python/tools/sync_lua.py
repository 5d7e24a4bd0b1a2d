#!/usr/bin/python3
"""Copies the Lua scripts the Python client runs from src/redis/ (the one
source of truth, which cmake/embed_lua.cmake compiles into the C library) into
the package, with src/redis/include/ for their `-- @include NAME` lines.

    /usr/bin/python3 clients/python/tools/sync_lua.py          # copy
    /usr/bin/python3 clients/python/tools/sync_lua.py --check  # exit 1 if stale

tests/test_scripts.py runs the check, so a script changed in src/redis/
without this copy fails the suite (ctest label python)."""
from __future__ import annotations

import os
import shutil
import sys
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_LUA = os.path.join(HERE, "..", "gtask", "lua")
SRC = os.path.join(HERE, "..", "..", "..", "src", "redis")
sys.path.insert(0, os.path.join(HERE, ".."))
from gtask._scripts import SCRIPTS  # noqa: E402


def wanted(src: str = SRC) -> Dict[str, str]:
    """package-relative path -> source path, for every file the package ships."""
    out = {name + ".lua": os.path.join(src, name + ".lua") for name in SCRIPTS}
    inc = os.path.join(src, "include")
    if os.path.isdir(inc):
        for f in sorted(os.listdir(inc)):
            if f.endswith(".lua"):
                out["include/" + f] = os.path.join(inc, f)
    return out


def stale(src: str = SRC, dst: str = PKG_LUA) -> List[str]:
    """The package files that differ from src/redis (or are missing, or extra)."""
    w = wanted(src)
    bad = []
    for rel, path in w.items():
        mine = os.path.join(dst, rel)
        with open(path, "rb") as a:
            theirs = a.read()
        if not os.path.exists(mine):
            bad.append(rel)
            continue
        with open(mine, "rb") as b:
            if b.read() != theirs:
                bad.append(rel)
    for root, _, files in os.walk(dst):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), dst).replace(os.sep, "/")
            if f.endswith(".lua") and rel not in w:
                bad.append(rel)
    return bad


def main() -> int:
    if "--check" in sys.argv[1:]:
        bad = stale()
        if bad:
            print("sync_lua: stale copies in clients/python/gtask/lua: %s; run %s"
                  % (" ".join(bad), os.path.relpath(__file__)), file=sys.stderr)
            return 1
        return 0
    for rel in stale():
        path = os.path.join(PKG_LUA, rel)
        src = wanted().get(rel)
        if src is None:
            os.remove(path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copyfile(src, path)
        print("sync_lua: %s" % rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
