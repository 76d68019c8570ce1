"""streams.entities.logic: the pure decider, driven with a dict-backed lookup."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import entities as E
from streams.entities.logic import (
    Decision,
    decide_delete,
    decide_put,
    decide_rule_state,
    merge_parameters,
    resolve_action_params,
    rule_status,
)

Doc = dict[str, Any]
NS = "guest"
NOW = 1000
NOT_FOUND = "The requested resource does not exist."
CONFORMANCE = "Resource by this name exists but is not in this collection."


class Store:
    """Doc store that applies decisions, so multi-step scenarios read naturally."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}

    def get(self, doc_id: str) -> Doc | None:
        return self.docs.get(doc_id)

    def apply(self, d: Decision) -> Decision:
        for doc_id, doc in d.writes:
            if doc is None:
                self.docs.pop(doc_id, None)
            else:
                self.docs[doc_id] = doc
        return d

    def put(self, etype: str, name: str, body: dict[str, Any], overwrite: bool = False, now: int = NOW) -> Decision:
        ns, _, short = f"{NS}/{name}".rpartition("/")
        norm = {
            "action": E.normalize_action_put,
            "trigger": E.normalize_trigger_put,
            "rule": E.normalize_rule_put,
            "package": E.normalize_package_put,
        }[etype]
        proposed = norm(ns, short, body, now)
        return self.apply(decide_put(etype, f"{ns}/{short}", proposed, overwrite, self.get, now))

    def delete(self, etype: str, name: str, force: bool = False, contents: list[str] | None = None) -> Decision:
        return self.apply(decide_delete(etype, f"{NS}/{name}", self.get, force, contents or []))


PY = {"kind": "python:3", "code": "def main(a): return a"}


def ok(d: Decision) -> Doc:
    assert d.error is None, d.error and d.error.message
    assert d.result is not None
    return d.result


def fails(d: Decision, status: int, message: str) -> None:
    assert d.error is not None and d.writes == [] and d.result is None
    assert (d.error.status, d.error.message) == (status, message)


@pytest.fixture
def s() -> Store:
    return Store()


# --- generic conflicts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "body"),
    [
        ("action", "trigger", {}),
        ("trigger", "action", {"exec": PY}),
        ("trigger", "package", {}),
        ("package", "trigger", {}),
    ],
)
def test_name_in_other_collection(s: Store, first: str, second: str, body: Doc) -> None:
    s.put(first, "x", {"exec": PY} if first == "action" else {})
    fails(s.put(second, "x", body, overwrite=True), 409, CONFORMANCE)


@pytest.mark.parametrize(("etype", "body"), [("action", {"exec": PY}), ("trigger", {}), ("package", {})])
def test_exists_without_overwrite(s: Store, etype: str, body: Doc) -> None:
    ok(s.put(etype, "x", body))
    fails(s.put(etype, "x", body), 409, "resource already exists")


# --- actions --------------------------------------------------------------------------------


def test_action_create_defaults(s: Store) -> None:
    r = ok(s.put("action", "a", {"exec": PY}))
    assert r == {
        "namespace": "guest",
        "name": "a",
        "exec": {"kind": "python:3", "code": PY["code"], "binary": False},
        "parameters": [],
        "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1},
        "version": "0.0.1",
        "publish": False,
        "annotations": [{"key": "exec", "value": "python:3"}, {"key": "provide-api-key", "value": False}],
        "updated": NOW,
    }
    assert s.docs["guest/a"]["entityType"] == "action"
    assert "entityType" not in r


def test_action_create_requires_exec(s: Store) -> None:
    fails(s.put("action", "a", {}), 400, "exec undefined")


def test_action_create_keeps_given_fields(s: Store) -> None:
    r = ok(
        s.put(
            "action",
            "a",
            {
                "exec": PY,
                "version": "2.0.0",
                "publish": True,
                "limits": {"memory": 512},
                "annotations": [{"key": "provide-api-key", "value": True}, {"key": "exec", "value": "bogus"}],
            },
        )
    )
    assert r["version"] == "2.0.0" and r["publish"] is True
    assert r["limits"]["memory"] == 512 and r["limits"]["timeout"] == 60000
    assert r["annotations"] == [{"key": "provide-api-key", "value": True}, {"key": "exec", "value": "python:3"}]


