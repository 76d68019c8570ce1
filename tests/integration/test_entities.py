"""Entity CRUD through the real stack (nginx -> API -> commands -> Faust decider -> entities -> CouchDB).

Spec sections 2.0 and 2.3-2.6, 3.1-3.4 (features F4-F8, F11 GET merges, F16, F18-F22, F30, F31).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

PY = {"kind": "python:3", "code": "def main(args):\n    return args\n"}
NOT_FOUND = "The requested resource does not exist."
CONFORMANCE = "Resource by this name exists but is not in this collection."


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def err(r: requests.Response, status: int, message: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == message, body
    assert body["code"] == r.headers["X-Request-ID"]


def kv(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["key"]: i["value"] for i in items}


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    return stack.client()


@pytest.fixture(scope="module")
def bob(stack: Stack) -> Client:
    """A second namespace."""
    return stack.client(stack.subject("bob"))


# --- actions ------------------------------------------------------------------------------------------


def test_action_create_defaults_and_conflict(c: Client) -> None:
    name = uniq("act")
    r = c.put(f"actions/{name}", {"exec": PY, "parameters": [{"key": "a", "value": 1}]})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["namespace"] == "guest" and a["name"] == name and a["version"] == "0.0.1" and a["publish"] is False
    assert a["exec"] == {**PY, "binary": False}
    assert a["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    assert a["annotations"] == [{"key": "exec", "value": "python:3"}, {"key": "provide-api-key", "value": False}]
    assert a["parameters"] == [{"key": "a", "value": 1}]
    assert isinstance(a["updated"], int) and "entityType" not in a
    err(c.put(f"actions/{name}", {"exec": PY}), 409, "resource already exists")
    err(c.put(f"actions/{uniq('noexec')}", {}), 400, "exec undefined")
    got = c.get(f"actions/{name}").json()
    assert got == a
    assert "code" not in c.get(f"actions/{name}", code=False).json()["exec"]


def test_action_update_merges(c: Client) -> None:
    name = uniq("upd")
    body = {"exec": PY, "annotations": [{"key": "x", "value": 1}, {"key": "y", "value": 2}],
            "limits": {"memory": 128}, "parameters": [{"key": "p", "value": "old"}]}
    assert c.put(f"actions/{name}", body).status_code == 200
    r = c.put(f"actions/{name}", {"annotations": [{"key": "z", "value": 3}], "delAnnotations": ["x"],
                                  "limits": {"timeout": 1000}}, overwrite=True)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["version"] == "0.0.2"
    assert kv(a["annotations"]) == {"y": 2, "exec": "python:3", "provide-api-key": False, "z": 3}
    assert a["limits"] == {"timeout": 1000, "memory": 128, "logs": 10, "concurrency": 1}
    assert a["parameters"] == [{"key": "p", "value": "old"}]  # absent fields keep old values
    assert a["exec"]["code"] == PY["code"]
    a = c.put(f"actions/{name}", {"version": "2.1.0", "parameters": []}, overwrite="yes").json()
    assert a["version"] == "2.1.0" and a["parameters"] == []
    assert c.put(f"actions/{name}", {}, overwrite=True).json()["version"] == "2.1.1"
    assert c.get(f"actions/{name}").json()["version"] == "2.1.1"


def test_action_exec_kinds(c: Client) -> None:
    b64 = "UEsDBAoAAAAAAA=="
    a = c.put(f"actions/{uniq('bin')}", {"exec": {"kind": "python:default", "code": b64, "main": "run"}}).json()
    assert a["exec"] == {"kind": "python:3", "code": b64, "binary": True, "main": "run"}
    a = c.put(f"actions/{uniq('bb')}", {"exec": {"kind": "blackbox", "image": "user/img:1"}}).json()
    assert a["exec"] == {"kind": "blackbox", "image": "user/img:1", "binary": False}
    r = c.put(f"actions/{uniq('k')}", {"exec": {"kind": "cobol:1", "code": "x"}})
    assert r.status_code == 400
    assert r.json()["error"].startswith("The request content was malformed:\nThe specified runtime 'cobol:1' is not "
                                        "supported by this platform. Valid values are: ")


def test_delete_then_get_is_404_at_once(c: Client) -> None:
    """Read-your-writes: every answer is sent after the projection holds the decision."""
    for i in range(5):
        name = uniq(f"ryw{i}")
        put = c.put(f"actions/{name}", {"exec": PY, "parameters": [{"key": "i", "value": i}]})
        assert put.status_code == 200
        assert c.get(f"actions/{name}").json()["parameters"] == [{"key": "i", "value": i}]
        upd = c.put(f"actions/{name}", {"parameters": [{"key": "i", "value": -i}]}, overwrite=True)
        assert c.get(f"actions/{name}").json()["version"] == upd.json()["version"] == "0.0.2"
        d = c.delete(f"actions/{name}")
        assert d.status_code == 200 and d.json()["name"] == name and d.json()["parameters"][0]["value"] == -i
        err(c.get(f"actions/{name}"), 404, NOT_FOUND)
    err(c.delete(f"actions/{uniq('never')}"), 404, NOT_FOUND)


# --- names, collections, validation -------------------------------------------------------------------


def test_one_name_space_across_collections(c: Client) -> None:
    name = uniq("shared")
    assert c.put(f"triggers/{name}", {}).status_code == 200
    for coll, body in (("actions", {"exec": PY}), ("rules", {"trigger": name, "action": "x"}), ("packages", {})):
        err(c.put(f"{coll}/{name}", body), 409, CONFORMANCE)
        err(c.put(f"{coll}/{name}", body, overwrite=True), 409, CONFORMANCE)
        err(c.get(f"{coll}/{name}"), 409, CONFORMANCE)
        err(c.delete(f"{coll}/{name}"), 409, CONFORMANCE)
    assert c.get(f"triggers/{name}").status_code == 200


def test_entity_names(c: Client) -> None:
    ok = ["a", "x_1", "with space@a.b&c-d", "Z" * 256]
    for name in ok:
        r = c.put(f"triggers/{name}", {}, overwrite=True)
        assert r.status_code == 200 and r.json()["name"] == name, (name, r.text)
    for bad in ("bad$name", " lead", "trail ", "Z" * 257, "-dash"):
        for coll in ("actions", "triggers", "rules", "packages"):
            err(c.put(f"{coll}/{bad}", {}), 400, "The name of the entity contains illegal characters.")
    bad_ns = Client(c.base, c.auth, "bad$ns")
    err(bad_ns.get("actions"), 400, "The namespace contains illegal characters.")
    err(bad_ns.put("actions/x", {"exec": PY}), 400, "The namespace contains illegal characters.")
    err(c.put("packages/default", {}), 400, "Package name 'default' is reserved.")


@pytest.mark.parametrize(("limits", "message"), [
    ({"memory": 1024}, "memory size 1024 MB exceeds allowed threshold of 512 MB"),
    ({"memory": 64}, "memory size 64 MB below allowed threshold of 128 MB"),
    ({"timeout": 50}, "duration 50 milliseconds below allowed threshold of 100 milliseconds"),
    ({"timeout": 300001}, "duration 300001 milliseconds exceeds allowed threshold of 300000 milliseconds"),
    ({"logs": 11}, "log size 11 MB exceeds allowed threshold of 10 MB"),
    ({"concurrency": 2}, "concurrency 2 exceeds allowed threshold of 1"),
])
def test_action_limit_ranges(c: Client, limits: dict[str, int], message: str) -> None:
    name = uniq("lim")
    err(c.put(f"actions/{name}", {"exec": PY, "limits": limits}), 400, message)
    err(c.get(f"actions/{name}"), 404, NOT_FOUND)  # nothing half-written


def test_size_limits(c: Client) -> None:
    big = "x" * (1024 * 1024)
    name = uniq("size")
    r = c.put(f"actions/{name}", {"exec": PY, "parameters": [{"key": "p", "value": big}]})
    err(r, 413, f"parameters larger than allowed: {1 + len(big) + 2} > 1048576 bytes.")
    r = c.put(f"triggers/{name}", {"annotations": [{"key": "a", "value": big}]})
    err(r, 413, f"annotations larger than allowed: {1 + len(big) + 2} > 1048576 bytes.")
    r = c.put(f"packages/{name}", {"parameters": [{"key": "p", "value": big}]})
    err(r, 413, f"parameters larger than allowed: {1 + len(big) + 2} > 1048576 bytes.")
    code = "#" * (48 * 1024 * 1024 + 1)  # a ~49 MB body: passes nginx (50m), refused by the API
    r = c.put(f"actions/{name}", {"exec": {"kind": "python:3", "code": code}})
    err(r, 413, f"exec larger than allowed: {len(code)} > 50331648 bytes.")
    for coll in ("actions", "triggers", "packages"):
        err(c.get(f"{coll}/{name}"), 404, NOT_FOUND)


def test_large_code_travels_through_kafka(c: Client) -> None:
    """Code above Kafka's 1 MB default: the broker and clients are set for 64 MB messages."""
    code = "def main(args):\n    return {}\n" + "#" * (8 * 1024 * 1024) + "\n"
    name = uniq("large")
    r = c.put(f"actions/{name}", {"exec": {"kind": "python:3", "code": code}})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["exec"]["code"]) == len(code)
    assert c.get(f"actions/{name}").json()["exec"]["code"] == code
    assert c.delete(f"actions/{name}").status_code == 200


