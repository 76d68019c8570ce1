"""The activation hot path on the real stack: references instead of code, one admission hop, no state writes.

Kafka is read directly: what travels is the claim under test, so it is counted, not inferred from timings.
"""

from __future__ import annotations

import base64
import io
import os
import uuid
import zipfile

import orjson
import pytest

from contracts.topics import Topics
from tests.kafkalog import ends, messages_about
from tests.stack import Client, Stack

BLOB_BYTES = 3 * 1024 * 1024 * 3 // 4  # base64 makes the action 3 MB


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    key = stack.subject(f"hot{uuid.uuid4().hex[:6]}", limits={"invocationsPerMinute": 10000,
                                                              "concurrentInvocations": 100})
    return stack.client(key)


def big_zip() -> str:
    """A Python zip action of about 3 MB (random bytes do not compress)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "import os\nBLOB = os.path.join(os.path.dirname(__file__), 'blob')\n"
                                   "def main(a):\n    return {'n': a.get('n'), 'big': os.path.getsize(BLOB)}\n")
        zf.writestr("blob", os.urandom(BLOB_BYTES))
    return base64.b64encode(buf.getvalue()).decode()


def test_a_big_action_is_referenced_never_resent(stack: Stack, c: Client) -> None:
    """A 3 MB action: its invocations and assignments carry a digest, not the code; the warm invoke sends no
    code to the container (no /init: no initTime), and its result is right."""
    code = big_zip()
    r = c.put("actions/big", {"exec": {"kind": "python:3", "code": code, "binary": True}}, overwrite=True)
    assert r.status_code == 200, r.text[:300]
    cold = c.post("actions/big", {"n": 1}, blocking=True)
    warm = c.post("actions/big", {"n": 2}, blocking=True)
    assert cold.status_code == 200 and warm.status_code == 200, (cold.text[:300], warm.text[:300])
    assert cold.json()["response"]["result"]["n"] == 1 and warm.json()["response"]["result"]["n"] == 2
    assert cold.json()["response"]["result"]["big"] == BLOB_BYTES
    keys = [{a["key"] for a in x.json()["annotations"]} for x in (cold, warm)]
    assert "initTime" in keys[0] and "initTime" not in keys[1]  # only the cold start got /init, with the code

    ids = {cold.json()["activationId"], warm.json()["activationId"]}
    t = Topics(stack.settings.prefix)
    found = messages_about(stack.settings, [t.invocations, *t.assignments()], ids)
    assert len(found) == 4, [(n, len(v)) for n, v in found]  # one request and one assignment each
    for topic, raw in found:
        assert len(raw) < 8192, (topic, len(raw))
        ev = orjson.loads(raw)
        action = (ev.get("request") or ev)["action"]
        assert "code" not in action["exec"] and len(action["exec"]["digest"]) == 64, topic


def test_an_activation_costs_four_messages_and_no_state_writes(stack: Stack, c: Client) -> None:
    """Blocking invokes: one request, one assignment (admission is one hop), one completion, one audit event;
    no changelog record (admission state is rebuilt from those), no other topic between API and invoker."""
    r = c.put("actions/count", {"exec": {"kind": "python:3", "code": "def main(a):\n    return a\n"}},
              overwrite=True)
    assert r.status_code == 200
    assert c.post("actions/count", {}, blocking=True).status_code == 200  # warm
    n = 20
    before = ends(stack.settings)
    for i in range(n):
        assert c.post("actions/count", {"i": i}, blocking=True, result=True).json() == {"i": i}
    after = ends(stack.settings)
    t = Topics(stack.settings.prefix)
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    periodic = {t.health, t.progress}  # invoker pings each second, projector progress per batch
    per_activation = {k: v for k, v in grew.items() if k not in periodic}
    assert per_activation.get(t.invocations) == n, grew
    assert sum(per_activation.get(a, 0) for a in t.assignments()) == n, grew
    assert per_activation.get(t.completions) == n, grew
    assert per_activation.get(t.access) == n, grew
    assert sum(per_activation.values()) == 4 * n, grew  # nothing else: no changelog, no second hop