def test_action_update_merge_rules(s: Store) -> None:
    s.put(
        "action",
        "a",
        {
            "exec": PY,
            "parameters": [{"key": "p", "value": 1}],
            "limits": {"memory": 512, "timeout": 1000},
            "annotations": [{"key": "web-export", "value": True}, {"key": "x", "value": 1}],
        },
    )
    r = ok(
        s.put(
            "action",
            "a",
            {
                "limits": {"timeout": 2000},
                "annotations": [{"key": "x", "value": 2}, {"key": "y", "value": 3}],
                "delAnnotations": ["web-export"],
            },
            overwrite=True,
            now=2000,
        )
    )
    assert r["exec"]["code"] == PY["code"]  # absent exec keeps old
    assert r["parameters"] == [{"key": "p", "value": 1}]  # absent params keep old
    assert r["limits"] == {"timeout": 2000, "memory": 512, "logs": 10, "concurrency": 1}
    assert r["version"] == "0.0.2" and r["updated"] == 2000
    assert [a["key"] for a in r["annotations"]] == ["x", "provide-api-key", "y", "exec"]  # exec re-set last
    assert {a["key"]: a["value"] for a in r["annotations"]}["x"] == 2


def test_action_update_replaces_exec_params_and_version(s: Store) -> None:
    s.put("action", "a", {"exec": PY, "parameters": [{"key": "p", "value": 1}]})
    r = ok(
        s.put(
            "action",
            "a",
            {"exec": {"kind": "nodejs:default", "code": "x"}, "parameters": [], "version": "5.0.0"},
            overwrite=True,
        )
    )
    assert r["exec"]["kind"] == "nodejs:20" and r["parameters"] == [] and r["version"] == "5.0.0"
    assert {"key": "exec", "value": "nodejs:20"} in r["annotations"]


def test_action_update_does_not_add_provide_api_key(s: Store) -> None:
    s.put("action", "a", {"exec": PY, "annotations": [{"key": "provide-api-key", "value": True}]})
    r = ok(s.put("action", "a", {"delAnnotations": ["provide-api-key"]}, overwrite=True))
    assert [a["key"] for a in r["annotations"]] == ["exec"]


def test_overwrite_on_missing_creates(s: Store) -> None:
    assert ok(s.put("action", "a", {"exec": PY}, overwrite=True))["version"] == "0.0.1"


def test_packaged_action(s: Store) -> None:
    fails(s.put("action", "pkg/a", {"exec": PY}), 404, NOT_FOUND)
    s.put("package", "pkg", {})
    r = ok(s.put("action", "pkg/a", {"exec": PY}))
    assert (r["namespace"], r["name"]) == ("guest/pkg", "a")
    assert "guest/pkg/a" in s.docs


def test_packaged_action_via_binding_or_non_package(s: Store) -> None:
    s.put("package", "pkg", {})
    s.put("package", "bnd", {"binding": {"namespace": "guest", "name": "pkg"}})
    fails(s.put("action", "bnd/a", {"exec": PY}), 400, "Operation not permitted on package binding.")
    s.put("trigger", "t", {})
    fails(s.put("action", "t/a", {"exec": PY}), 409, CONFORMANCE)


# --- sequences ------------------------------------------------------------------------------


def seq(*components: str) -> Doc:
    return {"exec": {"kind": "sequence", "components": list(components)}}


def test_sequence_create(s: Store) -> None:
    s.put("action", "a", {"exec": PY})
    s.put("action", "b", {"exec": PY})
    r = ok(s.put("action", "s", seq("/_/a", "/guest/b")))
    assert r["exec"] == {"kind": "sequence", "components": ["/guest/a", "/guest/b"]}
    assert r["parameters"] == [{"key": "_actions", "value": ["/guest/a", "/guest/b"]}]
    assert {"key": "exec", "value": "sequence"} in r["annotations"]


def test_sequence_errors(s: Store) -> None:
    s.put("action", "a", {"exec": PY})
    fails(s.put("action", "s", seq("/guest/a", "/guest/missing")), 400, "Sequence component does not exist.")
    fails(s.put("action", "s", seq("/guest/a", "/guest/s")), 400, "Sequence may not refer to itself.")
    s.put("trigger", "t", {})
    fails(s.put("action", "s", seq("/guest/t")), 400, "Sequence component does not exist.")


def test_sequence_nested_cycle(s: Store) -> None:
    s.put("action", "a", {"exec": PY})
    s.put("action", "s1", seq("/guest/a"))
    s.put("action", "s2", seq("/guest/s1"))
    # s1 -> s2 -> s1 would be a cycle
    fails(s.put("action", "s1", seq("/guest/s2"), overwrite=True), 400, "Sequence may not refer to itself.")


