"""A runaway action that writes far past its log limit fills neither the invoker's disk nor its memory.

The action writes 120 MB to stdout. Docker's json-file log of its container is capped (invoker/containers.py:
max-size 10m, one file), the activation record keeps the first `logs` MB with OpenWhisk's truncation line, the
invoker's own log does not take the output, and the next activation runs as usual.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.stack import Stack

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

RUNAWAY = """
import sys
def main(a):
    line = 'x' * 1023 + '\\n'
    for _ in range(a.get('mb', 120) * 1024):
        sys.stdout.write(line)
    sys.stdout.flush()
    return {'wrote_mb': a.get('mb', 120)}
"""


def _log_files(prefix: str) -> dict[str, int]:
    """Size of the json-file log of every container of the stack's invokers."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^/?{prefix}[0-9]+_"], capture_output=True,
                         text=True).stdout.split()
    sizes: dict[str, int] = {}
    for cid in ids:
        info = json.loads(subprocess.run(["docker", "inspect", cid], capture_output=True, text=True).stdout or "[]")
        for c in info:
            base = c.get("LogPath") or ""
            sizes[cid] = sum(os.path.getsize(p) for p in (base, base + ".1") if p and os.path.exists(p))
    return sizes


def test_runaway_output_is_capped_everywhere(stack: Stack) -> None:
    c = stack.client(stack.subject("runaway"))
    assert c.put("actions/runaway", {"exec": {"kind": "python:3", "code": RUNAWAY},
                                     "limits": {"logs": 2, "timeout": 120000}}).status_code == 200
    invoker_logs = [stack.settings.home / "logs" / f"invoker{i}.log" for i in range(stack.settings.invokers)]
    before = sum(p.stat().st_size for p in invoker_logs if p.exists())
    r = c.post("actions/runaway", {"mb": 120}, blocking=True)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"] == {"wrote_mb": 120}
    # the stored record has the logs (a blocking answer has none, as in OpenWhisk)
    deadline = time.monotonic() + 30
    while (g := c.get(f"activations/{r.json()['activationId']}")).status_code != 200:
        assert time.monotonic() < deadline, g.text
        time.sleep(0.5)
    logs = g.json()["logs"]
    assert logs[-1] == "Logs were truncated because the total bytes size exceeds the limit of 2097152 bytes."
    assert sum(len(line) for line in logs) <= 2 * 1024 * 1024 + 4096
    after = sum(p.stat().st_size for p in invoker_logs if p.exists())
    assert after - before < 256 * 1024, "the action's output reached the invoker's own log"
    sizes = _log_files(stack.settings.container_prefix)
    # json-file max-size 10m, max-file 1: the current file and, while docker rotates, the one before it
    assert sizes and max(sizes.values()) <= 22 * 1024 * 1024, sizes
    r = c.post("actions/runaway", {"mb": 0}, blocking=True)  # the same container (or a new one) serves on
    assert r.status_code == 200 and r.json()["response"]["result"] == {"wrote_mb": 0}, r.text
