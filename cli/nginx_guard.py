"""Start nginx in the foreground after killing the workers a SIGKILLed master left behind.

nginx workers do not exit when their master dies: after `kill -9` of the master they keep the listening sockets,
and a restarted master could not bind. Whatever nginx process still listens on this stack's port is such a
leftover (the port is ours), so it goes before the new master starts. Usage: nginx_guard PORT -- nginx ARGS...
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def leftovers(port: int) -> set[int]:
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    pids = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    return {p for p in pids if p != os.getpid() and _is_nginx(p)}


def _is_nginx(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx")
    except OSError:
        return False


def main(argv: list[str]) -> None:
    port, sep, *nginx = argv
    assert sep == "--" and nginx, __doc__
    for pid in leftovers(int(port)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    deadline = time.monotonic() + 5
    while leftovers(int(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.execvp(nginx[0], nginx)


if __name__ == "__main__":
    main(sys.argv[1:])
