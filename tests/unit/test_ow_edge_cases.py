"""Pure parts of the OpenWhisk edge cases (tests/integration/test_ow_edge_cases.py has the HTTP side): kinds kept
as given, limit texts, the activations name filter, empty PUT bodies, 405 Allow, web content negotiation."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from api import errors, routes, web
from contracts import entities as E
from contracts.errors import WhiskError

MAL = "The request content was malformed:\n"


def test_doctests() -> None:
    for mod in (E, routes, web):
        assert doctest.testmod(mod).failed == 0


# --- kinds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored", "image"), [
    ("python:3.11", "python:3.11", "python:3"),
    ("python:3", "python:3", "python:3"),
    ("python:default", "python:3", "python:3"),
    ("python", "python:3", "python:3"),
    ("nodejs:default", "nodejs:20", "nodejs:20"),
    ("nodejs:18", "nodejs:18", "nodejs:18"),
    ("python:3.13", "python:3.13", "python:3.13"),
    ("blackbox", "blackbox", "blackbox"),
])
def test_kind_kept_as_given_and_its_image(given: str, stored: str, image: str) -> None:
    assert E.resolve_kind(given) == stored
    assert E.image_kind(stored) == image


@pytest.mark.parametrize("kind", ["python:3.12", "nodejs:16", "default", "python:"])
def test_unknown_kinds(kind: str) -> None:
    with pytest.raises(WhiskError) as e:
        E.resolve_kind(kind)
    assert e.value.message.startswith(MAL + f"The specified runtime '{kind}' is not supported")


def test_python_311_action_keeps_its_kind() -> None:
    a = E.normalize_action_put("guest", "a", {"exec": {"kind": "python:3.11", "code": "x"}}, 1)
    assert a["exec"]["kind"] == "python:3.11"


# --- limits (MemoryLimit, TimeLimit, LogLimit, IntraConcurrencyLimit, Messages) -----------------------------------


def _limits_error(limits: Any) -> str:
    with pytest.raises(WhiskError) as e:
        E.validate_limits(limits)
    assert e.value.status == 400
    return e.value.message


@pytest.mark.parametrize(("limits", "message"), [
    ({"memory": 1024}, "memory size 1024 MB exceeds allowed threshold of 512 MB"),
    ({"timeout": 50}, "duration 50 milliseconds below allowed threshold of 100 milliseconds"),
    ({"logs": 11}, "log size 11 MB exceeds allowed threshold of 10 MB"),
    # checkActionLimits order: memory, then timeout, then logs, then concurrency
    ({"concurrency": 5, "logs": 20, "timeout": 1, "memory": 1}, "memory size 1 MB below allowed threshold of 128 MB"),
    ({"concurrency": 5, "logs": 20, "timeout": 1},
     "duration 1 milliseconds below allowed threshold of 100 milliseconds"),
    # every field parses before any range is checked (ActionLimitsOption's field order)
    ({"memory": 1, "timeout": "x"}, MAL + "time limit malformed"),
    ({"memory": True}, MAL + "memory limit malformed"),
    ({"logs": [1]}, MAL + "log limit malformed"),
    ({"concurrency": "1"}, MAL + "concurrency limit malformed"),
    ({"timeout": 1.5}, MAL + "time limit must be whole number"),
    ({"concurrency": 1.5}, MAL + "intra concurrency limit must be whole number"),
    ({"instances": 1.5}, MAL + "instance concurrency limit must be whole number"),
])
def test_limit_texts(limits: dict[str, Any], message: str) -> None:
    assert _limits_error(limits) == message


def test_limits_null_and_whole_floats() -> None:
    assert E.validate_limits({"memory": None, "timeout": 1000.0, "other": "x"}) == {"timeout": 1000}


# --- activations ?name= ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "name"), [
    (None, None), ("", None), ("   ", None), ("a", "a"), ("pkg/a", "pkg/a"), ("/pkg/a/", "pkg/a"), ("//a", "a"),
])
def test_activation_name_filter(value: str | None, name: str | None) -> None:
    assert routes.activation_name_filter(value) == name


@pytest.mark.parametrize("value", ["/", "a/b/c", " a", "a$", "//"])
def test_activation_name_filter_rejects(value: str) -> None:
    with pytest.raises(WhiskError) as e:
        routes.activation_name_filter(value)
    assert e.value.message == f"Parameter may be a 'simple' name or 'package-name/simple' name: {value}"


# --- empty PUT bodies, 405 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("blank", "detail"), [
    ("", "at input index 0 (line 1, position 1), expected JSON Value:\n\n^\n"),
    ("  ", "at input index 2 (line 1, position 3), expected JSON Value:\n  \n  ^\n"),
    ("\n\t", "at input index 2 (line 2, position 2), expected JSON Value:\n?\n ^\n"),
])
def test_no_json_value_is_spray_jsons_text(blank: str, detail: str) -> None:
    e = errors.no_json_value(blank)
    assert (e.status, e.message) == (400, MAL + "Unexpected end-of-input " + detail)


def test_method_not_allowed_has_allow() -> None:
    e = errors.method_not_allowed(routes.METHODS["packages"])
    assert (e.status, e.message) == (405, "HTTP method not allowed, supported methods: PUT, GET, DELETE")
    assert e.headers == {"Allow": "PUT, GET, DELETE"}


# --- web actions: content negotiation --------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "media", "ok"), [
    (None, "text/html", True),
    ("", "text/html", True),
    ("*/*", "text/html", True),
    ("application/json", "text/html", False),
    ("application/json", "application/json", True),
    ("application/json;charset=utf-8", "application/json", True),
    ("text/*", "text/html", True),
    ("text/*", "application/json", False),
    ("text/html;q=0, */*", "text/html", False),
    ("text/*;q=0, text/html", "text/html", True),
    ("*/*;q=0", "application/json", False),
    ("text/html;level=1", "text/html", False),
    ("text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8", "application/json", True),
    ("nonsense", "application/json", True),  # unparsable: ignored
])
def test_accepts(accept: str | None, media: str, ok: bool) -> None:
    assert web.accepts(accept, media) is ok


@pytest.mark.parametrize(("ext", "result", "offered"), [
    ("http", {"body": "<p>x</p>"}, "text/html; charset=UTF-8"),
    ("http", {"body": {"a": 1}}, "application/json"),
    ("http", {"body": "eA==", "headers": {"content-type": "image/png"}}, "image/png"),
    ("http", {"body": "x", "headers": {"Content-Type": "text/plain; charset=latin1"}}, "text/plain; charset=UTF-8"),
    ("json", {"a": 1}, "application/json"),
    ("html", {"html": "x"}, "text/html; charset=UTF-8"),
    ("svg", {"svg": "x"}, "image/svg+xml"),
    ("text", {"text": "x"}, "text/plain"),
])
def test_offered_type(ext: str, result: Any, offered: str) -> None:
    _, headers, _ = web.web_response(ext, result)
    assert web.offered_type(ext, headers) == offered
