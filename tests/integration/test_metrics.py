"""/metrics of every part against the real stack; user-events counters equal the activation records after a load,
and stay exact across a projections crash (checkpoint + the rest of the log)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cli import procs, services
from cli.status import metrics_endpoints
from contracts import metrics
from tests.chaos import faults
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

OK = "def main(a):\n    return {'n': a.get('n')}\n"
FAIL = "def main(a):\n    return {'error': 'failed on purpose'}\n"

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def follows_contract(url: str) -> set[str]:
    """Every streamwhisk_*/openwhisk_* series served is in contracts/metric_names.py, with its labels; the names."""
    names = pytest.importorskip("contracts.metric_names")
    known = names.known_series()
    seen = set()
    for fam in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for s in fam.samples:
            if not s.name.startswith(("streamwhisk_", "openwhisk_")):
                continue
            raw = s.name if s.name in known else s.name.removesuffix("_total")  # the parser adds _total
            assert raw in known and set(s.labels) <= names.series_labels(raw), (url, s.name, s.labels)
            seen.add(known[raw].name)
    return seen


def total(samples: Samples, name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == m for k, m in match.items()))


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.5) -> Any:
    """faults.wait_until, where a failed assertion or a missing series also means not yet."""
    return faults.wait_until(what, check, timeout, every, retry_on=(requests.RequestException, AssertionError,
                                                                    KeyError))


def parts(stack: Stack) -> list[str]:
    return [c.name for c in services.components(stack.settings)]


def endpoint(stack: Stack, part: str) -> str:
    port = metrics.read_port(stack.settings.home, part)
    assert port, f"{part} wrote no metrics port"
    return f"http://127.0.0.1:{port}/metrics"


def records(c: Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = c.get("activations", limit=200, skip=len(out), docs=True).json()
        out += page
        if len(page) < 200:
            return out


def status_of(rec: dict[str, Any]) -> str:
    return {0: "success", 1: "application_error", 2: "action_developer_error", 3: "whisk_internal_error"}[
        rec["response"]["statusCode"]]


def cold(rec: dict[str, Any]) -> bool:
    return any(a["key"] == "initTime" and a["value"] > 0 for a in rec.get("annotations", []))


@pytest.fixture(scope="module")
def load(stack: Stack) -> dict[str, Any]:
    """A namespace of its own with a load on 2 actions: some cold, most warm, one failing with an application error."""
    ns = f"metrics{uuid.uuid4().hex[:6]}"
    c = stack.client(stack.subject(ns))
    assert c.put("actions/ok", {"exec": {"kind": "python:3", "code": OK}}).status_code == 200
    assert c.put("actions/fail", {"exec": {"kind": "python:3", "code": FAIL}}).status_code == 200
    ids = []
    for n in range(8):  # blocking, one after another: the first is cold, the rest reuse its container
        r = c.post("actions/ok", {"n": n}, blocking=True)
        assert r.status_code == 200, r.text
        ids.append(r.json()["activationId"])
    for _ in range(3):
        r = c.post("actions/fail", {}, blocking=True)
        assert r.status_code == 502 and r.json()["response"]["status"] == "application error", r.text
        ids.append(r.json()["activationId"])
    for n in range(4):  # non-blocking ones too
        r = c.post("actions/ok", {"n": n})
        assert r.status_code == 202, r.text
        ids.append(r.json()["activationId"])
    wait_for("all records projected", lambda: c.get("activations", count=True).json() == {"activations": len(ids)})
    return {"ns": ns, "c": c, "n": len(ids)}


def test_every_part_serves_metrics(stack: Stack) -> None:
    want = parts(stack)
    assert {"api", "streams", "projections", "feeds", "invoker0", "invoker1"} <= set(want)
    found = wait_for("every part's metrics port", lambda: (e := metrics_endpoints(stack.settings)).keys() >= set(want)
                     and e)
    for part in want:
        got = scrape(found[part])
        assert "process_cpu_seconds_total" in got and "process_resident_memory_bytes" in got, part
        assert "python_info" in got, part
    # the API also on its own port (what nginx and the chart's Service reach)
    api_own = scrape(f"http://127.0.0.1:{stack.settings.api_port}/metrics")
    assert "process_cpu_seconds_total" in api_own
    # ... but not through nginx: the series name every namespace and action
    public = requests.get(f"http://127.0.0.1:{stack.settings.nginx_port}/metrics", timeout=10)
    assert public.status_code == 404 and set(public.json()) == {"error", "code"}, public.text


def test_component_metrics(stack: Stack, load: dict[str, Any]) -> None:
    api = scrape(endpoint(stack, "api"))
    assert total(api, "streamwhisk_api_requests_total", method="POST") >= load["n"]
    assert total(api, "streamwhisk_api_request_duration_seconds_count", method="GET") >= 1
    streams = scrape(endpoint(stack, "streams"))
    healthy = {labels["invoker"]: v for labels, v in streams["streamwhisk_invoker_healthy"]}
    assert healthy.get("0") == 1 and healthy.get("1") == 1, healthy
    for i in (0, 1):
        inv = scrape(endpoint(stack, f"invoker{i}"))
        states = {labels["state"] for labels, _ in inv["streamwhisk_invoker_containers"]}
        assert states == {"busy", "warm", "prewarm"}
        mem = {labels["kind"]: v for labels, v in inv["streamwhisk_invoker_memory_mb"]}
        assert mem["limit"] > 0 and 0 <= mem["used"] <= mem["limit"]
    # the `ok` container stays warm on one invoker after the load
    warm = sum(total(scrape(endpoint(stack, f"invoker{i}")), "streamwhisk_invoker_containers", state="warm")
               for i in (0, 1))
    assert warm >= 1
    proj = scrape(endpoint(stack, "projections"))
    assert total(proj, "streamwhisk_projection_applied_total", projector="projector") >= load["n"]
    want = {"streamwhisk_kafka_consumer_lag", "streamwhisk_api_requests_total", "streamwhisk_invoker_containers",
            "streamwhisk_invoker_memory_mb", "streamwhisk_invoker_healthy", "streamwhisk_projection_applied_total",
            "openwhisk_action_activations_total", "openwhisk_action_status"}

    def served() -> bool:
        got = set().union(*(follows_contract(endpoint(stack, part)) for part in parts(stack)))
        assert want <= got, want - got
        return True
    wait_for("every contract series served", served, timeout=30)


def test_consumer_lag_series_for_every_consumed_topic(stack: Stack, load: dict[str, Any]) -> None:
    p = stack.settings.prefix
    want = {
        "projections": {(f"{p}-projector", f"{p}.completions"), (f"{p}-projector", f"{p}.entities"),
                        (f"{p}-projector", f"{p}.subjects"), (f"{p}-usermetrics", f"{p}.completions")},
        "streams": {(f"{p}-streams", f"{p}.commands"), (f"{p}-streams", f"{p}.invocations"),
                    (f"{p}-streams", f"{p}.fires")},
        "invoker0": {(f"{p}-invoker0", f"{p}.invoker0")},
        "invoker1": {(f"{p}-invoker1", f"{p}.invoker1")},
        "feeds": {(f"{p}-feeds", f"{p}.feedreqs")},
        "api": {(f"{p}-api-compositions", f"{p}.compositions")},
    }
    for part, pairs in want.items():
        def present(part: str = part, pairs: set[tuple[str, str]] = pairs) -> bool:
            got = scrape(endpoint(stack, part)).get("streamwhisk_kafka_consumer_lag", [])
            seen = {(labels["group"], labels["topic"]) for labels, _ in got}
            assert all(labels["component"] == part.rstrip("0123456789") for labels, _ in got)
            assert pairs <= seen, (part, sorted(seen))
            return True
        wait_for(f"{part}'s lag series", present, timeout=30)
    # the projector caught up with the load: no lag left on completions
    wait_for("projector lag 0", lambda: total(scrape(endpoint(stack, "projections")), "streamwhisk_kafka_consumer_lag",
                                              group=f"{p}-projector", topic=f"{p}.completions") == 0, timeout=30)


def expected(c: Client) -> tuple[int, Counter[str], int]:
    recs = records(c)
    return len(recs), Counter(status_of(r) for r in recs), sum(cold(r) for r in recs)


def user_metrics_match(stack: Stack, load: dict[str, Any]) -> bool:
    n, statuses, colds = expected(load["c"])
    got = scrape(endpoint(stack, "projections"))
    ns = load["ns"]
    acts = total(got, "openwhisk_action_activations_total", namespace=ns)
    assert acts == n, (acts, n)
    for st in ("success", "application_error", "action_developer_error", "whisk_internal_error"):
        assert total(got, "openwhisk_action_status_total", namespace=ns, status=st) == statuses.get(st, 0), st
    assert total(got, "openwhisk_action_coldStarts_total", namespace=ns) == colds
    assert total(got, "openwhisk_action_duration_seconds_count", namespace=ns) == n
    assert total(got, "openwhisk_action_waitTime_seconds_count", namespace=ns) == n
    assert total(got, "openwhisk_action_initTime_seconds_count", namespace=ns) == colds
    return True


def test_activation_counters_equal_the_records(stack: Stack, load: dict[str, Any]) -> None:
    wait_for("user metrics = records", lambda: user_metrics_match(stack, load), timeout=60)
    n, statuses, colds = expected(load["c"])
    assert n == load["n"] and statuses == {"success": 12, "application_error": 3}
    assert 2 <= colds < n  # each action started cold at least once; the rest ran warm
    got = scrape(endpoint(stack, "projections"))
    labels = {tuple(sorted(lb)) for lb, _ in got["openwhisk_action_activations_total"]}
    assert labels == {("action", "initiator", "kind", "memory", "namespace")}
    mine = [lb for lb, _ in got["openwhisk_action_activations_total"] if lb["namespace"] == load["ns"]]
    assert {(lb["action"], lb["kind"], lb["memory"], lb["initiator"]) for lb in mine} == {
        ("ok", "python:3", "256", load["ns"]), ("fail", "python:3", "256", load["ns"])}


def test_counters_survive_a_projections_crash(stack: Stack, load: dict[str, Any]) -> None:
    """kill -9 (no checkpoint at exit): the restarted fold starts from its last checkpoint and folds the rest."""
    wait_for("user metrics = records", lambda: user_metrics_match(stack, load), timeout=60)
    time.sleep(11)  # a checkpoint was written meanwhile; then more activations that only the log has
    c = load["c"]
    for n in range(2):
        assert c.post("actions/ok", {"n": n}, blocking=True).status_code == 200
    load["n"] += 2
    pid = procs.read_pid(services.pid_file(stack.settings, "projections"))
    assert pid is not None
    metrics.port_file(stack.settings.home, "projections").unlink()
    os.kill(pid, signal.SIGKILL)
    assert procs.wait_exit(pid, 10)
    services.start_component(stack.settings, "projections", "projections", (), services.say, wait=True,
                             env=stack.env)
    wait_for("projections serves metrics again", lambda: metrics.read_port(stack.settings.home, "projections"))
    wait_for("user metrics = records after the restart", lambda: user_metrics_match(stack, load), timeout=90)
    assert total(scrape(endpoint(stack, "projections")), "openwhisk_action_activations_total",
                 namespace=load["ns"]) == load["n"]
