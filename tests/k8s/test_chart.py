"""The Helm chart on the cluster built by deploy/k8s/cluster.py (tests/k8s/chart.py installs it).

Every pod Ready; the npm `openwhisk` client creates, invokes and reads back activations through the chart's nginx
(a NodePort: no ingress controller is built); replay and audit run by `kubectl exec` in the projections pod; the
engine=pod invoker's action network is checked from inside an action; cold and warm start are measured; then 2
streams replicas and 2 invokers, and a streams pod and an invoker pod deleted under load.

    ./streamwhisk test tests/k8s/test_chart.py -m kubernetes -s     # figures: [figures] lines, $WSK_K8S_REPORT
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import statistics
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
import requests

from tests.chaos import faults
from tests.k8s import chart
from tests.k8s.chart import GUEST_KEY, Installed, Kube
from tests.k8s.conftest import Cluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(7200)]  # setup may include a fresh cluster build

AUTH = cast(tuple[str, str], tuple(GUEST_KEY.split(":")))
# Measurements and load run as their own subject with OpenWhisk-style raised limits (guest keeps 60/min).
LOAD_KEY = "6a1f3b2e-1111-4c4c-8d8d-0123456789ab:k8sLoadKeyk8sLoadKeyk8sLoadKeyk8sLoadKeyk8sLoadKeyk8sLoadKey12"
LOAD_AUTH = cast(tuple[str, str], tuple(LOAD_KEY.split(":")))
LOAD_LIMITS = {"invocationsPerMinute": 100000, "concurrentInvocations": 500}
RUN_T0 = time.monotonic()
SHARED: dict[str, str] = {}  # between the tests of one run (they run in file order)


def report(name: str, figures: dict[str, Any]) -> None:
    faults.report(name, figures, env="WSK_K8S_REPORT")


@pytest.fixture(scope="module")
def sw(k8s_cluster: Cluster) -> Iterator[Installed]:
    from cli import helmtools

    kube = Kube(k8s_cluster.kubeconfig, k8s_cluster.bin / "kubectl", helmtools.ensure_helm())
    if os.environ.get("SW_K8S_REUSE") == "1":  # debugging: the release already installed, as it is
        svc = kube.json("-n", chart.NS, "get", "svc", f"{chart.RELEASE}-streamwhisk-api")
        yield Installed(kube, f"http://{chart.NODE_IP}:{svc['spec']['ports'][0]['nodePort']}")
        return
    t_build = chart.build_images()
    t_import = chart.import_images()
    inst = chart.install(kube)
    report("install", {"build_s": round(t_build, 1), "import_s": round(t_import, 1),
                       **{k: round(v, 1) for k, v in inst.timings.items()}})
    yield inst
    report("whole_run", {"k8s_tests_s": round(time.monotonic() - RUN_T0, 1)})
    # Left installed (as the cluster is left up) for inspection; the next run installs afresh.


def cli(sw: Installed, module: str, command: str, *args: str, timeout: float = 600) -> str:
    """A `streamwhisk` subcommand (cli/<module>.py) run by `kubectl exec` in the projections pod (its image has the
    project; `python3 -m cli.main` would also import the bench package, which the image leaves out)."""
    code = (f"import argparse, sys\nfrom cli import {module} as m\nfrom contracts.settings import load\n"
            f"p = argparse.ArgumentParser()\nm.configure(p)\nsys.exit(m.{command}(load(), p.parse_args(sys.argv[1:])))")
    [proj] = sw.pods("projections")[:1]
    res = sw.exec(proj["metadata"]["name"], "python3", "-c", code, *args, container="projections", timeout=timeout)
    return res.stdout


def load_subject(sw: Installed) -> None:
    """The load subject (idempotent: the same key and limits leave it as it is)."""
    if SHARED.get("load_subject"):
        return
    cli(sw, "admin", "cmd_admin", "create", "k8sload", "--auth", LOAD_KEY, "--limits", json.dumps(LOAD_LIMITS))
    deadline = time.monotonic() + 60
    while requests.get(f"{sw.api}/namespaces", auth=LOAD_AUTH, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the load subject was not accepted"
        time.sleep(1)
    SHARED["load_subject"] = "1"


def put_action(sw: Installed, name: str, code: str, auth: tuple[str, str] = AUTH, **limits: int) -> None:
    body: dict[str, Any] = {"exec": {"kind": "python:3", "code": code}}
    if limits:
        body["limits"] = limits
    r = requests.put(f"{sw.api}/namespaces/_/actions/{name}?overwrite=true", json=body, auth=auth, timeout=60)
    assert r.status_code == 200, r.text


def invoke(sw: Installed, name: str, params: dict[str, Any] | None = None, blocking: bool = True,
           timeout: float = 90, auth: tuple[str, str] = AUTH) -> requests.Response:
    return requests.post(f"{sw.api}/namespaces/_/actions/{name}", params={"blocking": str(blocking).lower()},
                         json=params or {}, auth=auth, timeout=timeout)


def invoke_until_ok(sw: Installed, name: str, params: dict[str, Any] | None = None, wait_s: float = 120,
                    auth: tuple[str, str] = AUTH) -> Any:
    """The first invokes after an install may find no healthy invoker yet (503): wait for one."""
    deadline = time.monotonic() + wait_s
    while True:
        r = invoke(sw, name, params, auth=auth)
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return r.json()
        time.sleep(1)


# ---------------------------------------------------------------------------------------------------- install

def test_every_pod_ready_and_invokers_need_no_node_docker(sw: Installed) -> None:
    pods = sw.kube.json("-n", sw.namespace, "get", "pods")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    parts = Counter(p["metadata"]["labels"].get("app.kubernetes.io/component") for p in running)
    assert parts == {"kafka": 1, "couchdb": 1, "api": 1, "streams": 1, "projections": 1, "feeds": 1, "invoker": 1}
    for p in running:
        assert all(c["ready"] for c in p["status"]["containerStatuses"]), p["metadata"]["name"]
    [inv] = sw.pods("invoker")
    assert inv["metadata"]["name"] == sw.name("invoker") + "-0"
    assert {c["name"] for c in inv["spec"]["containers"]} == {"engine", "invoker", "api-relay"}
    assert all("hostPath" not in v for v in inv["spec"]["volumes"])
    # The engine loaded the runtime images from its own image: no registry, no node Docker.
    images = sw.exec(inv["metadata"]["name"], "docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                     container="engine").stdout.split()
    assert {"streamwhisk/action-python:latest", "streamwhisk/action-nodejs20:latest"} <= set(images)
    loaded = sw.kube.kubectl("-n", sw.namespace, "logs", inv["metadata"]["name"], "-c", "engine").stdout
    report("engine_start", {"engine_log": [ln for ln in loaded.splitlines() if ln.startswith("engine:")]})


# ---------------------------------------------------------------------------------------------------- npm client

def test_npm_client_invokes_through_the_charts_nginx(sw: Installed) -> None:
    from tests.stack import run_npm_client

    put_action(sw, "first", "def main(a):\n    return {'ok': True}\n")
    invoke_until_ok(sw, "first")  # an invoker is healthy
    sfx = uuid.uuid4().hex[:6]
    out = run_npm_client("invoke.js", cast(Any, SimpleNamespace(url=sw.url)), GUEST_KEY, sfx)
    failed = {k: v for k, v in out.items() if isinstance(v, dict) and set(v) == {"error", "statusCode"}}
    assert {k: v["statusCode"] for k, v in failed.items()} == {"invoke.apperror": 502,
                                                              "activation.get.missing": 404}, failed
    assert out["invoke.result"] == {"n": 1, "p": "default"}
    blocking = out["invoke.blocking"]
    assert blocking["response"]["result"] == {"n": 2, "p": "given"} and blocking["response"]["success"] is True
    assert out["invoke.js"] == {"twice": 42}  # nodejs:20 from the engine's baked images
    got = out["activation.get"]
    assert got["activationId"] == blocking["activationId"] and got["name"] == f"npy-{sfx}"
    assert any(line.endswith("stdout: hi 2") for line in got["logs"])
    assert out["activation.nonblocking"]["response"]["result"] == {"n": 3, "p": "default"}
    assert out["activations.count"] == {"activations": 3}
    SHARED["npm_suffix"] = sfx


# ---------------------------------------------------------------------------------------------------- replay, audit

def test_replay_and_audit_by_kubectl_exec(sw: Installed) -> None:
    sfx = SHARED.get("npm_suffix", "")
    assert sfx, "needs test_npm_client_invokes_through_the_charts_nginx first"
    out = cli(sw, "audit", "cmd_audit", "--entity", f"guest/npy-{sfx}", "--json")
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert lines, out
    text = json.dumps(lines)
    assert f"npy-{sfx}" in text and "put" in text.lower(), text[:2000]
    t0 = time.monotonic()
    out = cli(sw, "replay", "cmd_replay", "--json", timeout=900)
    replay_s = time.monotonic() - t0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["events"] > 0, summary
    # The replayed generation is live: what the npm client stored reads back through nginx.
    r = requests.get(f"{sw.api}/namespaces/_/activations", params={"name": f"npy-{sfx}"}, auth=AUTH, timeout=30)
    assert r.status_code == 200 and len(r.json()) == 3, r.text
    r = requests.get(f"{sw.api}/namespaces/_/actions/npy-{sfx}", auth=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    report("replay_audit", {"audit_lines": len(lines), "replay_events": summary["events"],
                            "replay_exec_s": round(replay_s, 1), "generation": summary.get("generation")})


# ---------------------------------------------------------------------------------------------------- hardening

PROBE = """import json, os, socket, urllib.request
def main(a):
    out = {}
    for name, host, port in a["targets"]:
        try:
            socket.create_connection((host, port), timeout=3).close()
            out[name] = "connected"
        except OSError as e:
            out[name] = type(e).__name__
    for name in a["names"]:
        try:
            out["dns " + name] = socket.getaddrinfo(name, 80)[0][4][0]
        except OSError as e:
            out["dns " + name] = type(e).__name__
    try:
        req = urllib.request.Request(os.environ["__OW_API_HOST"] + "/api/v1")
        out["api via __OW_API_HOST"] = urllib.request.urlopen(req, timeout=5).status
    except OSError as e:
        out["api via __OW_API_HOST"] = repr(e)
    out["api host"] = os.environ["__OW_API_HOST"]
    out["docker socket visible"] = any(os.path.exists(p) for p in ("/var/run/docker.sock", "/run/engine/docker.sock"))
    return out
