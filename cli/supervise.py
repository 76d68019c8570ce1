"""`up` runs every part under supervisord (the `supervisor` package from PyPI).

Why supervisord: it is the well-kept process manager that installs with pip into our own venv, needs no init system
(containers and CI machines here have no systemd as PID 1), restarts a crashed program with a backoff while it
fails to stay up, stops process groups (Java's and Node's children included), and has an XML-RPC API and event
listeners, which is all `up`, `down` and `status` need.

- supervisord runs daemonized with its config, socket, log and pid file under WSK_HOME; `up` adds each part as a
  program when it starts it (same argv, env and log file as before), then starts it through the API, so the start
  order and readiness checks stay those of cli/services.py.
- A crashed part is restarted (autorestart); one that dies within `startsecs` is retried with supervisord's growing
  backoff and ends FATAL after `startretries`. The event listener (cli/supervise_events.py) keeps each part's pid
  file current, counts restarts with the last exit reason (`status` shows them), and stops a part that crashed
  CRASH_LIMIT times within CRASH_WINDOW_S, reporting it as crash-looping instead of restarting it forever.
- `down` stops the programs through the API in reverse start order, removes the action containers, then shuts
  supervisord down and waits for it: no process of the stack is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cli import procs
from contracts.settings import REPO, Settings

CRASH_LIMIT = 10  # unexpected exits ...
CRASH_WINDOW_S = 300.0  # ... within this many seconds: the part is stopped and reported as crash-looping
START_SECS = 2  # a part that lives this long counts as started (shorter: supervisord's backoff and retries)
START_RETRIES = 20


def conf_dir(settings: Settings) -> Path:
    return settings.home / "supervisor"


def socket_path(settings: Settings) -> Path:
    # An AF_UNIX path has at most 107 bytes: WSK_HOME may be long, the socket root is short (and shared: the
    # name tells the stacks apart by their home).
    home = hashlib.sha1(str(settings.home.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
    return settings.socket_root / f"supervisor-{home}.sock"


def state_file(settings: Settings) -> Path:
    """Restarts and last exits per part, written by the event listener."""
    return settings.home / "run" / "supervision.json"


def _quote(value: str) -> str:
    return value.replace("%", "%%")


def main_conf(settings: Settings) -> str:
    """supervisord's own config: socket, daemon, the event listener, and the programs' directory."""
    logs, run = settings.home / "logs", settings.home / "run"
    return "\n".join([
        "[unix_http_server]", f"file={socket_path(settings)}", "chmod=0700", "",
        "[supervisord]", f"logfile={logs / 'supervisord.log'}", "logfile_maxbytes=20MB", "logfile_backups=2",
        f"pidfile={run / 'supervisord.pid'}", f"childlogdir={logs}", f"directory={REPO}", "nodaemon=false",
        "minfds=4096", "",
        "[rpcinterface:supervisor]", "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "", "[supervisorctl]", f"serverurl=unix://{socket_path(settings)}", "",
        "[eventlistener:watch]", f"command={_quote(shlex.join([sys.executable, '-m', 'cli.supervise_events']))}",
        "events=PROCESS_STATE", f"directory={REPO}", "autorestart=true", "priority=1",
        f"stderr_logfile={logs / 'supervisor-events.log'}", "stderr_logfile_maxbytes=5MB", "",
        "[include]", f"files={conf_dir(settings) / 'programs'}/*.conf", "",
    ])


def program_conf(name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None, log: Path) -> str:
    """One part as a supervisord program; `env`: only what differs from supervisord's own environment."""
    lines = [f"[program:{name}]", f"command={_quote(shlex.join(argv))}", f"directory={cwd or REPO}",
             "autostart=false", "autorestart=true", f"startsecs={START_SECS}", f"startretries={START_RETRIES}",
             "stopsignal=TERM", "stopwaitsecs=20", "stopasgroup=true", "killasgroup=true", "redirect_stderr=true",
             f"stdout_logfile={log}", "stdout_logfile_maxbytes=50MB", "stdout_logfile_backups=2"]
    if env:
        pairs = ",".join(f'{k}="{_quote(v).replace(chr(34), chr(92) + chr(34))}"' for k, v in sorted(env.items()))
        lines.append(f"environment={pairs}")
    return "\n".join(lines) + "\n"


def crash_looping(exits: list[float], now: float) -> bool:
    """Whether the unexpected exits' times make a crash loop: CRASH_LIMIT of them within CRASH_WINDOW_S."""
    recent = [t for t in exits if now - t <= CRASH_WINDOW_S]
    return len(recent) >= CRASH_LIMIT


