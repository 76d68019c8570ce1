"""The /whisk.system catalog on the running stack: utils and samples behave as OpenWhisk's catalog
(apache/openwhisk-catalog tests/src/test/scala/packages/utils/UtilsTests.scala and the samples' tests), every
namespace can use them (shared packages, bindings, sequences, rules, the npm client), and the install is idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest

from cli import procs, services
from contracts import bus, entities, keys
from contracts.events import EntityChanged, EntityCommand
from contracts.topics import Topics
from tests.integration.test_triggers import wait_activation
from tests.stack import Client, Stack, run_npm_client

pytestmark = pytest.mark.integration

LINES = ["seven", "eight", "nine"]
NODE_KIND = entities.resolve_kind("nodejs:default")


def invoke(c: Client, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A blocking invoke of /whisk.system/<action> as `c`'s subject: the whole activation record."""
    sys_ns = Client(c.base, c.auth, "whisk.system")
    r = sys_ns.post(f"actions/{action}", params or {}, blocking=True)
    assert r.status_code in (200, 502), r.text
    return dict(r.json())


def result(c: Client, action: str, params: dict[str, Any] | None = None) -> Any:
    rec = invoke(c, action, params)
    return rec["response"]["result"]


def logs(c: Client, rec: dict[str, Any]) -> list[str]:
    """The activation's log lines (a blocking answer comes before they are collected)."""
    deadline = time.monotonic() + 15
    while True:
        r = c.get(f"activations/{rec['activationId']}/logs")
        if (r.status_code == 200 and r.json()["logs"]) or time.monotonic() > deadline:
            return list(r.json().get("logs", []))
        time.sleep(0.2)


def test_utils_actions_behave_as_openwhisks(stack: Stack) -> None:
    c = stack.client()
    assert result(c, "utils/echo", {"payload": "Five fuzzy felines", "n": [1]}) == {
        "payload": "Five fuzzy felines", "n": [1]}
    assert result(c, "utils/cat", {"lines": LINES}) == {"lines": LINES, "payload": "seven\neight\nnine"}
    assert result(c, "utils/cat", {}) == {"lines": [], "payload": ""}
    assert result(c, "utils/head", {"lines": LINES, "num": 2}) == {"lines": LINES[:2], "num": 2}
    assert result(c, "utils/head", {"lines": LINES}) == {"lines": LINES[:1], "num": 1}  # num defaults to 1
    assert result(c, "utils/sort", {"lines": LINES}) == {"lines": sorted(LINES), "length": 3}
    # JavaScript's default sort compares as strings, as OpenWhisk's node.js sort does.
    assert result(c, "utils/sort", {"lines": [10, 9, 1]}) == {"lines": [1, 10, 9], "length": 3}
    assert result(c, "utils/sort", {}) == {"lines": [], "length": 0}
    assert result(c, "utils/split", {"payload": ",".join(LINES), "separator": ","}) == {
        "lines": LINES, "payload": "seven,eight,nine"}
    assert result(c, "utils/split", {"payload": "a\r\nb\nc"}) == {"lines": ["a", "b", "c"], "payload": "a\r\nb\nc"}
    args = {"$fieldName": "x", "a": 1, "b": 2, "c": {"d": 3, "e": 4}}
    assert result(c, "utils/smash", args) == {"x": {"a": 1, "b": 2, "c": {"d": 3, "e": 4}}}
    assert result(c, "utils/smash", {"$fieldName": "x"}) == {"x": {}}
    rec = invoke(c, "utils/smash")
    assert rec["response"]["result"] == {"error": "Expected an argument '$fieldName' of type 'string'."}
    assert rec["response"]["status"] == "application error"
    date = result(c, "utils/date")["date"]
    assert abs(dt.datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp() - time.time()) < 60
    assert date.endswith("Z")
    assert result(c, "utils/namespace") == {"namespace": "guest"}


