"""Trigger fire -> rules agent -> rule actions, on the running stack."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

ECHO = "def main(args):\n    return {k: v for k, v in args.items() if not k.startswith('__')}\n"


def wait_activation(c: Client, aid: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.get(f"activations/{aid}")
        if r.status_code == 200:
            return dict(r.json())
        time.sleep(0.2)
    raise AssertionError(f"activation {aid} not found")


def setup_rule(c: Client, trigger: str, rule: str, action: str, params: list[dict[str, Any]] | None = None) -> None:
    assert c.put(f"actions/{action}", {"exec": {"kind": "python:3", "code": ECHO}}, overwrite=True).status_code == 200
    r = c.put(f"triggers/{trigger}", {"parameters": params or []}, overwrite=True)
    assert r.status_code == 200, r.text
    r = c.put(f"rules/{rule}", {"trigger": f"/_/{trigger}", "action": f"/_/{action}"}, overwrite=True)
    assert r.status_code == 200, r.text


def test_fire_without_rules_is_204_and_missing_is_404(stack: Stack) -> None:
    c = stack.client()
    assert c.put("triggers/lonely", {}, overwrite=True).status_code == 200
    r = c.post("triggers/lonely", {"a": 1})
    assert r.status_code == 204 and r.text == ""
    r = c.post("triggers/nosuchtrigger", {})
    assert r.status_code == 404 and r.json()["error"] == "The requested resource does not exist."


def test_fire_runs_active_rules_with_merged_params(stack: Stack) -> None:
    c = stack.client()
    setup_rule(c, "t1", "r1", "echo1", [{"key": "from_trigger", "value": "t"}, {"key": "x", "value": "trigger"}])
    r = c.post("triggers/t1", {"x": "payload"})
    assert r.status_code == 202, r.text
    tid = r.json()["activationId"]
    assert r.headers["x-openwhisk-activation-id"] == tid
    rec = wait_activation(c, tid)
    assert rec["name"] == "t1" and rec["response"]["result"] == {"x": "payload"} and rec["response"]["success"]
    assert rec["annotations"] == [] and "end" not in rec
    assert len(rec["logs"]) == 1
    line = json.loads(rec["logs"][0])
    assert line["statusCode"] == 0 and line["success"] is True
    assert line["rule"] == "guest/r1" and line["action"] == "guest/echo1"
    assert list(line) == ["statusCode", "success", "activationId", "rule", "action"]
    act = wait_activation(c, line["activationId"])
    assert act["response"]["result"] == {"from_trigger": "t", "x": "payload"}
    assert "cause" not in act


def test_rule_deactivated_mid_stream(stack: Stack) -> None:
    """Fires keep flowing while the rule is switched off and on: each fire sees the state at that moment."""
    c = stack.client()
    setup_rule(c, "t2", "r2", "echo2")
    assert c.post("triggers/t2", {"n": 1}).status_code == 202
    assert c.post("rules/r2", {"status": "inactive"}).status_code == 200
    assert c.get("rules/r2").json()["status"] == "inactive"
    assert c.post("triggers/t2", {"n": 2}).status_code == 204
    assert c.post("rules/r2", {"status": "active"}).status_code == 200
    r = c.post("triggers/t2", {"n": 3})
    assert r.status_code == 202
    # A second rule on the same trigger: the record logs one line per active rule.
    setup_rule(c, "t2", "r2b", "echo2b")
    assert c.post("rules/r2", {"status": "inactive"}).status_code == 200
    rec = wait_activation(c, c.post("triggers/t2", {"n": 4}).json()["activationId"])
    assert [json.loads(x)["rule"] for x in rec["logs"]] == ["guest/r2b"]


def test_rule_with_missing_action_logs_an_error(stack: Stack) -> None:
    c = stack.client()
    setup_rule(c, "t3", "r3", "echo3")
    assert c.delete("actions/echo3").status_code == 200
    r = c.post("triggers/t3", {})
    assert r.status_code == 202
    line = json.loads(wait_activation(c, r.json()["activationId"])["logs"][0])
    assert line == {"statusCode": 1, "success": False, "error": "The requested resource does not exist.",
                    "rule": "guest/r3", "action": "guest/echo3"}


def test_fires_per_minute_throttle(stack: Stack) -> None:
    key = stack.subject("firelimited", limits={"firesPerMinute": 2})
    c = stack.client(key)
    assert c.put("triggers/tt", {}, overwrite=True).status_code == 200
    # Stay inside one wall-clock minute so the fixed window does not reset mid-test.
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    codes = [c.post("triggers/tt", {}).status_code for _ in range(3)]
    assert codes == [204, 204, 429]
    r = c.post("triggers/tt", {})
    assert r.json()["error"] == "Too many requests in the last minute (count: 3, allowed: 2)."


def test_rule_on_a_sequence_runs_the_whole_sequence(stack: Stack) -> None:
    """A rule's action may be a sequence: the rules agent hands it to an API process, which runs it."""
    c = stack.client()
    inc = "def main(a):\n    return {'n': a.get('n', 0) + 1}\n"
    for name in ("inc1", "inc2"):
        assert c.put(f"actions/{name}", {"exec": {"kind": "python:3", "code": inc}}, overwrite=True).status_code == 200
    seq = {"exec": {"kind": "sequence", "components": ["/_/inc1", "/_/inc2"]}}
    assert c.put("actions/incs", seq, overwrite=True).status_code == 200
    assert c.put("triggers/tseq", {}, overwrite=True).status_code == 200
    r = c.put("rules/rseq", {"trigger": "/_/tseq", "action": "/_/incs"}, overwrite=True)
    assert r.status_code == 200, r.text
    r = c.post("triggers/tseq", {"n": 40})
    assert r.status_code == 202, r.text
    line = json.loads(wait_activation(c, r.json()["activationId"])["logs"][0])
    assert line["statusCode"] == 0 and line["action"] == "guest/incs", line
    rec = wait_activation(c, line["activationId"])
    assert rec["response"]["result"] == {"n": 42} and rec["response"]["success"]
    assert len(rec["logs"]) == 2  # the two component activation ids
    ann = {a["key"]: a["value"] for a in rec["annotations"]}
    assert ann["kind"] == "sequence" and ann["topmost"] is True
