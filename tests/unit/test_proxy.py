"""The stdlib action proxy, run as a host subprocess on a temp unix socket (no Docker)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROXY = Path(__file__).resolve().parents[2] / "runtimes" / "python" / "proxy.py"
NODE_PROXY = PROXY.parents[1] / "nodejs" / "proxy.js"
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


class Proxy:
    def __init__(self, tmp: Path, cmd: list[str] | None = None) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.sock = str(tmp / "ow" / "proxy.sock")
        self.out, self.err = tmp / "stdout", tmp / "stderr"
        env = {**os.environ, "OW_PROXY_SOCKET": self.sock}
        with self.out.open("wb") as out, self.err.open("wb") as err:
            cmd = cmd or [sys.executable, "-u", str(PROXY)]
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            assert time.monotonic() < deadline, "proxy did not create its socket"
            time.sleep(0.02)
        self.conn = UnixHTTPConnection(self.sock)  # one keep-alive connection, as the invoker does

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def init(self, code: str, **kw: Any) -> tuple[int, Any]:
        return self.post("/init", {"value": {"name": "a", "main": "main", "code": code, **kw}})

    def run(self, value: dict[str, Any], **kw: Any) -> tuple[int, Any]:
        return self.post("/run", {"value": value, **kw})

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    p = Proxy(tmp_path)
    yield p
    p.close()


def test_init_and_run(proxy: Proxy) -> None:
    code = "def main(args):\n    print('hello', args.get('name'))\n    return {'greeting': 'Hi ' + args['name']}\n"
    assert proxy.init(code) == (200, {"ok": True})
    assert proxy.run({"name": "Ann"}) == (200, {"greeting": "Hi Ann"})
    assert proxy.run({"name": "Bob"}) == (200, {"greeting": "Hi Bob"})  # warm, same connection
    assert proxy.proc.poll() is None
    time.sleep(0.1)
    out = proxy.out.read_text().splitlines()
    assert out == ["hello Ann", SENTINEL, "hello Bob", SENTINEL]  # no sentinel after a good init
    assert proxy.err.read_text().splitlines() == [SENTINEL] * 2


def test_list_result_and_custom_main(proxy: Proxy) -> None:
    assert proxy.init("def go(a):\n    return [1, 2]\n", main="go")[0] == 200
    assert proxy.run({}) == (200, [1, 2])


def test_exception_is_application_error(proxy: Proxy) -> None:
    assert proxy.init("def main(a):\n    raise ValueError('boom')\n")[0] == 200
    assert proxy.run({}) == (200, {"error": "boom"})
    time.sleep(0.1)
    err = proxy.err.read_text()
    assert "Traceback" in err and "ValueError: boom" in err and err.endswith(SENTINEL + "\n")


def test_non_dict_result_and_sys_exit(proxy: Proxy) -> None:
    code = "import sys\ndef main(a):\n    if a.get('exit'):\n        sys.exit(3)\n    return 42\n"
    assert proxy.init(code)[0] == 200
    assert proxy.run({}) == (502, {"error": "The action did not return a dictionary or array."})
    status, body = proxy.run({"exit": True})
    assert status == 200 and "SystemExit" in body["error"]
    assert proxy.proc.poll() is None  # still serving
    assert proxy.run({})[0] == 502


def test_init_errors(tmp_path: Path) -> None:
    p = Proxy(tmp_path / "a")
    try:
        assert p.run({})[0] == 500
        assert p.post("/init", {"value": {}}) == (403, {"error": "Missing main/no code to execute."})
        # ActionLoop's texts (runtime-go initHandler.go): the compile step fails, and it logs only the message.
        assert p.init("def main(args)\n    return args\n") == (
            502, {"error": "The action failed to generate or locate a binary. See logs for details."})
        time.sleep(0.1)
        assert p.err.read_text().splitlines()[-2:] == ["expected ':'", SENTINEL]
    finally:
        p.close()
    p = Proxy(tmp_path / "b")
    try:  # no `main`: the launcher's import fails, so the action cannot start
        assert p.init("def other(a):\n    return {}\n") == (
            502, {"error": "Cannot start action. Check logs for details."})
        time.sleep(0.1)
        err = p.err.read_text()
        assert "Traceback" in err and err.endswith(f"Command exited abruptly during initialization.\n{SENTINEL}\n")
    finally:
        p.close()


def test_nodejs_init_error_texts(tmp_path: Path) -> None:
    """As core/nodejsActionBase (service.js, runner.js): the error's stack, or the plain string runner.js
    rejects with for a `main` that is not a function."""
    p = Proxy(tmp_path / "a", ["node", str(NODE_PROXY)])
    try:
        status, body = p.init("function main(args) { return args +; }")
        assert status == 502
        assert body["error"].startswith("Initialization has failed due to: SyntaxError: Unexpected token ';'\n    at ")
        time.sleep(0.1)
        assert "Error during initialization: SyntaxError: Unexpected token ';'" in p.err.read_text()
    finally:
        p.close()
    p = Proxy(tmp_path / "b", ["node", str(NODE_PROXY)])
    try:
        assert p.init("function other(args) { return args; }") == (
            502, {"error": "Initialization has failed due to: Action entrypoint 'main' is not a function."})
    finally:
        p.close()


def test_double_init(proxy: Proxy) -> None:
    assert proxy.init("def main(a):\n    return a\n")[0] == 200
    assert proxy.init("def main(a):\n    return a\n") == (
        403,
        {"error": "Cannot initialize the action more than once."},
    )


def test_zip_action_with_virtualenv(proxy: Proxy) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "import helper, vendored\ndef main(a):\n    return helper.f(vendored.X)\n")
        zf.writestr("helper.py", "def f(x):\n    return {'x': x}\n")
        zf.writestr("virtualenv/lib/python3.11/site-packages/vendored.py", "X = 'from venv'\n")
    code = base64.b64encode(buf.getvalue()).decode()
    assert proxy.init(code, binary=True)[0] == 200
    assert proxy.run({}) == (200, {"x": "from venv"})


def test_env_export(proxy: Proxy) -> None:
    code = (
        "import os\n"
        "def main(a):\n"
        "    return {k: v for k, v in os.environ.items() if k.startswith('__OW_') or k == 'MY_VAR'}\n"
    )
    assert proxy.init(code, env={"MY_VAR": "init-env"})[0] == 200
    meta = {
        "namespace": "guest",
        "action_name": "/guest/a",
        "action_version": "0.0.1",
        "activation_id": "abc123",
        "transaction_id": "tid",
        "deadline": 1700000000000,
        "api_key": "k:s",
    }
    status, env = proxy.run({"p": 1}, **meta)
    assert status == 200
    assert env == {
        "MY_VAR": "init-env",
        "__OW_NAMESPACE": "guest",
        "__OW_ACTION_NAME": "/guest/a",
        "__OW_ACTION_VERSION": "0.0.1",
        "__OW_ACTIVATION_ID": "abc123",
        "__OW_TRANSACTION_ID": "tid",
        "__OW_DEADLINE": "1700000000000",
        "__OW_API_KEY": "k:s",
    }