def test_split_without_payload_fails_as_openwhisks(stack: Stack) -> None:
    """OpenWhisk's split calls payload.toString(): no payload is a thrown TypeError, a developer error."""
    rec = invoke(stack.client(), "utils/split")
    assert rec["response"]["status"] == "action developer error"
    assert "TypeError" in rec["response"]["result"]["error"]


def test_hosturl_builds_urls_from_the_actions_api_host(stack: Stack) -> None:
    c = stack.client()
    probe = "function main() { return { host: process.env.__OW_API_HOST } }"
    assert c.put("actions/apihost", {"exec": {"kind": "nodejs:default", "code": probe}}, overwrite=True).ok
    base = c.post("actions/apihost", {}, blocking=True, result=True).json()["host"]
    assert base.startswith("http")
    ns = "guest"
    cases: list[tuple[str, dict[str, Any]]] = [  # UtilsTests.scala "hosturl"
        (f"{base}/api/v1/namespaces/{ns}/actions", {}),
        (f"{base}/api/v1/namespaces/{ns}/actions/echo", {"path": "echo"}),
        (f"{base}/api/v1/namespaces/{ns}/actions/utils/echo", {"path": "utils/echo"}),
        (f"{base}/api/v1/namespaces/{ns}/triggers/echo", {"trigger": True, "path": "echo"}),
        (f"{base}/api/v1/web/{ns}", {"web": True}),
        (f"{base}/api/v1/web/{ns}/default/echo.text", {"web": True, "path": "echo", "ext": ".text"}),
        (f"{base}/api/v1/web/{ns}/utils/echo", {"web": True, "path": "utils/echo"}),
    ]
    for url, args in cases:
        assert result(c, "utils/hosturl", args) == {"url": url}, args
    assert result(c, "utils/hosturl", {"web": True, "trigger": True}) == {
        "error": "triggers are not allowed for web actions."}
    assert result(c, "utils/hosturl", {"web": True, "path": "a", "ext": ".xml"}) == {
        "error": 'extension for web action must be one of [".html", ".http", ".json", ".svg", ".text"].'}
    assert result(c, "utils/hosturl", {"trigger": True, "path": "pkg/t"}) == {
        "error": "triggers are not allowed in packages."}


def test_samples_behave_as_openwhisks(stack: Stack) -> None:
    c = stack.client()
    rec = invoke(c, "samples/helloWorld", {"payload": "Cat"})
    assert rec["response"]["result"] == {}
    assert any(line.endswith("stdout: hello Cat!") for line in logs(c, rec)), logs(c, rec)
    rec = invoke(c, "samples/greeting", {"payload": "Cat", "place": "Narrowsburg"})
    assert rec["response"]["result"] == {"payload": "Hello, Cat from Narrowsburg!"}
    assert any("stdout: params: { payload: 'Cat', place: 'Narrowsburg' }" in line for line in logs(c, rec))
    assert result(c, "samples/greeting", {"name": "Ann"}) == {"payload": "Hello, Ann from somewhere!"}
    assert result(c, "samples/greeting") == {"payload": "Hello, stranger from somewhere!"}
    rec = invoke(c, "samples/wordCount", {"payload": "Five fuzzy felines"})
    assert rec["response"]["result"] == {"count": 3}
    assert any(line.endswith("stdout: The message 'Five fuzzy felines' has 3 words") for line in logs(c, rec))
    # curl: the platform's ingress is what an action may reach here; answers with the body as `msg`.
    host = result(c, "utils/hosturl")["url"].split("/api/v1/")[0]
    msg = result(c, "samples/curl", {"payload": f"{host}/api/v1"})["msg"]
    assert json.loads(msg)["description"] == "OpenWhisk API"


