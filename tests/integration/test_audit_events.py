"""Every API call is an ApiCalled event on the access topic; no auth key is ever written anywhere.

Reads the stack's own Kafka topics with aiokafka and its CouchDB databases as raw bytes.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import bus, events, keys
from contracts.events import ApiCalled
from contracts.topics import Topics
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def read_topics(bootstrap: str, topics: list[str], timeout_s: float = 60.0) -> dict[str, list[bytes]]:
    """Every message value (and key) of the given topics, from the beginning to their current end."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=bus.MAX_MESSAGE, fetch_max_bytes=bus.MAX_MESSAGE)
    await c.start()
    try:
        tps: list[TopicPartition] = []
        for t in topics:
            tps += await bus.partitions(c, t)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out: dict[str, list[bytes]] = {t: [] for t in topics}
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "topics not read in time"
            for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                out[tp.topic] += [(m.key or b"") + b"|" + (m.value or b"") for m in msgs]
        return out
    finally:
        await c.stop()


async def prefixed_topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith((f"{prefix}.", f"{prefix}-")))
    finally:
        await admin.close()


def access_events(stack: Stack) -> list[ApiCalled]:
    topic = Topics(stack.settings.prefix).access
    raw = asyncio.run(read_topics(stack.settings.kafka, [topic]))[topic]
    return [ev for ev in (events.decode(m.partition(b"|")[2]) for m in raw) if isinstance(ev, ApiCalled)]


def test_every_call_is_an_access_event(stack: Stack) -> None:
    key = stack.subject("auditor")
    c = stack.client(key)
    auth = c.auth
    base = f"{stack.url}/api/v1/namespaces/_"
    started = events.now_ms()
    calls = {  # transaction id -> (method, url, kwargs, expected status, expected subject)
        "read": ("GET", f"{base}/actions", {"auth": auth}, 200, "auditor"),
        "write": ("PUT", f"{base}/triggers/audited", {"auth": auth, "json": {}}, 200, "auditor"),
        "missing": ("GET", f"{base}/rules/none", {"auth": auth}, 404, "auditor"),
        "bad": ("PUT", f"{base}/actions/bad$name", {"auth": auth, "json": {}}, 400, "auditor"),
        "anon": ("GET", f"{base}/actions", {}, 401, None),
        "wrongkey": ("GET", f"{base}/actions", {"auth": (auth[0], "x" * 64)}, 401, None),
        "info": ("GET", f"{stack.url}/", {}, 200, None),
        "delete": ("DELETE", f"{base}/triggers/audited", {"auth": auth}, 200, "auditor"),
    }
    tids = {name: f"audit-{name}-{uuid.uuid4().hex}" for name in calls}
    for name, (method, url, kw, status, _) in calls.items():
        r = requests.request(method, url, headers={"X-Request-ID": tids[name]}, timeout=30, **kw)
        assert r.status_code == status, (name, r.text)
    by_tid: dict[str, ApiCalled] = {}
    deadline = time.monotonic() + 20
    while len(by_tid) < len(calls) and time.monotonic() < deadline:  # audit sends do not wait for the ack
        by_tid = {ev.transaction_id: ev for ev in access_events(stack) if ev.transaction_id in tids.values()}
    for name, (method, url, _, status, subject) in calls.items():
        ev = by_tid[tids[name]]
        assert (ev.method, ev.status, ev.subject) == (method, status, subject), name
        assert ev.path == urlsplit(url).path, (ev.path, url)
        assert started - 1000 <= ev.at <= events.now_ms() and ev.duration_ms >= 0
        if subject:
            assert ev.namespace == "auditor"


def test_no_auth_key_anywhere(stack: Stack) -> None:
    """Neither the secret half of a key nor the Basic header value reaches Kafka or CouchDB."""
    key = stack.subject("keyholder")
    c = stack.client(key)
    assert c.put("triggers/t", {}, overwrite=True).status_code == 200
    assert c.get("triggers/t").status_code == 200
    c.get("nothing-here")
    secrets = [keys.split(k)[1].encode() for k in (key, keys.GUEST_KEY, keys.SYSTEM_KEY)]
    secrets += [base64.b64encode(k.encode()) for k in (key, keys.GUEST_KEY)]
    topics = asyncio.run(prefixed_topics(stack.settings.kafka, stack.settings.prefix))
    t = Topics(stack.settings.prefix)
    assert {t.subjects, t.access, t.commands, t.entities}.issubset(topics)
    contents = asyncio.run(read_topics(stack.settings.kafka, topics))
    assert sum(len(v) for v in contents.values()) > 0
    for topic, msgs in contents.items():
        for m in msgs:
            for s in secrets:
                assert s not in m, f"auth key found in topic {topic}"
    couch = stack.settings.couchdb
    for db in ("subjects", "whisks", "activations"):
        raw = requests.get(f"{couch}/{stack.settings.db(db)}/_all_docs", params={"include_docs": "true"},
                           headers={"Accept": "application/json"}, timeout=60).content
        assert len(raw) > 0
        for s in secrets:
            assert s not in raw, f"auth key found in CouchDB {db}"
    subjects = requests.get(f"{couch}/{stack.settings.db('subjects')}/keyholder",
                            headers={"Accept": "application/json"}, timeout=30).json()
    assert subjects["namespaces"][0]["key_hash"] and subjects["namespaces"][0]["key_salt"]
