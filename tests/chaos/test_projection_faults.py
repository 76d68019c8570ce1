"""Projector kill -9 (T3 for the projector) and a PouchDB Server outage (T7), on a private Kafka + PouchDB.

The projector commits offsets after writing, and skips events a document already holds, so a crash re-reads
a batch without writing it twice (every entity doc stays at revision 1; an activation doc, written blind with
the revision of its event, keeps exactly that one revision). While CouchDB is down the API answers reads
with 503, still accepts entity writes (they are events), and the projector catches up when it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from api.app import DB_UNAVAILABLE
from cli import services
from contracts.settings import Settings
from projections import views
from tests.chaos import faults
from tests.chaos.conftest import LONG
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.chaos

OUTAGE_S = 30.0 if LONG else 10.0


@pytest.fixture(scope="module")
def pstack(private_infra: Settings) -> Iterator[Stack]:
    s = start_stack(private_infra)
    yield s
    s.stop()


def _docs(stack: Stack, db: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    s = stack.settings
    r = requests.post(f"{s.couchdb}/{s.db(db)}/_all_docs", json={"keys": sorted(ids)}, timeout=30)
    r.raise_for_status()
    return {row["id"]: row["value"] for row in r.json()["rows"] if "value" in row and not row.get("error")}


def test_kill_projector(pstack: Stack) -> None:
    c = pstack.client()
    faults.put_action(c, "quick", "def main(a):\n    return {'i': a.get('i')}\n")
    names: list[str] = []
    aids: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            if c.put(f"actions/pk{i}", {"exec": {"kind": "python:3", "code": "def main(a): return a"}},
                     overwrite=True).status_code == 200:
                names.append(f"guest/pk{i}")
            r = c.post("actions/quick", {"i": i})
            if r.status_code == 202:
                aids.append(r.json()["activationId"])
            i += 1

    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(3)
        faults.kill9(pstack.settings, "projections")
        time.sleep(4)
        t_restart = time.monotonic()
        faults.restart(pstack, "projections")
        time.sleep(4)
    finally:
        stop.set()
        t.join(60)
    want_acts = {f"guest/{a}" for a in aids}
    faults.wait_until("projections caught up", lambda: len(_docs(pstack, "whisks", set(names))) == len(names)
                      and len(_docs(pstack, "activations", want_acts)) == len(want_acts), 60)
    catch_up = time.monotonic() - t_restart
    docs = {**_docs(pstack, "whisks", set(names)), **_docs(pstack, "activations", want_acts)}
    rewritten = [i for i, v in docs.items() if i not in want_acts and not v["rev"].startswith("1-")]
    s = pstack.settings
    r = requests.post(f"{s.couchdb}/{s.db('activations')}/_all_docs?include_docs=true&conflicts=true",
                      json={"keys": sorted(want_acts)}, timeout=30)
    r.raise_for_status()
    for row in r.json()["rows"]:  # one revision each, the one of its event: a redelivery added no other
        d = row["doc"]
        if d.get("_conflicts") or d["_rev"] != views.revision(d["wsk_partition"], d["wsk_offset"]):
            rewritten.append(d["_id"])
    assert not rewritten, rewritten  # no event applied twice
    assert len(docs) == len(names) + len(want_acts)
    faults.report("projector_kill", {"entities_put": len(names), "activations": len(aids), "lost": 0,
                                     "docs_written_twice": len(rewritten), "projector_down_s": 4,
                                     "caught_up_after_restart_s": round(catch_up, 1), "traffic_after_restart_s": 4})


def test_pouchdb_outage(pstack: Stack, private_infra: Settings) -> None:
    # Its own subject with high limits: the guest's 60 invocations a minute may be spent by the test before.
    c = pstack.client(pstack.subject("outage", limits={"invocationsPerMinute": 100000, "concurrentInvocations": 100}))
    faults.put_action(c, "slow", "import time\ndef main(a):\n    time.sleep(3)\n    return {'i': a.get('i')}\n")
    running = [c.post("actions/slow", {"i": i}).json()["activationId"] for i in range(4)]

    t_stop = time.monotonic()
    faults.kill9(private_infra, "couchdb")
    answers: list[tuple[str, int, float]] = []
    puts: list[str] = []

    def put(i: int) -> None:  # accepted as an event; read-your-writes waits for the projector, then answers
        r = c.put(f"actions/during{i}", {"exec": {"kind": "python:3", "code": "def main(a): return a"}},
                  overwrite=True)
        answers.append(("put", r.status_code, 0.0))
        if r.status_code == 200:
            puts.append(f"outage/during{i}")

    writers = [threading.Thread(target=put, args=(i,)) for i in range(3)]
    for w in writers:
        w.start()
    invoked: list[str] = []
    while time.monotonic() - t_stop < OUTAGE_S:
        # The API keeps whisk docs it saw decided on the entity log, so entity reads and invokes go on without
        # CouchDB; view queries (lists) need CouchDB and answer 503.
        for what, call, want in (("get", lambda: c.get("actions/slow"), 200),
                                 ("list", lambda: c.get("activations"), 503),
                                 ("invoke", lambda: c.post("actions/slow", {"i": -1}), 202)):
            r, took = faults.timed(call)
            assert isinstance(r, requests.Response), r
            answers.append((what, r.status_code, took))
            assert r.status_code == want, (what, r.status_code, r.text)
            if want == 503:
                assert r.json()["error"] == DB_UNAVAILABLE and r.json()["code"]
            if what == "invoke":
                invoked.append(r.json()["activationId"])
        time.sleep(1)
    t_start = time.monotonic()
    services.start_couch(private_infra, faults.say)
    for w in writers:
        w.join(60)
    assert len(puts) == 3, answers  # entity writes were accepted during the outage
    want = {f"outage/{a}" for a in running + invoked}
    faults.wait_until("records after the outage", lambda: len(_docs(pstack, "activations", want)) == len(want)
                      and len(_docs(pstack, "whisks", set(puts))) == len(puts), 60)
    catch_up = time.monotonic() - t_start
    assert c.get("actions/during0").status_code == 200
    assert all(d["response"]["success"] for d in faults.records(pstack, "outage", running).values())
    faults.report("pouchdb_outage", {
        "outage_s": OUTAGE_S, "requests_during": len(answers), "non_503_5xx": 0,
        "max_503_s": round(max(t for _, st, t in answers if st == 503), 2), "writes_accepted_during": len(puts),
        "activations_completed_during": len(running), "invokes_accepted_during": len(invoked), "lost": 0,
        "catch_up_after_restart_s": round(catch_up, 1),
    })
