"""Web actions under /api/v1/web on the running stack (through nginx, no auth unless the action asks for it)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

ECHO = "def main(args):\n    return {'args': args}\n"
HTTP = (
    "def main(args):\n"
    "    return {'statusCode': 201, 'headers': {'X-Custom': ['a', 'b'], 'Content-Type': 'text/plain'},\n"
    "            'body': 'made ' + args.get('__ow_path', '')}\n"
)
HTML = "def main(args):\n    return {'body': '<h1>hi ' + args.get('name', '') + '</h1>'}\n"
PNG = "def main(args):\n    return {'headers': {'Content-Type': 'image/png'}, 'body': 'iVBORw0KGgo='}\n"
FAIL = "def main(args):\n    return {'error': {'statusCode': 418, 'body': 'teapot'}}\n"
OPTS = "def main(args):\n    return {'statusCode': 200, 'headers': {'Allow': 'GET'}, 'body': args['__ow_method']}\n"
WEB = [{"key": "web-export", "value": True}]


def put(c: Client, name: str, code: str, annotations: list[dict[str, Any]], params: Any = None) -> None:
    body = {"exec": {"kind": "python:3", "code": code}, "annotations": annotations, "parameters": params or []}
    r = c.put(f"actions/{name}", body, overwrite=True)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def w(stack: Stack) -> str:
    c = stack.client()
    put(c, "wecho", ECHO, WEB, [{"key": "p", "value": "default"}])
    put(c, "whttp", HTTP, WEB)
    put(c, "whtml", HTML, WEB)
    put(c, "wpng", PNG, WEB)
    put(c, "wfail", FAIL, WEB)
    put(c, "wraw", ECHO, [*WEB, {"key": "raw-http", "value": True}])
    put(c, "wauth", ECHO, [*WEB, {"key": "require-whisk-auth", "value": "s3cret"}])
    put(c, "wauthkey", ECHO, [*WEB, {"key": "require-whisk-auth", "value": True}])
    put(c, "wfinal", ECHO, [*WEB, {"key": "final", "value": True}], [{"key": "p", "value": "fixed"}])
    put(c, "wopts", OPTS, [*WEB, {"key": "web-custom-options", "value": True}])
    put(c, "wprivate", ECHO, [])
    return f"{stack.url}/api/v1/web/guest/default"


def test_json_extension_and_context(w: str) -> None:
    r = requests.post(f"{w}/wecho.json/some/path?q=1&p=query", json={"b": 2}, headers={"X-Thing": "y"}, timeout=90)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert len(r.headers["x-openwhisk-activation-id"]) == 32
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    args = r.json()["args"]
    assert args["p"] == "query" and args["q"] == "1" and args["b"] == 2
    assert args["__ow_method"] == "post" and args["__ow_path"] == "/some/path"
    assert args["__ow_headers"]["x-thing"] == "y" and "__ow_user" not in args


def test_form_and_text_bodies(w: str) -> None:
    r = requests.put(f"{w}/wecho.json", data={"f": "v"}, timeout=90)
    assert r.json()["args"]["f"] == "v" and r.json()["args"]["__ow_method"] == "put"
    r = requests.post(f"{w}/wecho.json", data="plain words", headers={"Content-Type": "text/plain"}, timeout=90)
    assert r.json()["args"]["__ow_body"] == "plain words"
    r = requests.post(f"{w}/wecho.json?__ow_method=x", timeout=90)
    assert r.status_code == 400
    assert r.json()["error"] == "Request defines parameters that are not allowed (e.g., reserved properties)."


def test_http_html_text_svg(w: str) -> None:
    r = requests.get(f"{w}/whttp/extra", timeout=90)  # no extension: .http
    assert r.status_code == 201 and r.text == "made /extra"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.raw.headers.getlist("X-Custom") == ["a", "b"]
    r = requests.get(f"{w}/whtml.html?name=bob", timeout=90)
    assert r.status_code == 200 and r.text == "<h1>hi bob</h1>" and r.headers["Content-Type"].startswith("text/html")
    r = requests.get(f"{w}/whtml.text", timeout=90)
    assert r.text == "<h1>hi </h1>" and r.headers["Content-Type"].startswith("text/plain")
    r = requests.get(f"{w}/whtml.svg", timeout=90)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
    r = requests.get(f"{w}/wecho.text", timeout=90)
    assert r.status_code == 404 and r.json()["error"] == "Response does not include requested property."
    r = requests.get(f"{w}/wpng", timeout=90)
    assert r.status_code == 200 and r.content == base64.b64decode("iVBORw0KGgo=")
    r = requests.get(f"{w}/wfail.http", timeout=90)  # application error: the error field is the response
    assert r.status_code == 418 and r.text == "teapot"


def test_raw_http(w: str) -> None:
    r = requests.post(f"{w}/wraw.json?a=1&b=2", json={"x": 1}, timeout=90)
    args = r.json()["args"]
    assert args["__ow_query"] == "a=1&b=2" and "a" not in args and "x" not in args
    assert base64.b64decode(args["__ow_body"]) == b'{"x": 1}'


def test_not_exported_and_missing_are_404(w: str) -> None:
    for url in (f"{w}/wprivate.json", f"{w}/nosuch.json", w.replace("/guest/", "/nobody/") + "/wecho.json"):
        r = requests.get(url, timeout=90)
        assert r.status_code == 404 and r.json()["error"] == "The requested resource does not exist.", url


def test_require_whisk_auth(stack: Stack, w: str) -> None:
    assert requests.get(f"{w}/wauth.json", timeout=90).status_code == 401
    assert requests.get(f"{w}/wauth.json", headers={"X-Require-Whisk-Auth": "bad"}, timeout=90).status_code == 401
    r = requests.get(f"{w}/wauth.json", headers={"X-Require-Whisk-Auth": "s3cret"}, timeout=90)
    assert r.status_code == 200
    assert requests.get(f"{w}/wauthkey.json", timeout=90).status_code == 401
    r = requests.get(f"{w}/wauthkey.json", auth=stack.client().auth, timeout=90)
    assert r.status_code == 200 and r.json()["args"]["__ow_user"] == "guest"


def test_final_params(w: str) -> None:
    r = requests.get(f"{w}/wfinal.json?p=override", timeout=90)
    assert r.status_code == 400
    assert requests.get(f"{w}/wfinal.json", timeout=90).json()["args"]["p"] == "fixed"


def test_options_cors_and_custom_options(w: str) -> None:
    r = requests.options(f"{w}/wecho.json", headers={"Access-Control-Request-Headers": "X-Foo"}, timeout=90)
    assert r.status_code == 200 and r.text == ""
    assert r.headers["Access-Control-Allow-Methods"] == "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"
    assert r.headers["Access-Control-Allow-Headers"] == "X-Foo"
    r = requests.options(f"{w}/wopts", timeout=90)
    assert r.status_code == 200 and r.text == "options" and r.headers["Allow"] == "GET"
    assert "Access-Control-Allow-Origin" not in r.headers
