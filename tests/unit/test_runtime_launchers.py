"""The Java, PHP and Ruby kinds without Docker: their entries (requireMain), their OW_COMPILER scripts, and the
ActionLoop proxy's start acknowledgement and runtime-error statuses with a stand-in launcher."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import entities as E
from contracts.errors import WhiskError
from runtimes import build

RUNTIMES = Path(build.__file__).resolve().parent


# --- kinds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "resolved"), [("java:default", "java:21"), ("java:17", "java:17"),
                                                ("php:default", "php:8.4"), ("ruby:default", "ruby:3.3")])
def test_defaults(kind: str, resolved: str) -> None:
    assert E.resolve_kind(kind) == resolved


def test_every_kind_has_an_image() -> None:
    for kind in ("java:21", "java:17", "php:8.4", "ruby:3.3"):
        assert E.RUNTIMES[kind].image in build.IMAGES


def test_java_requires_main() -> None:
    info = E.runtimes_info()
    assert {r["kind"]: r["requireMain"] for r in info["java"]} == {"java:21": True, "java:17": True}
    assert not any(r["requireMain"] for fam in ("php", "ruby", "python", "nodejs") for r in info[fam])
    with pytest.raises(WhiskError) as e:
        E.normalize_exec({"kind": "java:21", "code": "UEsDBA=="}, "guest")
    assert e.value.status == 400
    assert e.value.message == ("The request content was malformed:\n"
                               "'main' must be a string defined in 'exec' for 'java:21' actions")
    with pytest.raises(WhiskError) as e:  # the code is checked first, as in Exec.scala
        E.normalize_exec({"kind": "java:default"}, "guest")
    assert e.value.message.endswith("'code' must be a string defined in 'exec' for 'java:21' actions")
    assert E.normalize_exec({"kind": "java:21", "code": "UEsDBA==", "main": "Hello"}, "guest") == {
        "kind": "java:21", "code": "UEsDBA==", "binary": True, "main": "Hello"}
    assert "main" not in E.normalize_exec({"kind": "php:8.4", "code": "<?php"}, "guest")


# --- the OW_COMPILER scripts -----------------------------------------------------------------------


def compile_(family: str, main: str, files: dict[str, str], tmp: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    src, bin_dir = tmp / "1" / "src", tmp / "1" / "bin"
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    bin_dir.mkdir()
    r = subprocess.run([sys.executable, str(RUNTIMES / family / "compile"), main, str(src), str(bin_dir)],
                       capture_output=True, text=True)
    return r, bin_dir


def test_java_compile(tmp_path: Path) -> None:
    r, bin_dir = compile_("java", "com.example.MyMain#it's", {"exec.jar": "PK"}, tmp_path)
    assert r.returncode == 0, r.stderr
    script = (bin_dir / "exec").read_text()
    assert os.access(bin_dir / "exec", os.X_OK) and (bin_dir / "exec.jar").exists()
    assert script.endswith(" Launcher 'com.example.MyMain#it'\"'\"'s' exec.jar\n")
    assert "-Djava.security.manager=allow" in script
    r, bin_dir = compile_("java", "Hello", {"exec": "public class Hello {}"}, tmp_path / "text")
    assert r.returncode == 0, r.stderr
    assert (bin_dir / "code").read_text() == "public class Hello {}"  # decoded (and refused) by the launcher
    assert (bin_dir / "exec").read_text().endswith(" Launcher Hello code\n")


def test_php_compile(tmp_path: Path) -> None:
    r, bin_dir = compile_("php", "main", {"exec": "<?php\n"}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (bin_dir / "index.php").read_text() == "<?php\n" and not (bin_dir / "vendor").is_dir()
    assert os.readlink(bin_dir / "vendor") == "/opt/ow/php/vendor"
    assert (bin_dir / "exec").read_text().endswith(
        "exec php -c /opt/ow/php/php.ini -f /opt/ow/php/runner.php -- main\n")
    r, bin_dir = compile_("php", "niam", {"index.php": "<?php\n", "vendor/autoload.php": "<?php\n"}, tmp_path / "z")
    assert r.returncode == 0 and not (bin_dir / "vendor").is_symlink()  # the action's own vendor/


def test_ruby_compile(tmp_path: Path) -> None:
    r, bin_dir = compile_("ruby", "main", {"exec": "def main(a) a end\n"}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (bin_dir / "main.rb").exists()
    assert (bin_dir / "exec").read_text().endswith("exec ruby /opt/ow/ruby/launcher.rb main\n")
    r, _ = compile_("ruby", "main", {"lib/main.rb": ""}, tmp_path / "z")
    assert r.returncode == 1
    assert r.stderr == "Invalid Ruby Code: zipped actions must contain main.rb at the root.\n"


# --- the proxy's ack and statuses ----------------------------------------------------------------------

LAUNCHER = textwrap.dedent(f"""\
    #!{sys.executable}
    import json, os, sys, time
    mode = os.environ.get("MODE", "")
    out = os.fdopen(3, "w")
    if mode == "die":
        sys.exit(3)
    if mode == "slow":
        time.sleep(0.4)
    if mode == "garbage":
        out.write("not json\\n")
    elif mode == "refuse":
        out.write(json.dumps({{"error": "no such class", "__ow_status": 502}}) + "\\n")
        out.flush()
        sys.exit(1)
    elif os.environ.get("__OW_WAIT_FOR_ACK"):
        out.write('{{"ok": true}}\\n')
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["value"].get("dev"):
            out.write(json.dumps({{"error": "it broke", "__ow_status": 502}}) + "\\n")
        elif req["value"].get("mine"):
            out.write(json.dumps({{"error": "mine", "__ow_status": 502, "other": 1}}) + "\\n")
        else:
            out.write(json.dumps({{"echo": req["value"], "aid": req["activation_id"]}}) + "\\n")
        out.flush()
