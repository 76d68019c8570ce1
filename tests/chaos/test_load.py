"""Mixed traffic (CRUD, invokes, trigger fires) for LOAD_S seconds, then every accepted request is matched
with what the projections hold: zero lost. WSK_LONG_TESTS=1 runs the full 10 minutes."""

from __future__ import annotations

import functools
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from contracts.settings import Settings
from tests.chaos import faults
from tests.chaos.conftest import LONG
from tests.stack import Client, Stack, start_stack

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900 if LONG else 300)]

LOAD_S = 600.0 if LONG else 60.0
THREADS = 4
LIMITS = {"invocationsPerMinute": 100000, "concurrentInvocations": 1000, "firesPerMinute": 100000}


@pytest.fixture(scope="module")
def lstack(infra: Settings) -> Iterator[Stack]:
    s = start_stack(infra)
    yield s
    s.stop()


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.activations: set[str] = set()
        self.fires: set[str] = set()
        self.entities: dict[str, bool] = {}  # name -> exists after the last accepted op
        self.status: Counter[str] = Counter()
        self.latency: list[float] = []
        self.errors: list[str] = []

    def note(self, op: str, r: requests.Response | Exception, took: float) -> None:
        with self.lock:
            self.latency.append(took)
            if isinstance(r, Exception):
                self.status[f"{op}:exc"] += 1
                self.errors.append(f"{op}: {r}")
                return
            self.status[f"{op}:{r.status_code}"] += 1
            if r.status_code >= 500:
                self.errors.append(f"{op}: {r.status_code} {r.text[:200]}")


def worker(c: Client, k: int, tally: Tally, until: float) -> None:
    i = 0
    while time.monotonic() < until:
        op = ("invoke_blocking", "invoke", "fire", "put", "get", "invoke", "delete", "list")[i % 8]
        name = f"ld{k}_{(i // 8) % 20}"
        code = f"def main(a): return {{'v': {i}}}"
        method, path, body, params = {
            "invoke_blocking": ("POST", "actions/load", {"i": i}, {"blocking": True}),
            "invoke": ("POST", "actions/load", {"i": i}, {}),
            "fire": ("POST", "triggers/tick", {"i": i}, {}),
            "put": ("PUT", f"actions/{name}", {"exec": {"kind": "python:3", "code": code}}, {"overwrite": True}),
            "get": ("GET", f"actions/{name}", None, {}),
            "delete": ("DELETE", f"actions/{name}", None, {}),
            "list": ("GET", "activations", None, {"limit": 10}),
        }[op]
        r, took = faults.timed(functools.partial(c.req, method, path, body, **params))
        tally.note(op, r, took)
        if isinstance(r, requests.Response):
            with tally.lock:
                if op.startswith("invoke") and r.status_code in (200, 202, 502):
                    tally.activations.add(r.json()["activationId"])
                elif op == "fire" and r.status_code == 202:
                    tally.fires.add(r.json()["activationId"])
                elif op == "put" and r.status_code == 200:
                    tally.entities[name] = True
                elif op == "delete" and r.status_code == 200:
                    tally.entities[name] = False
        i += 1


def _rule_activations(trigger_records: dict[str, dict[str, Any]]) -> set[str]:
    out = set()
    for rec in trigger_records.values():
        for line in rec.get("logs", []):
            aid = json.loads(line).get("activationId")
            if aid:
                out.add(aid)
    return out


def test_mixed_load_loses_nothing(lstack: Stack) -> None:
    c = lstack.client(lstack.subject("load", limits=LIMITS))
    faults.put_action(c, "load", "def main(a):\n    return {'i': a.get('i')}\n")
    assert c.put("triggers/tick", {}, overwrite=True).status_code == 200
    assert c.put("rules/tick_load", {"trigger": "/_/tick", "action": "/_/load"}, overwrite=True).status_code == 200
    tally = Tally()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c, k, tally, t0 + LOAD_S)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LOAD_S + 120)
    elapsed = time.monotonic() - t0

    trig = faults.wait_records(lstack, "load", tally.fires, 120)
    rule_ids = _rule_activations(trig)
    accepted = tally.activations | rule_ids
    found = faults.wait_records(lstack, "load", accepted, 120)
    lost = (accepted - set(found)) | (tally.fires - set(trig))
    s = lstack.settings
    r = requests.post(f"{s.couchdb}/{s.db('whisks')}/_all_docs",
                      json={"keys": [f"load/{n}" for n in tally.entities]}, timeout=30)
    present = {row["id"].split("/", 1)[1] for row in r.json()["rows"] if "value" in row and not row.get("error")
               and not row["value"].get("deleted")}
    wrong = {n for n, exists in tally.entities.items() if exists != (n in present)}
    total = sum(tally.status.values())
    lat = sorted(tally.latency)
    faults.report("mixed_load", {
        "seconds": round(elapsed), "requests": total, "req_per_s": round(total / elapsed, 1),
        "activations_accepted": len(tally.activations), "fires_accepted": len(tally.fires),
        "rule_activations": len(rule_ids), "records_found": len(found) + len(trig), "lost": len(lost),
        "entity_state_mismatches": len(wrong), "http_5xx": len(tally.errors),
        "p50_ms": round(statistics.median(lat) * 1000), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000),
        "statuses": dict(tally.status),
    })
    assert not tally.errors, tally.errors[:10]
    assert not lost, sorted(lost)[:10]
    assert not wrong, wrong
    assert tally.fires and rule_ids and tally.activations
