"""The npm `openwhisk` client (apache/openwhisk-client-js) against the local API over http.

tests/clients/crud.js drives create/get/list/update/delete of actions, triggers, rules and packages and
prints every result as JSON; the assertions are here. node_modules is installed on first use.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.stack import Stack, run_npm_client

pytestmark = pytest.mark.integration



def kv(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["key"]: i["value"] for i in items}


def test_openwhisk_npm_client_crud(stack: Stack) -> None:
    key = stack.subject("npmuser")
    sfx = uuid.uuid4().hex[:6]
    out = run_npm_client("crud.js", stack, key, sfx)
    pkg, bind, action, trigger, rule = (f"{p}-{sfx}" for p in ("npkg", "nbind", "nact", "ntrig", "nrule"))
    failed = {k: v for k, v in out.items() if isinstance(v, dict) and "error" in v}
    expected_failures = {
        "action.create.again": 409, "package.delete.nonempty": 409, "action.get.deleted": 404,
        "package.get.deleted": 404,
    }
    assert {k: v["statusCode"] for k, v in failed.items()} == expected_failures, failed
    assert "resource already exists" in failed["action.create.again"]["error"]
    assert "Package not empty (contains 1 entity)" in failed["package.delete.nonempty"]["error"]

    # actions
    a = out["action.create"]
    assert a["name"] == action and a["namespace"] == "npmuser" and a["version"] == "0.0.1"
    assert kv(a["parameters"]) == {"a": 1} and kv(a["annotations"])["x"] == "y"
    assert out["action.get"]["exec"]["code"].startswith("function main")
    assert "code" not in out["action.get.nocode"]["exec"]
    upd = out["action.update"]
    assert upd["version"] == "0.0.2" and upd["limits"]["memory"] == 128 and upd["exec"]["code"].endswith("\n")
    assert out["packaged.create"]["namespace"] == f"npmuser/{pkg}"
    assert kv(out["packaged.get"]["parameters"]) == {"p": 1}
    assert kv(out["bound.get"]["parameters"]) == {"p": 1, "b": 2}
    assert {x["name"] for x in out["action.list"]} == {action, "inner"}
    assert out["action.count"] == {"actions": 2}
    assert out["action.delete"]["name"] == action and out["packaged.delete"]["name"] == "inner"

    # triggers and rules
    assert out["trigger.create"]["name"] == trigger and out["trigger.update"]["version"] == "0.0.2"
    assert kv(out["trigger.update"]["parameters"]) == {"t": 2}
    assert out["rule.create"]["status"] == "active"
    assert out["rule.create"]["trigger"] == {"path": "npmuser", "name": trigger}
    assert out["rule.get"]["status"] == "active" and out["rule.get.disabled"]["status"] == "inactive"
    assert out["rule.update"]["action"] == {"path": f"npmuser/{pkg}", "name": "inner"}
    assert out["rule.update"]["status"] == "active" and out["rule.update"]["version"] == "0.0.2"
    rules = out["trigger.get"]["rules"]
    assert rules == {f"npmuser/{rule}": {"action": {"path": f"npmuser/{pkg}", "name": "inner"}, "status": "active"}}
    assert [t["name"] for t in out["trigger.list"]] == [trigger]
    assert [r["name"] for r in out["rule.list"]] == [rule]
    assert out["rule.delete"]["status"] == "inactive" and out["trigger.delete"]["name"] == trigger

    # packages
    assert out["package.create"]["binding"] == {} and out["package.update"]["publish"] is True
    assert out["binding.create"]["binding"] == {"namespace": "npmuser", "name": pkg}
    assert [x["name"] for x in out["package.get"]["actions"]] == ["inner"]
    bview = out["binding.get"]
    assert kv(bview["parameters"]) == {"p": 1, "b": 2} and [x["name"] for x in bview["actions"]] == ["inner"]
    listed = {p["name"]: p["binding"] for p in out["package.list"]}
    assert listed == {pkg: False, bind: {"namespace": "npmuser", "name": pkg}}
    assert out["binding.delete"]["name"] == bind and out["package.delete"]["name"] == pkg
    assert out["namespaces.list"] == ["npmuser"]
