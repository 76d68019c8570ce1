"""Pid files and background processes started by `streamwhisk up`.

A pid file holds "<pid> <start time>" (field 22 of /proc/<pid>/stat) so a recycled pid is never taken for ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def write_pid(pid_file: Path, pid: int) -> None:
    """Atomically (a reader never sees a half-written file: supervision rewrites pid files while others read)."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(f".{pid_file.name}.{os.getpid()}")
    tmp.write_text(f"{pid} {_start_time(pid) or ''}\n")
    tmp.replace(pid_file)


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in pid_file if that process is still the one we started, else None."""
    try:
        parts = pid_file.read_text().split()
    except OSError:
        return None
    if not parts or not parts[0].isdigit():
        return None
    pid = int(parts[0])
    started = _start_time(pid)
    if started is None or _is_zombie(pid) or (len(parts) > 1 and parts[1] != started):
        return None
    return pid


def spawn(argv: Sequence[str], log: Path, pid_file: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start argv detached (own session, so Ctrl-C on the CLI leaves it alone), output appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
    write_pid(pid_file, proc.pid)
    return proc.pid


def wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _start_time(pid) is None or _is_zombie(pid):
            return True
        time.sleep(0.1)
    return False


def stop(pid_file: Path, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Signal the process in pid_file, SIGKILL it after timeout; returns the pid stopped (None if none)."""
    pid = read_pid(pid_file)
    if pid is not None:
        try:
            os.kill(pid, sig)
            if not wait_exit(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                wait_exit(pid, 5)
        except ProcessLookupError:
            pass
    pid_file.unlink(missing_ok=True)
    return pid


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"
