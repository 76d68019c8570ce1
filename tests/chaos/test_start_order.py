"""Parts of a stack started by `up` start in any order: one (re)started while Kafka or CouchDB is down waits for it,
`status` says what it waits for, and it serves once the dependency is back; nobody runs `up` again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import requests

from cli import procs
from cli.supervise import Supervisor
from contracts import keys
from contracts.settings import Settings
from tests import upstack as us
from tests.chaos import faults

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(900)]

CODE = "def main(a):\n    return {'n': a.get('n')}\n"
WAITERS = ["api", "projections", "invoker0", "feeds"]


@pytest.fixture(scope="module")
def upstack(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[us.UpStack]:
    stack = us.prepare(infra, tmp_path_factory.mktemp("order"), prefix_letter="o")
    try:
        us.up(stack)
        yield stack
    finally:
        problems = stack.down()
        assert not problems, problems


def _rows(stack: us.UpStack) -> tuple[dict[str, str], str]:
    out = stack.cli("status", timeout=120).stdout
    return {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}, out


def test_parts_restarted_while_kafka_and_couchdb_are_down_wait_and_say_so(upstack: us.UpStack) -> None:
    stack, sup = upstack, Supervisor(upstack.settings)
    assert stack.cli("status").returncode == 0
    r = requests.put(f"{stack.url}/api/v1/namespaces/_/actions/order",
                     json={"exec": {"kind": "python:3", "code": CODE}},
                     auth=tuple(keys.GUEST_KEY.split(":", 1)), timeout=60)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert us.wait("first invoke", lambda: stack.invoke_ok("order", 0), 120) >= 0

    sup.stop("kafka")
    sup.stop("couchdb")
    for part in WAITERS:  # supervisord starts each again at once, while its dependencies are down
        old = procs.read_pid(stack.pid_file(part))
        assert old is not None
        os.kill(old, signal.SIGKILL)
        us.wait(f"{part} restarted", lambda: procs.read_pid(stack.pid_file(part)) not in (None, old), 60)  # noqa: B023

    def waiting_for(what: str) -> bool:
        rows, out = _rows(stack)
        return all("waiting" in rows.get(p, "") for p in WAITERS) and f"waits for {what}" in out

    us.wait("parts waiting for Kafka", lambda: waiting_for("Kafka at"), 90)
    rows, out = _rows(stack)
    assert f"api waits for Kafka at {stack.settings.kafka}" in out, out
    assert "invoker0 waits for Kafka" in out, out

    t0 = time.monotonic()
    sup.rpc.supervisor.startProcess("kafka", True)
    # With Kafka back, the parts that read views wait for CouchDB, and say so
    us.wait("the API waiting for CouchDB", lambda: f"api waits for CouchDB at {stack.settings.couchdb}"
            in _rows(stack)[1], 120)
    sup.rpc.supervisor.startProcess("couchdb", True)
    us.wait("serving again", lambda: stack.invoke_ok("order", 1), 180)
    serving_at = time.monotonic()
    us.wait("status all ok", lambda: stack.cli("status", timeout=120).returncode == 0, 120)
    rows, out = _rows(stack)
    assert "waits for" not in out, out
    faults.report("start_order", {"waiting_parts": WAITERS, "kafka_started_to_serving_s": round(serving_at - t0, 1)})
    for part in WAITERS:  # they waited; supervisord did not have to restart them again
        assert "crash-loop" not in rows[part], rows[part]
