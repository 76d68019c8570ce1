"""Pure parts of issue #5: fire throttle and rule matching, alarm schedules, web action mapping, conductor steps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api import compositions, web
from contracts.errors import WhiskError
from contracts.events import TriggerFired
from feeds import schedule
from streams import rules

SUBJECT = {"namespaces": ["ns"], "blocked": False, "limits": {"firesPerMinute": 2}}
DOCS: dict[str, Any] = {
    "ns/t": {"entityType": "trigger", "namespace": "ns", "name": "t", "parameters": [{"key": "a", "value": 1}],
             "rules": {"ns/r1": {"action": {"path": "ns", "name": "act"}, "status": "active"},
                       "ns/r2": {"action": {"path": "ns", "name": "gone"}, "status": "active"},
                       "ns/r3": {"action": {"path": "ns", "name": "act"}, "status": "inactive"}}},
    "ns/act": {"entityType": "action", "namespace": "ns", "name": "act", "exec": {"kind": "python:3"},
               "parameters": [{"key": "a", "value": 0}, {"key": "d", "value": 2}]},
}


def fire(payload: dict[str, Any], state: Any = None) -> rules.FireOutcome:
    ev = TriggerFired(activation_id="f" * 32, namespace="ns", subject="s", trigger="ns/t", payload=payload)
    return rules.decide_fire(ev, DOCS.get, SUBJECT, state, None, 120_000)


def test_a_fire_read_again_names_the_same_activations_and_skips_assigned_ones() -> None:
    ev = TriggerFired(activation_id="f" * 32, namespace="ns", subject="s", trigger="ns/t", payload={})
    first = rules.decide_fire(ev, DOCS.get, SUBJECT, None, None, 120_000)
    aid = first.admitted[0].activation_id
    assert aid == rules.decide_fire(ev, DOCS.get, SUBJECT, None, None, 120_000).admitted[0].activation_id
    again = rules.decide_fire(ev, DOCS.get, SUBJECT, None, first.throttle_state, 120_000,
                              assigned=lambda a: a == aid)
    assert again.admitted == [] and again.throttle_state == first.throttle_state
    assert again.completion.record is not None and aid in again.completion.record["logs"][0]


def test_fire_admits_active_rules_and_logs_each() -> None:
    out = fire({"p": 3})
    assert [r.params for r in out.admitted] == [{"a": 1, "d": 2, "p": 3}]
    rec = out.completion.record
    assert rec is not None and rec["response"]["result"] == {"p": 3}
    assert [json.loads(x) for x in rec["logs"]] == [
        {"statusCode": 0, "success": True, "activationId": rules.rule_activation_id("f" * 32, "ns/r1"),
         "rule": "ns/r1", "action": "ns/act"},
        {"statusCode": 1, "success": False, "error": rules.NOT_FOUND, "rule": "ns/r2", "action": "ns/gone"},
    ]


def test_fire_throttle_window() -> None:
    st = None
    for _ in range(2):
        st, refusal = rules.admit_fire(st, {"firesPerMinute": 2}, 60_000)
        assert refusal is None
    _, refusal = rules.admit_fire(st, {"firesPerMinute": 2}, 119_999)
    assert refusal == "Too many requests in the last minute (count: 3, allowed: 2)."
    assert rules.admit_fire(st, {"firesPerMinute": 2}, 120_000)[1] is None  # a new minute


def test_fire_rejections() -> None:
    assert fire({}, {"minute": 2, "count": 2}).completion.rejected_status == 429
    ev = TriggerFired(activation_id="f" * 32, namespace="ns", subject="s", trigger="ns/nope")
    assert rules.decide_fire(ev, DOCS.get, SUBJECT, None, None, 0).completion.rejected_status == 404
    assert rules.decide_fire(ev, DOCS.get, None, None, None, 0).completion.rejected_status == 403


def test_schedules() -> None:
    cfg = schedule.validate("interval", {"seconds": 2}, 1000)
    assert schedule.due("interval", cfg, None, 7000) == [3000, 5000, 7000]
    assert schedule.due("interval", cfg, 5000, 8000) == [7000]
    cron = schedule.validate("alarm", {"cron": "*/15 * * * * *"}, 0)
    assert schedule.due("alarm", cron, None, 60_000) == [15_000, 30_000, 45_000, 60_000]
    hourly = schedule.validate("alarm", {"cron": "0 * * * *"}, 0)
    assert schedule.next_slot("alarm", hourly, 0) == 3_600_000
    once = schedule.validate("once", {"date": "1970-01-01T00:00:10Z"}, 0)
    assert schedule.due("once", once, None, 20_000) == [10_000] and schedule.due("once", once, 10_000, 30_000) == []
    with pytest.raises(schedule.FeedError):
        schedule.validate("alarm", {"cron": "61 * * * *"}, 0)


def test_web_extensions_and_args() -> None:
    assert web.split_rest("a.json/x/y") == ("a", "json", "/x/y")
    assert web.split_rest("a.b") == ("a.b", "http", "")
    action = {"parameters": [{"key": "p", "value": 1}], "annotations": [{"key": "final", "value": True}]}
    args = web.web_args(action, "GET", {}, "", "q=2", b"", "", None)
    assert args == {"p": 1, "q": "2", "__ow_method": "get", "__ow_headers": {}, "__ow_path": ""}
    with pytest.raises(WhiskError):
        web.web_args(action, "GET", {}, "", "p=2", b"", "", None)
    raw = {"parameters": [], "annotations": [{"key": "raw-http", "value": True}]}
    assert web.web_args(raw, "POST", {}, "", "a=1", b"hi", "text/plain", "u")["__ow_body"] == "hi"


def test_web_responses() -> None:
    assert web.web_response("http", {"body": "x"}) == (200, {"Content-Type": ["text/html"]}, b"x")
    assert web.web_response("http", {})[0] == 204
    assert web.web_response("http", {"statusCode": "302", "headers": {"Location": "/x"}})[0] == 302
    with pytest.raises(WhiskError):
        web.web_response("json", "string")
    assert web.auth_ok("k", False, "k") and not web.auth_ok(True, False, None) and not web.auth_ok([1], True, None)


def test_conductor_step() -> None:
    assert compositions.conductor_step({"action": "a", "params": 5, "state": 1}) == ("a", {"value": 5},
                                                                                    {"state": 1}, None)
    assert compositions.conductor_step({"params": {"x": 1}}) == (None, {"x": 1}, None, {"x": 1})
    assert compositions.conductor_step({"y": 2})[3] == {"y": 2}
