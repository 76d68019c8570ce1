"""The activations API over projected records: list filters, get, /result, /logs and the 400s for bad input."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

CODE = "def main(a):\n    print('n is', a.get('n'))\n    return {'n': a.get('n')}\n"
SUMMARY_KEYS = {"namespace", "name", "version", "publish", "annotations", "activationId", "start", "end",
                "duration", "statusCode"}


@pytest.fixture(scope="module")
def acts(stack: Stack) -> dict[str, Any]:
    """A namespace with 4 activations of `a`, 1 of `pkg/b`, one failing `c`: (client, ids, timestamps)."""
    c = stack.client(stack.subject(f"acts{uuid.uuid4().hex[:6]}"))
    assert c.put("actions/a", {"exec": {"kind": "python:3", "code": CODE}}).status_code == 200
    assert c.put("packages/pkg", {}).status_code == 200
    assert c.put("actions/pkg/b", {"exec": {"kind": "python:3", "code": CODE}}).status_code == 200
    assert c.put("actions/c", {"exec": {"kind": "python:3", "code": "def main(a):\n    return {'error': 1}"}}
                 ).status_code == 200
    ids, starts = [], []
    for n in range(4):
        rec = c.post("actions/a", {"n": n}, blocking=True).json()
        ids.append(rec["activationId"])
        starts.append(rec["start"])
        time.sleep(0.05)
    b = c.post("actions/pkg/b", {"n": 9}, blocking=True).json()
    failed = c.post("actions/c", {}, blocking=True).json()
    deadline = time.monotonic() + 15  # lists read the projection: wait until it holds all six
    while c.get("activations", count=True).json() != {"activations": 6} and time.monotonic() < deadline:
        time.sleep(0.2)
    return {"c": c, "a": ids, "starts": starts, "b": b["activationId"], "failed": failed["activationId"]}


def test_list_summaries_newest_first(acts: dict[str, Any]) -> None:
    c: Client = acts["c"]
    listed = c.get("activations").json()
    assert len(listed) == 6
    assert all(set(s) == SUMMARY_KEYS for s in listed), listed[0]
    assert [s["start"] for s in listed] == sorted((s["start"] for s in listed), reverse=True)
    assert listed[0]["activationId"] == acts["failed"] and listed[0]["statusCode"] == 1
    assert c.get("activations", count=True).json() == {"activations": 6}


def test_list_by_name_limit_skip(acts: dict[str, Any]) -> None:
    c: Client = acts["c"]
    newest_first = list(reversed(acts["a"]))
    assert [s["activationId"] for s in c.get("activations", name="a").json()] == newest_first
    assert [s["activationId"] for s in c.get("activations", name="a", limit=2).json()] == newest_first[:2]
    assert [s["activationId"] for s in c.get("activations", name="a", limit=2, skip=1).json()] == newest_first[1:3]
    assert [s["activationId"] for s in c.get("activations", name="pkg/b").json()] == [acts["b"]]
    assert c.get("activations", name="a", count=True).json() == {"activations": 4}
    assert c.get("activations", name="nothing").json() == []
    assert len(c.get("activations", limit=0).json()) == 6  # 0 = the maximum


def test_list_since_upto(acts: dict[str, Any]) -> None:
    c: Client = acts["c"]
    s = acts["starts"]
    got = [x["activationId"] for x in c.get("activations", name="a", since=s[1], upto=s[2]).json()]
    assert got == [acts["a"][2], acts["a"][1]]
    assert len(c.get("activations", name="a", since=s[3]).json()) == 1
    assert len(c.get("activations", name="a", upto=s[0]).json()) == 1


def test_list_docs(acts: dict[str, Any]) -> None:
    c: Client = acts["c"]
    docs = c.get("activations", name="a", docs=True, limit=1).json()
    assert len(docs) == 1 and docs[0]["activationId"] == acts["a"][-1]
    assert docs[0]["response"]["result"] == {"n": 3} and any("stdout: n is 3" in x for x in docs[0]["logs"])
    r = c.get("activations", docs=True, count=True)
    assert r.status_code == 400 and r.json()["error"] == "The parameter 'docs' is not permitted with 'count'."


def test_get_result_logs(acts: dict[str, Any]) -> None:
    c: Client = acts["c"]
    aid = acts["a"][0]
    rec = c.get(f"activations/{aid}").json()
    assert rec["activationId"] == aid and rec["name"] == "a" and rec["publish"] is False
    assert set(rec) >= {"namespace", "name", "subject", "activationId", "start", "end", "duration", "response",
                        "logs", "version", "publish", "annotations"}
    assert rec["response"] == {"result": {"n": 0}, "size": 7, "status": "success", "success": True}
    assert rec["duration"] == rec["end"] - rec["start"]
    ann = {a["key"]: a["value"] for a in rec["annotations"]}
    assert set(ann) >= {"path", "waitTime", "kind", "limits", "timeout"}
    assert ann["path"] == f"{rec['namespace']}/a" and ann["kind"] == "python:3" and ann["timeout"] is False
    assert ann["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    assert c.get(f"activations/{aid}/result").json() == rec["response"]
    logs = c.get(f"activations/{aid}/logs").json()
    assert list(logs) == ["logs"] and logs["logs"] == rec["logs"] and logs["logs"][0].endswith("stdout: n is 0")
    b = c.get(f"activations/{acts['b']}").json()
    assert {a["key"]: a["value"] for a in b["annotations"]}["path"] == f"{rec['namespace']}/pkg/b"
    failed = c.get(f"activations/{acts['failed']}/result").json()
    assert failed == {"result": {"error": 1}, "size": 11, "status": "application error", "success": False}


@pytest.mark.parametrize(("path", "params", "message"), [
    ("activations/abc", {}, "Activation id length is 3 but must be 32."),
    ("activations/" + "g" * 32, {}, "The activation id is not valid."),
    ("activations/" + "g" * 32 + "/logs", {}, "The activation id is not valid."),
    ("activations", {"since": "yesterday"}, "Parameter is not a valid value for epoch seconds: yesterday"),
    ("activations", {"upto": "1.5"}, "Parameter is not a valid value for epoch seconds: 1.5"),
    ("activations", {"name": "a/b/c"}, "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c"),
    ("activations", {"limit": "201"},
     "The query parameter 'limit' was malformed:\nThe value '201' is not in the range of 0 to 200 for activations."),
    ("activations", {"skip": "x"},
     "The query parameter 'skip' was malformed:\nThe value 'x' is not an integer for activations."),
])
def test_bad_input_is_400(acts: dict[str, Any], path: str, params: dict[str, str], message: str) -> None:
    r = acts["c"].get(path, **params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == message


def test_unknown_and_foreign_activations(acts: dict[str, Any], stack: Stack) -> None:
    c: Client = acts["c"]
    r = c.get("activations/" + "0" * 32)
    assert r.status_code == 404 and r.json()["error"] == "The requested resource does not exist."
    key = stack.subject(f"other{uuid.uuid4().hex[:6]}")
    r = stack.client(key).get(f"activations/{acts['a'][0]}")
    assert r.status_code == 404  # records are per namespace: another one never sees it
    ns = c.get(f"activations/{acts['a'][0]}").json()["namespace"]
    r = stack.client(key, namespace=ns).get("activations")
    assert r.status_code == 403