def read_state(settings: Settings) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(state_file(settings).read_text())
        return state
    except (OSError, ValueError):
        return {}


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)

    def make_connection(self, host: Any) -> Any:
        import http.client
        import socket

        path = self.path

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(30)
                self.sock.connect(path)

        return Conn("localhost")


class Supervisor:
    """supervisord for one stack (WSK_HOME): start it, add and start programs, stop them, shut it down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rpc: Any = xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(socket_path(settings)))

    def pid(self) -> int | None:
        return procs.read_pid(self.settings.home / "run" / "supervisord.pid")

    def running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            return str(self.rpc.supervisor.getState()["statename"]) == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def ensure(self, env: Mapping[str, str]) -> None:
        """Start supervisord (daemonized, with `env` as every program's base environment) unless it runs."""
        cdir = conf_dir(self.settings)
        (cdir / "programs").mkdir(parents=True, exist_ok=True)
        (self.settings.home / "run").mkdir(parents=True, exist_ok=True)
        (self.settings.home / "logs").mkdir(parents=True, exist_ok=True)
        socket_path(self.settings).parent.mkdir(parents=True, exist_ok=True)
        (cdir / "supervisord.conf").write_text(main_conf(self.settings))
        (cdir / "base-env.json").write_text(json.dumps(dict(env)))
        if self.running():
            return
        for stale in (cdir / "programs").glob("*.conf"):  # programs are added again as `up` starts them
            stale.unlink()
        state_file(self.settings).unlink(missing_ok=True)  # restarts count from this supervisord's start
        pidf = self.settings.home / "run" / "supervisord.pid"
        pidf.unlink(missing_ok=True)
        run = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(cdir / "supervisord.conf")],
                             env={**env, "WSK_HOME": str(self.settings.home)}, cwd=REPO, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=30)
        if run.returncode != 0:
            raise RuntimeError(f"supervisord did not start (exit {run.returncode}): {run.stderr.strip()[-2000:]}")
        deadline = time.monotonic() + 20
        while not self.running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start (log: {self.settings.home / 'logs/supervisord.log'})")
            time.sleep(0.1)
        # supervisord wrote its pid file itself; record it with its start time, as every pid file is kept
        raw = pidf.read_text().split()
        if raw:
            procs.write_pid(pidf, int(raw[0]))

    def run(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None, cwd: Path | None,
            log: Path) -> int:
        """Add (or replace) the program and start it; its pid."""
        base = json.loads((conf_dir(self.settings) / "base-env.json").read_text())
        diff = {k: v for k, v in (env or {}).items() if base.get(k) != v}
        (conf_dir(self.settings) / "programs" / f"{name}.conf").write_text(program_conf(name, argv, diff, cwd, log))
        added, changed, _ = self.rpc.supervisor.reloadConfig()[0]
        if name in changed:
            self._stop(name)
            self.rpc.supervisor.removeProcessGroup(name)
        if name in added or name in changed:
            self.rpc.supervisor.addProcessGroup(name)
        self.rpc.supervisor.startProcess(name, False)
        deadline = time.monotonic() + 10
        while (pid := int(self.rpc.supervisor.getProcessInfo(name)["pid"])) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: supervisord did not spawn it")
            time.sleep(0.05)
        procs.write_pid(self.settings.home / "run" / f"{name}.pid", pid)
        return pid

    def _stop(self, name: str) -> bool:
        try:
            self.rpc.supervisor.stopProcess(name, True)
            return True
        except xmlrpc.client.Fault:  # not running, or not a program of ours
            return False

    def stop(self, name: str) -> bool:
        stopped = self._stop(name)
        (self.settings.home / "run" / f"{name}.pid").unlink(missing_ok=True)
        return stopped

    def state(self, name: str) -> str | None:
        try:
            return str(self.rpc.supervisor.getProcessInfo(name)["statename"])
        except (OSError, xmlrpc.client.Error):
            return None

    def info(self) -> dict[str, dict[str, Any]]:
        """supervisord's view of every program (state, pid, uptime text), or {} when it is not running."""
        if self.pid() is None:
            return {}
        try:
            return {str(p["name"]): p for p in self.rpc.supervisor.getAllProcessInfo() if p["group"] != "watch"}
        except (OSError, xmlrpc.client.Error):
            return {}

    def programs(self) -> list[str]:
        return [str(p["name"]) for p in self.rpc.supervisor.getAllProcessInfo() if p["group"] != "watch"]

    def shutdown(self) -> None:
        pid = self.pid()
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self.rpc.supervisor.shutdown()
        if pid is not None and not procs.wait_exit(pid, 60):
            os.kill(pid, 9)
        (self.settings.home / "run" / "supervisord.pid").unlink(missing_ok=True)
