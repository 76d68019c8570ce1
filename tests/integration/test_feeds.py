"""Feeds on the running stack: alarms (with a feed service crash in the middle) and Kafka topic feeds."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from cli import procs, services
from contracts import bus, entities, events, keys
from contracts.events import TriggerFired
from contracts.topics import Topics
from tests.integration.test_triggers import setup_rule, wait_activation
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration


def feed(stack: Stack, pkg_action: str, event: str, trigger: str, **params: Any) -> Any:
    """What `wsk trigger create --feed` does after the PUT: invoke the feed action, blocking."""
    sys_client = stack.client(namespace="whisk.system")
    body = {"lifecycleEvent": event, "triggerName": f"/guest/{trigger}", "authKey": keys.GUEST_KEY, **params}
    return sys_client.post(f"actions/{pkg_action}", body, blocking=True)


def create_feed_trigger(stack: Stack, c: Client, trigger: str, pkg_action: str, **params: Any) -> None:
    r = c.put(f"triggers/{trigger}", {"annotations": [{"key": "feed", "value": f"/whisk.system/{pkg_action}"}]},
              overwrite=True)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30  # the feed service installs its packages when it starts
    while True:
        r = feed(stack, pkg_action, "CREATE", trigger, **params)
        if r.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["success"] is True


def fired_slots(stack: Stack, trigger: str) -> list[int]:
    async def read() -> list[int]:
        c = bus.consumer(stack.settings.kafka, group=None)
        await c.start()
        try:
            tps = await bus.partitions(c, Topics(stack.settings.prefix).fires)
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            out: list[int] = []
            while [tp for tp in tps if await c.position(tp) < ends[tp]]:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    for m in msgs:
                        ev = events.decode(m.value)
                        if isinstance(ev, TriggerFired) and ev.trigger == f"guest/{trigger}" and ev.slot:
                            out.append(ev.slot)
            return out
        finally:
            await c.stop()

    return asyncio.run(read())


def test_feed_packages_are_installed(stack: Stack) -> None:
    c = stack.client(namespace="whisk.system")
    deadline = time.monotonic() + 30
    while c.get("actions/alarms/alarm").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    doc = c.get("actions/alarms/interval").json()
    assert {"key": "feed", "value": True} in doc["annotations"]
    assert c.get("actions/kafka/topic").status_code == 200


def test_alarm_survives_feed_service_crash(stack: Stack) -> None:
    """Slots every 2 s; the feed service is SIGKILLed and restarted 5 s later: every slot fires exactly once."""
    c = stack.client()
    setup_rule(c, "tick", "tickrule", "tickecho")
    create_feed_trigger(stack, c, "tick", "alarms/interval", seconds=2, trigger_payload={"beat": True})
    r = feed(stack, "alarms/interval", "READ", "tick")
    assert r.status_code == 200 and r.json()["response"]["result"]["config"]["seconds"] == 2
    time.sleep(4.5)
    before = fired_slots(stack, "tick")
    assert len(before) >= 1
    pid = procs.read_pid(services.pid_file(stack.settings, "feeds"))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(5)  # two or three slots come due while nobody is there
    services.start_component(stack.settings, "feeds", "feeds", (), services.say, wait=True)
    time.sleep(5)
    r = feed(stack, "alarms/interval", "DELETE", "tick")
    assert r.status_code == 200, r.text
    assert c.delete("triggers/tick").status_code == 200
    slots = fired_slots(stack, "tick")
    assert len(slots) >= len(before) + 4, (before, slots)
    assert len(set(slots)) == len(slots), f"doubled fires: {slots}"
    assert all(b - a == 2000 for a, b in itertools.pairwise(slots)), f"lost fires: {slots}"
    time.sleep(3)
    assert fired_slots(stack, "tick") == slots  # deleted: no more fires
    rec = wait_activation(c, _trigger_record(c, "tick"))
    assert rec["response"]["result"] == {"beat": True}
    line = json.loads(rec["logs"][0])
    assert line["rule"] == "guest/tickrule" and line["success"]


def _trigger_record(c: Client, name: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        acts = c.get("activations", name=name, limit=1).json()
        if acts:
            return str(acts[0]["activationId"])
        time.sleep(0.3)
    raise AssertionError("no trigger activation")


def test_kafka_topic_feed(stack: Stack) -> None:
    """Each record written to a plain Kafka topic after the feed is created fires the trigger."""
    c = stack.client()
    topic = f"{stack.settings.prefix}.user-events"
    asyncio.run(bus.ensure_topics(stack.settings.kafka, [topic], stack.settings.partitions))
    asyncio.run(_produce(stack, topic, [b'{"old": true}']))  # before the feed: must not fire
    setup_rule(c, "ontopic", "topicrule", "topicecho")
    create_feed_trigger(stack, c, "ontopic", "kafka/topic", topic=topic)
    asyncio.run(_produce(stack, topic, [b'{"n": 1}', b"plain text"]))
    results = _rule_results(c, "topicecho", 2)
    assert {"n": 1} in results
    assert any(r.get("value") == "plain text" and r.get("topic") == topic for r in results)
    assert not any(r.get("old") for r in results)
    assert feed(stack, "kafka/topic", "DELETE", "ontopic").status_code == 200


async def _produce(stack: Stack, topic: str, values: list[bytes]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka)
    await p.start()
    try:
        for v in values:
            await p.send_and_wait(topic, v)
    finally:
        await p.stop()


def _rule_results(c: Client, action: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    acts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        acts = c.get("activations", name=action, docs=True, limit=50).json()
        if len(acts) >= n:
            break
        time.sleep(0.5)
    return [a["response"]["result"] for a in acts]


def test_connector_feed(stack: Stack, tmp_path: Any) -> None:
    """A FileStreamSource connector (shipped with Kafka) is the event source; deleting the feed deletes it."""
    import requests

    c = stack.client()
    src = tmp_path / "events.txt"
    src.write_text("")
    src.chmod(0o644)
    setup_rule(c, "onfile", "filerule", "fileecho")
    create_feed_trigger(stack, c, "onfile", "kafka/connector", file=str(src))
    connector = f"{stack.settings.prefix}-feed-guest_onfile"
    connect = f"http://127.0.0.1:{stack.settings.connect_port}/connectors/{connector}"
    assert requests.get(connect, timeout=10).status_code == 200
    with src.open("a") as f:
        f.write('{"line": 1}\nsecond line\n')
    results = _rule_results(c, "fileecho", 2, timeout=60)
    assert {"line": 1} in results and any(r.get("value") == "second line" for r in results), results
    assert feed(stack, "kafka/connector", "DELETE", "onfile").status_code == 200
    assert requests.get(connect, timeout=10).status_code == 404


GONE = {"kind": "AUTO", "statusCode": 404,
        "message": "Trigger automatically disabled: Received a 404 status code when firing the trigger"}


def _read_status(stack: Stack, trigger: str) -> dict[str, Any]:
    r = feed(stack, "alarms/interval", "READ", trigger)
    assert r.status_code == 200, r.text
    return dict(r.json()["response"]["result"]["status"])


def test_alarm_of_a_deleted_trigger_is_disabled(stack: Stack) -> None:
    """OpenWhisk's alarms provider disables a trigger whose fire answers 404 (provider/lib/utils.js): a trigger
    deleted without the feed's DELETE stops firing, and stays stopped across a restart of the feed service and
    for a new trigger of the same name."""
    c = stack.client()
    setup_rule(c, "gone", "gonerule", "goneecho")
    create_feed_trigger(stack, c, "gone", "alarms/interval", seconds=1)
    deadline = time.monotonic() + 15
    while not fired_slots(stack, "gone"):
        assert time.monotonic() < deadline, "the alarm never fired"
        time.sleep(0.5)
    assert c.delete("triggers/gone").status_code == 200  # no DELETE lifecycle call
    deadline = time.monotonic() + 15
    while (status := _read_status(stack, "gone"))["active"]:
        assert time.monotonic() < deadline, "the feed of a deleted trigger is still active"
        time.sleep(0.5)
    assert status["reason"] == GONE
    slots = fired_slots(stack, "gone")
    time.sleep(2.5)
    assert fired_slots(stack, "gone") == slots
    assert c.put("triggers/gone", {}).status_code == 200  # the same name again, without the feed
    assert procs.stop(services.pid_file(stack.settings, "feeds")) is not None
    services.start_component(stack.settings, "feeds", "feeds", (), services.say, wait=True)
    time.sleep(3)
    assert fired_slots(stack, "gone") == slots
    assert _read_status(stack, "gone")["reason"] == GONE
    assert feed(stack, "alarms/interval", "DELETE", "gone").status_code == 200
    assert c.delete("triggers/gone").status_code == 200


def test_feed_activation_has_the_feed_actions_kind(stack: Stack) -> None:
    """The feed action's activation is recorded like OpenWhisk's (a node.js action): kind nodejs:..., not 'feed'."""
    c = stack.client()
    kind = entities.resolve_kind("nodejs:default")
    c.delete("triggers/kindtrig")  # left by an earlier run of this stack, if any
    r = c.put("triggers/kindtrig", {"annotations": [{"key": "feed", "value": "/whisk.system/alarms/once"}]})
    assert r.status_code == 200, r.text
    r = feed(stack, "alarms/once", "CREATE", "kindtrig", date="2999-01-01T00:00:00Z")
    assert r.status_code == 200, r.text
    rec = r.json()
    ann = {a["key"]: a["value"] for a in rec["annotations"]}
    assert ann["kind"] == kind and ann["path"] == "whisk.system/alarms/once" and ann["timeout"] is False
    assert ann["waitTime"] >= 0 and rec["name"] == "once" and rec["namespace"] == "guest"
    stored = wait_activation(c, rec["activationId"])
    assert {a["key"]: a["value"] for a in stored["annotations"]}["kind"] == kind
    assert feed(stack, "alarms/once", "DELETE", "kindtrig").status_code == 200
    assert c.delete("triggers/kindtrig").status_code == 200
