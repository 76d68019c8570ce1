"""Sequences and conductor actions on the running stack."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_triggers import wait_activation
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

INC = "def main(args):\n    return {'n': args.get('n', 0) + args.get('step', 1)}\n"
DOUBLE = "def main(args):\n    return {'n': args['n'] * 2}\n"
FAIL = "def main(args):\n    return {'error': 'boom at ' + str(args.get('n'))}\n"
LISTY = "def main(args):\n    return [args['n'], args['n']]\n"
CONDUCTOR = (
    "def main(args):\n"
    "    step = args.get('step', 0)\n"
    "    if step < 2:\n"
    "        return {'action': 'sq_inc', 'params': {'n': args['n']}, 'state': {'step': step + 1}}\n"
    "    return {'params': {'n': args['n'], 'done': True}}\n"
)


def put_action(c: Client, name: str, code: str, **extra: Any) -> None:
    r = c.put(f"actions/{name}", {"exec": {"kind": "python:3", "code": code}, **extra}, overwrite=True)
    assert r.status_code == 200, r.text


def put_seq(c: Client, name: str, comps: list[str]) -> Any:
    return c.put(f"actions/{name}", {"exec": {"kind": "sequence", "components": comps}}, overwrite=True)


def ann(rec: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in rec["annotations"]}


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    c = stack.client()
    put_action(c, "sq_inc", INC, parameters=[{"key": "step", "value": 1}])
    put_action(c, "sq_double", DOUBLE)
    put_action(c, "sq_fail", FAIL)
    return c


def test_sequence_chains_components(c: Client) -> None:
    assert put_seq(c, "seq1", ["/_/sq_inc", "/_/sq_double", "sq_inc"]).status_code == 200
    r = c.post("actions/seq1", {"n": 1}, blocking=True)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["response"]["result"] == {"n": 5} and rec["response"]["success"]
    assert r.headers["x-openwhisk-activation-id"] == rec["activationId"]
    a = ann(rec)
    assert a["topmost"] is True and a["kind"] == "sequence" and a["path"] == "guest/seq1"
    assert "cause" not in rec and len(rec["logs"]) == 3
    comps = [wait_activation(c, i) for i in rec["logs"]]
    assert [x["name"] for x in comps] == ["sq_inc", "sq_double", "sq_inc"]
    assert all(x["cause"] == rec["activationId"] and ann(x)["causedBy"] == "sequence" for x in comps)
    assert rec["duration"] == sum(x["duration"] for x in comps)
    stored = wait_activation(c, rec["activationId"])
    assert stored["logs"] == rec["logs"]
    assert c.post("actions/seq1", {"n": 10}, blocking=True, result=True).json() == {"n": 23}


def test_sequence_stops_at_first_error(c: Client) -> None:
    assert put_seq(c, "seq2", ["sq_inc", "sq_fail", "sq_double"]).status_code == 200
    r = c.post("actions/seq2", {"n": 1}, blocking=True)
    assert r.status_code == 502, r.text
    rec = r.json()
    assert rec["response"]["result"] == {"error": "boom at 2"}
    assert rec["response"]["status"] == "application error"
    assert len(rec["logs"]) == 2


def test_nested_sequence_and_array_results(c: Client) -> None:
    put_action(c, "sq_list", LISTY)
    assert put_seq(c, "inner", ["sq_double"]).status_code == 200
    assert put_seq(c, "outer", ["sq_inc", "inner", "sq_list"]).status_code == 200
    r = c.post("actions/outer", {"n": 1}, blocking=True)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["response"]["result"] == [4, 4]
    inner = wait_activation(c, rec["logs"][1])
    assert inner["name"] == "inner" and inner["cause"] == rec["activationId"]
    assert ann(inner)["causedBy"] == "sequence" and "topmost" not in ann(inner)
    assert wait_activation(c, inner["logs"][0])["cause"] == inner["activationId"]


def test_sequence_limits_and_missing_component(c: Client) -> None:
    r = put_seq(c, "toolong", ["sq_inc"] * 51)
    assert r.status_code == 400 and r.json()["error"] == "Too many actions in the sequence."
    assert put_seq(c, "half", ["sq_inc"] * 26).status_code == 200
    r = put_seq(c, "nested_too_long", ["half", "half"])
    assert r.status_code == 400 and r.json()["error"] == "Too many actions in the sequence."
    put_action(c, "sq_gone", INC)
    assert put_seq(c, "seq3", ["sq_inc", "sq_gone"]).status_code == 200
    assert c.delete("actions/sq_gone").status_code == 200
    r = c.post("actions/seq3", {"n": 1}, blocking=True)
    assert r.status_code == 502 and r.json()["response"]["result"] == {"error": "Sequence component does not exist."}


def test_sequence_non_blocking(c: Client) -> None:
    assert put_seq(c, "seq4", ["sq_inc"]).status_code == 200
    r = c.post("actions/seq4", {"n": 41})
    assert r.status_code == 202
    rec = wait_activation(c, r.json()["activationId"])
    assert rec["response"]["result"] == {"n": 42}


def test_conductor(c: Client) -> None:
    put_action(c, "cond", CONDUCTOR, annotations=[{"key": "conductor", "value": True}])
    r = c.post("actions/cond", {"n": 1}, blocking=True)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["response"]["result"] == {"n": 3, "done": True}
    a = ann(rec)
    assert a["conductor"] is True and a["topmost"] is True
    names = [wait_activation(c, i)["name"] for i in rec["logs"]]
    assert names == ["cond", "sq_inc", "cond", "sq_inc", "cond"]
