"""OpenWhisk action proxy for Python actions (stdlib only; runs inside the action container).

Serves /init and /run over HTTP/1.1 on a unix socket ($OW_PROXY_SOCKET) and optionally TCP ($OW_PROXY_PORT).
"""

from __future__ import annotations

import base64
import glob
import io
import json
import os
import signal
import socketserver
import sys
import tempfile
import threading
import traceback
import types
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

_lock = threading.Lock()  # one activation at a time, like the real runtimes
_main: Any = None
_initialized = False


def _sentinel() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.write(SENTINEL + "\n")
            stream.flush()
        except Exception:
            pass


def _action_dir() -> str:
    """The container's writable, exec-mapped action directory (a tmpfs the invoker mounts), else a temp dir."""
    base = os.environ.get("OW_ACTION_DIR", "/action")
    return base if os.access(base, os.W_OK) else tempfile.mkdtemp(prefix="ow-action-")


def _load(code: str, binary: bool, main_name: str) -> Any:
    workdir = _action_dir()
    os.chdir(workdir)  # as OpenWhisk's runtimes: relative paths (scratch files, data) resolve in the action's dir
    if binary:
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(code))) as zf:
            zf.extractall(workdir)
        path = os.path.join(workdir, "__main__.py")
        if not os.path.isfile(path):
            raise RuntimeError("Zip file does not include __main__.py")
        for site in glob.glob(os.path.join(workdir, "virtualenv", "lib", "python3*", "site-packages")):
            sys.path.insert(0, site)
        sys.path.insert(0, workdir)
    else:
        path = os.path.join(workdir, "__main__.py")
        with open(path, "w", encoding="utf-8") as f:  # a real file gives readable tracebacks
            f.write(code)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    # Named main__ (as OpenWhisk does) so an `if __name__ == "__main__"` block does not run.
    mod = types.ModuleType("main__")
    mod.__file__ = path
    sys.modules["main__"] = mod
    exec(compile(source, path, "exec"), mod.__dict__)
    fn = getattr(mod, main_name, None)
    if not callable(fn):
        raise RuntimeError(f"Action entrypoint '{main_name}' is not a function in the action code.")
    return fn


def _env_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the invoker reuses one connection per container

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stdout/stderr belong to the action's logs

    def _reply(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any] | None:
        n = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def do_GET(self) -> None:
        self._reply(200 if self.path == "/health" else 404, {"ok": True} if self.path == "/health" else {})

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            self._reply(400, {"error": "The request body is not a JSON object."})
        elif self.path == "/init":
            with _lock:
                status, obj = self._init(body)
                if status != 200:  # as OpenWhisk's runtimes: a good init's logs join the first run's
                    _sentinel()
            self._reply(status, obj)
        elif self.path == "/run":
            with _lock:
                status, obj = self._run(body)
                _sentinel()
            self._reply(status, obj)
        else:
            self._reply(404, {"error": f"Unknown path {self.path}"})

    def _init(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        global _main, _initialized
        if _initialized:
            return 403, {"error": "Cannot initialize the action more than once."}
        value = body.get("value") or {}
        if not isinstance(value, dict):
            return 403, {"error": "Missing main/no code to execute."}
        builtin = os.environ.get("OW_BUILTIN_ACTION")
        if not value.get("code") and builtin and os.path.isfile(builtin):  # a blackbox image with its action inside
            with open(builtin, encoding="utf-8") as f:
                value = {**value, "code": f.read(), "binary": False}
        if not value.get("code"):
            return 403, {"error": "Missing main/no code to execute."}
        for k, v in (value.get("env") or {}).items():
            os.environ[str(k)] = _env_value(v)
        try:
            _main = _load(value["code"], bool(value.get("binary")), value.get("main") or "main")
        except SyntaxError as ex:  # ActionLoop's compile step logs only the parser's message
            print(ex.msg, file=sys.stderr)
            return 502, {"error": "The action failed to generate or locate a binary. See logs for details."}
        except BaseException:  # no `main`, ImportError, SystemExit at import time: the launcher dies
            traceback.print_exc()
            print("Command exited abruptly during initialization.", file=sys.stderr)
            return 502, {"error": "Cannot start action. Check logs for details."}
        _initialized = True
        return 200, {"ok": True}

    def _run(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not _initialized:
            return 500, {"error": "Cannot run an uninitialized action."}
        for k, v in body.items():
            if k != "value":
                os.environ[f"__OW_{k.upper()}"] = _env_value(v)
        try:
            result = _main(body.get("value") or {})
        except SystemExit as ex:  # must not take the proxy down
            return 200, {"error": f"The action exited (SystemExit: {ex.code})."}
        except Exception as ex:
            traceback.print_exc()
            sys.stderr.flush()
            return 200, {"error": str(ex) or type(ex).__name__}
        finally:
            sys.stdout.flush()
        if not isinstance(result, dict | list):
            return 502, {"error": "The action did not return a dictionary or array."}
        try:
            json.dumps(result)
        except (TypeError, ValueError):
            return 502, {"error": "The action did not return a dictionary or array."}
        return 200, result


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


def serve() -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # PID 1 ignores SIGTERM without a handler
    path = os.environ.get("OW_PROXY_SOCKET", "/run/ow/proxy.sock")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    unix = UnixHTTPServer(path, Handler)
    os.chmod(path, 0o666)
    port = os.environ.get("OW_PROXY_PORT")
    if port:
        tcp = ThreadingHTTPServer(("0.0.0.0", int(port)), Handler)
        tcp.daemon_threads = True
        threading.Thread(target=tcp.serve_forever, daemon=True).start()
    unix.serve_forever()


if __name__ == "__main__":
    serve()
