"""OpenWhisk edge cases on the real stack, each matched to OpenWhisk's source (tests/unit/test_ow_edge_cases.py has
the pure parts): a blank activations name filter, PUT without a body, kinds kept as given, 405 with Allow, web
action content negotiation (406), and the runtimes' init error texts."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

MAL = "The request content was malformed:\n"
NO_BODY = MAL + "Unexpected end-of-input at input index 0 (line 1, position 1), expected JSON Value:\n\n^\n"
NOT_ACCEPTABLE = "Resource representation is only available with these types:\n"


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def err(r: requests.Response, status: int, message: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json() == {"error": message, "code": r.headers["X-Request-ID"]}


def put_action(c: Client, name: str, code: str, kind: str = "python:3", annotations: Any = None) -> dict[str, Any]:
    r = c.put(f"actions/{name}", {"exec": {"kind": kind, "code": code}, "annotations": annotations or []},
              overwrite=True)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def kv(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["key"]: i["value"] for i in items}


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    return stack.client()


# --- 1. GET activations?name= (Activations.scala stringToRestrictedEntityPath: blank -> no filter) -------------


def test_blank_activation_name_filter_is_ignored(stack: Stack) -> None:
    c = stack.client(stack.subject(uniq("names")))
    put_action(c, "a", "def main(a):\n    return a\n")
    for _ in range(2):
        assert c.post("actions/a", {}, blocking=True).status_code == 200
    deadline = time.monotonic() + 15
    while c.get("activations", count=True).json() != {"activations": 2} and time.monotonic() < deadline:
        time.sleep(0.2)
    every = [s["activationId"] for s in c.get("activations").json()]
    assert len(every) == 2
    for blank in ("", "   "):
        r = c.get("activations", name=blank)
        assert r.status_code == 200, r.text
        assert [s["activationId"] for s in r.json()] == every
        assert c.get("activations", name=blank, count=True).json() == {"activations": 2}
    assert [s["activationId"] for s in c.get("activations", name="/a/").json()] == every  # empty segments dropped
    for bad in ("/", "a/b/c", " a"):
        err(c.get("activations", name=bad), 400,
            f"Parameter may be a 'simple' name or 'package-name/simple' name: {bad}")


# --- 2. PUT without a body (spray-json entity unmarshalling: no empty default, unlike invoke and fire) ----------


@pytest.mark.parametrize("coll", ["packages", "triggers", "actions", "rules"])
def test_put_without_body_is_malformed(c: Client, coll: str) -> None:
    name = uniq("nobody")
    url = c.url(f"{coll}/{name}")
    err(requests.put(url, auth=c.auth, timeout=30), 400, NO_BODY)
    err(requests.put(url, data=b"", auth=c.auth, headers={"Content-Type": "application/json"}, timeout=30), 400,
        NO_BODY)
    err(requests.put(url, data=b" ", auth=c.auth, headers={"Content-Type": "application/json"}, timeout=30), 400,
        MAL + "Unexpected end-of-input at input index 1 (line 1, position 2), expected JSON Value:\n \n ^\n")
    err(requests.put(url, data=b"", auth=c.auth, headers={"Content-Type": "text/plain"}, timeout=30), 415,
        "The request's Content-Type is not supported. Expected:\napplication/json")
    err(c.get(f"{coll}/{name}"), 404, "The requested resource does not exist.")  # nothing was created


def test_rule_state_change_without_body_is_malformed(c: Client) -> None:
    err(requests.post(c.url(f"rules/{uniq('r')}"), auth=c.auth, timeout=30), 400, NO_BODY)


def test_put_with_client_bodies_still_works(c: Client) -> None:
    """`{}` (the npm client's default) and the wsk CLI's bodies (namespace and name in the body)."""
    for coll in ("packages", "triggers"):
        name = uniq("ok")
        r = c.put(f"{coll}/{name}", {})
        assert r.status_code == 200 and r.json()["name"] == name, r.text
        name = uniq("wsk")
        r = c.put(f"{coll}/{name}", {"namespace": "guest", "name": name}, overwrite=False)
        assert r.status_code == 200 and r.json()["name"] == name, r.text
    assert c.post(f"triggers/{name}").status_code == 204  # fire: no body is still {}


# --- 3. kinds as given; <family>:default resolves (ExecManifest.resolveDefaultRuntime) ------------------------


def test_kind_is_kept_as_given(c: Client) -> None:
    name = uniq("py311")
    doc = put_action(c, name, "import sys\ndef main(a):\n    return {'v': sys.version_info[:2]}\n", kind="python:3.11")
    assert doc["exec"]["kind"] == "python:3.11" and kv(doc["annotations"])["exec"] == "python:3.11"
    got = c.get(f"actions/{name}").json()
    assert got["exec"]["kind"] == "python:3.11" and kv(got["annotations"])["exec"] == "python:3.11"
    listed = next(a for a in c.get("actions", limit=200).json() if a["name"] == name)
    assert kv(listed["annotations"])["exec"] == "python:3.11"
    r = c.post(f"actions/{name}", {}, blocking=True)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"] == {"v": [3, 11]}
    assert kv(r.json()["annotations"])["kind"] == "python:3.11"
    assert put_action(c, uniq("pydef"), "def main(a):\n    return a\n", kind="python:default")["exec"]["kind"] == \
        "python:3"
    assert put_action(c, uniq("jsdef"), "function main(a) { return a }", kind="nodejs:default")["exec"]["kind"] == \
        "nodejs:20"


def test_info_lists_the_python_kinds(stack: Stack) -> None:
    python = requests.get(f"{stack.url}/", timeout=30).json()["runtimes"]["python"]
    assert [(k["kind"], k["default"]) for k in python] == [("python:3", True), ("python:3.11", False),
                                                          ("python:3.13", False)]


# --- 4. 405 with Allow (Pekko's MethodRejection handling) --------------------------------------------------------


def test_405_has_allow(c: Client, stack: Stack) -> None:
    for r, allow in [
        (c.req("PATCH", "actions/x"), "PUT, GET, DELETE, POST"),
        (c.post("packages/x", {}), "PUT, GET, DELETE"),
        (c.post("activations", {}), "GET"),
        (c.put("limits", {}), "GET"),
        (requests.post(f"{stack.url}/api/v1", timeout=30), "GET"),
    ]:
        err(r, 405, f"HTTP method not allowed, supported methods: {allow}")
        assert r.headers["Allow"] == allow


# --- 5. web actions: content negotiation (Pekko's marshalling of the transcoders' answers) ---------------------


@pytest.fixture(scope="module")
def w(stack: Stack) -> str:
    c = stack.client()
    web = [{"key": "web-export", "value": True}]
    put_action(c, "neg_html", "def main(a):\n    return {'body': '<p>hi</p>'}\n", annotations=web)
    put_action(c, "neg_obj", "def main(a):\n    return {'x': 1, 'text': 'plain'}\n", annotations=web)
    put_action(c, "neg_empty", "def main(a):\n    return {'statusCode': 204}\n", annotations=web)
    return f"{stack.url}/api/v1/web/guest/default"


def test_web_unacceptable_answer_is_406(w: str) -> None:
    for url, accept, offered in [
        (f"{w}/neg_html", "application/json", "text/html; charset=UTF-8"),
        (f"{w}/neg_obj.json", "text/html", "application/json"),
        (f"{w}/neg_obj.text", "application/json", "text/plain"),
        (f"{w}/neg_html.http", "text/*;q=0, */*", "text/html; charset=UTF-8"),
        (f"{w}/not_there", "text/html", "application/json"),  # errors are JSON too
    ]:
        r = requests.get(url, headers={"Accept": accept}, timeout=90)
        err(r, 406, NOT_ACCEPTABLE + offered)
        # a rejection in OpenWhisk, answered outside the web route: no CORS or activation id headers
        assert "x-openwhisk-activation-id" not in r.headers and "Access-Control-Allow-Origin" not in r.headers


def test_web_acceptable_answers(w: str) -> None:
    for accept in ("*/*", None, "text/html", "text/*", "application/json, text/html;q=0.1"):
        r = requests.get(f"{w}/neg_html", headers={"Accept": accept}, timeout=90)  # None: no Accept header
        assert r.status_code == 200 and r.text == "<p>hi</p>", (accept, r.status_code, r.text)
    r = requests.get(f"{w}/neg_obj.json", headers={"Accept": "application/json"}, timeout=90)
    assert r.status_code == 200 and r.json() == {"x": 1, "text": "plain"}
    r = requests.get(f"{w}/neg_empty", headers={"Accept": "application/json"}, timeout=90)
    assert r.status_code == 204  # no entity, nothing to negotiate
    r = requests.options(f"{w}/neg_html", headers={"Accept": "*/*"}, timeout=90)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    # Pekko's empty entity has no content type, which it names none/none: only a range matching it accepts it
    err(requests.options(f"{w}/neg_html", headers={"Accept": "application/json"}, timeout=90), 406,
        NOT_ACCEPTABLE + "none/none")


# --- 6. runtime init error texts (runtime-go initHandler.go + python compile/launcher; nodejs service.js) -------


def _record_with_logs(c: Client, aid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        r = c.get(f"activations/{aid}")
        if (r.status_code == 200 and r.json()["logs"]) or time.monotonic() > deadline:
            rec: dict[str, Any] = r.json()
            return rec
        time.sleep(0.2)


@pytest.mark.parametrize(("kind", "code", "prefix", "log"), [
    ("python:3", "def main(a)\n    return a\n",
     "The action failed to generate or locate a binary. See logs for details.", "stderr: expected ':'"),
    ("python:3", "def other(a):\n    return a\n", "Cannot start action. Check logs for details.",
     "stderr: Command exited abruptly during initialization."),
    ("nodejs:18", "function main(a) { return a +; }",
     "Initialization has failed due to: SyntaxError: Unexpected token ';'\n    at ",
     "stderr: Error during initialization: SyntaxError: Unexpected token ';'"),
    ("nodejs:18", "function other(a) { return a; }",
     "Initialization has failed due to: Action entrypoint 'main' is not a function.", None),
])
def test_init_error_texts(c: Client, kind: str, code: str, prefix: str, log: str | None) -> None:
    name = uniq("initerr")
    put_action(c, name, code, kind=kind)
    r = c.post(f"actions/{name}", {}, blocking=True)
    assert r.status_code == 502, r.text
    resp = r.json()["response"]
    assert resp["status"] == "action developer error"
    assert resp["result"]["error"].startswith(prefix), resp
    if prefix.endswith("."):
        assert resp["result"]["error"] == prefix
    if log is not None:
        logs = _record_with_logs(c, r.json()["activationId"])["logs"]
        assert any(line.endswith(log) for line in logs), logs
