"""The npm `openwhisk` client keeps working across an invoker kill -9 and a Faust worker kill -9 (each restarted),
with the client's retry option: every call ends with the right result, none fails."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from contracts.settings import Settings
from tests.chaos import faults
from tests.stack import CLIENTS, Stack, npm_client, start_stack

pytestmark = pytest.mark.chaos


DURATION_S = 45


@pytest.fixture(scope="module")
def nstack(infra: Settings) -> Iterator[Stack]:
    s = start_stack(infra)
    yield s
    s.stop()  # also removes the containers the killed invoker left behind


def test_npm_client_across_invoker_and_worker_restarts(nstack: Stack) -> None:
    npm_client("faults.js")
    # Its own subject with high limits: at the guest's 60 invocations a minute, 429s (not the faults) ran out retries.
    key = nstack.subject("npmfaults", limits={"invocationsPerMinute": 100000, "concurrentInvocations": 100})
    env = {**os.environ, "APIHOST": nstack.url, "AUTH": key, "NAME": "npmfault",
           "DURATION_MS": str(DURATION_S * 1000)}
    proc = subprocess.Popen(["node", "faults.js"], cwd=CLIENTS, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        prefix = nstack.settings.prefix
        faults.wait_until("client running", lambda: sum(
            faults.running_containers(f"wsk{prefix}{i}_") for i in range(2)) >= 2, 30)
        time.sleep(6)
        busy = [faults.running_containers(f"wsk{prefix}{i}_") for i in range(2)]
        victim = 0 if busy[0] >= busy[1] else 1
        faults.kill9(nstack.settings, f"invoker{victim}")
        time.sleep(6)
        faults.restart(nstack, f"invoker{victim}")
        time.sleep(6)
        faults.kill9(nstack.settings, "streams")
        time.sleep(1)
        faults.restart(nstack, "streams")
        out, err = proc.communicate(timeout=DURATION_S + 180)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = json.loads(out.strip().splitlines()[-1])
    faults.report("npm_client_faults", {k: result.get(k) for k in ("calls", "ok", "failed", "wrong", "retries",
                                                                  "maxMs", "retryReasons")})
    assert "fatal" not in result, (result, err[-2000:])
    assert result["failed"] == 0 and result["wrong"] == 0, result
    assert result["ok"] == result["calls"] > 10