def test_sequence_nested_count(s: Store) -> None:
    s.put("action", "a", {"exec": PY})
    ok(s.put("action", "s25", seq(*["/guest/a"] * 25)))
    ok(s.put("action", "s50", seq("/guest/s25", "/guest/s25")))
    fails(s.put("action", "s51", seq("/guest/s25", "/guest/s25", "/guest/a")), 400, "Too many actions in the sequence.")


def test_sequence_component_through_binding(s: Store) -> None:
    s.put("package", "pkg", {})
    s.put("action", "pkg/a", {"exec": PY})
    s.put("package", "bnd", {"binding": {"namespace": "guest", "name": "pkg"}})
    assert ok(s.put("action", "s", seq("/guest/bnd/a")))["exec"]["components"] == ["/guest/bnd/a"]


# --- triggers -------------------------------------------------------------------------------


def test_trigger_create(s: Store) -> None:
    assert ok(s.put("trigger", "t", {"parameters": [{"key": "a", "value": 1}]})) == {
        "namespace": "guest",
        "name": "t",
        "parameters": [{"key": "a", "value": 1}],
        "limits": {},
        "version": "0.0.1",
        "publish": False,
        "annotations": [],
        "updated": NOW,
    }


def test_trigger_update_replaces_and_keeps_rules(s: Store) -> None:
    s.put("trigger", "t", {"parameters": [{"key": "a", "value": 1}], "annotations": [{"key": "x", "value": 1}]})
    s.put("action", "a", {"exec": PY})
    s.put("rule", "r", {"trigger": "/_/t", "action": "/_/a"})
    r = ok(s.put("trigger", "t", {"annotations": [{"key": "y", "value": 2}]}, overwrite=True))
    assert r["parameters"] == [{"key": "a", "value": 1}]
    assert r["annotations"] == [{"key": "y", "value": 2}]
    assert r["version"] == "0.0.2"  # linking the rule did not bump it; the update does
    assert r["rules"] == {"guest/r": {"action": {"path": "guest", "name": "a"}, "status": "active"}}


# --- rules ----------------------------------------------------------------------------------


@pytest.fixture
def sr(s: Store) -> Store:
    s.put("trigger", "t", {})
    s.put("trigger", "t2", {})
    s.put("action", "a", {"exec": PY})
    s.put("action", "b", {"exec": PY})
    return s


def test_rule_create(sr: Store) -> None:
    d = sr.put("rule", "r", {"trigger": "/_/t", "action": "a"})
    assert ok(d) == {
        "namespace": "guest",
        "name": "r",
        "trigger": {"path": "guest", "name": "t"},
        "action": {"path": "guest", "name": "a"},
        "version": "0.0.1",
        "publish": False,
        "annotations": [],
        "updated": NOW,
        "status": "active",
    }
    assert [w[0] for w in d.writes] == ["guest/r", "guest/t"]
    assert "status" not in sr.docs["guest/r"]
    assert sr.docs["guest/t"]["rules"] == {"guest/r": {"action": {"path": "guest", "name": "a"}, "status": "active"}}
    assert rule_status(sr.docs["guest/r"], sr.get) == "active"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"trigger": "t"}, "rule requires a valid trigger and a valid action"),
        ({"action": "a"}, "rule requires a valid trigger and a valid action"),
        ({"trigger": "/guest/nope", "action": "a"}, "trigger /guest/nope does not exist"),
        ({"trigger": "t", "action": "/guest/nope"}, "action /guest/nope does not exist"),
        ({"trigger": "t", "action": "pkg/nope"}, "action /guest/pkg/nope does not exist"),
        ({"trigger": "a", "action": "a"}, "trigger /guest/a does not exist"),
        ({"trigger": "t", "action": "t"}, "action /guest/t does not exist"),
    ],
)
def test_rule_create_errors(sr: Store, body: Doc, message: str) -> None:
    fails(sr.put("rule", "r", body), 400, message)


def test_rule_action_through_binding(sr: Store) -> None:
    sr.put("package", "pkg", {})
    sr.put("action", "pkg/x", {"exec": PY})
    sr.put("package", "bnd", {"binding": {"namespace": "guest", "name": "pkg"}})
    r = ok(sr.put("rule", "r", {"trigger": "t", "action": "bnd/x"}))
    assert r["action"] == {"path": "guest/bnd", "name": "x"}


