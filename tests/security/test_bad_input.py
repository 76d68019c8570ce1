"""Bad input (spec S8, hand-written part): oversized bodies, bad JSON, bad names, bad limits, unicode, huge
headers. Never a 5xx; every error our API answers is {"error", "code"} with OpenWhisk's text."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests

from contracts import keys
from tests.stack import Stack

pytestmark = [pytest.mark.security, pytest.mark.integration]

MALFORMED = "The request content was malformed:\n"
CODE = "def main(a):\n    return a\n"


def _auth() -> tuple[str, str]:
    return keys.split(keys.GUEST_KEY)


def _url(base: str, path: str) -> str:
    return f"{base}/api/v1/namespaces/_/{path}"


def _raw(stack: Stack, method: str, path: str, data: bytes, ctype: str = "application/json",
         base: str | None = None, **params: Any) -> requests.Response:
    return requests.request(method, _url(base or stack.url, path), data=data, params=params, auth=_auth(),
                            headers={"Content-Type": ctype}, timeout=120)


def _is_error(r: requests.Response, status: int, message: str | None = None, prefix: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "code"} and isinstance(body["code"], str) and body["code"], body
    if message is not None:
        assert body["error"] == message, body
    if prefix is not None:
        assert body["error"].startswith(prefix), body


@pytest.fixture(scope="module")
def action(stack: Stack) -> str:
    r = stack.client().put("actions/bi_echo", {"exec": {"kind": "python:3", "code": CODE}}, overwrite=True)
    assert r.status_code == 200, r.text
    return "actions/bi_echo"


@pytest.mark.parametrize("data", [
    b'{"exec": ', b"{'single': 'quotes'}", b"\xff\xfe\xfd", b"[1, 2, 3]", b'"just a string"', b"nul\x00l",
    b"[" * 5000 + b"]" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000,
])
def test_bad_json_put(stack: Stack, data: bytes) -> None:
    _is_error(_raw(stack, "PUT", "actions/bi_bad", data, overwrite="true"), 400, prefix=MALFORMED)


@pytest.mark.parametrize("data", [b'{"x": ', b"\xff", b"[1]", b'{"a":' * 2000 + b"1" + b"}" * 2000])
def test_bad_json_invoke(stack: Stack, action: str, data: bytes) -> None:
    _is_error(_raw(stack, "POST", action, data), 400, prefix=MALFORMED)


def test_unsupported_content_type(stack: Stack, action: str) -> None:
    r = _raw(stack, "POST", action, b"<x/>", ctype="application/xml")
    _is_error(r, 415)


def test_oversized_invoke_payload(stack: Stack, action: str) -> None:
    big = b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    r = _raw(stack, "POST", action, big)
    _is_error(r, 413, message=f"Request larger than allowed: {len(big)} > 1048576 bytes.")


def test_oversized_action_code(stack: Stack) -> None:
    code = "#" * (48 * 1024 * 1024 + 1)
    body = ('{"exec": {"kind": "python:3", "code": "' + code + '"}}').encode()
    r = _raw(stack, "PUT", "actions/bi_huge", body, overwrite="true")
    _is_error(r, 413, prefix="exec larger than allowed")


def test_body_over_the_server_limit(stack: Stack) -> None:
    """Past aiohttp's (64 MB) and nginx's (50 MB) body limits: 413, in our error form through nginx too."""
    body = b"x" * (65 * 1024 * 1024)
    direct = f"http://127.0.0.1:{stack.settings.api_port}"
    r = _raw(stack, "PUT", "actions/bi_huge", body, base=direct, overwrite="true")
    _is_error(r, 413)
    r = _raw(stack, "PUT", "actions/bi_huge", body, overwrite="true")
    assert r.status_code == 413, r.status_code
    assert r.json().keys() == {"error", "code"}, r.text[:200]


@pytest.mark.parametrize("name", [
    "a" * 257, "has/slash/too/deep/x", "bad%00nul", "semi;colon", " lead", "trail ", "ação", "🙂", "a\tb", "..",
])
def test_bad_entity_names(stack: Stack, name: str) -> None:
    r = requests.put(_url(stack.url, "actions/") + requests.utils.quote(name, safe="/"), auth=_auth(),
                     json={"exec": {"kind": "python:3", "code": CODE}}, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert set(r.json()) == {"error", "code"}


@pytest.mark.parametrize("limits, message", [
    ({"memory": 1}, "memory size 1 MB below allowed threshold of 128 MB"),
    ({"memory": 100000}, "memory size 100000 MB exceeds allowed threshold of 512 MB"),
    ({"timeout": 0}, "duration 0 milliseconds below allowed threshold of 100 milliseconds"),
    ({"logs": 1000}, "log size 1000 MB exceeds allowed threshold of 10 MB"),
    ({"memory": "256"}, MALFORMED + "memory limit malformed"),
    ({"timeout": 1.5}, MALFORMED + "time limit must be whole number"),
    ({"memory": True}, MALFORMED + "memory limit malformed"),
])
def test_bad_limits(stack: Stack, limits: dict[str, Any], message: str) -> None:
    r = stack.client().put("actions/bi_lim", {"exec": {"kind": "python:3", "code": CODE}, "limits": limits},
                           overwrite=True)
    _is_error(r, 400, message=message)


@pytest.mark.parametrize("query", [{"limit": "-1"}, {"limit": "abc"}, {"skip": "-5"}, {"limit": "99999999999999"},
                                   {"since": "x"}, {"timeout": "0"}])
def test_bad_query_parameters(stack: Stack, action: str, query: dict[str, str]) -> None:
    path = action if "timeout" in query else "activations"
    method = "POST" if "timeout" in query else "GET"
    r = requests.request(method, _url(stack.url, path), params={**query, "blocking": "true"}, auth=_auth(),
                         json={} if method == "POST" else None, timeout=30)
    assert r.status_code == 400, (query, r.status_code, r.text[:200])
    assert set(r.json()) == {"error", "code"}


def test_unicode_round_trip(stack: Stack, action: str) -> None:
    c = stack.client()
    params = {"ünï": "çødé ✓ 🙂 \u202e rtl", "zh": "汉字", "nul": "a\u0000b", "surrogate-ish": "\udbff" == "x"}
    r = c.post(action, params, blocking=True, result=True)
    assert r.status_code == 200, r.text
    assert r.json() == params
    r = c.put("actions/bi_uni", {"exec": {"kind": "python:3", "code": "def main(a):\n    return {'s': 'ünï 🙂'}\n"},
                                 "annotations": [{"key": "描述", "value": "🙂"}]}, overwrite=True)
    assert r.status_code == 200, r.text
    assert c.post("actions/bi_uni", {}, blocking=True, result=True).json() == {"s": "ünï 🙂"}


def _raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            if len(out) > 1 << 20:
                break
    return out


@pytest.mark.parametrize("via", ["nginx", "api"])
def test_huge_headers(stack: Stack, via: str) -> None:
    """A 100 KB header: rejected with a 4xx, never a 5xx or a hang; the server keeps serving."""
    port = stack.settings.nginx_port if via == "nginx" else stack.settings.api_port
    req = (b"GET /api/v1/namespaces/_/actions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000
           + b"\r\nConnection: close\r\n\r\n")
    reply = _raw_http(port, req)
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500, reply[:300]
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
    reply = _raw_http(port, b"GET /api/v1 HTTP/1.1\r\nHost: x\r\n" + many + b"Connection: close\r\n\r\n")
    assert 400 <= int(reply.split(b" ", 2)[1]) < 500 or reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert requests.get(f"{stack.url}/api/v1", timeout=10).status_code == 200


def test_unknown_paths_and_methods(stack: Stack) -> None:
    for method, path in [("GET", "/api/v1/nope"), ("PATCH", "/api/v1/namespaces/_/actions/x"),
                         ("GET", "/api/v1/namespaces/_/unknown"), ("DELETE", "/api/v1/namespaces")]:
        r = requests.request(method, stack.url + path, auth=_auth(), timeout=10)
        assert 400 <= r.status_code < 500, (method, path, r.status_code)
        assert set(r.json()) == {"error", "code"}, (method, path, r.text[:200])