def test_catalog_entities_as_openwhisk_shows_them(stack: Stack) -> None:
    c = stack.client(namespace="whisk.system")
    utils = c.get("packages/utils").json()
    assert utils["publish"] is True and utils["binding"] == {}
    assert {"key": "description", "value": "Building blocks that format and assemble data"} in utils["annotations"]
    assert {a["name"] for a in utils["actions"]} == {
        "echo", "cat", "head", "sort", "split", "smash", "date", "namespace", "hosturl"}
    samples = c.get("packages/samples").json()
    assert samples["publish"] is True
    assert {a["name"] for a in samples["actions"]} == {"helloWorld", "greeting", "wordCount", "curl"}
    sort = c.get("actions/utils/sort").json()
    assert sort["exec"]["kind"] == NODE_KIND
    ann = {a["key"]: a["value"] for a in sort["annotations"]}
    assert ann["description"] == "Sorts an array"
    assert ann["parameters"] == [{"name": "lines", "required": True, "type": "array",
                                  "description": "An array of strings"}]
    assert ann["sampleOutput"] == {"lines": [2, 3, 4], "length": 3}
    assert ann["exec"] == NODE_KIND and ann["provide-api-key"] is False
    # The activation is the caller's, recorded with the action's path and kind.
    rec = invoke(stack.client(), "utils/echo")
    assert rec["namespace"] == "guest" and rec["name"] == "echo"
    rec_ann = {a["key"]: a["value"] for a in rec["annotations"]}
    assert rec_ann["path"] == "whisk.system/utils/echo" and rec_ann["kind"] == NODE_KIND


def test_shared_packages_from_another_namespace(stack: Stack) -> None:
    name = f"cat{uuid.uuid4().hex[:6]}"
    key = stack.subject(name)
    me = stack.client(key)
    listed = Client(me.base, me.auth, "whisk.system").get("packages").json()
    assert {"utils", "samples", "alarms", "kafka"} <= {p["name"] for p in listed}
    assert result(me, "utils/namespace") == {"namespace": name}
    assert result(me, "utils/echo", {"x": 1}) == {"x": 1}
    # A binding with a default parameter (package < binding < payload).
    r = me.put("packages/myutils", {"binding": {"namespace": "whisk.system", "name": "utils"},
                                    "parameters": [{"key": "payload", "value": "from the binding"}]})
    assert r.status_code == 200, r.text
    r = me.post("actions/myutils/echo", {"x": 2}, blocking=True, result=True)
    assert r.status_code == 200 and r.json() == {"payload": "from the binding", "x": 2}, r.text
    assert me.post("actions/myutils/namespace", {}, blocking=True, result=True).json() == {"namespace": name}
    assert {a["name"] for a in me.get("packages/myutils").json()["actions"]} >= {"echo", "sort"}
    # Not theirs to change.
    sys_ns = Client(me.base, me.auth, "whisk.system")
    assert sys_ns.put("actions/utils/echo", {"exec": {"kind": "nodejs:default", "code": "x"}},
                      overwrite=True).status_code == 403
    # A rule of this namespace on a shared action (the npm client's triggers test).
    assert me.put("triggers/t", {}).status_code == 200
    assert me.put("rules/r", {"trigger": "/_/t", "action": "/whisk.system/utils/echo"}).status_code == 200
    r = me.post("triggers/t", {"fired": True})
    assert r.status_code == 202, r.text
    line = json.loads(wait_activation(me, r.json()["activationId"])["logs"][0])
    assert line["success"], line
    assert wait_activation(me, line["activationId"])["response"]["result"]["fired"] is True


def test_npm_client_uses_the_catalog(stack: Stack) -> None:
    out = run_npm_client("catalog.js", stack, keys.GUEST_KEY, uuid.uuid4().hex[:6])
    assert out["echo"]["response"]["result"] == {"hello": "world"} and out["echo"]["namespace"] == "guest"
    assert out["sort"]["response"]["success"] is True
    assert out["package"]["name"] == "utils" and len(out["package"]["actions"]) == 9
    assert {"utils", "samples"} <= {p["name"] for p in out["packages"]}
    assert out["sequence"]["exec"]["components"] == ["/whisk.system/utils/split", "/whisk.system/utils/sort"]
    assert out["sequence.invoke"] == {"lines": ["a", "b", "c"], "length": 3}
    assert "error" not in out["sequence.delete"], out


# --- idempotence ------------------------------------------------------------------------------------------


