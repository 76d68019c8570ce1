"""contracts.entities: name rules, kinds, limits, sizes and PUT-body normalisation."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from contracts import entities as E
from contracts.errors import WhiskError

MAL = "The request content was malformed:\n"


def err(fn: Any, *args: Any) -> WhiskError:
    with pytest.raises(WhiskError) as info:
        fn(*args)
    return info.value


def act(body: dict[str, Any], ns: str = "guest", name: str = "a") -> dict[str, Any]:
    return E.normalize_action_put(ns, name, body, 1)


PY = {"kind": "python:3", "code": "def main(a): return a"}

# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "A_1", "hello world", "a.b", "a@b", "a&b", "a-b", "x" * 256, "a-", "a."])
def test_valid_names(name: str) -> None:
    assert E.validate_name(name) == name


@pytest.mark.parametrize("name", ["", " a", "a ", "-a", ".a", "a/b", "a$", "x" * 257, "é", "a\n"])
def test_invalid_names(name: str) -> None:
    e = err(E.validate_name, name)
    assert (e.status, e.message) == (400, "The name of the entity contains illegal characters.")


@pytest.mark.parametrize("ns", ["guest", "whisk.system", "guest/pkg"])
def test_valid_namespaces(ns: str) -> None:
    assert E.validate_namespace(ns) == ns


@pytest.mark.parametrize("ns", ["", "gu$st", "a/b/c", "/guest", "guest/"])
def test_invalid_namespaces(ns: str) -> None:
    e = err(E.validate_namespace, ns)
    assert (e.status, e.message) == (400, "The namespace contains illegal characters.")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ns/pkg/a", ("ns", "pkg", "a")),
        ("/ns/a", ("ns", None, "a")),
        ("a", ("guest", None, "a")),
        ("pkg/a", ("guest", "pkg", "a")),
        ("/_/a", ("guest", None, "a")),
        ("/_/pkg/a", ("guest", "pkg", "a")),
    ],
)
def test_parse_fqn(path: str, expected: tuple[str, str | None, str]) -> None:
    assert E.parse_fqn(path, "guest") == expected


@pytest.mark.parametrize("path", ["", "/ns", "/ns/a/b/c", "a/b/c", "/ns/a$"])
def test_parse_fqn_rejects(path: str) -> None:
    assert err(E.parse_fqn, path, "guest").status == 400


# --- kinds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "resolved"),
    [
        ("python:3", "python:3"),
        ("python:default", "python:3"),
        ("python", "python:3"),
        ("python:3.11", "python:3.11"),
        ("nodejs:18", "nodejs:18"),
        ("nodejs:default", "nodejs:20"),
        ("nodejs:22", "nodejs:22"),
        ("blackbox", "blackbox"),
        ("sequence", "sequence"),
        (" Python:3 ", "python:3"),
    ],
)
def test_resolve_kind(kind: str, resolved: str) -> None:
    assert E.resolve_kind(kind) == resolved


def test_unknown_kind() -> None:
    e = err(E.resolve_kind, "cobol:85")
    assert e.status == 400
    valid = ", ".join(f"'{k}'" for k in sorted([*E.RUNTIMES, "blackbox", "sequence"]))
    assert e.message == (
        MAL + f"The specified runtime 'cobol:85' is not supported by this platform. Valid values are: {valid}."
    )


def test_runtimes_info() -> None:
    info = E.runtimes_info()
    assert info["python"] == [
        {
            "kind": "python:3",
            "image": "streamwhisk/action-python",
            "default": True,
            "deprecated": False,
            "attached": False,
            "requireMain": False,
        },
        {
            "kind": "python:3.11",
            "image": "streamwhisk/action-python",
            "default": False,
            "deprecated": False,
            "attached": False,
            "requireMain": False,
        },
        {
            "kind": "python:3.13",
            "image": "streamwhisk/action-python313",
            "default": False,
            "deprecated": False,
            "attached": False,
            "requireMain": False,
        },
    ]
    assert [(r["kind"], r["default"]) for r in info["nodejs"]] == [("nodejs:18", False), ("nodejs:20", True),
                                                                    ("nodejs:22", False)]


def test_limit_constants() -> None:
    assert E.default_limits() == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    assert (E.LIMITS["timeout"].min, E.LIMITS["timeout"].max) == (100, 300000)
    assert (E.LIMITS["memory"].min, E.LIMITS["memory"].max) == (128, 512)
    assert (E.LIMITS["logs"].min, E.LIMITS["logs"].max) == (0, 10)
    assert (E.MAX_PARAMETER_SIZE, E.MAX_CODE_SIZE, E.MAX_PAYLOAD_SIZE) == (1048576, 50331648, 1048576)


# --- binary ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "binary"),
    [
        (base64.b64encode(b"PK\x03\x04zipdata").decode(), True),
        ("  " + base64.b64encode(b"abc").decode() + "\n", True),
        ("abcd", True),
        ("ab==", True),
        ("", False),
        ("   ", False),
        ("abc", False),
        ("def main(args): return args", False),
        ("ab=c", False),
        ("a===", False),
    ],
)
def test_is_binary_code(code: str, binary: bool) -> None:
    assert E.is_binary_code(code) is binary


# --- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"memory": 1024}, "memory size 1024 MB exceeds allowed threshold of 512 MB"),
        ({"memory": 64}, "memory size 64 MB below allowed threshold of 128 MB"),
        ({"timeout": 50}, "duration 50 milliseconds below allowed threshold of 100 milliseconds"),
        ({"timeout": 300001}, "duration 300001 milliseconds exceeds allowed threshold of 300000 milliseconds"),
        ({"logs": 11}, "log size 11 MB exceeds allowed threshold of 10 MB"),
        ({"logs": -1}, "log size -1 MB below allowed threshold of 0 MB"),
        ({"concurrency": 2}, "concurrency 2 exceeds allowed threshold of 1"),
        ({"concurrency": 0}, "concurrency 0 below allowed threshold of 1"),
    ],
)
def test_limit_range_messages(limits: dict[str, int], message: str) -> None:
    e = err(act, {"exec": PY, "limits": limits})
    assert (e.status, e.message) == (400, message)


@pytest.mark.parametrize("limits", [{"memory": "big"}, {"timeout": 1.5}, {"logs": True}, [1]])
def test_limit_type_malformed(limits: Any) -> None:
    e = err(act, {"exec": PY, "limits": limits})
    assert e.status == 400 and e.message.startswith(MAL)


def test_limits_only_given_fields() -> None:
    assert act({"limits": {"memory": 512, "timeout": 100, "logs": 0}})["limits"] == {
        "memory": 512,
        "timeout": 100,
        "logs": 0,
    }


# --- sizes ----------------------------------------------------------------------------------


def test_exec_too_large() -> None:
    code = "x" * (E.MAX_CODE_SIZE + 1)
    e = err(act, {"exec": {"kind": "python:3", "code": code}})
    assert (e.status, e.message) == (413, f"exec larger than allowed: {E.MAX_CODE_SIZE + 1} > 50331648 bytes.")


@pytest.mark.parametrize("field", ["parameters", "annotations"])
def test_key_values_too_large(field: str) -> None:
    kvs = [{"key": "k", "value": "v" * 1048576}]
    size = 1 + 1048576 + 2  # key + quoted JSON string
    e = err(act, {field: kvs})
    assert (e.status, e.message) == (413, f"{field} larger than allowed: {size} > 1048576 bytes.")


def test_key_values_at_limit_ok() -> None:
    kvs = [{"key": "k", "value": "v" * (1048576 - 3)}]
    assert act({"parameters": kvs})["parameters"][0]["key"] == "k"


# --- key/value lists ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["parameters", "annotations"])
@pytest.mark.parametrize("value", [{"a": 1}, [{"value": 1}], [{"key": 1, "value": 2}], ["x"], "s"])
def test_key_values_malformed(field: str, value: Any) -> None:
    e = err(act, {field: value})
    assert e.status == 400 and e.message.startswith(MAL)


def test_key_values_dedup_later_wins_and_flags() -> None:
    out = act(
        {
            "parameters": [
                {"key": "a", "value": 1},
                {"key": "b", "value": 2, "init": True},
                {"key": "a", "value": 3},
                {"key": "c"},
            ]
        }
    )["parameters"]
    assert out == [{"key": "a", "value": 3}, {"key": "b", "value": 2, "init": True}, {"key": "c", "value": None}]


@pytest.mark.parametrize("dels", [["a", 1], "a", {"a": 1}])
def test_del_annotations_malformed(dels: Any) -> None:
    assert err(act, {"delAnnotations": dels}).message.startswith(MAL)


@pytest.mark.parametrize(("given", "stored"), [("1.2.3", "1.2.3"), ("1", "1.0.0"), ("0.1", "0.1.0")])
def test_version(given: str, stored: str) -> None:
    assert act({"version": given})["version"] == stored


@pytest.mark.parametrize("version", ["a.b.c", "1.2.3.4", 1, ""])
def test_version_malformed(version: Any) -> None:
    assert err(act, {"version": version}).message.startswith(MAL)


def test_publish_must_be_bool() -> None:
    assert err(act, {"publish": "yes"}).message.startswith(MAL)
    assert act({"publish": True})["publish"] is True


# --- actions --------------------------------------------------------------------------------


def test_action_proposal_only_given_fields() -> None:
    p = act({"exec": {"kind": "python:default", "code": "x=1", "main": "go"}}, ns="guest/pkg")
    assert p == {
        "entityType": "action",
        "namespace": "guest/pkg",
        "name": "a",
        "exec": {"kind": "python:3", "code": "x=1", "binary": False, "main": "go"},
    }
    assert act({}) == {"entityType": "action", "namespace": "guest", "name": "a"}


def test_action_bad_name_and_namespace() -> None:
    assert err(act, {}, "guest", "a/b").message == "The name of the entity contains illegal characters."
    assert err(act, {}, "gu!", "a").message == "The namespace contains illegal characters."


def test_binary_code_computed() -> None:
    zipped = base64.b64encode(b"zipfile!").decode()
    assert act({"exec": {"kind": "nodejs:18", "code": zipped, "binary": False}})["exec"]["binary"] is True


@pytest.mark.parametrize(
    ("exec_", "message"),
    [
        ({"code": "x"}, "'kind' must be a string defined in 'exec'"),
        ({"kind": "python:3"}, "'code' must be a string defined in 'exec' for 'python:3' actions"),
        ({"kind": "python:3", "code": 5}, "'code' must be a string defined in 'exec' for 'python:3' actions"),
        (
            {"kind": "python:3", "code": "x", "main": 1},
            "if defined, 'main' be a string in 'exec' for 'python:3' actions",
        ),
        ({"kind": "blackbox"}, "'image' must be a string defined in 'exec' for 'blackbox' actions"),
        ({"kind": "sequence"}, "'components' must be defined for sequence kind"),
        ({"kind": "sequence", "components": "a"}, "'components' must be an array"),
        ("python", "'exec' must be an object"),
    ],
)
def test_exec_malformed(exec_: Any, message: str) -> None:
    e = err(act, {"exec": exec_})
    assert (e.status, e.message) == (400, MAL + message)


def test_blackbox() -> None:
    assert act({"exec": {"kind": "blackbox", "image": "user/img:1"}})["exec"] == {
        "kind": "blackbox",
        "image": "user/img:1",
        "binary": False,
    }
    zipped = base64.b64encode(b"zip").decode()
    assert act({"exec": {"kind": "blackbox", "image": "i", "code": zipped, "main": "m"}})["exec"] == {
        "kind": "blackbox",
        "image": "i",
        "code": zipped,
        "binary": True,
        "main": "m",
    }


def test_sequence_components_resolved_and_params() -> None:
    p = act(
        {
            "exec": {"kind": "sequence", "components": ["/_/a1", "/other/pkg/b", "c", "pkg/d"]},
            "parameters": [{"key": "ignored", "value": 1}],
        },
        ns="guest/seqpkg",
    )
    comps = ["/guest/a1", "/other/pkg/b", "/guest/c", "/guest/pkg/d"]
    assert p["exec"] == {"kind": "sequence", "components": comps}
    assert p["parameters"] == [{"key": "_actions", "value": comps}]


@pytest.mark.parametrize(
    ("n", "message"), [(0, "No component specified for the sequence."), (51, "Too many actions in the sequence.")]
)
def test_sequence_length(n: int, message: str) -> None:
    e = err(act, {"exec": {"kind": "sequence", "components": [f"/guest/a{i}" for i in range(n)]}})
    assert (e.status, e.message) == (400, message)


def test_sequence_of_fifty_ok() -> None:
    assert len(act({"exec": {"kind": "sequence", "components": ["/guest/x"] * 50}})["exec"]["components"]) == 50


def test_del_annotations_kept() -> None:
    assert act({"delAnnotations": ["web-export"]})["delAnnotations"] == ["web-export"]


def test_body_must_be_object() -> None:
    assert err(E.normalize_action_put, "guest", "a", [], 1).message.startswith(MAL)


# --- triggers -------------------------------------------------------------------------------


def trig(body: dict[str, Any]) -> dict[str, Any]:
    return E.normalize_trigger_put("guest", "t", body, 1)


def test_trigger_proposal() -> None:
    p = trig({"parameters": [{"key": "a", "value": 1}], "limits": {"x": 1}, "publish": False})
    assert p == {
        "entityType": "trigger",
        "namespace": "guest",
        "name": "t",
        "parameters": [{"key": "a", "value": 1}],
        "limits": {},
        "publish": False,
    }


@pytest.mark.parametrize("feed", ["/whisk.system/alarms/alarm", "alarms/alarm", "/guest/feed"])
def test_trigger_feed_ok(feed: str) -> None:
    assert trig({"annotations": [{"key": "feed", "value": feed}]})["annotations"][0]["value"] == feed


@pytest.mark.parametrize("feed", ["/bad$/x", 5, "/ns", "a/b/c/d", ""])
def test_trigger_feed_invalid(feed: Any) -> None:
    e = err(trig, {"annotations": [{"key": "feed", "value": feed}]})
    assert (e.status, e.message) == (400, "Feed name is not valid")


# --- rules ----------------------------------------------------------------------------------


def rule(body: dict[str, Any]) -> dict[str, Any]:
    return E.normalize_rule_put("guest", "r", body, 1)


@pytest.mark.parametrize(
    ("trigger", "action", "tref", "aref"),
    [
        ("/guest/t", "/guest/a", {"path": "guest", "name": "t"}, {"path": "guest", "name": "a"}),
        ("t", "a", {"path": "guest", "name": "t"}, {"path": "guest", "name": "a"}),
        ("_/t", "/_/pkg/a", {"path": "guest", "name": "t"}, {"path": "guest/pkg", "name": "a"}),
        ("/other/t", "pkg/a", {"path": "other", "name": "t"}, {"path": "guest/pkg", "name": "a"}),
        (
            {"path": "guest", "name": "t"},
            {"path": "guest/p", "name": "a"},
            {"path": "guest", "name": "t"},
            {"path": "guest/p", "name": "a"},
        ),
    ],
)
def test_rule_refs(trigger: Any, action: Any, tref: dict[str, str], aref: dict[str, str]) -> None:
    p = rule({"trigger": trigger, "action": action})
    assert (p["trigger"], p["action"]) == (tref, aref)


def test_rule_without_refs_is_a_valid_proposal() -> None:
    assert rule({"publish": True}) == {"entityType": "rule", "namespace": "guest", "name": "r", "publish": True}


@pytest.mark.parametrize("bad", [5, "/ns", "/guest/bad$"])
def test_rule_bad_ref(bad: Any) -> None:
    assert err(rule, {"trigger": bad, "action": "a"}).status == 400


# --- packages -------------------------------------------------------------------------------


def pkg(body: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return E.normalize_package_put("guest", name, body, 1)


def test_package_default_reserved() -> None:
    e = err(pkg, {}, "default")
    assert (e.status, e.message) == (400, "Package name 'default' is reserved.")


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        ({"namespace": "other", "name": "shared"}, {"namespace": "other", "name": "shared"}),
        ({"namespace": "_", "name": "mine"}, {"namespace": "guest", "name": "mine"}),
    ],
)
def test_package_binding(binding: dict[str, str], expected: dict[str, str]) -> None:
    assert pkg({"binding": binding})["binding"] == expected


def test_package_empty_binding_is_not_given() -> None:
    assert "binding" not in pkg({"binding": {}})


@pytest.mark.parametrize("binding", ["x", {"namespace": "a"}, {"namespace": "a", "name": "b$"}])
def test_package_binding_malformed(binding: Any) -> None:
    assert err(pkg, {"binding": binding}).status == 400


def test_packages_do_not_nest() -> None:
    assert err(E.normalize_package_put, "guest/p", "q", {}, 1).status == 400
