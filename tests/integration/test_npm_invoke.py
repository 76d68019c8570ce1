"""The npm `openwhisk` client (apache/openwhisk-client-js) invoking actions and reading activations.

tests/clients/invoke.js does the calls and prints every result as JSON; the assertions are here.
"""

from __future__ import annotations

import uuid

import pytest

from tests.stack import Stack, run_npm_client

pytestmark = pytest.mark.integration



def test_openwhisk_npm_client_invokes_and_reads_activations(stack: Stack) -> None:
    key = stack.subject(f"npminv{uuid.uuid4().hex[:4]}")
    sfx = uuid.uuid4().hex[:6]
    out = run_npm_client("invoke.js", stack, key, sfx)
    failed = {k: v for k, v in out.items() if isinstance(v, dict) and "error" in v and "statusCode" in v
              and set(v) == {"error", "statusCode"}}
    assert {k: v["statusCode"] for k, v in failed.items()} == {"invoke.apperror": 502,
                                                              "activation.get.missing": 404}, failed
    assert out["create.py"]["exec"]["kind"] == "python:3"
    assert out["create.js"]["exec"]["kind"].startswith("nodejs:")
    assert out["invoke.result"] == {"n": 1, "p": "default"}
    blocking = out["invoke.blocking"]
    assert blocking["response"]["result"] == {"n": 2, "p": "given"} and blocking["response"]["success"] is True
    assert out["invoke.js"] == {"twice": 42}
    assert set(out["invoke.nonblocking"]) == {"activationId"}
    assert "bad" in failed["invoke.apperror"]["error"]

    got = out["activation.get"]
    assert got["activationId"] == blocking["activationId"] and got["name"] == f"npy-{sfx}"
    assert any(line.endswith("stdout: hi 2") for line in got["logs"])
    assert out["activation.result"] == {"result": {"n": 2, "p": "given"}, "size": 19, "status": "success",
                                        "success": True}
    assert any(line.endswith("stdout: hi 2") for line in out["activation.logs"]["logs"])
    assert out["activation.nonblocking"]["response"]["result"] == {"n": 3, "p": "default"}

    listed = out["activations.list"]
    assert len(listed) == 3 and all(a["name"] == f"npy-{sfx}" and a["statusCode"] == 0 for a in listed)
    assert [a["start"] for a in listed] == sorted((a["start"] for a in listed), reverse=True)
    assert "response" not in listed[0] and "logs" not in listed[0]
    docs = out["activations.list.docs"]
    assert len(docs) == 1 and "response" in docs[0] and "logs" in docs[0]
    assert out["activations.count"] == {"activations": 3}