"""


def test_action_network_is_walled_off_from_the_cluster(sw: Installed) -> None:
    def pod_ip(part: str) -> str:
        return str(sw.pods(part)[0]["status"]["podIP"])

    def svc_ip(part: str) -> str:
        return str(sw.kube.json("-n", sw.namespace, "get", "svc", sw.name(part))["spec"]["clusterIP"])

    inv = pod_ip("invoker")
    targets = [
        ("kafka pod", pod_ip("kafka"), 9092), ("couchdb pod", pod_ip("couchdb"), 5984),
        ("couchdb service", svc_ip("couchdb"), 5984), ("api service", svc_ip("api"), 80),
        ("api pod nginx", pod_ip("api"), 8080), ("api pod app port", pod_ip("api"), 23233),
        ("streams pod", pod_ip("streams"), 6066), ("kube-apiserver service", "10.96.0.1", 443),
        ("cluster dns", "10.96.0.10", 53), ("kubelet", chart.NODE_IP, 10250), ("host apiserver", "10.250.0.1", 16443),
        ("own pod, metrics", inv, 9095), ("own pod, relay port", inv, 3233), ("metadata", "169.254.169.254", 80),
    ]
    kafka_svc = sw.kube.json("-n", sw.namespace, "get", "svc", "-l", "app.kubernetes.io/component=kafka")["items"]
    targets += [(f"kafka service {s['metadata']['name']}", s["spec"]["clusterIP"], 9092) for s in kafka_svc
                if s["spec"].get("clusterIP") not in (None, "None")]
    names = [f"{sw.name('kafka')}.{sw.namespace}.svc.cluster.local", "kubernetes.default.svc.cluster.local"]
    put_action(sw, "probe-net", PROBE, timeout=60000)
    res = invoke_until_ok(sw, "probe-net", {"targets": targets, "names": names})
    out = res["response"]["result"]
    assert out.pop("api via __OW_API_HOST") == 200, out  # the API, through the pod's relay on the gateway
    assert out.pop("docker socket visible") is False
    api_host = out.pop("api host")
    reached = {k: v for k, v in out.items() if v == "connected"}
    assert not reached, f"actions reach {reached}; all: {out}"
    report("action_network", {"api_host": api_host, **out})


# ---------------------------------------------------------------------------------------------------- cold / warm

def timed_invoke(sw: Installed, name: str) -> tuple[float, dict[str, Any]]:
    t0 = time.monotonic()
    r = requests.post(f"{sw.api}/namespaces/_/actions/{name}", params={"blocking": "true"}, json={}, auth=LOAD_AUTH,
                      timeout=90)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    return took * 1000, r.json()


def annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record.get("annotations", []) if a["key"] == key), None)


def test_cold_and_warm_start(sw: Installed) -> None:
    """As bench's `cold` and `warm` sections measure the single-machine stack: client latency through nginx."""
    code = "def main(a):\n    return {'ok': True}\n"
    load_subject(sw)
    put_action(sw, "warm", code, LOAD_AUTH, memory=256)
    invoke_until_ok(sw, "warm", auth=LOAD_AUTH)
    for _ in range(5):
        timed_invoke(sw, "warm")
    warm = [timed_invoke(sw, "warm")[0] for _ in range(40)]
    prewarmed, cold, inits, waits = [], [], [], []
    for i in range(8):  # a stem cell for python:3@256 (WSK_INVOKER_PREWARM default): the prewarmed cold start
        put_action(sw, f"pw{i}-{uuid.uuid4().hex[:4]}", code, LOAD_AUTH, memory=256)
    names = [a["name"] for a in requests.get(f"{sw.api}/namespaces/_/actions", params={"limit": 200}, auth=LOAD_AUTH,
                                             timeout=30).json() if a["name"].startswith("pw")]
    for n in names:
        time.sleep(3)  # the stem cell is replaced before the next one
        ms, rec = timed_invoke(sw, n)
        prewarmed.append(ms)
        inits.append(annotation(rec, "initTime") or 0)
    for i in range(8):  # 512 MB: no stem cell of that size, a container is created for it
        n = f"cold{i}-{uuid.uuid4().hex[:4]}"
        put_action(sw, n, code, LOAD_AUTH, memory=512)
        ms, rec = timed_invoke(sw, n)
        cold.append(ms)
        waits.append(annotation(rec, "waitTime") or 0)
    [inv] = [p["metadata"]["name"] for p in sw.pods("invoker")][:1]
    engine_run = []
    for _ in range(3):  # the nested engine itself: docker run --rm of the runtime image inside the pod
        t0 = time.monotonic()
        sw.exec(inv, "docker", "run", "--rm", "--network", "none", "streamwhisk/action-python:latest", "python3",
                "-c", "pass", container="engine")
        engine_run.append((time.monotonic() - t0) * 1000)
    exec_only, host_run = [], []
    for _ in range(3):  # what kubectl exec itself adds, and the same docker run on this host's Docker now
        t0 = time.monotonic()
        sw.exec(inv, "true", container="engine")
        exec_only.append((time.monotonic() - t0) * 1000)
        t0 = time.monotonic()
        subprocess.run(["docker", "run", "--rm", "--network", "none", "streamwhisk/action-python:latest", "python3",
                        "-c", "pass"], capture_output=True, timeout=120, check=True)
        host_run.append((time.monotonic() - t0) * 1000)
    figures: dict[str, Any] = {
        "warm_p50_ms": round(statistics.median(warm), 1),
        "warm_p90_ms": round(sorted(warm)[int(len(warm) * 0.9) - 1], 1),
        "prewarmed_cold_p50_ms": round(statistics.median(prewarmed), 1),
        "prewarmed_init_p50_ms": statistics.median(inits),
        "cold_512mb_p50_ms": round(statistics.median(cold), 1),
        "cold_512mb_wait_p50_ms": statistics.median(waits),
        "engine_docker_run_p50_ms": round(statistics.median(engine_run), 1),
        "kubectl_exec_overhead_p50_ms": round(statistics.median(exec_only), 1),
        "host_docker_run_p50_ms": round(statistics.median(host_run), 1),
        "load_average_1m": os.getloadavg()[0],
        "local_reference": "bench/RESULTS.md: warm 13.9 ms, prewarmed cold 28.8 ms, cold 512 MB 249.5 ms, "
                           "docker run --rm 252.2 ms (p50)",
    }
    report("cold_warm", figures)
    assert figures["warm_p50_ms"] < 1000 and figures["cold_512mb_p50_ms"] < 10000


