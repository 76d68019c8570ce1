"""T5: kill -9 the (private) Kafka broker, restart it 15 s later. While it is down the API answers 503 with an
{error, code} body within seconds (reads from CouchDB still work); afterwards everything recovers by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from api.kafkagate import UNAVAILABLE
from cli import services
from contracts.settings import Settings
from tests.chaos import faults
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.chaos

DOWN_S = 15.0


@pytest.fixture(scope="module")
def kstack(private_infra: Settings) -> Iterator[Stack]:
    s = start_stack(private_infra)
    yield s
    s.stop()


def test_kafka_restart(kstack: Stack, private_infra: Settings) -> None:
    c = kstack.client()
    faults.put_action(c, "echo", "def main(a):\n    return a\n")
    before = [c.post("actions/echo", {"i": i}, blocking=True).json()["activationId"] for i in range(5)]

    t_kill = faults.kill9(private_infra, "kafka")
    answers: list[tuple[str, int, float]] = []
    while time.monotonic() - t_kill < DOWN_S:
        for what, call in (
            ("invoke", lambda: c.post("actions/echo", {"x": 1}, blocking=True)),
            ("put", lambda: c.put("actions/echo2", {"exec": {"kind": "python:3", "code": "def main(a): return a"}},
                                  overwrite=True)),
            ("get", lambda: c.get("actions/echo")),
        ):
            r, took = faults.timed(call)
            assert isinstance(r, requests.Response), f"{what}: {r}"
            answers.append((what, r.status_code, took))
            if what == "get":
                assert r.status_code == 200, r.text  # reads come from CouchDB
            elif time.monotonic() - t_kill > 2:  # the probe needs a moment to notice
                assert r.status_code == 503, (what, r.status_code, r.text)
                assert r.json()["error"] == UNAVAILABLE and r.json()["code"]
        time.sleep(0.5)
    assert not [a for a in answers if a[1] >= 500 and a[1] != 503], answers
    slowest_503 = max(t for _, st, t in answers if st == 503)
    assert slowest_503 < 7.0  # a 503 is quick: the gate refuses at once, a queued send gives up after 5 s

    t_restart = time.monotonic()
    services.start_kafka(private_infra, faults.say)
    kafka_up = time.monotonic() - t_restart

    def invokes() -> bool:
        r = c.post("actions/echo", {"after": 1}, blocking=True, result=True)
        return r.status_code == 200 and r.json() == {"after": 1}

    faults.wait_until("invoke after kafka restart", invokes, 120, every=0.5)
    recovered = time.monotonic() - t_restart
    put = c.put("actions/echo3", {"exec": {"kind": "python:3", "code": "def main(a): return a"}}, overwrite=True)
    assert put.status_code == 200, put.text
    assert c.get("actions/echo3").status_code == 200  # read-your-writes again (projector is back)
    found = faults.wait_records(kstack, "guest", set(before), 30)
    assert set(found) == set(before)  # nothing acknowledged before the crash was lost
    faults.report("kafka_restart", {
        "down_s": DOWN_S, "answers_while_down": len(answers),
        "non_503_5xx": sum(1 for a in answers if a[1] >= 500 and a[1] != 503),
        "max_503_s": round(slowest_503, 2), "kafka_start_s": round(kafka_up, 1),
        "recovery_after_restart_s": round(recovered, 1),
        "recovery_after_broker_ready_s": round(recovered - kafka_up, 1),
        "lost_before_crash": len(set(before) - set(found)),
    })


def test_api_down_through_nginx(kstack: Stack) -> None:
    """With the API process gone, nginx answers 503 in the {error, code} form (not an HTML 502)."""
    faults.kill9(kstack.settings, "api")
    try:
        r = kstack.client().get("actions")
        assert r.status_code == 503, r.text[:200]
        assert set(r.json()) == {"error", "code"} and r.json()["code"]
    finally:
        faults.restart(kstack, "api")
    assert kstack.client().get("actions").status_code == 200
