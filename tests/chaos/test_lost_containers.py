"""Containers the engine lost behind the invoker's back (dockerd restarted, or removed by hand).

The request never reached them, so the activation runs on a fresh container and succeeds: the user does not get
the developer error ("The action did not initialize and exited unexpectedly.") that a dead warm container or stem
cell used to give, and the pool drops every lost container and prewarms again.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.stack import Stack

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

CODE = "def main(a):\n    return {'i': a.get('i')}\n"


def _remove_all(prefix: str) -> int:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^/?{prefix}[0-9]+_"], capture_output=True,
                         text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=True)
    return len(ids)


def test_lost_containers_are_replaced_and_the_activation_runs(stack: Stack) -> None:
    c = stack.client(stack.subject("lostc"))
    for name in ("warm", "other"):
        assert c.put(f"actions/{name}", {"exec": {"kind": "python:3", "code": CODE}}).status_code == 200
    r = c.post("actions/warm", {"i": 0}, blocking=True)
    assert r.status_code == 200, r.text
    assert _remove_all(stack.settings.container_prefix) >= 2  # the warm container and the stem cells
    for i, name in enumerate(("warm", "other", "warm"), start=1):  # a warm one, a stem cell, then warm again
        r = c.post(f"actions/{name}", {"i": i}, blocking=True)
        assert r.status_code == 200 and r.json()["response"]["result"] == {"i": i}, r.text
    records = c.get("activations", name="warm", limit=10).json()
    assert len(records) == 3  # one record per activation: the retry is not a second activation