# ---------------------------------------------------------------------------------------------------- scale, faults

COUNT = """import asyncio, json, sys
from contracts import bus, events
from contracts.events import ActivationCompleted
from contracts.settings import load
from contracts.topics import Topics
ids = set(json.load(sys.stdin))
s = load()
async def read():
    c = bus.consumer(s.kafka, group=None)
    await c.start()
    try:
        tps = await bus.partitions(c, Topics(s.prefix).completions)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out = []
        while any([await c.position(tp) < ends[tp] for tp in tps]):
            for msgs in (await c.getmany(timeout_ms=500)).values():
                for m in msgs:
                    try:
                        ev = events.decode(m.value)
                    except events.DecodeError:
                        continue
                    if isinstance(ev, ActivationCompleted) and ev.activation_id in ids:
                        out.append([ev.activation_id, ev.invoker, "stopped responding" in str(ev.record)])
        return out
    finally:
        await c.stop()
comps = asyncio.run(read())
print(json.dumps({"completions": comps}))
"""


def count(sw: Installed, ids: set[str], known: dict[str, list[Any]]) -> dict[str, Any]:
    """Completions per id from the completions topic (kubectl exec), records through the API (the live generation
    of the activations view, whatever replay switched to); `known` keeps the records found by earlier calls."""
    [proj] = sw.pods("projections")[:1]
    res = sw.kube.kubectl("-n", sw.namespace, "exec", "-i", proj["metadata"]["name"], "-c", "projections", "--",
                          "python3", "-c", COUNT, input=json.dumps(sorted(ids)), timeout=300)
    out = cast(dict[str, Any], json.loads(res.stdout.strip().splitlines()[-1]))
    session = requests.Session()

    def get(aid: str) -> tuple[str, list[Any] | None]:
        r = session.get(f"{sw.api}/namespaces/_/activations/{aid}", auth=LOAD_AUTH, timeout=30)
        if r.status_code != 200:
            return aid, None
        d = r.json()
        return aid, [d["response"].get("status", d["response"].get("statusCode")), d["start"], d["end"]]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for aid, rec in pool.map(get, sorted(ids - set(known))):
            if rec is not None:
                known[aid] = rec
    out["records"] = known
    return out


