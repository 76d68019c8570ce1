"""The log is the truth: delete every projection database, replay, get the same documents back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
import requests

from cli.audit import read_log
from cli.services import settings_env
from contracts import bus, events
from contracts.events import DeadLetter
from contracts.settings import REPO, Settings
from contracts.topics import Topics
from projections import catalog
from projections.couch import Couch
from tests.stack import Stack

pytestmark = pytest.mark.integration

CODE = "def main(args):\n    return {'n': args.get('n', 0)}\n"
Snapshot = dict[str, dict[str, dict[str, Any]]]


def snapshot(couch: Couch, dbs: dict[str, str]) -> Snapshot:
    return {view: {d["_id"]: {k: v for k, v in d.items() if k != "_rev"} for d in couch.all_docs(db)}
            for view, db in dbs.items()}


def replay_cli(settings: Settings, *args: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--json", *args], env=settings_env(settings),
                       cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out: dict[str, Any] = orjson.loads(p.stdout.strip().splitlines()[-1])
    return out


def send_raw(settings: Settings, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
    async def go() -> None:
        p = bus.producer(settings.kafka)
        await p.start()
        try:
            for key, value in values:
                await p.send_and_wait(topic, value, key=key)
        finally:
            await p.stop()

    asyncio.run(go())


def wait_stable(couch: Couch, dbs: dict[str, str], timeout: float = 20.0) -> Snapshot:
    """The projections once the projector has been quiet for a moment."""
    deadline = time.monotonic() + timeout
    last = snapshot(couch, dbs)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = snapshot(couch, dbs)
        if now == last:
            return now
        last = now
    raise TimeoutError("projections did not settle")


@pytest.fixture(scope="module")
def history(stack: Stack) -> Snapshot:
    """A scripted history through the REST API, plus an event of the previous schema version in the log."""
    alice = stack.client(stack.subject("replay-alice"))
    guest = stack.client()
    for i in range(3):
        assert alice.put(f"actions/r{i}", {"exec": {"kind": "python:3", "code": CODE}}).status_code == 200
    assert alice.put("actions/r1", {"exec": {"kind": "python:3", "code": CODE + "#2\n"}},
                     overwrite=True).status_code == 200
    assert alice.delete("actions/r2").status_code == 200
    assert alice.put("packages/rpkg", {"parameters": [{"key": "p", "value": 1}]}).status_code == 200
    assert alice.put("actions/rpkg/inner", {"exec": {"kind": "python:3", "code": CODE}}).status_code == 200
    assert alice.put("actions/r0", {}, overwrite=False).status_code == 409  # rejected: no doc change
    # an API gateway route: an `api` entity, rebuilt like the others
    assert guest.put("actions/rweb", {"exec": {"kind": "python:3", "code": CODE}, "annotations": [
        {"key": "web-export", "value": True}]}, overwrite=True).status_code == 200
    route = {"apidoc": {"namespace": "_", "gatewayBasePath": "/rbase", "gatewayPath": "/n", "gatewayMethod": "GET",
                        "action": {"name": "rweb", "namespace": "_", "backendMethod": "GET",
                                   "backendUrl": f"{stack.url}/api/v1/web/_/default/rweb.http"}}}
    assert requests.post(f"{stack.url}/api/v1/web/whisk.system/apimgmt/createApi", json=route, auth=guest.auth,
                         timeout=60).status_code == 200
    for n in range(3):
        assert alice.post("actions/r0", {"n": n}, blocking=True).status_code == 200
    assert guest.put("triggers/rtrig", {}, overwrite=True).status_code == 200
    # v0 shape of entity.changed (no `v`, none of the later fields), as an older writer left it in the log.
    legacy = {"type": "entity.changed", "event_id": events.new_id(), "at": events.now_ms(), "request_id": "legacy",
              "subject": "legacy", "op": "put", "entity_type": "action", "doc_id": "legacy/old",
              "writes": [["legacy/old", {"namespace": "legacy", "name": "old", "entityType": "action",
                                         "version": "0.0.1", "exec": {"kind": "python:3", "code": CODE},
                                         "updated": events.now_ms()}]]}
    send_raw(stack.settings, Topics(stack.settings.prefix).entities, [(b"legacy", orjson.dumps(legacy))])
    couch = Couch(stack.settings.couchdb)
    snap = wait_stable(couch, catalog.read(couch, stack.settings).dbs)
    assert "legacy/old" in snap["whisks"]  # the live projector applied the old version too
    return snap


def test_delete_all_databases_and_replay_in_place(stack: Stack, history: Snapshot) -> None:
    s = stack.settings
    couch = Couch(s.couchdb)
    dbs = catalog.read(couch, s).dbs
    assert history["whisks"] and history["activations"] and history["subjects"]
    for db in dbs.values():
        couch.delete_db(db)
    assert not any(couch.db_exists(db) for db in dbs.values())
    out = replay_cli(s, "--in-place")
    assert out["events"] >= sum(len(v) for v in history.values()) and not out["switched"]
    assert snapshot(couch, dbs) == history  # document for document, source offsets included
    out = replay_cli(s, "--in-place")  # again: nothing to do, nothing changes
    assert out["docs"] == 0 and snapshot(couch, dbs) == history
    c = stack.client()  # the API reads the rebuilt views (views are recreated too)
    assert c.get("triggers/rtrig").status_code == 200
    assert "guest/api:/rbase" in history["whisks"]
    apis = requests.get(f"{stack.url}/api/v1/web/whisk.system/apimgmt/getApi", params={"basepath": "/rbase"},
                        auth=c.auth, timeout=60).json()["apis"]
    assert [a["value"]["apidoc"]["paths"]["/n"]["get"]["x-openwhisk"]["action"] for a in apis] == ["rweb"]
    assert c.get("triggers", limit=5).status_code == 200


def test_fresh_generation_equals_live_and_the_switch_is_followed(stack: Stack, history: Snapshot) -> None:
    s = stack.settings
    couch = Couch(s.couchdb)
    live = catalog.read(couch, s)
    side = replay_cli(s, "--no-switch")  # built beside the live projection
    assert side["generation"] > live.generation and not side["switched"]
    assert snapshot(couch, side["dbs"]) == snapshot(couch, live.dbs)
    again = replay_cli(s, "--no-switch", "--generation", str(side["generation"]))
    assert snapshot(couch, again["dbs"]) == snapshot(couch, side["dbs"])  # replaying twice: identical

    switched = replay_cli(s, "--generation", str(side["generation"] + 1))
    assert switched["switched"] and catalog.read(couch, s).generation == side["generation"] + 1
    time.sleep(catalog.FOLLOW_INTERVAL_S * 2.5)  # API and projector re-read the pointer about once a second
    c = stack.client()
    assert c.put("actions/after-switch", {"exec": {"kind": "python:3", "code": CODE}}).status_code == 200
    assert c.get("actions/after-switch").status_code == 200  # read-your-writes through the new generation
    assert "guest/after-switch" in {d["_id"] for d in couch.all_docs(switched["dbs"]["whisks"])}
    assert "guest/after-switch" not in {d["_id"] for d in couch.all_docs(live.dbs["whisks"])}
    assert c.post("actions/after-switch", {}, blocking=True).status_code == 200

    # Back to generation 0 (other tests read <prefix>_whisks directly); --drop-old removes the one we leave.
    back = replay_cli(s, "--generation", "0", "--drop-old")
    assert back["switched"] and catalog.read(couch, s).generation == 0
    assert not couch.db_exists(switched["dbs"]["whisks"])
    time.sleep(catalog.FOLLOW_INTERVAL_S * 2.5)
    assert c.get("actions/after-switch").status_code == 200
    for g in range(1, side["generation"] + 1):  # tidy the side generations
        for db in catalog.names(s, g).values():
            couch.delete_db(db)


def test_a_partial_fresh_replay_is_refused(stack: Stack) -> None:
    p = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--from-offset", "3"],
                       env=settings_env(stack.settings), cwd=REPO, capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == 2 and "partial" in p.stderr


def test_poison_event_goes_to_the_dead_letter_topic_and_projection_goes_on(stack: Stack) -> None:
    s, t = stack.settings, Topics(stack.settings.prefix)
    bad_writes = orjson.dumps({"type": "entity.changed", "request_id": "x", "subject": "guest", "op": "put",
                               "entity_type": "action", "doc_id": "guest/p", "writes": [["guest/p", 42]]})
    send_raw(s, t.entities, [(b"guest", b"\xff not json at all"), (b"guest", bad_writes)])
    c = stack.client()
    assert c.put("actions/after-poison", {"exec": {"kind": "python:3", "code": CODE}}).status_code == 200
    assert c.get("actions/after-poison").status_code == 200

    deadline = time.monotonic() + 20
    mine: list[DeadLetter] = []
    while time.monotonic() < deadline and len(mine) < 2:
        mine = [ev for _, _, _, ev in asyncio.run(read_log(s, [t.deadletter]))
                if isinstance(ev, DeadLetter) and ev.topic == t.entities]
        time.sleep(0.5)
    reasons = " | ".join(d.reason for d in mine)
    assert len(mine) >= 2 and "not JSON" in reasons and "write is not" in reasons, reasons
    assert any("not json at all" in d.raw for d in mine)
    out = replay_cli(s, "--no-switch")  # replay skips (and reports) them too
    assert {(p["topic"], p["offset"]) for p in out["poison_events"]} >= {(d.topic, d.offset) for d in mine}
    for db in out["dbs"].values():
        Couch(s.couchdb).delete_db(db)
