"""OpenWhisk's ActionLoop proxy for compiled and interpreted runtimes (Go, Java, PHP, Ruby, Rust, ...), stdlib only.

It speaks the invoker's /init and /run over HTTP/1.1 on a unix socket ($OW_PROXY_SOCKET), like runtimes/python/proxy.py,
and runs the action the way apache/openwhisk-runtime-go's proxy does, so each family needs only a launcher:
- /init stores the code under $OW_ACTION_DIR/<n>/src: a zip is extracted there, anything else is saved as `exec`
  (or as $OW_SAVE_JAR when it is a jar). Then `$OW_COMPILER main src bin` must leave an executable bin/exec; with no
  compiler, or when src/exec is already an ELF binary, src simply becomes bin.
- bin/exec is started once per container, its stdout/stderr being the container's, its environment the init env.
  Each /run writes one JSON line to its stdin; it answers one JSON line on file descriptor 3. After each run the
  sentinel goes to stdout and stderr.
- With OW_WAIT_FOR_ACK set (runtime-go's executor.go), the child gets __OW_WAIT_FOR_ACK and must answer
  `{"ok": true}` on fd 3 once it has loaded the action; /init waits for that (or for the child's end) instead of a
  fixed grace period, so a launcher that fails to load the code fails the init, however slowly it starts (a JVM).
- Streamwhisk's extension for runtimes whose OpenWhisk images answer their own errors with a non-200 (java8action's
  502s): an ack or a reply that is exactly `{"error": X, "__ow_status": N}` (N in 400..599) is answered with
  status N and `{"error": X}`: a failed init, or a developer error rather than an application error.
- Texts and statuses are runtime-go's (initHandler.go, runHandler.go, executor.go).
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler
from typing import Any

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
START_GRACE_S = 0.05  # a launcher that dies at once (bad code, no main) is "Cannot start action"
STATUS_KEY = "__ow_status"  # see the module doc
NO_BINARY = "The action failed to generate or locate a binary. See logs for details."
NO_START = "Cannot start action. Check logs for details."

_lock = threading.Lock()
_proc: subprocess.Popen[bytes] | None = None
_reply: int | None = None  # read end of the child's fd 3
_pending = b""  # what was read from it past the last line


def _sentinel() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.write(SENTINEL + "\n")
        stream.flush()


def _fresh_src(base: str) -> str:
    n = 1 + max([int(d) for d in os.listdir(base) if d.isdigit()] or [0])
    return os.path.join(base, str(n), "src")


def _extract(code: str, binary: bool, base: str) -> str:
    """The src dir of a fresh <base>/<n>/ holding the action."""
    src = _fresh_src(base)
    os.makedirs(src)
    data = base64.b64decode(code) if binary else code.encode()
    jar = os.environ.get("OW_SAVE_JAR")
    if data[:4] == b"PK\x03\x04" and jar:
        with open(os.path.join(src, jar), "wb") as f:
            f.write(data)
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                path = zf.extract(info, src)
                mode = info.external_attr >> 16
                if mode & 0o111:  # keep the executable bit (e.g. a precompiled `exec`)
                    os.chmod(path, mode & 0o777)
    else:
        path = os.path.join(src, "exec")
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)
    return src


def _compiled(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _build(src: str, main: str) -> str | None:
    """bin/exec of the action, compiled when there is a compiler and it is not a binary already; None on failure."""
    bin_dir = os.path.join(os.path.dirname(src), "bin")
    compiler = os.environ.get("OW_COMPILER")
    if not compiler or _compiled(os.path.join(src, "exec")):
        os.rename(src, bin_dir)
    else:
        os.makedirs(bin_dir)
        if subprocess.run([compiler, main, src, bin_dir], stdin=subprocess.DEVNULL).returncode != 0:
            return None
    exe = os.path.join(bin_dir, "exec")
    if os.path.isfile(exe):
        os.chmod(exe, 0o755)  # as runtime-go's StartLatestAction: a zip's `exec` need not carry its mode bits
    return exe if os.access(exe, os.X_OK) else None


def _reserve_fd3() -> None:
    nul = os.open(os.devnull, os.O_RDWR)
    if nul != 3:
        os.dup2(nul, 3)
        os.close(nul)


def _start(exe: str, env: dict[str, str]) -> tuple[int, str] | None:
    """Start bin/exec; None when it runs (and acked, if asked to), else the init's failure (status, error)."""
    global _proc, _reply
    ack = bool(os.environ.get("OW_WAIT_FOR_ACK"))
    if ack:
        env = {**env, "__OW_WAIT_FOR_ACK": os.environ["OW_WAIT_FOR_ACK"]}
    r, w = os.pipe()
    os.dup2(w, 3)  # the child finds its reply channel on fd 3, as ActionLoop launchers expect (reserved in serve)
    os.close(w)
    try:
        _proc = subprocess.Popen([exe], cwd=os.path.dirname(exe), env=env, stdin=subprocess.PIPE, pass_fds=(3,))
    finally:
        _reserve_fd3()  # drops our copy of the write end
    _reply = r
    if not ack:
        time.sleep(START_GRACE_S)
        return None if _proc.poll() is None else _not_started("Command exited abruptly during initialization.")
    line = _read_line()  # as runtime-go: wait as long as it takes (the invoker's init timeout bounds it)
    if line is None:
        return _not_started("Command exited abruptly during initialization.")
    try:
        got = json.loads(line)
    except ValueError as e:
        return _not_started(f"invalid ack {line[:200]!r}: {e}")
    failed = _status_error(got)
    if failed is not None:
        return failed
    if not (isinstance(got, dict) and got.get("ok") is True):
        return _not_started("The action did not initialize properly.")
    return None