def test_bad_requests(c: Client) -> None:
    url = c.url(f"actions/{uniq('bad')}")
    r = requests.put(url, data=b'{"exec": ', auth=c.auth, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"].startswith("The request content was malformed:\n")
    r = requests.put(url, data=b"[1]", auth=c.auth, headers={"Content-Type": "application/json"}, timeout=30)
    err(r, 400, "The request content was malformed:\nObject expected")
    r = requests.put(url, data=b'{"exec": 1}', auth=c.auth, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"].startswith("The request content was malformed:\n")
    r = requests.put(url, data=b"exec=1", auth=c.auth, headers={"Content-Type": "text/plain"}, timeout=30)
    err(r, 415, "The request's Content-Type is not supported. Expected:\napplication/json")
    err(c.put(f"actions/{uniq('ow')}", {"exec": PY}, overwrite="maybe"), 400,
        "The query parameter 'overwrite' was malformed:\n'maybe' is not a valid Boolean value")
    err(c.post("packages/x", {}), 405, "HTTP method not allowed, supported methods: PUT, GET, DELETE")
    err(c.req("PATCH", "actions/x"), 405, "HTTP method not allowed, supported methods: PUT, GET, DELETE, POST")
    err(c.post("actions", {}), 405, "HTTP method not allowed, supported methods: GET")
    err(c.put("limits", {}), 405, "HTTP method not allowed, supported methods: GET")
    err(c.get("actions/a/b/c"), 404, NOT_FOUND)
    err(c.get(f"triggers/{uniq('nope')}"), 404, NOT_FOUND)
    err(requests.get(f"{c.base}/api/v1/namespaces/guest", auth=c.auth, timeout=30), 404, NOT_FOUND)


# --- lists --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lister(stack: Stack) -> Iterator[Client]:
    """A fresh namespace with 35 triggers, so counts and pages are exact."""
    cl = stack.client(stack.subject("lister"))
    for i in range(35):
        assert cl.put(f"triggers/t{i:02d}", {}).status_code == 200
    yield cl


def test_list_newest_first_limit_skip_count(lister: Client) -> None:
    names = [t["name"] for t in lister.get("triggers").json()]
    assert names == [f"t{i:02d}" for i in range(34, 4, -1)]  # default limit 30, newest first
    assert [t["name"] for t in lister.get("triggers", limit=3, skip=2).json()] == ["t32", "t31", "t30"]
    assert len(lister.get("triggers", limit=0).json()) == 35  # 0 = up to 200
    assert lister.get("triggers", count=True).json() == {"triggers": 35}
    item = lister.get("triggers", limit=1).json()[0]
    assert set(item) == {"namespace", "name", "version", "publish", "annotations", "updated"}
    lister.put("triggers/t00", {}, overwrite=True)  # an update makes it the newest
    assert lister.get("triggers", limit=1).json()[0]["name"] == "t00"
    err(lister.get("triggers", limit=201), 400,
        "The query parameter 'limit' was malformed:\nThe value '201' is not in the range of 0 to 200 for triggers.")
    err(lister.get("actions", limit="x"), 400,
        "The query parameter 'limit' was malformed:\nThe value 'x' is not an integer for actions.")
    err(lister.get("rules", skip=-1), 400,
        "The query parameter 'skip' was malformed:\nThe value '-1' is not greater than or equal to 0 for rules.")
    assert lister.get("actions").json() == [] and lister.get("packages", count=True).json() == {"packages": 0}


def test_list_summaries(c: Client) -> None:
    pkg, act = uniq("lp"), uniq("la")
    c.put(f"packages/{pkg}", {})
    c.put(f"actions/{pkg}/{act}", {"exec": PY})
    listed = c.get("actions", limit=5).json()
    assert listed[0]["name"] == act and listed[0]["namespace"] == f"guest/{pkg}"  # packaged actions are listed
    assert set(listed[0]) == {"namespace", "name", "version", "publish", "annotations", "limits", "exec", "updated"}
    assert listed[0]["exec"] == {"binary": False}
    pk = next(p for p in c.get("packages", limit=200).json() if p["name"] == pkg)
    assert pk["binding"] is False


# --- packages, bindings, sharing ----------------------------------------------------------------------


def test_packaged_actions_and_package_delete(c: Client) -> None:
    pkg = uniq("pkg")
    err(c.put(f"actions/{pkg}/a", {"exec": PY}), 404, NOT_FOUND)  # no such package
    p = c.put(f"packages/{pkg}", {"parameters": [{"key": "x", "value": "pkg"}, {"key": "y", "value": "pkg"}]}).json()
    assert p["binding"] == {} and p["version"] == "0.0.1" and p["publish"] is False
    for n in ("a", "b"):
        r = c.put(f"actions/{pkg}/{n}", {"exec": PY, "parameters": [{"key": "y", "value": n}]})
        assert r.status_code == 200 and r.json()["namespace"] == f"guest/{pkg}"
    c.put(f"actions/{pkg}/feed", {"exec": PY, "annotations": [{"key": "feed", "value": True}]})
    got = c.get(f"actions/{pkg}/a").json()
    assert kv(got["parameters"]) == {"x": "pkg", "y": "a"}  # package < action
    listed = c.get(f"actions/{pkg}/").json()
    assert sorted(a["name"] for a in listed) == ["a", "b", "feed"]
    assert c.get(f"actions/{pkg}/", count=True).json() == {"actions": 3}
    view = c.get(f"packages/{pkg}").json()
    assert sorted(a["name"] for a in view["actions"]) == ["a", "b"] and [f["name"] for f in view["feeds"]] == ["feed"]
    assert set(view["actions"][0]) == {"name", "version", "annotations"}
    err(c.delete(f"packages/{pkg}"), 409,
        "Package not empty (contains 3 entities). Set force param or delete package contents.")
    assert c.delete(f"actions/{pkg}/b").status_code == 200
    err(c.delete(f"packages/{pkg}"), 409,
        "Package not empty (contains 2 entities). Set force param or delete package contents.")
    d = c.delete(f"packages/{pkg}", force=True)
    assert d.status_code == 200 and d.json()["name"] == pkg
    err(c.get(f"actions/{pkg}/a"), 404, NOT_FOUND)
    err(c.get(f"packages/{pkg}"), 404, NOT_FOUND)
    err(c.get(f"actions/{pkg}/"), 404, NOT_FOUND)


def test_bindings(c: Client) -> None:
    pkg, bnd = uniq("base"), uniq("bind")
    c.put(f"packages/{pkg}", {"parameters": [{"key": "x", "value": "pkg"}, {"key": "y", "value": "pkg"}]})
    c.put(f"actions/{pkg}/act", {"exec": PY, "parameters": [{"key": "z", "value": "act"}]})
    r = c.put(f"packages/{bnd}", {"binding": {"namespace": "_", "name": pkg},
                                  "parameters": [{"key": "y", "value": "bind"}]})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["binding"] == {"namespace": "guest", "name": pkg}
    assert {"key": "binding", "value": {"namespace": "guest", "name": pkg}} in b["annotations"]
    view = c.get(f"packages/{bnd}").json()
    assert view["name"] == bnd and kv(view["parameters"]) == {"x": "pkg", "y": "bind"}  # binding over package
    assert [a["name"] for a in view["actions"]] == ["act"]
    act = c.get(f"actions/{bnd}/act").json()
    assert kv(act["parameters"]) == {"x": "pkg", "y": "bind", "z": "act"}  # package < binding < action
    assert [a["name"] for a in c.get(f"actions/{bnd}/").json()] == ["act"]  # the binding is resolved
    listed = next(p for p in c.get("packages", limit=200).json() if p["name"] == bnd)
    assert listed["binding"] == {"namespace": "guest", "name": pkg}
    err(c.put(f"actions/{bnd}/new", {"exec": PY}), 400, "Operation not permitted on package binding.")
    err(c.put(f"packages/{uniq('b')}", {"binding": {"namespace": "_", "name": uniq("missing")}}), 400,
        "Binding references a package that does not exist.")
    err(c.put(f"packages/{uniq('b')}", {"binding": {"namespace": "guest", "name": bnd}}), 400,
        "Cannot bind to another package binding.")
    trig = uniq("trig")
    c.put(f"triggers/{trig}", {})
    err(c.put(f"packages/{uniq('b')}", {"binding": {"namespace": "guest", "name": trig}}), 409,
        "Cannot bind to a resource that is not a package.")
    err(c.put(f"packages/{pkg}", {"binding": {"namespace": "guest", "name": bnd}}, overwrite=True), 409,
        "Resource is a package and cannot be converted into a binding.")
    assert c.delete(f"packages/{bnd}").status_code == 200  # a binding holds nothing
    assert c.get(f"packages/{pkg}").status_code == 200


def test_shared_packages_across_namespaces(c: Client, bob: Client, stack: Stack) -> None:
    pub, priv = uniq("pub"), uniq("priv")
    assert bob.put(f"packages/{pub}", {"publish": True, "parameters": [{"key": "o", "value": "bob"}]}).ok
    assert bob.put(f"actions/{pub}/hello", {"exec": PY}).ok
    assert bob.put(f"packages/{priv}", {}).ok
    assert bob.put(f"actions/{priv}/secret", {"exec": PY}).ok
    assert bob.put("actions/top", {"exec": PY}, overwrite=True).ok
    bob_pkg = bob.put(f"packages/{uniq('bobbind')}", {"binding": {"namespace": "bob", "name": pub},
                                                      "publish": True}).json()
    as_guest = Client(c.base, c.auth, "bob")
    # guest reads bob's published package and its actions, nothing else
    assert as_guest.get(f"packages/{pub}").json()["actions"][0]["name"] == "hello"
    assert kv(as_guest.get(f"actions/{pub}/hello").json()["parameters"]) == {"o": "bob"}
    assert [a["name"] for a in as_guest.get(f"actions/{pub}/").json()] == ["hello"]
    names = [p["name"] for p in as_guest.get("packages", limit=0).json()]
    assert pub in names and priv not in names and bob_pkg["name"] not in names  # public, non-binding only
    assert as_guest.get("packages", count=True).json()["packages"] == len(names)
    err(as_guest.get(f"packages/{priv}"), 403, f"The supplied authentication is not authorized to access 'bob/{priv}'.")
    err(as_guest.get(f"actions/{priv}/secret"), 403,
        f"The supplied authentication is not authorized to access 'bob/{priv}/secret'.")
    err(as_guest.get(f"packages/{bob_pkg['name']}"), 403,
        f"The supplied authentication is not authorized to access 'bob/{bob_pkg['name']}'.")
    missing = uniq("missing")  # no existence leak: 403, not 404
    err(as_guest.get(f"packages/{missing}"), 403,
        f"The supplied authentication is not authorized to access 'bob/{missing}'.")
    err(as_guest.get("actions/top"), 403, "The supplied authentication is not authorized to access 'bob/top'.")
    err(as_guest.get("actions"), 403, "The supplied authentication is not authorized to access 'bob'.")
    err(as_guest.get("triggers"), 403, "The supplied authentication is not authorized to access 'bob'.")
    err(as_guest.put(f"actions/{pub}/evil", {"exec": PY}), 403,
        f"The supplied authentication is not authorized to access 'bob/{pub}/evil'.")
    err(as_guest.delete(f"packages/{pub}"), 403,
        f"The supplied authentication is not authorized to access 'bob/{pub}'.")
    err(as_guest.get("limits"), 403, "The supplied authentication is not authorized to access 'bob'.")
    # a binding in guest's namespace to bob's published package: params overlay, actions resolved
    bnd = uniq("tobob")
    r = c.put(f"packages/{bnd}", {"binding": {"namespace": "bob", "name": pub},
                                  "parameters": [{"key": "mine", "value": 1}]})
    assert r.status_code == 200, r.text
    assert kv(c.get(f"packages/{bnd}").json()["parameters"]) == {"o": "bob", "mine": 1}
    got = c.get(f"actions/{bnd}/hello").json()
    assert got["namespace"] == f"bob/{pub}" and kv(got["parameters"]) == {"o": "bob", "mine": 1}
    err(c.put(f"packages/{uniq('b')}", {"binding": {"namespace": "bob", "name": priv}}), 403,
        f"The supplied authentication is not authorized to access 'bob/{priv}'.")
    err(c.put(f"packages/{uniq('b')}", {"binding": {"namespace": "bob", "name": missing}}), 403,
        f"The supplied authentication is not authorized to access 'bob/{missing}'.")
    # once bob unpublishes, guest's binding no longer reads
    assert bob.put(f"packages/{pub}", {"publish": False}, overwrite=True).ok
    err(c.get(f"actions/{bnd}/hello"), 403,
        f"The supplied authentication is not authorized to access 'guest/{bnd}/hello'.")


# --- triggers and rules -------------------------------------------------------------------------------


def test_trigger_crud(c: Client) -> None:
    name = uniq("trg")
    t = c.put(f"triggers/{name}", {"parameters": [{"key": "a", "value": 1}], "annotations": [{"key": "k", "value": 1}],
                                   "limits": {"x": 1}}).json()
    assert t["limits"] == {} and t["version"] == "0.0.1" and "rules" not in t
    err(c.put(f"triggers/{name}", {}), 409, "resource already exists")
    t = c.put(f"triggers/{name}", {"parameters": [{"key": "b", "value": 2}]}, overwrite=True).json()
    assert t["version"] == "0.0.2" and t["parameters"] == [{"key": "b", "value": 2}]
    assert kv(t["annotations"]) == {"k": 1}  # not given: kept
    err(c.put(f"triggers/{uniq('f')}", {"annotations": [{"key": "feed", "value": "/a/b/c/d"}]}), 400,
        "Feed name is not valid")
    feed = c.put(f"triggers/{uniq('f')}", {"annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]})
    assert feed.status_code == 200
    assert c.delete(f"triggers/{name}").json()["name"] == name
    err(c.get(f"triggers/{name}"), 404, NOT_FOUND)


def test_rules_lifecycle(c: Client) -> None:
    trig, act, rule = uniq("rt"), uniq("ra"), uniq("rr")
    c.put(f"triggers/{trig}", {})
    c.put(f"actions/{act}", {"exec": PY})
    err(c.put(f"rules/{rule}", {"trigger": f"/_/{trig}"}), 400, "rule requires a valid trigger and a valid action")
    err(c.put(f"rules/{rule}", {"trigger": "/_/nope", "action": f"/_/{act}"}), 400,
        "trigger /guest/nope does not exist")
    err(c.put(f"rules/{rule}", {"trigger": f"/_/{trig}", "action": "/_/nope"}), 400,
        "action /guest/nope does not exist")
    r = c.put(f"rules/{rule}", {"trigger": f"/_/{trig}", "action": f"/_/{act}"})
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["status"] == "active" and created["trigger"] == {"path": "guest", "name": trig}
    assert created["action"] == {"path": "guest", "name": act} and created["version"] == "0.0.1"
    assert c.get(f"rules/{rule}").json()["status"] == "active"
    t = c.get(f"triggers/{trig}").json()
    assert t["rules"] == {f"guest/{rule}": {"action": {"path": "guest", "name": act}, "status": "active"}}
    listed = next(x for x in c.get("rules", limit=200).json() if x["name"] == rule)
    assert "status" not in listed and listed["trigger"] == {"path": "guest", "name": trig}
    # state changes (also when unchanged), bad states
    assert c.post(f"rules/{rule}", {"status": "inactive"}).status_code == 200
    assert c.get(f"rules/{rule}").json()["status"] == "inactive"
    assert c.get(f"triggers/{trig}").json()["rules"][f"guest/{rule}"]["status"] == "inactive"
    assert c.post(f"rules/{rule}", {"status": "inactive"}).status_code == 200
    assert c.post(f"rules/{rule}", {"status": "active"}).status_code == 200
    assert c.get(f"rules/{rule}").json()["status"] == "active"
    r = c.post(f"rules/{rule}", {"status": "paused"})
    assert r.status_code == 400 and r.json()["error"].startswith("The request content was malformed:\n")
    err(c.post(f"rules/{uniq('nope')}", {"status": "active"}), 404, NOT_FOUND)
    err(c.put(f"rules/{rule}", {"trigger": f"/_/{trig}", "action": f"/_/{act}"}), 409, "resource already exists")
    # update keeps the state, bumps the version
    upd = c.put(f"rules/{rule}", {"annotations": [{"key": "u", "value": 1}]}, overwrite=True).json()
    assert upd["version"] == "0.0.2" and upd["status"] == "active"
    # a rule whose trigger is gone is inactive and cannot be activated
    c.delete(f"triggers/{trig}")
    assert c.get(f"rules/{rule}").json()["status"] == "inactive"
    err(c.post(f"rules/{rule}", {"status": "active"}), 404, "Only rules with existing triggers can be activated")
    c.put(f"triggers/{trig}", {})
    d = c.delete(f"rules/{rule}")
    assert d.status_code == 200 and d.json()["status"] == "inactive" and d.json()["name"] == rule
    err(c.get(f"rules/{rule}"), 404, NOT_FOUND)


def test_rule_delete_unlinks_trigger_and_refs_in_packages(c: Client, bob: Client) -> None:
    trig, pkg, rule = uniq("t"), uniq("p"), uniq("r")
    c.put(f"triggers/{trig}", {})
    c.put(f"packages/{pkg}", {})
    c.put(f"actions/{pkg}/a", {"exec": PY})
    r = c.put(f"rules/{rule}", {"trigger": trig, "action": f"{pkg}/a"})
    assert r.status_code == 200 and r.json()["action"] == {"path": f"guest/{pkg}", "name": "a"}
    assert c.delete(f"rules/{rule}").status_code == 200
    assert c.get(f"triggers/{trig}").json()["rules"] == {}
    # rules may not point at another namespace's trigger, nor at its private actions
    bt = uniq("bobtrig")
    bob.put(f"triggers/{bt}", {})
    bob.put("actions/top", {"exec": PY}, overwrite=True)
    err(c.put(f"rules/{uniq('x')}", {"trigger": f"/bob/{bt}", "action": f"{pkg}/a"}), 403,
        f"The supplied authentication is not authorized to access 'bob/{bt}'.")
    err(c.put(f"rules/{uniq('x')}", {"trigger": trig, "action": "/bob/top"}), 403,
        "The supplied authentication is not authorized to access 'bob/top'.")
