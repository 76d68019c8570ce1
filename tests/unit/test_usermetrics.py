"""The user-events fold (projections/usermetrics.py): labels as OpenWhisk's user-events, exposition, checkpoints."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from contracts.events import ActivationCompleted
from projections import usermetrics as um


def record(path: str = "guest/hello", kind: str = "python:3.11", memory: int = 256, code: int = 0,
           init: int | None = None, wait: int = 30, duration: int = 1254, initiator: str = "guest",
           result: Any = None, size: int | None = None) -> dict[str, Any]:
    ann: list[dict[str, Any]] = [
        {"key": "path", "value": path}, {"key": "waitTime", "value": wait}, {"key": "kind", "value": kind},
        {"key": "timeout", "value": False}, {"key": "limits", "value": {"memory": memory, "timeout": 60000}},
    ]
    if init is not None:
        ann.append({"key": "initTime", "value": init})
    response: dict[str, Any] = {"status": um.STATUS[code], "statusCode": code, "success": code == 0,
                                "result": result if result is not None else {}}
    if size is not None:
        response["size"] = size
    return {"namespace": initiator, "name": path.rsplit("/", 1)[1], "activationId": "x", "duration": duration,
            "response": response, "annotations": ann}


n = 0


def done(rec: dict[str, Any] | None = None, **kw: Any) -> ActivationCompleted:
    global n
    n += 1
    return ActivationCompleted(activation_id=kw.pop("aid", f"a{n}"), namespace=kw.pop("namespace", "guest"),
                               record=rec, **kw)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_labels_as_upstream_activation_event() -> None:
    lb = um.labels(done(record("demo/apimgmt/createApiOne", "nodejs:20", 256, code=2, init=433433, wait=30,
                               initiator="guest")))
    assert lb is not None
    assert (lb.namespace, lb.action, lb.initiator, lb.kind, lb.memory) == (
        "demo", "apimgmt/createApiOne", "guest", "nodejs:20", 256)
    assert lb.status == "action_developer_error" and lb.cold and lb.init_ms == 433433 and lb.wait_ms == 30
    assert um.labels(done(record(init=0))).cold is False  # type: ignore[union-attr]
    assert um.labels(done(None, rejected_status=429, rejected="x")) is None
    trigger = {"namespace": "guest", "name": "t", "response": {"statusCode": 0}, "annotations": []}
    assert um.labels(done(trigger)) is None  # trigger records are no action's activation


def test_user_status_code_as_upstream() -> None:
    assert um.labels(done(record(result={"statusCode": 201}))).status_code == 201  # type: ignore[union-attr]
    assert um.labels(done(record(result={"error": {"statusCode": 404}}))).status_code == 404  # type: ignore[union-attr]
    assert um.labels(done(record(result={"statusCode": "nope"}))).status_code == 400  # type: ignore[union-attr]
    assert um.labels(done(record(result={"x": 1}))).status_code is None  # type: ignore[union-attr]


def test_fold_and_exposition_match_upstream_recorder_test() -> None:
    # PrometheusRecorderTests: one cold activation, duration 1254 ms, wait 30 ms, init 433433 ms, status 2
    st = um.fold([done(record("demo/apimgmt/createApiOne", "nodejs:20", 256, code=2, init=433433,
                              initiator="demo"))])
    got = samples(um.render(st))
    base = (("action", "apimgmt/createApiOne"), ("initiator", "demo"), ("namespace", "demo"))
    assert got[("openwhisk_action_activations_total", tuple(sorted((*base, ("kind", "nodejs:20"),
                                                                    ("memory", "256")))))] == 1
    assert got[("openwhisk_action_coldStarts_total", base)] == 1
    assert got[("openwhisk_action_status_total", tuple(sorted((*base, ("status", "action_developer_error")))))] == 1
    assert got[("openwhisk_action_waitTime_seconds_count", base)] == 1
    assert abs(got[("openwhisk_action_waitTime_seconds_sum", base)] - 0.03) < 0.001
    assert abs(got[("openwhisk_action_initTime_seconds_sum", base)] - 433.433) < 0.01
    assert abs(got[("openwhisk_action_duration_seconds_sum", base)] - 1.254) < 0.01
    assert got[("openwhisk_action_memory", base)] == 256
    # 1.254 s falls in the 2.5 s bucket, not the 1 s one
    assert got[("openwhisk_action_duration_seconds_bucket", tuple(sorted((*base, ("le", "1.0")))))] == 0
    assert got[("openwhisk_action_duration_seconds_bucket", tuple(sorted((*base, ("le", "2.5")))))] == 1
    assert got[("openwhisk_action_duration_seconds_bucket", tuple(sorted((*base, ("le", "+Inf")))))] == 1


def test_exposition_keeps_upstream_names_and_types() -> None:
    text = um.render(um.fold([done(record(init=5, result={"statusCode": 200}, size=10)),
                              done(None, rejected_status=429, rejected="Too many concurrent requests in flight"),
                              done(None, rejected_status=429, rejected="Too many requests in the last minute")]))
    # simpleclient 0.6's names: the status counter has no _total (upstream dashboards query it so)
    assert "# TYPE openwhisk_action_status counter\nopenwhisk_action_status{" in text
    assert "# TYPE openwhisk_action_activations_total counter\n" in text
    assert "# TYPE openwhisk_action_duration_seconds histogram\n" in text
    assert 'openwhisk_action_limit_concurrent_total{namespace="guest"} 1.0' in text
    assert 'openwhisk_action_limit_timed_total{namespace="guest"} 1.0' in text
    assert 'openwhisk_action_status_code{namespace="guest",initiator="guest",action="hello",status_code="200"}' in text
    assert 'openwhisk_action_response_size_bytes_bucket{namespace="guest",initiator="guest",action="hello",' \
           'le="1048576.0"} 1.0' in text
    fams = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert fams["openwhisk_action_activations"] == "counter" and fams["openwhisk_action_status"] == "counter"
    assert fams["openwhisk_action_initTime_seconds"] == "histogram"
    buckets = [s for f in text_string_to_metric_families(text) if f.name == "openwhisk_action_waitTime_seconds"
               for s in f.samples if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == [*(repr(b) for b in um.TIME_BUCKETS), "+Inf"]


def test_warm_and_cold_statuses_and_other_rejections() -> None:
    evs = [done(record(init=300)), done(record()), done(record(code=1)), done(record(code=3)),
           done(None, rejected_status=403, rejected="no"), done(None, rejected_status=503, rejected="no invokers")]
    st = um.fold(evs)
    s = st["series"][um.SEP.join(("guest", "guest", "hello"))]
    assert s["kinds"] == {f"python:3.11{um.SEP}256": 4}
    assert s["cold"] == 1 and s["init"]["n"] == 1 and s["wait"]["n"] == 4
    assert s["status"] == {"success": 2, "application_error": 1, "whisk_internal_error": 1}
    assert st["limits"] == {"concurrent": {}, "timed": {}}


def test_a_completion_seen_again_counts_once() -> None:
    first = done(record(code=3), aid="same")
    st = um.fold([first, done(record(code=0), aid="same")])
    assert sum(sum(s["kinds"].values()) for s in st["series"].values()) == 1


def test_fold_is_deterministic_and_merge_sums_partitions() -> None:
    evs = [done(record(init=i % 2 * 100, duration=i * 10)) for i in range(20)]
    whole = um.fold(evs)
    again = um.fold(evs)
    assert um.render(whole) == um.render(again)
    halves, all_ = samples(um.render(um.merge([um.fold(evs[:7]), um.fold(evs[7:])]))), samples(um.render(whole))
    assert halves.keys() == all_.keys()
    assert all(abs(halves[k] - v) < 1e-9 for k, v in all_.items())  # sums added in another order


def test_checkpoint_round_trip_then_fold_the_rest_equals_folding_all() -> None:
    evs = [done(record(path=f"guest/a{i % 3}", init=(i % 4) * 50)) for i in range(30)]
    cp = um.encode_checkpoint(0, 12, um.fold(evs[:12]))
    p, off, st = um.decode_checkpoint(cp)  # type: ignore[misc]
    assert (p, off) == (0, 12)
    assert um.render(um.fold(evs[off:], st)) == um.render(um.fold(evs))
    assert um.decode_checkpoint(None) is None and um.decode_checkpoint(b"{}") is None
    assert um.decode_checkpoint(b'{"v": 99, "partition": 0, "offset": 1, "state": {}}') is None


def test_label_values_are_escaped() -> None:
    text = um.render(um.fold([done(record(path='guest/we"ird\\name'))]))
    got = samples(text)
    assert any(dict(k[1]).get("action") == 'we"ird\\name' for k in got)


def test_exposition_follows_the_metric_names_contract() -> None:
    """Every series rendered is in contracts/metric_names.py (what the dashboards and console query), with its
    labels; raw names, as Prometheus stores them (the Python parser would add _total to openwhisk_action_status)."""
    names = __import__("pytest").importorskip("contracts.metric_names")
    text = um.render(um.fold([done(record(init=5, result={"statusCode": 200}, size=10), aid="c1"),
                              done(record(code=2), aid="c2"),
                              done(None, rejected_status=429, rejected="Too many concurrent requests in flight"),
                              done(None, rejected_status=429, rejected="Too many requests in the last minute")]))
    known = names.known_series()
    seen = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            raw = s.name if s.name in known else s.name.removesuffix("_total")  # the parser's _total
            assert raw in known, s.name
            assert set(s.labels) <= names.series_labels(raw), (raw, s.labels)
            seen.add(known[raw].name)
            if "status" in s.labels:
                assert s.labels["status"] in names.ACTIVATION_STATUSES
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            assert names.METRICS[name].type == typ, line
    assert {m for m in names.METRICS if m.startswith("openwhisk_")} <= seen
