"""supervisord event listener (cli/supervise.py): pid files, restart counts and crash loops.

On RUNNING it writes the part's pid file (so `status`, readiness checks and tests find the new process); on an
unexpected EXITED it counts a restart with the exit reason supervisord logged ("terminated by SIGKILL", "exit status
1"), and stops a part that crashed CRASH_LIMIT times within CRASH_WINDOW_S; on FATAL (it never stayed up for
`startsecs` through every retry) it records that. The state is one JSON file, replaced atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from supervisor import childutils

from cli import procs
from cli.supervise import CRASH_LIMIT, CRASH_WINDOW_S, crash_looping

HOME = Path(os.environ.get("WSK_HOME", ".state"))
STATE = HOME / "run" / "supervision.json"
SUPERVISORD_LOG = HOME / "logs" / "supervisord.log"


def _load() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(STATE.read_text())
        return state
    except (OSError, ValueError):
        return {}


def _save(state: dict[str, Any]) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(STATE)


def exit_reason(log_tail: str, name: str) -> str:
    """The last 'exited: <name> (<reason>; ...)' supervisord logged."""
    marker = f"exited: {name} ("
    for line in reversed(log_tail.splitlines()):
        if marker in line:
            return line.split(marker, 1)[1].split(";", 1)[0].rstrip(")")
    return "exited"


def on_event(state: dict[str, Any], event: str, headers: dict[str, str], now: float, rpc: Any) -> None:
    name = headers.get("processname", "")
    if not name or headers.get("groupname") == "watch":
        return
    part = state.setdefault(name, {"restarts": 0, "exits": [], "last_exit": None, "crash_loop": None})
    if event == "PROCESS_STATE_RUNNING":
        procs.write_pid(HOME / "run" / f"{name}.pid", int(headers["pid"]))
    elif event == "PROCESS_STATE_BACKOFF":  # died while starting: supervisord retries it after a growing delay
        part["restarts"] += 1
        part["last_exit"] = {"reason": exit_reason(procs.tail(SUPERVISORD_LOG, 50), name), "at": now}
    elif event == "PROCESS_STATE_EXITED" and headers.get("expected") == "0":
        reason = exit_reason(procs.tail(SUPERVISORD_LOG, 50), name)
        part["restarts"] += 1
        part["last_exit"] = {"reason": reason, "at": now}
        part["exits"] = [t for t in [*part["exits"], now] if now - t <= CRASH_WINDOW_S]
        if crash_looping(part["exits"], now):
            part["crash_loop"] = (f"stopped after {CRASH_LIMIT} crashes within {CRASH_WINDOW_S:.0f} s "
                                  f"(last: {reason})")
            try:
                rpc.supervisor.stopProcess(name, False)
            except Exception as e:  # already restarting or gone: it stays recorded as crash-looping
                print(f"stopping {name}: {e!r}", file=sys.stderr, flush=True)
    elif event == "PROCESS_STATE_FATAL":
        part["crash_loop"] = "could not be started: it exited too quickly on every retry (FATAL)"
    elif event == "PROCESS_STATE_STARTING" and headers.get("from_state") == "STOPPED":
        part["crash_loop"] = None  # started again on purpose (`up`)
        part["exits"] = []


def main() -> None:
    rpc = childutils.getRPCInterface(os.environ)
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers.get("eventname", "")
        try:
            body = childutils.get_headers(payload.split("\n", 1)[0])
            state = _load()
            on_event(state, event, body, time.time(), rpc)
            _save(state)
        except Exception as e:  # a listener that dies would stop recording; log and go on
            print(f"event {event}: {e!r}", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