def test_two_streams_two_invokers_pods_deleted_under_load(sw: Installed) -> None:
    t0 = time.monotonic()
    sw.kube.helm("upgrade", sw.release, str(chart.CHART), "-n", sw.namespace, "-f", str(chart.VALUES),
                 "--set", "streams.replicas=2", "--set", "invoker.replicas=2", "--timeout", "15m")
    time.sleep(3)
    sw.wait_ready()
    assert len(sw.pods("streams")) == 2 and len(sw.pods("invoker")) == 2
    load_subject(sw)
    put_action(sw, "load", "import time\ndef main(a):\n    time.sleep(1)\n    return {'i': a.get('i')}\n",
               LOAD_AUTH, memory=128, timeout=30000)
    put_action(sw, "quick", "def main(a):\n    return {'ok': True}\n", LOAD_AUTH, memory=128)
    invoke_until_ok(sw, "quick", auth=LOAD_AUTH)
    upgrade_s = time.monotonic() - t0
    time.sleep(10)  # both invokers' pings reach the balancer
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # warm containers on both
        list(pool.map(lambda i: invoke(sw, "load", {"i": -1 - i}, auth=LOAD_AUTH), range(16)))

    answers: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(10**9))
    load_t0 = time.monotonic()

    def worker() -> None:
        while not stop.is_set():
            i = next(counter)
            try:
                r = invoke(sw, "load", {"i": i}, blocking=i % 2 == 0, timeout=120, auth=LOAD_AUTH)
                aid = r.json().get("activationId") if r.status_code in (200, 202, 500) else None
                with lock:
                    answers.append((r.status_code, aid, time.monotonic() - load_t0))
            except (requests.RequestException, ValueError):
                with lock:
                    answers.append((0, None, time.monotonic() - load_t0))

    events_: dict[str, float] = {}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(worker) for _ in range(8)]
        time.sleep(12)
        victim_streams = sw.pods("streams")[0]["metadata"]["name"]
        events_["streams_delete"] = time.monotonic() - load_t0
        sw.kube.kubectl("-n", sw.namespace, "delete", "pod", victim_streams, "--wait=false")
        time.sleep(25)
        busy = engine_containers(sw)
        victim_inv = max(busy, key=lambda k: busy[k])
        events_["invoker_delete"] = time.monotonic() - load_t0
        sw.kube.kubectl("-n", sw.namespace, "delete", "pod", victim_inv, "--wait=false")
        # Until the replacement invoker is Ready again (same name: the StatefulSet ordinal), plus a little load.
        while True:
            pods = {p["metadata"]["name"]: p for p in sw.pods("invoker")}
            p = pods.get(victim_inv)
            if p and p["metadata"].get("creationTimestamp") and all(
                    c["ready"] for c in p["status"].get("containerStatuses", [{"ready": False}])) and \
                    time.monotonic() - load_t0 - events_["invoker_delete"] > 20:
                events_["invoker_back"] = time.monotonic() - load_t0
                break
            assert time.monotonic() - load_t0 < 600, "the deleted invoker did not come back"
            time.sleep(1)
        time.sleep(10)
        stop.set()
        for f in futs:
            f.result()
    sw.wait_ready()

    accepted = {aid for code, aid, _ in answers if aid}
    refused = Counter(code for code, aid, _ in answers if not aid)
    assert len(accepted) >= 200, (len(accepted), refused)
    deadline = time.monotonic() + 180
    known: dict[str, list[Any]] = {}
    while True:
        got = count(sw, accepted, known)
        if len(got["records"]) == len(accepted) or time.monotonic() > deadline:
            break
        time.sleep(5)
    records = got["records"]
    lost = accepted - set(records)
    by_invoker = Counter(a for a, _inv, watchdog in got["completions"] if not watchdog)
    closes = Counter(a for a, _inv, watchdog in got["completions"] if watchdog)
    doubled = [a for a, n in by_invoker.items() if n > 1]
    assert not lost, f"{len(lost)} accepted activations without a record: {sorted(lost)[:10]}"
    assert not doubled, f"run twice: {doubled[:10]}"
    assert all(n == 1 for n in closes.values()), closes

    # Timeline from the records: the longest stretch without a completed activation after each deletion.
    wall0 = time.time() - (time.monotonic() - load_t0)
    ends = sorted((d[2] / 1000 - wall0) for d in records.values())

    def gap_after(t: float) -> float:
        pts = [t, *(e for e in ends if t <= e <= t + 60)]  # the minute after the deletion
        return max((y - x) for x, y in itertools.pairwise(pts)) if len(pts) > 1 else float("nan")

    def first_ok_after(t: float) -> float:
        oks = [at for code, _aid, at in answers if code == 200 and at > t]
        return min(oks) - t if oks else float("nan")

    figures = {
        "accepted": len(accepted), "records": len(records), "lost": len(lost), "doubled_executions": len(doubled),
        "closed_by_watchdog": len(closes), "not_accepted": dict(refused),
        "status_codes": dict(Counter(str(d[0]) for d in records.values())),
        "load_s": round(max(at for *_x, at in answers), 1),
        "rate_per_s": round(len(answers) / max(at for *_x, at in answers), 1),
        "streams_delete_longest_gap_s": round(gap_after(events_["streams_delete"]), 1),
        "streams_delete_to_next_blocking_200_s": round(first_ok_after(events_["streams_delete"]), 1),
        "invoker_delete_longest_gap_s": round(gap_after(events_["invoker_delete"]), 1),
        "invoker_delete_to_next_blocking_200_s": round(first_ok_after(events_["invoker_delete"]), 1),
        "invoker_delete_to_replacement_ready_s": round(events_["invoker_back"] - events_["invoker_delete"], 1),
        "upgrade_to_2x2_ready_s": round(upgrade_s, 1),
    }
    report("k8s_faults", figures)


def engine_containers(sw: Installed) -> dict[str, int]:
    out = {}
    for p in sw.pods("invoker"):
        name = p["metadata"]["name"]
        res = sw.exec(name, "docker", "ps", "-q", container="engine", check=False, timeout=60)
        out[name] = len(res.stdout.split()) if res.returncode == 0 else 0
    return out
