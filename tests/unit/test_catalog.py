"""The whisk.system catalog's pure parts: entries, what an install sends (idempotence), the feed service's view,
the 404 decision and the feed activation record."""

from __future__ import annotations

from typing import Any

from contracts import entities
from contracts.events import ActivationRequested, EntityChanged, EntityCommand
from feeds import catalog
from feeds.service import feed_record, trigger_gone
from streams import decide

Doc = dict[str, Any]
NOW = 1_700_000_000_000


def apply(state: dict[str, Doc], cmds: list[EntityCommand]) -> list[EntityChanged]:
    """Run commands through the real decider, as the streams worker does, folding the writes into `state`."""
    out = []
    for cmd in cmds:
        d = decide.decide(cmd, state.get, [], NOW)
        assert d.error is None, (cmd.doc_id, d.error)
        ev = EntityChanged(request_id=cmd.request_id, subject=cmd.subject, op=cmd.op, entity_type=cmd.entity_type,
                           doc_id=cmd.doc_id, writes=d.writes, result=d.result)
        catalog.fold(state, ev)
        out.append(ev)
    return out


def installed() -> dict[str, Doc]:
    state: dict[str, Doc] = {}
    apply(state, catalog.changes(state.get, NOW))
    return state


def annotation(doc: Doc, key: str) -> Any:
    return next((a["value"] for a in doc["annotations"] if a["key"] == key), None)


def test_entries_are_openwhisk_catalog_names_in_install_order() -> None:
    ids = [doc_id for _, doc_id, _ in catalog.entries()]
    utils = [i.rsplit("/", 1)[1] for i in ids if i.startswith("whisk.system/utils/")]
    samples = [i.rsplit("/", 1)[1] for i in ids if i.startswith("whisk.system/samples/")]
    assert sorted(utils) == sorted(["echo", "cat", "head", "sort", "split", "smash", "date", "namespace", "hosturl"])
    assert samples == ["helloWorld", "greeting", "wordCount", "curl"]
    for pkg in ("alarms", "kafka", "utils", "samples"):
        first_action = min(i for i, d in enumerate(ids) if d.startswith(f"whisk.system/{pkg}/"))
        assert ids.index(f"whisk.system/{pkg}") < first_action


def test_first_install_puts_everything_shared_with_nodejs_actions() -> None:
    state = installed()
    assert len(state) == len(catalog.entries())
    for pkg in ("alarms", "kafka", "utils", "samples"):
        assert state[f"whisk.system/{pkg}"]["publish"] is True
    echo = state["whisk.system/utils/echo"]
    assert echo["exec"]["kind"] == entities.resolve_kind("nodejs:default")
    assert annotation(echo, "description") == "Returns the input"
    assert annotation(echo, "parameters") == [{"name": "payload", "required": False, "description": "Any JSON entity"}]
    assert annotation(echo, "sampleInput") == {"payload": "Five fuzzy felines"}
    assert annotation(echo, "exec") == echo["exec"]["kind"] and annotation(echo, "provide-api-key") is False
    assert annotation(state["whisk.system/alarms/alarm"], "feed") is True
    assert annotation(state["whisk.system/utils"], "description") == "Building blocks that format and assemble data"


def test_second_install_sends_nothing() -> None:
    state = installed()
    assert catalog.changes(state.get, NOW + 1000) == []


def test_a_changed_action_is_put_back_and_an_added_annotation_removed() -> None:
    state = installed()
    before = state["whisk.system/utils/echo"]["version"]
    admin_edit = EntityCommand(request_id="r", op="put", entity_type="action", doc_id="whisk.system/utils/echo",
                               subject="whisk.system", overwrite=True, body=entities.normalize_action_put(
                                   "whisk.system/utils", "echo", {"exec": {"kind": "python:3", "code": "x"},
                                                                  "annotations": [{"key": "extra", "value": 1}]}, 0))
    apply(state, [admin_edit])
    cmds = catalog.changes(state.get, NOW)
    assert [c.doc_id for c in cmds] == ["whisk.system/utils/echo"]
    assert cmds[0].body["delAnnotations"] == ["extra"]
    apply(state, cmds)
    echo = state["whisk.system/utils/echo"]
    assert echo["exec"]["kind"] == entities.resolve_kind("nodejs:default")
    assert annotation(echo, "extra") is None and echo["version"] > before
    assert catalog.changes(state.get, NOW) == []


def test_the_old_python_feed_stubs_are_updated_once() -> None:
    state = installed()
    old = entities.normalize_action_put("whisk.system/alarms", "alarm", {
        "exec": {"kind": "python:3", "code": "def main(args):\n    return {}\n"},
        "annotations": [{"key": "feed", "value": True}, {"key": "description", "value": "alarms feed: alarm"}]}, 0)
    apply(state, [EntityCommand(request_id="r", op="put", entity_type="action", doc_id="whisk.system/alarms/alarm",
                                subject="whisk.system", overwrite=True, body=old)])
    assert [c.doc_id for c in catalog.changes(state.get, NOW)] == ["whisk.system/alarms/alarm"]


def test_view_keeps_whisk_system_docs_and_triggers_only() -> None:
    state: dict[str, Doc] = {}
    trig = {"entityType": "trigger", "namespace": "guest", "name": "t"}
    act = {"entityType": "action", "namespace": "guest", "name": "a"}
    sys_act = {"entityType": "action", "namespace": "whisk.system/utils", "name": "echo"}
    writes: list[tuple[str, Doc | None]] = [("guest/t", trig), ("guest/a", act), ("whisk.system/utils/echo", sys_act)]
    catalog.fold(state, EntityChanged(request_id="r", subject="s", op="put", entity_type="x", doc_id="x",
                                      writes=writes))
    assert set(state) == {"guest/t", "whisk.system/utils/echo"}
    catalog.fold(state, EntityChanged(request_id="r", subject="s", op="delete", entity_type="trigger",
                                      doc_id="guest/t", writes=[("guest/t", None)]))
    assert set(state) == {"whisk.system/utils/echo"}


def test_trigger_gone_is_the_rules_agents_404() -> None:
    assert trigger_gone(None)
    assert trigger_gone({"entityType": "action"})
    assert not trigger_gone({"entityType": "trigger"})


def _feed_request(action: Doc) -> ActivationRequested:
    return ActivationRequested(activation_id="a" * 32, namespace="guest", subject="guest", action=action,
                               params={}, at=NOW)


def test_feed_record_has_the_feed_actions_kind() -> None:
    action = entities.action_ref({"namespace": "whisk.system/alarms", "name": "alarm", "version": "0.0.2",
                                  "exec": {"kind": "nodejs:18", "code": "function main() {}"}, "limits": {}})
    rec = feed_record(_feed_request(action), {}, 0, NOW + 5, NOW + 7)
    ann = {a["key"]: a["value"] for a in rec["annotations"]}
    assert ann == {"path": "whisk.system/alarms/alarm", "waitTime": 5, "kind": "nodejs:18", "timeout": False,
                   "limits": {}}
    assert rec["response"] == {"status": "success", "statusCode": 0, "success": True, "result": {}}
    assert rec["duration"] == 2 and rec["name"] == "alarm" and rec["namespace"] == "guest"
    # A request from before exec was carried: the catalog's kind.
    rec = feed_record(_feed_request({"namespace": "whisk.system/alarms", "name": "alarm"}), {"error": "x"}, 1, NOW, NOW)
    assert {a["key"]: a["value"] for a in rec["annotations"]}["kind"] == entities.resolve_kind("nodejs:default")
    assert rec["response"]["status"] == "application error"
