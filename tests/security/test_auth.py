"""Auth (spec S6, S7 subset): wrong and malformed keys, another namespace's entities, a timing-safe key check,
and no plaintext key in Kafka, CouchDB or any log."""

from __future__ import annotations

import base64
import inspect
import statistics
import time
import uuid
from pathlib import Path

import pytest
import requests

from contracts import keys
from tests.stack import Stack

pytestmark = [pytest.mark.security, pytest.mark.integration]

AUTH_INVALID = "The supplied authentication is invalid"
AUTH_MISSING = "The resource requires authentication, which was not supplied with the request"


def _get(stack: Stack, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{stack.url}/api/v1/namespaces/_/actions", headers=headers, timeout=10)


def _basic(cred: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}


@pytest.mark.parametrize("headers, message", [
    ({}, AUTH_MISSING),
    ({"Authorization": "Bearer abc"}, AUTH_INVALID),
    ({"Authorization": "Basic !!!notbase64"}, AUTH_INVALID),
    (_basic("no-colon-at-all"), AUTH_INVALID),
    (_basic(f"{uuid.uuid4()}:{'x' * 64}"), AUTH_INVALID),  # unknown uuid
    (_basic(keys.GUEST_KEY[:-1] + "Q"), AUTH_INVALID),  # right uuid, wrong key
    (_basic(keys.GUEST_KEY.split(":")[0] + ":"), AUTH_INVALID),  # empty key
    ({"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode()}, AUTH_INVALID),  # not UTF-8
])
def test_bad_credentials_get_401(stack: Stack, headers: dict[str, str], message: str) -> None:
    r = _get(stack, headers)
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["error"] == message and isinstance(body["code"], str) and body["code"]


def test_other_namespace_entities_are_forbidden(stack: Stack) -> None:
    owner = stack.client(stack.subject("auth_owner"))
    r = owner.put("actions/private", {"exec": {"kind": "python:3", "code": "def main(a):\n    return a"}},
                  overwrite=True)
    assert r.status_code == 200, r.text
    thief = stack.client(stack.subject("auth_thief"), namespace="auth_owner")
    code = "def main(a):\n    return {}"
    attempts = [
        ("GET", "actions/private", None), ("GET", "actions", None), ("DELETE", "actions/private", None),
        ("PUT", "actions/private", {"exec": {"kind": "python:3", "code": code}}),
        ("POST", "actions/private", {}), ("GET", "triggers", None), ("GET", "rules", None),
        ("GET", "activations", None),
    ]
    for method, path, body in attempts:
        r = thief.req(method, path, body, overwrite=True) if method == "PUT" else thief.req(method, path, body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert set(r.json()) == {"error", "code"} and "not authorized" in r.json()["error"]
    assert owner.get("actions/private").status_code == 200  # untouched
    # As in OpenWhisk, another namespace's package list shows its published packages only (none here).
    assert thief.get("packages").json() == []


def test_key_check_is_timing_safe(stack: Stack) -> None:
    """compare_digest on a salted hash, and no measurable gap between "unknown uuid" and "wrong key"."""
    assert "compare_digest" in inspect.getsource(keys.verify)
    uid = keys.GUEST_KEY.split(":")[0]
    wrong_key, unknown = _basic(f"{uid}:{'a' * 64}"), _basic(f"{uuid.uuid4()}:{'a' * 64}")
    session = requests.Session()
    url = f"http://127.0.0.1:{stack.settings.api_port}/api/v1/namespaces/_/actions"

    def sample(h: dict[str, str]) -> float:
        t0 = time.perf_counter()
        assert session.get(url, headers=h, timeout=10).status_code == 401
        return time.perf_counter() - t0

    a, b = [], []
    for _ in range(150):  # interleaved, so load from other tests hits both alike
        a.append(sample(wrong_key))
        b.append(sample(unknown))
    gap = abs(statistics.median(a) - statistics.median(b))
    # A hash of a 64-char key costs ~1 µs; anything a network attacker could use would be far above 1 ms.
    assert gap < 0.001, (statistics.median(a), statistics.median(b))


def _needles(authkey: str) -> list[bytes]:
    secret = keys.split(authkey)[1]
    return [secret.encode(), base64.b64encode(authkey.encode())]


def _grep(root: Path, needles: list[bytes], name_filter: str = "") -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if not p.is_file() or name_filter not in str(p):
            continue
        try:
            data = p.read_bytes()
        except OSError:
            continue
        hits += [f"{p}: {n[:6]!r}…" for n in needles if n in data]
    return hits


def test_keys_never_stored_in_plaintext(stack: Stack) -> None:
    key = stack.subject("auth_hygiene")
    c = stack.client(key)
    c.put("actions/h", {"exec": {"kind": "python:3", "code": "def main(a):\n    return a"}}, overwrite=True)
    c.post("actions/h", {"x": 1}, blocking=True)
    requests.get(f"{stack.url}/api/v1/namespaces/_/actions", headers=_basic(key.split(":")[0] + ":wrong"),
                 timeout=10)
    time.sleep(1.5)  # let the projector and the audit producer flush
    needles = _needles(key)
    s = stack.settings
    # Kafka: every segment of this stack's topics (the broker does not compress our uncompressed batches).
    kafka_data = stack.base_settings.home / "kafka" / "data"
    hits = _grep(kafka_data, needles, name_filter=f"/{s.prefix}") if kafka_data.is_dir() else []
    # CouchDB: every document of this stack's databases, over HTTP (PouchDB's LevelDB files are compressed).
    for db in ("subjects", "whisks", "activations"):
        r = requests.get(f"{s.couchdb}/{s.db(db)}/_all_docs", params={"include_docs": "true"}, timeout=30)
        if r.status_code == 200:
            hits += [f"couchdb {db}" for n in needles if n in r.content]
    # Logs of every component, nginx included.
    hits += _grep(s.home, needles, name_filter="log")
    assert hits == []
    if kafka_data.is_dir():  # the check looked at something real
        assert any(p.name.startswith(s.prefix) for p in kafka_data.iterdir())
