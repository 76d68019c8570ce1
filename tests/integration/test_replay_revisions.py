"""Activations written without a read (`new_edits: false`, revisions from the log position), on the real server.

Only Kafka and the CouchDB API are needed (the `infra` fixture): the live projector runs in this process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from bench.replay import drop, history, write_log
from cli.services import settings_env
from contracts.events import ActivationCompleted
from contracts.settings import REPO, Settings
from projections import catalog, runner, views
from projections.couch import Couch
from projections.runner import Batch, project_batch

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(infra: Settings) -> Iterator[Settings]:
    s = dataclasses.replace(infra, prefix=f"rv{uuid.uuid4().hex[:8]}")
    yield s
    asyncio.run(drop(s))


def completion(aid: str, status: str) -> ActivationCompleted:
    rec = {"namespace": "guest", "name": "a", "activationId": aid, "start": 1, "annotations": [],
           "response": {"status": status, "success": status == "success"}}
    return ActivationCompleted(activation_id=aid, namespace="guest", record=rec)


def update_seq(couch: Couch, db: str) -> Any:
    r = couch.http.get(f"{couch.url}/{db}", timeout=30)
    r.raise_for_status()
    return r.json()["update_seq"]


def test_the_server_keeps_the_highest_offset_and_ignores_repeats(settings: Settings) -> None:
    couch = Couch(settings.couchdb)
    dbs = catalog.names(settings, 0)
    catalog.ensure_databases(couch, dbs)
    db = dbs[views.ACTIVATIONS]
    watchdog: Batch = [(0, 9, completion("x1", "whisk internal error"))]
    late: Batch = [(0, 10, completion("x1", "success")), (0, 11, completion("x2", "success"))]
    project_batch(couch, dbs, late)
    project_batch(couch, dbs, watchdog)  # older, written after: a losing leaf
    doc = couch.get(db, "guest/x1")
    assert doc is not None and doc["response"]["status"] == "success" and doc["wsk_offset"] == 10
    assert doc["_rev"] == views.revision(0, 10)
    listed = {d["_id"]: d for d in couch.all_docs(db)}
    assert listed["guest/x1"] == doc and set(listed) == {"guest/x1", "guest/x2"}
    r = couch.http.get(f"{couch.url}/{db}/_design/activations/_view/by_namespace?reduce=false", timeout=30)
    assert [row["id"] for row in r.json()["rows"]] == ["guest/x1", "guest/x2"]  # the view holds the winner only

    seq = update_seq(couch, db)
    for batch in (watchdog, late, watchdog + late):  # redelivery: nothing stored
        project_batch(couch, dbs, batch)
    assert update_seq(couch, db) == seq and {d["_id"]: d for d in couch.all_docs(db)} == listed
    assert project_batch(couch, dbs, watchdog + late, None, False) == 0  # in place: read, nothing to write


def snapshot(couch: Couch, dbs: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {view: {d["_id"]: d for d in couch.all_docs(db)} for view, db in dbs.items()}


def test_live_projection_and_replay_are_identical_revisions_included_for_activations(settings: Settings) -> None:
    hist = history(activations=600, entities=40, subjects=5)
    asyncio.run(write_log(settings, hist))
    couch = Couch(settings.couchdb)
    live = catalog.names(settings, 0)

    async def project_live() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(settings, "rv-projector", stop))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            acts = await asyncio.to_thread(lambda: couch.db_exists(live[views.ACTIVATIONS])
                                           and len(couch.all_docs(live[views.ACTIVATIONS])))
            if acts == 600:
                break
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(project_live())
    before = snapshot(couch, live)
    assert len(before[views.ACTIVATIONS]) == 600 and before[views.WHISKS] and before[views.SUBJECTS]

    p = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--json", "--no-switch", "--batch", "250"],
                       env=settings_env(settings), cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out = orjson.loads(p.stdout.strip().splitlines()[-1])
    fresh = snapshot(couch, out["dbs"])
    assert fresh[views.ACTIVATIONS] == before[views.ACTIVATIONS]  # `_rev` included: the same revisions
    for view in (views.WHISKS, views.SUBJECTS):  # these get server-made revisions: compared without `_rev`
        assert {i: {k: v for k, v in d.items() if k != "_rev"} for i, d in fresh[view].items()} == \
            {i: {k: v for k, v in d.items() if k != "_rev"} for i, d in before[view].items()}

    p = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--json", "--in-place"],
                       env=settings_env(settings), cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert orjson.loads(p.stdout.strip().splitlines()[-1])["docs"] == 0  # in place over itself: nothing to do
    assert snapshot(couch, live) == before
