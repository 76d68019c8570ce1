"""The console's pure parts (api/console.py): rows of the live list, charts, audit and replay fragments."""

from __future__ import annotations

import re

import orjson

from api import console
from api.tail import Identity
from contracts import events
from contracts.events import ActivationCompleted
from projections.audit import Record


def record(aid: str, duration: int, wait: int, init: int | None, success: bool = True, start: int = 1000) -> dict:
    ann = [{"key": "path", "value": "ann/pkg/hello"}, {"key": "kind", "value": "python:3.11"},
           {"key": "waitTime", "value": wait}]
    if init is not None:
        ann.append({"key": "initTime", "value": init})
    return {"activationId": aid, "namespace": "ann", "name": "hello", "start": start, "end": start + duration,
            "duration": duration, "annotations": ann,
            "response": {"status": "success" if success else "application error", "success": success,
                         "result": {"secret": "not in the live row"}}}


def completed(rec: dict | None, **kw: object) -> dict:
    ev = ActivationCompleted(activation_id=rec["activationId"] if rec else "r" * 32, namespace="ann", record=rec,
                             **kw)  # type: ignore[arg-type]
    d: dict = orjson.loads(events.encode(ev))
    return d


def test_live_row_from_a_completion() -> None:
    row = console.live_row(completed(record("a" * 32, 12, 3, 250)))
    assert row == {"activationId": "a" * 32, "namespace": "ann", "name": "ann/pkg/hello", "status": "success",
                   "success": True, "start": 1000, "duration": 12, "waitTime": 3, "initTime": 250,
                   "kind": "python:3.11", "cold": True}
    warm = console.live_row(completed(record("b" * 32, 5, 1, None, success=False)))
    assert warm is not None and warm["cold"] is False and warm["success"] is False
    rejected = console.live_row(completed(None, rejected_status=429, rejected="Too many requests"))
    assert rejected is not None and rejected["status"] == "rejected (429)" and rejected["detail"] == "Too many requests"
    assert console.live_row({"type": "ApiCalled"}) is None


def test_sse_frames() -> None:
    assert console.sse({"a": 1}, "activation") == b'event: activation\ndata: {"a":1}\n\n'
    assert console.sse({"a": "x\ny"}) == b'data: {"a":"x\\ny"}\n\n'  # JSON keeps newlines out of the frame


def test_latency_points_and_chart_have_one_point_per_activation() -> None:
    docs = [record("c" * 32, 30, 4, None, start=3000), record("a" * 32, 900, 8, 700, start=1000),
            record("b" * 32, 20, 2, None, start=2000)]
    pts = console.latency_points(docs)
    assert [p["activationId"][0] for p in pts] == ["a", "b", "c"]  # oldest first
    assert [p["cold"] for p in pts] == [True, False, False] and pts[1]["initTime"] == 0
    svg = console.latency_svg(pts)
    for s in console.SERIES:
        assert svg.count(f'class="pt" data-series="{s}"') == 3
    assert svg.count('class="cold"') == 1 and "1000 ms" in svg  # axis rounded up to a nice 1000
    cold = console.cold_svg(pts)
    assert cold.count('class="bar cold"') == 1 and cold.count('class="bar warm"') == 2
    page = console.action_html("pkg/hello", pts, [])
    assert 'id="n-points">3<' in page and 'id="n-cold">1<' in page
    assert console.latency_svg([]).count("<circle") == 0  # no activations yet: axes only


def test_percentile_nearest_rank() -> None:
    assert console.percentile([], 50) == 0
    assert console.percentile([5, 1, 3, 2, 4], 50) == 3
    assert console.percentile([float(i) for i in range(1, 101)], 95) == 95


def test_audit_trail_is_restricted_and_escaped() -> None:
    ann = Identity("ann", "ann", "u", "s", "h", {})
    op = Identity("whisk.system", "whisk.system", "u2", "s", "h", {})
    assert console.may_read(ann, "ann") and not console.may_read(ann, "bob") and console.may_read(op, "bob")
    rec = Record(1000, "entity", "ann", "ann", "ann/x", "put", "ok", 200, "action ann/<x>", "r1")
    page = console.audit_html("ann/x", 2000, {"name": "<script>"}, [rec])
    assert "<script>" not in page and "&lt;script&gt;" in page and "action ann/&lt;x&gt;" in page
    assert "did not exist" in console.audit_html("ann/x", 0, None, [])


def test_replay_status() -> None:
    s = console.ReplayStatus(
        generation=1, switched_at=None, resume={"p.entities": {"0": 7}},
        generations={0: {"whisks": 10}, 1: {"whisks": 10, "activations": 30}, 2: {"whisks": 10, "activations": 10}},
        projected={"p.entities": {"0": 8}}, ends={"p.entities": {"0": 10}, "p.subjects": {"0": 4}})
    assert s.building() == [2] and s.estimate(2) == 0.5
    assert s.lag() == {"p.entities": 2, "p.subjects": 4}
    html = console.replay_html(s)
    assert 'id="live-gen">1<' in html and "generation 2" in html and "50%" in html and "0@7" in html
    assert s.as_json()["building"] == [{"generation": 2, "estimate": 0.5}]


def test_hub_hands_a_namespace_only_its_own_completions() -> None:
    hub = console.LiveHub("unused:9092", "p.completions")
    ann, bob = console.Subscriber("ann"), console.Subscriber("bob")
    hub.subs = {"ann": {ann}, "bob": {bob}}
    raw = orjson.dumps(completed(record("a" * 32, 1, 1, None)))
    hub.deliver(b"ann", raw, 0, 5)
    hub.deliver(b"carl", raw, 0, 6)  # nobody watches: skipped without decoding
    hub.deliver(b"bob", raw, 0, 7)  # key and namespace disagree: not bob's
    hub.deliver(b"ann", b"not json", 0, 8)
    assert ann.queue.qsize() == 1 and bob.queue.qsize() == 0
    assert ann.queue.get_nowait()[:2] == (0, 5)


def test_shell_has_no_inline_script_or_style() -> None:
    for page in console.PAGES:
        html = console.shell(page)
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/console/static/console.js" defer>']
        assert "style=" not in html and "<style" not in html and not re.search(r"\son\w+=", html)
