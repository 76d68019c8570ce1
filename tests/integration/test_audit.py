"""`streamwhisk audit` against a scripted history made through the REST API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from cli.audit import entity_as_of, query
from cli.services import settings_env
from contracts.events import now_ms
from contracts.settings import REPO
from projections.audit import Filter, Record
from tests.stack import Stack

pytestmark = pytest.mark.integration

CODE = "def main(args):\n    return {'v': %d}\n"


def action(v: int) -> dict[str, Any]:
    return {"exec": {"kind": "python:3", "code": CODE % v}}


@pytest.fixture(scope="module")
def script(stack: Stack) -> dict[str, int]:
    """bob creates, updates, fails to recreate, invokes and deletes an action; carol only reads."""
    t: dict[str, int] = {"start": now_ms()}
    bob, carol = stack.client(stack.subject("audit-bob")), stack.client(stack.subject("audit-carol"))
    assert bob.put("actions/doc", action(1)).status_code == 200
    time.sleep(0.05)
    t["v1"] = now_ms()
    time.sleep(0.05)
    assert bob.put("actions/doc", action(2), overwrite=True).status_code == 200
    time.sleep(0.05)
    t["v2"] = now_ms()
    assert bob.put("actions/doc", action(3)).status_code == 409
    assert bob.post("actions/doc", {}, blocking=True).status_code == 200
    assert carol.get("actions/doc").status_code == 404  # her own namespace has no such action
    time.sleep(0.05)
    t["before_delete"] = now_ms()
    assert bob.delete("actions/doc").status_code == 200
    time.sleep(1.0)  # the API sends access events without waiting for the ack
    t["end"] = now_ms()
    return t


def run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "audit", *args], env=settings_env(stack.settings),
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def q(stack: Stack, **kw: Any) -> list[Record]:
    return asyncio.run(query(stack.settings, Filter(**kw)))


def test_who_did_what_to_an_entity(stack: Stack, script: dict[str, int]) -> None:
    changes = q(stack, entity="audit-bob/doc", kinds=("entity",), since=script["start"])
    assert [(r.action, r.outcome, r.status) for r in changes] == [
        ("put", "ok", 200), ("put", "ok", 200), ("put", "error", 409), ("delete", "ok", 200)]
    assert {r.subject for r in changes} == {"audit-bob"}
    calls = q(stack, subject="audit-bob", kinds=("api",), since=script["start"], entity="doc")
    assert [(r.action, r.status) for r in calls] == [("PUT", 200), ("PUT", 200), ("PUT", 409), ("POST", 200),
                                                    ("DELETE", 200)]
    runs = q(stack, namespace="audit-bob", kinds=("activation",), since=script["start"])
    assert len(runs) == 1 and runs[0].outcome == "ok" and runs[0].entity == "audit-bob/doc"


def test_filters_by_outcome_subject_action_and_time(stack: Stack, script: dict[str, int]) -> None:
    errors = q(stack, subject="audit-bob", outcome="error", since=script["start"])
    assert {(r.kind, r.status) for r in errors} == {("api", 409), ("entity", 409)}
    carol = q(stack, subject="audit-carol", kinds=("api",), since=script["start"], entity="doc")
    assert [(r.action, r.status, r.entity) for r in carol] == [("GET", 404, "audit-carol/doc")]
    deletes = q(stack, action="delete", since=script["start"], namespace="audit-bob")
    assert sorted(r.kind for r in deletes) == ["api", "entity"]  # verbs match case-insensitively
    assert all(r.at >= script["before_delete"] for r in deletes)
    assert q(stack, subject="audit-bob", since=script["end"]) == []
    window = q(stack, subject="audit-bob", kinds=("entity",), since=script["v1"], until=script["v2"])
    assert [r.action for r in window] == ["put"]
    subj = q(stack, kinds=("subject",), subject="audit-carol")
    assert subj and subj[0].action == "key_added" and "key_hash" not in subj[0].detail


def test_state_of_an_entity_as_of_a_time(stack: Stack, script: dict[str, int]) -> None:
    def at(t: int) -> Any:
        return asyncio.run(entity_as_of(stack.settings, "audit-bob/doc", t))

    assert at(script["start"] - 1) is None
    assert at(script["v1"])["exec"]["code"] == CODE % 1
    assert at(script["v2"])["exec"]["code"] == CODE % 2
    assert at(script["before_delete"])["exec"]["code"] == CODE % 2  # the 409 changed nothing
    assert at(script["end"]) is None


def test_cli_table_json_lines_and_as_of(stack: Stack, script: dict[str, int]) -> None:
    p = run(stack, "--subject", "audit-bob", "--since", str(script["start"]), "--kind", "entity")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["TIME", "KIND", "SUBJECT"] and len(lines) == 5
    p = run(stack, "--entity", "audit-bob/doc", "--since", str(script["start"]), "--json", "--outcome", "409")
    rows = [orjson.loads(line) for line in p.stdout.splitlines()]
    assert p.returncode == 0 and {r["kind"] for r in rows} == {"api", "entity"} and all(r["time"] for r in rows)
    p = run(stack, "--entity", "audit-bob/doc", "--as-of", str(script["v1"]), "--json")
    assert p.returncode == 0 and orjson.loads(p.stdout)["doc"]["exec"]["code"] == CODE % 1
    p = run(stack, "--entity", "audit-bob/doc", "--as-of", "now")
    assert p.returncode == 1 and "did not exist" in p.stdout
    assert run(stack, "--since", "last tuesday").returncode == 2