def test_rule_update_moves_trigger_and_keeps_status(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a", "annotations": [{"key": "k", "value": 1}]})
    sr.apply(decide_rule_state("guest/r", "inactive", sr.get, NOW))
    d = sr.put("rule", "r", {"trigger": "t2", "action": "b"}, overwrite=True)
    r = ok(d)
    assert r["status"] == "inactive" and r["version"] == "0.0.2"
    assert r["annotations"] == [{"key": "k", "value": 1}]
    assert sr.docs["guest/t"]["rules"] == {}
    assert sr.docs["guest/t2"]["rules"]["guest/r"] == {"action": {"path": "guest", "name": "b"}, "status": "inactive"}


def test_rule_update_same_trigger_relinks_action(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    d = sr.put("rule", "r", {"action": "b"}, overwrite=True)
    assert ok(d)["status"] == "active"
    assert [w[0] for w in d.writes] == ["guest/r", "guest/t"]
    assert sr.docs["guest/t"]["rules"]["guest/r"]["action"] == {"path": "guest", "name": "b"}


def test_rule_update_checks_refs(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    sr.delete("action", "a")
    fails(sr.put("rule", "r", {"publish": True}, overwrite=True), 400, "action /guest/a does not exist")


def test_rule_status_without_trigger(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    sr.delete("trigger", "t")
    assert "guest/r" in sr.docs  # deleting a trigger leaves its rules
    assert rule_status(sr.docs["guest/r"], sr.get) == "inactive"


def test_rule_delete(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    sr.put("rule", "r2", {"trigger": "t", "action": "b"})
    r = ok(sr.delete("rule", "r"))
    assert r["status"] == "inactive" and r["name"] == "r"
    assert "guest/r" not in sr.docs
    assert list(sr.docs["guest/t"]["rules"]) == ["guest/r2"]


def test_rule_delete_without_trigger(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    sr.delete("trigger", "t")
    d = sr.delete("rule", "r")
    assert d.writes == [("guest/r", None)] and ok(d)["status"] == "inactive"


# --- rule state -----------------------------------------------------------------------------


def test_rule_state_change(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    d = sr.apply(decide_rule_state("guest/r", "inactive", sr.get, 5))
    assert d.error is None and d.result is None and [w[0] for w in d.writes] == ["guest/t"]
    assert rule_status(sr.docs["guest/r"], sr.get) == "inactive"
    assert sr.docs["guest/t"]["updated"] == 5
    sr.apply(decide_rule_state("guest/r", "active", sr.get, 6))
    assert rule_status(sr.docs["guest/r"], sr.get) == "active"


def test_rule_state_unchanged_is_noop(sr: Store) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    assert decide_rule_state("guest/r", "active", sr.get, 5) == Decision([], None, None)


@pytest.mark.parametrize("status", ["enabled", "", "ACTIVE"])
def test_rule_state_bad_status(sr: Store, status: str) -> None:
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    d = decide_rule_state("guest/r", status, sr.get, 5)
    msg = f"The request content was malformed:\nrequirement failed: {status} is not a recognized rule state"
    fails(d, 400, msg)


def test_rule_state_missing_rule_or_trigger(sr: Store) -> None:
    fails(decide_rule_state("guest/nope", "active", sr.get, 5), 404, NOT_FOUND)
    fails(decide_rule_state("guest/t", "active", sr.get, 5), 409, CONFORMANCE)
    sr.put("rule", "r", {"trigger": "t", "action": "a"})
    sr.delete("trigger", "t")
    fails(decide_rule_state("guest/r", "active", sr.get, 5), 404, "Only rules with existing triggers can be activated")
    assert decide_rule_state("guest/r", "inactive", sr.get, 5).error is None  # already inactive


# --- packages -------------------------------------------------------------------------------


def test_package_create(s: Store) -> None:
    assert ok(s.put("package", "p", {"annotations": [{"key": "binding", "value": "fake"}]})) == {
        "namespace": "guest",
        "name": "p",
        "binding": {},
        "parameters": [],
        "version": "0.0.1",
        "publish": False,
        "annotations": [],
        "updated": NOW,
    }


def test_binding_create_and_update(s: Store) -> None:
    s.put("package", "p", {"publish": True})
    s.put("package", "q", {})
    r = ok(
        s.put("package", "b", {"binding": {"namespace": "_", "name": "p"}, "parameters": [{"key": "x", "value": 1}]})
    )
    assert r["binding"] == {"namespace": "guest", "name": "p"}
    assert r["annotations"] == [{"key": "binding", "value": {"namespace": "guest", "name": "p"}}]
    r = ok(s.put("package", "b", {"parameters": [{"key": "y", "value": 2}]}, overwrite=True))
    assert r["binding"] == {"namespace": "guest", "name": "p"} and r["parameters"] == [{"key": "y", "value": 2}]
    assert r["version"] == "0.0.2"
    r = ok(s.put("package", "b", {"binding": {"namespace": "guest", "name": "q"}}, overwrite=True))
    assert r["binding"] == {"namespace": "guest", "name": "q"}
    assert r["annotations"] == [{"key": "binding", "value": {"namespace": "guest", "name": "q"}}]


@pytest.mark.parametrize(
    ("target", "status", "message"),
    [
        ("missing", 400, "Binding references a package that does not exist."),
        ("bnd", 400, "Cannot bind to another package binding."),
        ("act", 409, "Cannot bind to a resource that is not a package."),
    ],
)
def test_binding_errors(s: Store, target: str, status: int, message: str) -> None:
    s.put("package", "p", {})
    s.put("package", "bnd", {"binding": {"namespace": "guest", "name": "p"}})
    s.put("action", "act", {"exec": PY})
    fails(s.put("package", "new", {"binding": {"namespace": "guest", "name": target}}), status, message)


def test_package_cannot_become_binding(s: Store) -> None:
    s.put("package", "p", {})
    s.put("package", "q", {})
    msg = "Resource is a package and cannot be converted into a binding."
    fails(s.put("package", "q", {"binding": {"namespace": "guest", "name": "p"}}, overwrite=True), 409, msg)


# --- deletes --------------------------------------------------------------------------------


@pytest.mark.parametrize("etype", ["action", "trigger", "rule", "package"])
def test_delete_missing(s: Store, etype: str) -> None:
    fails(s.delete(etype, "nope"), 404, NOT_FOUND)


def test_delete_wrong_collection(s: Store) -> None:
    s.put("trigger", "t", {})
    fails(s.delete("action", "t"), 409, CONFORMANCE)


def test_delete_action_and_trigger(s: Store) -> None:
    s.put("action", "a", {"exec": PY})
    d = s.delete("action", "a")
    assert ok(d)["name"] == "a" and d.writes == [("guest/a", None)]
    s.put("trigger", "t", {})
    assert ok(s.delete("trigger", "t"))["limits"] == {}


@pytest.mark.parametrize(("n", "noun"), [(1, "entity"), (2, "entities")])
def test_delete_non_empty_package(s: Store, n: int, noun: str) -> None:
    s.put("package", "p", {})
    contents = []
    for i in range(n):
        s.put("action", f"p/a{i}", {"exec": PY})
        contents.append(f"guest/p/a{i}")
    msg = f"Package not empty (contains {n} {noun}). Set force param or delete package contents."
    fails(s.delete("package", "p", contents=contents), 409, msg)
    d = s.delete("package", "p", force=True, contents=contents)
    assert [w[0] for w in d.writes] == [*contents, "guest/p"]
    assert all(doc is None for _, doc in d.writes)
    assert s.docs == {}


def test_delete_binding_ignores_contents(s: Store) -> None:
    s.put("package", "p", {})
    s.put("package", "b", {"binding": {"namespace": "guest", "name": "p"}})
    assert s.delete("package", "b", contents=["guest/p/x"]).writes == [("guest/b", None)]


# --- parameter merge ------------------------------------------------------------------------


def kv(**items: Any) -> list[Doc]:
    return [{"key": k, "value": v} for k, v in items.items()]


@pytest.mark.parametrize(
    ("lists", "expected"),
    [
        ((), []),
        ((kv(a=1), None, []), kv(a=1)),
        ((kv(a=1, b=2), kv(b=3, c=4)), kv(a=1, b=3, c=4)),
        ((kv(a=1), kv(a=2), kv(a=3)), kv(a=3)),
    ],
)
def test_merge_parameters(lists: tuple[list[Doc] | None, ...], expected: list[Doc]) -> None:
    assert merge_parameters(*lists) == expected


def test_resolve_action_params_precedence() -> None:
    package = {"parameters": kv(p=1, b=1, a=1)}
    binding = {"parameters": kv(b=2, a=2)}
    action = {"parameters": [{"key": "a", "value": 3, "init": True}]}
    assert resolve_action_params(action, package, binding) == [
        {"key": "p", "value": 1},
        {"key": "b", "value": 2},
        {"key": "a", "value": 3, "init": True},
    ]
    assert resolve_action_params(action, None, None) == action["parameters"]