def system_events(stack: Stack) -> tuple[list[EntityCommand], list[EntityChanged]]:
    """Every whisk.system command and entity change in the log."""
    t = Topics(stack.settings.prefix)

    async def read() -> tuple[list[EntityCommand], list[EntityChanged]]:
        c = bus.consumer(stack.settings.kafka, group=None)
        await c.start()
        cmds: list[EntityCommand] = []
        changes: list[EntityChanged] = []
        try:
            tps = [*await bus.partitions(c, t.commands), *await bus.partitions(c, t.entities)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            while [tp for tp in tps if await c.position(tp) < ends[tp]]:
                for _, ev in bus.decoded(await c.getmany(timeout_ms=500)):
                    if isinstance(ev, EntityCommand) and ev.doc_id.startswith("whisk.system/"):
                        cmds.append(ev)
                    elif isinstance(ev, EntityChanged) and ev.doc_id.startswith("whisk.system/"):
                        changes.append(ev)
            return cmds, changes
        finally:
            await c.stop()

    return asyncio.run(read())


def restart_feeds(stack: Stack) -> str:
    """Stop the stack's feed service and start it again; it installs the catalog first thing and logs what it
    sent: that log line is returned."""
    log = services.log_file(stack.settings, "feeds")
    seen = log.read_text().count("catalog: ")
    assert procs.stop(services.pid_file(stack.settings, "feeds")) is not None
    services.start_component(stack.settings, "feeds", "feeds", (), services.say, wait=True)
    deadline = time.monotonic() + 60
    while True:
        lines = [line for line in log.read_text().splitlines() if "catalog: " in line]
        if len(lines) > seen:
            return lines[-1]
        assert time.monotonic() < deadline, "the feed service did not install the catalog"
        time.sleep(0.2)


def wait_version(c: Client, path: str, version: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        doc = dict(c.get(path).json())
        if doc.get("version") == version or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def test_install_is_idempotent_and_puts_back_a_changed_action(stack: Stack) -> None:
    sys_client = stack.client(keys.SYSTEM_KEY)
    echo = sys_client.get("actions/utils/echo").json()
    cmds, changes = system_events(stack)
    assert restart_feeds(stack).endswith("catalog: 0 entities installed or updated")
    time.sleep(1)
    assert system_events(stack) == (cmds, changes)  # no command, no entity event
    assert sys_client.get("actions/utils/echo").json()["version"] == echo["version"]

    # Someone changes a catalog action: the next start puts it back (one update, nothing else).
    r = sys_client.put("actions/utils/echo", {"exec": {"kind": "python:3", "code": "def main(a):\n    return {}\n"}},
                       overwrite=True)
    assert r.status_code == 200, r.text
    changed = r.json()["version"]
    cmds, changes = system_events(stack)
    assert restart_feeds(stack).endswith("catalog: 1 entities installed or updated")
    restored = wait_version(sys_client, "actions/utils/echo", entities.bump_patch(changed))
    assert restored["exec"]["kind"] == NODE_KIND and restored["exec"]["code"] == echo["exec"]["code"]
    new_cmds, new_changes = system_events(stack)
    assert [c.doc_id for c in new_cmds[len(cmds):]] == ["whisk.system/utils/echo"]
    assert [c.doc_id for c in new_changes[len(changes):]] == ["whisk.system/utils/echo"]
    assert result(stack.client(), "utils/echo", {"back": True}) == {"back": True}


def test_feed_packages_from_the_catalog(stack: Stack) -> None:
    c = stack.client(namespace="whisk.system")
    alarms = c.get("packages/alarms").json()
    assert alarms["publish"] is True and alarms["actions"] == []
    assert {f["name"] for f in alarms["feeds"]} == {"alarm", "once", "interval"}
    alarm = c.get("actions/alarms/alarm").json()
    assert alarm["exec"]["kind"] == NODE_KIND  # OpenWhisk's feed actions are node.js actions
    ann = {a["key"]: a["value"] for a in alarm["annotations"]}
    assert ann["feed"] is True and ann["description"] == "Fire trigger when alarm occurs"
