"""Authentication, subjects and the admin CLI, info endpoints (spec 1, 2.0-2.2; F1-F3, F40)."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from cli.services import settings_env
from contracts import keys
from contracts.settings import REPO
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

INVALID = "The supplied authentication is invalid"
MISSING = "The resource requires authentication, which was not supplied with the request"
REALM = 'Basic realm="OpenWhisk secure realm"'
COUCH_HEADERS = {"Accept": "application/json"}


def admin(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`streamwhisk admin ...` as an operator runs it, against this test stack's topics."""
    return subprocess.run([sys.executable, "-m", "cli.main", "admin", *args], env=settings_env(stack.settings),
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def couch_doc(stack: Stack, db: str, doc_id: str) -> requests.Response:
    return requests.get(f"{stack.settings.couchdb}/{stack.settings.db(db)}/{doc_id}", headers=COUCH_HEADERS,
                        timeout=30)


def test_401s(stack: Stack) -> None:
    url = f"{stack.url}/api/v1/namespaces/_/actions"
    cases: list[tuple[dict[str, str], str]] = [
        ({}, MISSING),
        ({"Authorization": "Bearer abc"}, INVALID),
        ({"Authorization": "Basic !!!notbase64"}, INVALID),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, INVALID),
    ]
    uid, key = keys.split(keys.GUEST_KEY)
    for user, pw in ((uid, key[:-1] + ("x" if key[-1] != "x" else "y")), ("00000000-0000-0000-0000-000000000000", key)):
        cases.append(({"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}, INVALID))
    for headers, message in cases:
        r = requests.get(url, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        assert r.json() == {"error": message, "code": r.headers["X-Request-ID"]}
        assert r.headers["WWW-Authenticate"] == REALM
        assert r.headers["Content-Type"].startswith("application/json")


def test_underscore_namespaces_limits_and_headers(stack: Stack) -> None:
    c = stack.client()
    r = requests.get(f"{stack.url}/api/v1/namespaces", auth=c.auth, timeout=30)
    assert r.status_code == 200 and r.json() == ["guest"]
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, DELETE, POST, PUT, HEAD"
    assert r.headers["Access-Control-Allow-Headers"] == \
        "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
    assert len(r.headers["X-Request-ID"]) > 0
    mine = requests.get(f"{stack.url}/api/v1/namespaces/_/limits", auth=c.auth, timeout=30).json()
    assert mine == Client(c.base, c.auth, "guest").get("limits").json()
    assert mine["invocationsPerMinute"] == 60 and mine["maxActionMemory"] == 512 and mine["maxParameterSize"] == "1 MB"
    tid = "my-own-transaction-id"
    r = requests.get(f"{stack.url}/api/v1/namespaces/_/actions", auth=c.auth, headers={"X-Request-ID": tid},
                     timeout=30)
    assert r.headers["X-Request-ID"] == tid
    o = requests.options(f"{stack.url}/api/v1/namespaces/_/actions/anything", timeout=30)
    assert o.status_code == 200 and o.headers["Access-Control-Allow-Origin"] == "*"


def test_info_endpoints(stack: Stack) -> None:
    root = requests.get(f"{stack.url}/", timeout=30)
    assert root.status_code == 200
    info = root.json()
    assert info["description"] == "OpenWhisk" and info["api_paths"] == ["/api/v1"]
    lim = info["limits"]
    assert lim["max_action_memory"] == 512 * 1048576 and lim["min_action_duration"] == 100
    assert lim["sequence_length"] == 50 and lim["concurrent_actions"] == 30
    python = info["runtimes"]["python"]
    assert any(rt["default"] for rt in python)
    for rt in (rt for family in info["runtimes"].values() for rt in family):
        assert set(rt) == {"kind", "image", "default", "deprecated", "attached", "requireMain"}
        assert isinstance(rt["kind"], str) and isinstance(rt["image"], str) and rt["deprecated"] is False
    v1 = requests.get(f"{stack.url}/api/v1", timeout=30).json()
    assert v1 == {"description": "OpenWhisk API", "api_version": "1.0.0", "api_version_path": "v1",
                  "build": "streamwhisk", "buildno": "0.1.0",
                  "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"}}
    docs = requests.get(f"{stack.url}/api/v1/api-docs", timeout=30).json()
    assert docs["swagger"] == "2.0" and docs["basePath"] == "/api/v1"
    for path in ("/namespaces/{namespace}/actions/{actionName}", "/namespaces/{namespace}/actions/{packageName}/",
                 "/namespaces/{namespace}/rules/{ruleName}", "/namespaces/{namespace}/packages/{packageName}",
                 "/namespaces/{namespace}/triggers/{triggerName}", "/namespaces/{namespace}/limits"):
        assert path in docs["paths"], path


def test_guest_subject_exists_and_is_projected(stack: Stack) -> None:
    assert stack.client().get("actions").status_code == 200
    doc = couch_doc(stack, "subjects", "guest").json()
    assert doc["subject"] == "guest" and doc["blocked"] is False
    (ns,) = doc["namespaces"]
    uid, key = keys.split(keys.GUEST_KEY)
    assert ns["name"] == "guest" and ns["uuid"] == uid
    assert keys.verify(key, ns["key_salt"], ns["key_hash"])  # a salted hash, not the key
    assert key not in str(doc)


def test_admin_create_block_unblock_delete(stack: Stack) -> None:
    name = f"adm{int(time.time() * 1000) % 10**8}"
    r = admin(stack, "create", name)
    assert r.returncode == 0, r.stderr
    authkey = r.stdout.strip().splitlines()[-1]
    uid, secret = keys.split(authkey)
    assert len(uid) == 36 and len(secret) == 64 and secret.isalnum()
    c = stack.client(authkey)

    def status() -> int:
        return c.get("actions").status_code

    wait_for(lambda: status() == 200)
    assert c.put("triggers/mine", {}).json()["namespace"] == name  # `_` is the caller's namespace
    again = admin(stack, "create", name)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = admin(stack, "list", "--json")
    assert listed.returncode == 0 and f'"subject":"{name}"' in listed.stdout and secret not in listed.stdout
    # projected to <prefix>_subjects: hashes only
    wait_for(lambda: couch_doc(stack, "subjects", name).status_code == 200)
    doc: dict[str, Any] = couch_doc(stack, "subjects", name).json()
    assert doc["namespaces"][0]["uuid"] == uid and secret not in str(doc)

    assert admin(stack, "block", name).returncode == 0
    wait_for(lambda: status() == 401)
    r401 = c.get("actions")
    assert r401.json()["error"] == INVALID and r401.headers["WWW-Authenticate"] == REALM
    wait_for(lambda: couch_doc(stack, "subjects", name).json().get("blocked") is True)
    assert "(blocked)" in admin(stack, "list").stdout

    assert admin(stack, "unblock", name).returncode == 0
    wait_for(lambda: status() == 200)

    assert admin(stack, "delete", name).returncode == 0
    wait_for(lambda: status() == 401)
    wait_for(lambda: couch_doc(stack, "subjects", name).status_code == 404)
    assert name not in admin(stack, "list").stdout
    missing = admin(stack, "block", name)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_admin_create_with_given_key_and_namespace(stack: Stack) -> None:
    name = f"adm{int(time.time() * 1000) % 10**8}x"
    given = keys.generate()
    r = admin(stack, "create", name, "--namespace", f"{name}-ns", "--auth", given)
    assert r.returncode == 0 and r.stdout.strip() == given
    c = stack.client(given)
    wait_for(lambda: c.get("actions").status_code == 200)
    assert requests.get(f"{stack.url}/api/v1/namespaces", auth=c.auth, timeout=30).json() == [f"{name}-ns"]
    assert c.put("triggers/t", {}).json()["namespace"] == f"{name}-ns"
