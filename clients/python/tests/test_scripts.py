"""One source of truth: the package runs src/redis/*.lua as the C library does."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import gtask
from gtask._codec import TaskMessage, decode_task, encode_task
from gtask._scripts import SCRIPTS, expand, load_all
from conftest import PKG_ROOT, REPO, run_cli


def test_package_copies_equal_src_redis():
    p = subprocess.run([sys.executable, str(PKG_ROOT / "tools" / "sync_lua.py"), "--check"],
                       capture_output=True)
    assert p.returncode == 0, p.stderr.decode()


def test_include_expansion_mirrors_embed_lua():
    incs = {"shared": "local x = 1\nlocal y = 2\n"}
    raw = "-- a\n-- @include shared\nreturn x\n"
    assert expand(raw, incs.__getitem__) == "-- a\nlocal x = 1\nlocal y = 2\nreturn x\n"
    assert expand("return 1\n", incs.__getitem__) == "return 1\n"
    # the shipped scripts expand to what the C library embeds: src/redis's text
    for name, src in load_all().items():
        text = (REPO / "src" / "redis" / (name + ".lua")).read_text()
        inc_dir = REPO / "src" / "redis" / "include"
        assert src == expand(text, lambda n: (inc_dir / (n + ".lua")).read_text())


def test_same_script_sha_as_the_c_library(redis_server):
    # the C CLI loads its scripts; ours must be the very same (SCRIPT EXISTS)
    assert run_cli(redis_server.url, "send", "add", "1", "2").returncode == 0
    raw = redis_server.raw()
    shas = [hashlib.sha1(load_all()[n].encode()).hexdigest() for n in SCRIPTS]
    assert raw.script_exists(*shas) == [True] * len(shas)


def test_message_bytes_equal_the_c_encoder(redis_server):
    """A message the C CLI sent, decoded and encoded again here, is the same bytes."""
    args = ["echo", "int64:-9223372036854775808", "uint64:18446744073709551615",
            "float64:0.1", "float32:0.5", "float64:1e300", "float64:-0",
            "string:tab\there \"q\" \\ é", "bool:false", "int8:-1", "--timeout", "1500ms",
            "--retry", "3"]
    p = run_cli(redis_server.url, "send", *args)
    assert p.returncode == 0, p.stderr
    tid = p.stdout.decode().strip()
    (_, fields), = redis_server.raw().xrange("gtask:{default}:stream")
    body = fields[b"m"]
    m = decode_task(body, tid, "default")
    assert m.name == "echo" and m.timeout_ms == 1500 and m.retry_max == 3
    assert encode_task(m) == body
    # and ours: a message with every optional field
    m = TaskMessage(name="n\x01", args=[gtask.float64(1e-7), gtask.float64(1e21),
                                         gtask.float32(-2.5), gtask.string("\x00\x1f")],
                    timeout_ms=5, retry_max=2, attempts=1, lost=1, backoff_first_ms=7,
                    backoff_max_ms=9, created_ms=10, expires_ms=11, last_error="e\n")
    body = encode_task(m)
    assert body == (b'{"v":2,"n":"n\\u0001","a":[["float64",9.9999999999999995e-8],'
                    b'["float64",1e21],["float32",-2.5],["string","\\u0000\\u001F"]],'
                    b'"t":5,"r":2,"at":1,"l":1,"bf":7,"bm":9,"c":10,"x":11,"e":"e\\n"}')
    assert decode_task(body, tid, "default") == m