""")


class _Conn(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


class Proxy:
    def __init__(self, tmp: Path, ack: bool = True) -> None:
        self.sock = str(tmp / "proxy.sock")
        env = {**os.environ, "OW_PROXY_SOCKET": self.sock, "OW_ACTION_DIR": str(tmp / "action")}
        env.pop("OW_COMPILER", None)
        if ack:
            env["OW_WAIT_FOR_ACK"] = "1"
        self.err = open(tmp / "stderr", "w+")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, str(RUNTIMES / "actionloop" / "proxy.py")], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 10
        while not self._listening():  # the socket file appears at bind(), before listen()
            assert time.monotonic() < deadline and self.proc.poll() is None
            time.sleep(0.02)

    def _listening(self) -> bool:
        import socket

        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.sock)
            except OSError:
                return False
            return True

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        conn = _Conn(self.sock)
        try:
            conn.request("POST", path, json.dumps(body))
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def init(self, mode: str) -> tuple[int, Any]:
        return self.post("/init", {"value": {"name": "a", "main": "main", "code": LAUNCHER, "binary": False,
                                             "env": {"MODE": mode}}})

    def run(self, value: dict[str, Any]) -> tuple[int, Any]:
        return self.post("/run", {"value": value, "activation_id": "aid1", "namespace": "ns"})

    def stderr(self) -> str:
        self.err.flush()
        self.err.seek(0)
        return self.err.read()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.err.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    p = Proxy(tmp_path)
    yield p
    p.stop()


def test_ack_then_runs(proxy: Proxy) -> None:
    assert proxy.init("slow") == (200, {"ok": True})  # waits for the ack, however long the start takes
    assert proxy.run({"x": 1}) == (200, {"echo": {"x": 1}, "aid": "aid1"})
    # A launcher's own error is answered with its status (a developer error), a look-alike of the action's is not.
    assert proxy.run({"dev": True}) == (502, {"error": "it broke"})
    assert proxy.run({"mine": True}) == (200, {"error": "mine", "__ow_status": 502, "other": 1})
    assert proxy.run({"y": 2})[0] == 200


def test_a_refusing_ack_fails_the_init_with_its_error(proxy: Proxy) -> None:
    assert proxy.init("refuse") == (502, {"error": "no such class"})


@pytest.mark.parametrize(("mode", "logged"), [("die", "Command exited abruptly during initialization."),
                                              ("garbage", "invalid ack b'not json\\n'")])
def test_no_ack(proxy: Proxy, mode: str, logged: str) -> None:
    assert proxy.init(mode) == (502, {"error": "Cannot start action. Check logs for details."})
    assert proxy.stderr().startswith(logged)


def test_without_ack_the_grace_period_stands(tmp_path: Path) -> None:
    p = Proxy(tmp_path, ack=False)
    try:
        assert p.init("") == (200, {"ok": True})
        assert p.run({"x": 1}) == (200, {"echo": {"x": 1}, "aid": "aid1"})
    finally:
        p.stop()