def _not_started(why: str) -> tuple[int, str]:
    print(why, file=sys.stderr, flush=True)  # runtime-go with OW_LOG_INIT_ERROR: the cause in the logs
    return 502, NO_START


def _status_error(got: Any) -> tuple[int, Any] | None:
    """(N, X) for a launcher's `{"error": X, "__ow_status": N}`, else None."""
    if isinstance(got, dict) and set(got) == {"error", STATUS_KEY}:
        status = got[STATUS_KEY]
        if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
            return status, got["error"]
    return None


def _read_line() -> bytes | None:
    """The child's next line on fd 3; None when it exited (or closed fd 3) first."""
    global _pending
    assert _proc is not None and _reply is not None
    while b"\n" not in _pending:
        ready, _, _ = select.select([_reply], [], [], 0.05)
        if ready:
            chunk = os.read(_reply, 65536)
            if not chunk:
                return None
            _pending += chunk
        elif _proc.poll() is not None:
            return None
    line, _, _pending = _pending.partition(b"\n")
    return line + b"\n"


def _interact(line: bytes) -> bytes | None:
    """One JSON line in, one out; None when the child exited instead of answering."""
    assert _proc is not None and _proc.stdin is not None and _reply is not None
    try:
        _proc.stdin.write(line + b"\n")
        _proc.stdin.flush()
    except OSError:
        return None
    return _read_line()  # the answer or the end of the child, whichever comes first


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, msg: str) -> None:
        self._send(status, json.dumps({"error": msg}).encode())

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _lock:
            if self.path == "/init":
                self._init(raw)
            elif self.path == "/run":
                self._run(raw)
            else:
                self._error(404, f"Unknown path {self.path}")

    def _init(self, raw: bytes) -> None:
        if _proc is not None:
            return self._error(403, "Cannot initialize the action more than once.")
        try:
            value = json.loads(raw).get("value") or {}
        except (ValueError, AttributeError) as e:
            return self._error(400, f"Error unmarshaling request: {e}")
        builtin = os.environ.get("OW_BUILTIN_EXEC")  # a skeleton image's own /action/exec: used when no code
        if not value.get("code") and not (builtin and os.path.isfile(builtin)):
            return self._error(403, "Missing main/no code to execute.")
        env = {**os.environ, **{str(k): v if isinstance(v, str) else json.dumps(v)
                                for k, v in (value.get("env") or {}).items()}}
        base = os.environ.get("OW_ACTION_DIR", "/action")
        try:
            if value.get("code"):
                src = _extract(value["code"], bool(value.get("binary")), base)
            else:
                src = shutil.copytree(os.path.dirname(str(builtin)), _fresh_src(base))
        except (ValueError, zipfile.BadZipFile, OSError) as e:
            return self._error(400, f"cannot decode the request: {e}")
        exe = _build(src, value.get("main") or "main")
        if exe is None:
            _sentinel()
            return self._error(502, NO_BINARY)
        failed = _start(exe, env)
        if failed is not None:
            _sentinel()
            return self._send(failed[0], json.dumps({"error": failed[1]}).encode())
        self._send(200, b'{"ok":true}')

    def _run(self, raw: bytes) -> None:
        global _proc
        if _proc is None:
            return self._error(500, "no action defined yet")
        if _proc.poll() is not None:
            return self._error(500, "command exited")
        out = _interact(raw.replace(b"\n", b""))
        _sentinel()
        if out is None:
            return self._error(400, "command exited")
        try:
            parsed = json.loads(out)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict | list):
            return self._error(502, "The action did not return a dictionary or array.")
        failed = _status_error(parsed)
        if failed is not None:  # the runtime's own error, e.g. java8action's 502s (a developer error)
            return self._send(failed[0], json.dumps({"error": failed[1]}).encode())
        self._send(200, out.rstrip(b"\n"))


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve() -> None:
    _reserve_fd3()  # before any socket can take fd 3
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # PID 1 ignores SIGTERM without a handler
    path = os.environ.get("OW_PROXY_SOCKET", "/run/ow/proxy.sock")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    base = os.environ.get("OW_ACTION_DIR", "/action")
    os.makedirs(base, exist_ok=True)
    shutil.rmtree(os.path.join(base, "1"), ignore_errors=True)
    server = UnixHTTPServer(path, Handler)
    os.chmod(path, 0o666)
    server.serve_forever()


if __name__ == "__main__":
    serve()
