"""Helpers of the per-family runtime tests (test_runtime_java.py, test_runtime_php.py, test_runtime_ruby.py)."""

from __future__ import annotations

import base64
import io
import time
import uuid
import zipfile
from typing import Any

import requests

from contracts import entities
from tests.stack import Client, Stack

MALFORMED = "The request content was malformed:\n"
NO_START = "Cannot start action. Check logs for details."
NO_BINARY = "The action failed to generate or locate a binary. See logs for details."


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def client(stack: Stack, prefix: str) -> Client:
    return stack.client(stack.subject(uniq(prefix), limits={"invocationsPerMinute": 1000,
                                                            "concurrentInvocations": 50}))


def put(c: Client, kind: str, code: str, main: str | None = None, **limits: int) -> str:
    """A new action of `kind` (binary as OpenWhisk computes it); its name."""
    name = uniq(kind.replace(":", "").replace(".", ""))
    exec_: dict[str, Any] = {"kind": kind, "code": code}
    if main is not None:
        exec_["main"] = main
    r = c.put(f"actions/{name}", {"exec": exec_, **({"limits": limits} if limits else {})}, overwrite=True)
    assert r.status_code == 200, r.text
    assert r.json()["exec"]["kind"] == kind  # kept as given
    return name


def invoke(c: Client, name: str, params: Any = None) -> dict[str, Any]:
    """The activation record of a blocking invoke."""
    r = c.post(f"actions/{name}", params if params is not None else {}, blocking=True)
    assert r.status_code in (200, 502), r.text
    rec: dict[str, Any] = r.json()
    return rec


def annotations(rec: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in rec["annotations"]}


def logs(c: Client, aid: str, want: str | None = None) -> list[str]:
    """The activation's log lines, once there (and holding `want`, if given)."""
    out: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = c.get(f"activations/{aid}/logs")
        if r.status_code == 200 and r.json()["logs"]:
            out = r.json()["logs"]
            if want is None or any(want in line for line in out):
                return out
        time.sleep(0.2)
    return out


def zipped(files: dict[str, str | bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return base64.b64encode(buf.getvalue()).decode()


def error_of(rec: dict[str, Any]) -> tuple[str, Any]:
    return rec["response"]["status"], rec["response"]["result"].get("error")


def family_is_listed(stack: Stack, family: str, default: str, require_main: bool) -> None:
    """GET / lists every kind of the family, one of them the default, with OpenWhisk's requireMain."""
    info = requests.get(f"{stack.url}/", timeout=10).json()["runtimes"][family]
    assert {r["kind"] for r in info} == {k for k, rt in entities.RUNTIMES.items() if rt.family == family}
    assert [r["kind"] for r in info if r["default"]] == [default]
    assert {r["requireMain"] for r in info} == {require_main}
