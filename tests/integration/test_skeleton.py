"""The walking skeleton through nginx: PUT an action, invoke it blocking, read the activation back."""

from __future__ import annotations

import time

import pytest
import requests

from tests.stack import Stack

pytestmark = pytest.mark.integration

CODE = (
    "def main(args):\n"
    "    print('hello from', args.get('name'))\n"
    "    return {'greeting': 'Hello ' + args.get('name', 'world')}\n"
)


def test_put_invoke_read_back(stack: Stack) -> None:
    c = stack.client()
    r = c.put("actions/hello", {"exec": {"kind": "python:3", "code": CODE}}, overwrite=True)
    assert r.status_code == 200, r.text
    assert r.json()["exec"]["kind"] == "python:3"
    got = c.get("actions/hello")
    assert got.status_code == 200 and got.json()["exec"]["code"] == CODE  # read-your-writes

    r = c.post("actions/hello", {"name": "Kafka"}, blocking=True)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["response"] == {"status": "success", "success": True, "result": {"greeting": "Hello Kafka"},
                               "size": len('{"greeting":"Hello Kafka"}')}
    assert r.headers["x-openwhisk-activation-id"] == rec["activationId"]
    assert len(rec["activationId"]) == 32

    stored = c.get(f"activations/{rec['activationId']}")
    assert stored.status_code == 200, stored.text
    doc = stored.json()
    assert doc["response"]["result"] == {"greeting": "Hello Kafka"}
    assert any(line.endswith("stdout: hello from Kafka") for line in doc["logs"]), doc["logs"]
    ann = {a["key"]: a["value"] for a in doc["annotations"]}
    assert ann["path"] == "guest/hello" and ann["kind"] == "python:3"
    assert c.get(f"activations/{rec['activationId']}/result").json()["result"] == {"greeting": "Hello Kafka"}


def test_every_step_is_an_event_and_a_projection(stack: Stack) -> None:
    """The entity and the activation are in CouchDB as projections written from the Kafka log."""
    c = stack.client()
    c.put("actions/evt", {"exec": {"kind": "python:3", "code": "def main(a):\n    return {'ok': True}"}},
          overwrite=True)
    aid = c.post("actions/evt", {}, blocking=True).json()["activationId"]
    couch = stack.settings.couchdb
    whisk = requests.get(f"{couch}/{stack.settings.db('whisks')}/guest%2Fevt", headers={"Accept": "application/json"})
    assert whisk.status_code == 200 and whisk.json()["entityType"] == "action"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        act = requests.get(f"{couch}/{stack.settings.db('activations')}/guest%2F{aid}",
                           headers={"Accept": "application/json"})
        if act.status_code == 200:
            break
        time.sleep(0.1)
    assert act.status_code == 200 and act.json()["activationId"] == aid
