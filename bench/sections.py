"""The six measured sections. Each takes the run context, is bounded in time and returns (json, rows)."""

from __future__ import annotations

import asyncio
import base64
import importlib
import importlib.util
import io
import os
import shutil
import subprocess
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import requests

from bench import baselines, probe
from bench.stats import Row, fmt_ms, hop_split, lat, parse_wrk, summary
from contracts import bus
from contracts.settings import Settings
from tests.stack import Client, Stack

WRK_DIR = Path(__file__).resolve().parent / "wrk"
ECHO = "def main(args):\n    return {'x': args.get('x')}\n"
Result = tuple[dict[str, Any], list[Row]]
OWN = ("api", "streams", "projections", "invoker0", "invoker1")  # our processes (the rest is shared infra)
HOP_KEYS = {"sent", "requested", "assigned", "start", "end", "completed", "received"}


@dataclass
class Ctx:
    stack: Stack
    base: Settings
    key: str
    out: Path
    quick: bool = False
    profile: bool = False
    profiles: dict[str, Any] = field(default_factory=dict)

    @property
    def s(self) -> Settings:
        return self.stack.settings

    def client(self) -> Client:
        return self.stack.client(self.key)

    def api(self, path: str) -> str:
        return self.client().url(path)

    def dur(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def service_pids(self, *names: str) -> dict[str, int]:
        pids = probe.stack_pids(self.s)
        return {n: p for n, p in pids.items() if not names or n in names}


# ---------------------------------------------------------------- tools

def ensure_wrk() -> str:
    exe = shutil.which("wrk")
    if exe is None:  # Debian's package; the harness installs it once
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return exe


def wrk(ctx: Ctx, script: str, url: str, conns: int, seconds: int, env: dict[str, str] | None = None,
        poll: Any = None) -> dict[str, Any]:
    """Run wrk with one of our lua scripts; `poll()` is called about every second while it runs."""
    assert url.startswith("http://127.0.0.1:"), url  # never anywhere but this machine
    auth = base64.b64encode(ctx.key.encode()).decode()
    threads = min(2, conns)
    cmd = [ensure_wrk(), "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "30s",
           "-s", str(WRK_DIR / script), url]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "WSK_AUTH": auth, **(env or {})})
    deadline = time.monotonic() + seconds + 60
    while p.poll() is None:
        if time.monotonic() > deadline:
            p.kill()
        if poll is not None:
            poll()
        time.sleep(1.0)
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed ({p.returncode}): {err[-500:]}")
    return parse_wrk(out)


class Tap:
    """Reads the activation topics in a background thread and stamps each activation's hops (wall ms).

    Kafka's CreateTime of each message is the producer's clock at send, so the stamps are where each
    component handed the event to Kafka; all processes share this machine's clock. Events are read by their raw
    JSON `type` (not contracts.events classes), so the same harness measures older and newer code; the
    authorized topic and its stamp are optional (admission may be one hop, invocations → invoker topic).
    """

    STAMPS = {"activation.requested": "requested", "activation.authorized": "authorized",
              "activation.assigned": "assigned"}

    def __init__(self, settings: Settings, hops: bool) -> None:
        self.bootstrap = settings.kafka
        self.prefix = settings.prefix
        self.hops = hops
        self.stamps: dict[str, dict[str, float]] = defaultdict(dict)
        self.names: dict[str, str] = {}
        self.completed: dict[str, float] = {}  # activation id -> when the tap saw the completion (wall ms)
        self.rejected: dict[str, int] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Tap:
        self._thread.start()
        if not self.ready.wait(30):
            raise TimeoutError("tap consumer not ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wanted(self, topic: str) -> bool:
        kind = topic.removeprefix(f"{self.prefix}.") if topic.startswith(f"{self.prefix}.") else ""
        hop = kind in ("invocations", "authorized") or (kind.startswith("invoker") and kind[7:].isdigit())
        return kind == "completions" or (self.hops and hop)

    async def _run(self) -> None:
        c = bus.consumer(self.bootstrap, group=None, from_start=False)
        await c.start()
        try:
            cluster = await c._client.fetch_all_metadata()
            tps = []
            for topic in sorted(t for t in cluster.topics() if self.wanted(t)):
                tps += await bus.partitions(c, topic)
            c.assign(tps)
            await c.seek_to_end(*tps)
            for tp in tps:
                await c.position(tp)
            self.ready.set()
            while not self._stop.is_set():
                batch = await c.getmany(timeout_ms=200)
                now = time.time() * 1000
                for msgs in batch.values():
                    for m in msgs:
                        self._on(m.value, float(m.timestamp), now)
        finally:
            await c.stop()

    def _on(self, raw: bytes, ts: float, now: float) -> None:
        try:
            ev = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(ev, dict):
            return
        req = ev.get("request")
        aid = ev.get("activation_id") or (req.get("activation_id") if isinstance(req, dict) else None)
        typ = ev.get("type")
        if not isinstance(aid, str):
            return
        if typ in self.STAMPS:
            self.stamps[aid][self.STAMPS[typ]] = ts
        elif typ == "activation.completed":
            record = ev.get("record")
            if ev.get("rejected_status") is not None:
                self.rejected[aid] = ev["rejected_status"]
            elif isinstance(record, dict):
                st = self.stamps[aid]
                st["completed"] = ts
                if "start" in record and "end" in record:
                    st["start"], st["end"] = record["start"], record["end"]
                self.names[aid] = record.get("name", "")
            self.completed[aid] = now

    def count(self, name: str | None = None) -> int:
        names = list(self.names.values())  # the tap thread adds names meanwhile
        return sum(1 for n in names if name is None or n == name)


def put_action(ctx: Ctx, name: str, code: str = ECHO, memory: int | None = None, binary: bool = False) -> None:
    body: dict[str, Any] = {"exec": {"kind": "python:3", "code": code, **({"binary": True} if binary else {})}}
    if memory:
        body["limits"] = {"memory": memory}
    r = ctx.client().put(f"actions/{name}", body, overwrite=True)
    r.raise_for_status()


def big_zip(mb: float) -> str:
    """A Python zip action of about `mb` MB: the echo as __main__.py plus incompressible random bytes, base64."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # ZIP_STORED: random bytes would not shrink anyway
        zf.writestr("__main__.py", ECHO)
        zf.writestr("ballast.bin", os.urandom(int(mb * 1024 * 1024)))
    return base64.b64encode(buf.getvalue()).decode()


def activation_docs(ctx: Ctx) -> int:
    r = requests.get(f"{ctx.s.couchdb}/{ctx.s.db('activations')}", timeout=10)
    r.raise_for_status()
    return int(r.json()["doc_count"])


def warm(ctx: Ctx, name: str, conns: int) -> None:
    """Enough containers for `conns` clients, warm (and unpaused) before measuring."""
    wrk(ctx, "invoke.lua", ctx.api(f"actions/{name}?blocking=true&result=true"), conns, 3 if ctx.quick else 5)


# ---------------------------------------------------------------- 1. warm latency

def paired(ctx: Ctx, names: list[str], n: int) -> dict[str, dict[str, float]]:
    """Blocking invokes of the actions in turn, n rounds, one client: latency summary per action."""
    sess = requests.Session()
    sess.auth = ctx.client().auth
    took: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        for name in names:
            t = time.perf_counter()
            r = sess.post(ctx.api(f"actions/{name}?blocking=true&result=true"), json={"x": i}, timeout=30)
            if r.status_code == 200:
                took[name].append((time.perf_counter() - t) * 1000)
    return {name: summary(v) for name, v in took.items()}


def warm_latency(ctx: Ctx) -> Result:
    name = "bench-echo"
    put_action(ctx, name)
    d = ctx.dur(15, 6)
    url = ctx.api(f"actions/{name}?blocking=true&result=true")
    res: dict[str, Any] = {}
    for conns in (1, 8):
        warm(ctx, name, conns)
        prof = None
        if ctx.profile:
            pids = ctx.service_pids("api", "streams", "invoker0", "invoker1")
            prof = probe.Profiler(ctx.out / "profiles", f"warm-c{conns}", pids, max(3, d - 2))
        res[f"c{conns}"] = wrk(ctx, "invoke.lua", url, conns, d)
        if prof is not None:
            ctx.profiles[f"warm-c{conns}"] = prof.wait()
    # the same c=1 run straight to the API port: what the nginx hop costs
    res["c1_no_nginx"] = wrk(ctx, "invoke.lua", url.replace(f":{ctx.s.nginx_port}/", f":{ctx.s.api_port}/"), 1, d)
    # the same c=1 run with a 3 MB zip action: does the hot path carry the code?
    put_action(ctx, "bench-big", big_zip(3), binary=True)
    warm(ctx, "bench-big", 1)
    res["big_c1"] = wrk(ctx, "invoke.lua", ctx.api("actions/bench-big?blocking=true&result=true"), 1, d)
    # the ratio from requests that alternate between the two actions: phases minutes apart differ by more
    # than what is measured on this shared machine
    res["paired"] = paired(ctx, ["bench-echo", "bench-big"], 60 if ctx.quick else 200)
    res["hops"] = hop_trace(ctx, name, 40 if ctx.quick else 150)
    res["direct"] = baselines.run_async(
        baselines.direct_container(100 if ctx.quick else 300, Path("/run/streamwhisk") / f"{ctx.s.prefix}b"))
    res["kafka"] = baselines.run_async(baselines.kafka_round_trip(ctx.s, 50 if ctx.quick else 200))

    direct, kafka = res["direct"]["run"]["p50"], res["kafka"]["produce_to_consume"]["p50"]
    rows: list[Row] = []
    for conns in (1, 8):
        w = res[f"c{conns}"]
        ok = w["codes"].get(200, 0)
        rows.append(("1 warm", f"blocking invoke via nginx, c={conns} (p50/p90/p99)", lat(w),
                     f"{w['rps']:.0f} req/s, {ok}/{w['requests']} ok; target p50 < 10 ms"))
        rows.append(("1 warm", f"  ratio p50 / direct /run p50, c={conns}", f"{w['p50'] / direct:.1f}x",
                     f"/ kafka rtt p50: {w['p50'] / kafka:.1f}x; target < 5x direct"))
        if conns == 1:
            res["c1_over_kafka_rtt"] = w["p50"] / kafka
            rows.append(("1 warm", "  ratio p50 / bare Kafka produce→consume p50, c=1", f"{w['p50'] / kafka:.1f}x",
                         f"{w['p50'] / kafka:.1f}x the bare Kafka round trip ({fmt_ms(kafka)}); target ≤ 6x"))
    rows.append(("1 warm", "  c=1 straight to the API port (no nginx)", lat(res["c1_no_nginx"]),
                 f"{res['c1_no_nginx']['rps']:.0f} req/s"))
    big, pair = res["big_c1"], res["paired"]
    res["big_over_small_p50"] = pair["bench-big"]["p50"] / pair["bench-echo"]["p50"]
    rows.append(("1 warm", "  c=1, 3 MB zip action (p50/p90/p99)", lat(big),
                 f"{big['codes'].get(200, 0)}/{big['requests']} ok; alternating with the 10-line one: "
                 f"{fmt_ms(pair['bench-big']['p50'])} vs {fmt_ms(pair['bench-echo']['p50'])} p50 = "
                 f"{res['big_over_small_p50']:.2f}x; target within 1.2x"))
    rows.append(("1 warm", "baseline: direct container /run (unix socket)", lat(res["direct"]["run"]),
                 f"+ log collection: {lat(res['direct']['run_plus_logs'])}"))
    rows.append(("1 warm", "  prototype: /run + logs read from the json-file", lat(res["direct"]["run_plus_file_logs"]),
                 "instead of docker API polling (invoker proposal)"))
    rows.append(("1 warm", "baseline: bare Kafka produce→consume", lat(res["kafka"]["produce_to_consume"]),
                 f"ack (acks=all): {lat(res['kafka']['produce_ack'])}"))
    for hop, s in res["hops"]["per_hop"].items():
        rows.append(("1 hops", f"  {hop} (p50/p90/p99)", lat(s), "Kafka CreateTime stamps, ms resolution"))
    return res, rows


def hop_trace(ctx: Ctx, name: str, n: int) -> dict[str, Any]:
    """Sequential blocking invokes with client stamps, joined with the tap's per-topic stamps."""
    c = ctx.client()
    sess = requests.Session()
    sess.auth = c.auth
    url = c.url(f"actions/{name}")
    traces: dict[str, dict[str, float]] = {}
    with Tap(ctx.s, hops=True) as tap:
        for i in range(n + 5):
            sent = time.time() * 1000
            r = sess.post(url, json={"x": i}, params={"blocking": "true", "result": "true"}, timeout=30)
            received = time.time() * 1000
            aid = r.headers.get("x-openwhisk-activation-id")
            if i >= 5 and r.status_code == 200 and aid:
                traces[aid] = {"sent": sent, "received": received}
        time.sleep(0.5)
        for aid, t in traces.items():
            t.update(tap.stamps.get(aid, {}))
    splits: dict[str, list[float]] = defaultdict(list)
    for t in traces.values():
        if not t.keys() >= HOP_KEYS:  # "authorized" is optional: one-hop admission has none
            continue
        for hop, v in hop_split(t).items():
            splits[hop].append(v)
        splits["total (client)"].append(t["received"] - t["sent"])
    return {"n": len(traces), "per_hop": {h: summary(v) for h, v in splits.items()}}


# ---------------------------------------------------------------- 2. throughput (+ 6. memory)

def throughput(ctx: Ctx) -> Result:
    name = "bench-tput"
    put_action(ctx, name)
    warm(ctx, name, 16)
    d = ctx.dur(60, 15)
    res: dict[str, Any] = {}
    rows: list[Row] = []
    for mode in ("nonblocking", "blocking"):
        q = "blocking=true&result=true" if mode == "blocking" else "blocking=false"
        docs0 = activation_docs(ctx)
        series: list[tuple[float, int, int]] = []
        # one window for CPU and Kafka messages: from here to the last record (after the drain)
        msgs0, cont0 = probe.topic_offsets(ctx.s), probe.container_cpu(ctx.s.container_prefix)
        pids = probe.stack_procs(ctx.s, ctx.base, containers=cont0)
        prof = None
        if ctx.profile:
            busy = {n: p[0] for n, p in pids.items() if n in OWN}
            prof = probe.Profiler(ctx.out / "profiles", f"tput-{mode}", busy, min(20, d - 2))
        sampler = probe.RssSampler(pids).start()
        with Tap(ctx.s, hops=False) as tap:
            t0 = time.monotonic()

            def poll(tap: Tap = tap, docs0: int = docs0, t0: float = t0,
                     series: list[tuple[float, int, int]] = series) -> None:
                series.append((time.monotonic() - t0, tap.count(name), activation_docs(ctx) - docs0))

            w = wrk(ctx, "invoke.lua", ctx.api(f"actions/{name}?{q}"), 16, d, poll=poll)
            load_s = time.monotonic() - t0
            accepted = w["codes"].get(202 if mode == "nonblocking" else 200, 0)
            drain_deadline = time.monotonic() + ctx.dur(60, 20)
            while time.monotonic() < drain_deadline:  # wait for every accepted activation to be recorded
                poll()
                if series[-1][1] >= accepted and series[-1][2] >= accepted:
                    break
                time.sleep(0.5)
            poll()
            mem = sampler.stop()
            cont = probe.delta(cont0, probe.container_cpu(ctx.s.container_prefix))
            msgs = probe.delta(msgs0, probe.topic_offsets(ctx.s))
            done_s = series[-1][0]
            completed, records = series[-1][1], series[-1][2]
            # the time the last record landed: first sample at the final count
            last_at = next((t for t, _, r in series if r >= records), done_s)
        if prof is not None:
            ctx.profiles[f"tput-{mode}"] = prof.wait()
        in_window = max((r for t, _, r in series if t <= load_s), default=0)
        # CPU per activation is far less sensitive than rates to other work on this shared machine
        cpu = {n: per_activation(m["cpu_s"] * 1000, records) for n, m in mem.items()}
        ours = sum(v for n, v in cpu.items() if n in OWN)
        infra = sum(v for n, v in cpu.items() if n not in OWN)  # Kafka, CouchDB, nginx, Docker's daemons, ...
        containers = per_activation(sum(cont.values()) * 1000, records)
        by_topic = {t.removeprefix(ctx.s.prefix).lstrip(".-"): n
                    for t, n in sorted(msgs.items(), key=lambda kv: -kv[1]) if n}
        kafka = {"messages": sum(by_topic.values()), "topics": len(msgs), "per_topic": by_topic,
                 "per_activation": per_activation(sum(by_topic.values()), records)}
        r = {
            "wrk": w, "load_s": load_s, "accepted": accepted, "completed_events": completed, "records": records,
            "records_in_load_window": in_window, "last_record_at_s": last_at,
            "sustained_per_s": records / last_at if last_at else 0.0,
            "lost": max(0, accepted - records), "memory": mem,
            "cpu_ms_per_activation": ours, "infra_cpu_ms_per_activation": infra,
            "cpu_ms_per_activation_by_process": {n: round(v, 3) for n, v in cpu.items()},
            "action_containers": {"n": len(cont), "cpu_s": round(sum(cont.values()), 2),
                                  "cpu_ms_per_activation": containers},
            "kafka_messages": kafka,
            "series": [(round(t, 1), c, n) for t, c, n in series],
        }
        res[mode] = r
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(w["codes"].items()))
        rows.append(("2 throughput", f"{mode}, 16 clients, {d} s: records/s", f"{r['sustained_per_s']:.0f}/s",
                     f"{records} records of {accepted} accepted, lost {r['lost']}; HTTP {codes}; target > 500/s"))
        rows.append(("2 throughput", f"  {mode}: API answers/s, latency", f"{w['rps']:.0f}/s", lat(w)))
        rows.append(("2 throughput", f"  {mode}: CPU per activation", f"{ours:.1f} ms",
                     f"api+streams+invokers+projections; Kafka+CouchDB+nginx+dockerd+containerd add {infra:.1f} ms, "
                     f"action containers {containers:.1f} ms"))
        top = ", ".join(f"{t.removeprefix('streams-')} {n / records:.1f}" for t, n in list(by_topic.items())[:3])
        rows.append(("2 throughput", f"  {mode}: Kafka messages per activation (all topics)",
                     f"{kafka['per_activation']:.1f}", f"{kafka['messages']} in {len(by_topic)} topics incl. Faust "
                     f"changelogs; top: {top if records else '-'}"))
        rows.append(("2 throughput", f"  {mode}: last record after", fmt_ms(last_at * 1000),
                     f"load {load_s:.0f} s; records inside the load window {in_window}"))
    nb, bl = res["nonblocking"], res["blocking"]
    for pname, m in nb["memory"].items():
        per_ms = [x["cpu_ms_per_activation_by_process"].get(pname, 0.0) for x in (nb, bl)]
        rows.append(("6 memory", f"  {pname} during 2 (nonblocking)", f"{m['rss_max_mb']:.0f} MB",
                     f"max RSS; cpu {m['cpu_pct']:.0f}% of one core; {per_ms[0]:.2f} / {per_ms[1]:.2f} ms CPU "
                     "per activation (nonblocking / blocking)"))
    rows.append(("6 memory", "  action containers during 2", f"{nb['action_containers']['n']} running",
                 f"cgroup CPU: {nb['action_containers']['cpu_ms_per_activation']:.2f} / "
                 f"{bl['action_containers']['cpu_ms_per_activation']:.2f} ms per activation (nonblocking / blocking)"))
    return res, rows


def per_activation(total: float, records: int) -> float:
    return total / records if records else 0.0


# ---------------------------------------------------------------- 3. cold start

def cold_invokes(c: Client, n: int, put: Callable[[str], None], refill_s: float) -> dict[str, Any]:
    """n first invokes of n new actions (put(name) makes one), each after the invoker refilled its stem cells."""
    e2e, init, wait = [], [], []
    for i in range(n):
        name = f"bench-cold-{uuid.uuid4().hex[:8]}"
        put(name)
        time.sleep(refill_s)
        t = time.perf_counter()
        r = c.post(f"actions/{name}", {"x": i}, blocking=True)
        e2e.append((time.perf_counter() - t) * 1000)
        if r.status_code == 200:
            ann = {a["key"]: a["value"] for a in r.json().get("annotations", [])}
            init.append(float(ann.get("initTime", 0)))
            wait.append(float(ann.get("waitTime", 0)))
        c.delete(f"actions/{name}")
    return {"end_to_end": summary(e2e), "initTime": summary(init), "waitTime": summary(wait)}


def cold_start(ctx: Ctx) -> Result:
    res: dict[str, Any] = {}
    for label, memory in (("prewarmed", None), ("no_prewarm", 512)):  # no stem cell has 512 MB
        res[label] = cold_invokes(ctx.client(), ctx.dur(5, 2), partial(put_action, ctx, code=ECHO, memory=memory),
                                  refill_s=2.5)  # the invoker refills its prewarm pool after each cold start
    res["docker_run"] = baselines.docker_run(ctx.dur(5, 2))
    res["driver"] = baselines.run_async(baselines.driver_start(ctx.dur(5, 2),
                                                               Path("/run/streamwhisk") / f"{ctx.s.prefix}b"))
    rows: list[Row] = [
        ("3 cold", "first invoke, prewarmed container (p50/p90/p99)", lat(res["prewarmed"]["end_to_end"]),
         f"initTime p50 {fmt_ms(res['prewarmed']['initTime'].get('p50'))}, waitTime p50 "
         f"{fmt_ms(res['prewarmed']['waitTime'].get('p50'))}; target < 100 ms"),
        ("3 cold", "first invoke, no prewarm (512 MB)", lat(res["no_prewarm"]["end_to_end"]),
         f"waitTime p50 {fmt_ms(res['no_prewarm']['waitTime'].get('p50'))} (container start)"),
        ("3 cold", "baseline: docker run --rm python3 -c pass", lat(res["docker_run"]), ""),
        ("3 cold", "baseline: driver create+start → proxy ready", lat(res["driver"]["start_to_ready"]),
         f"remove {fmt_ms(res['driver']['remove'].get('p50'))}"),
    ]
    return res, rows


# Each family's smallest action, as its docs write it, answering the parameter x (families without one here are
# reported as such). Java's is the source of a jar (its kinds take jars only), built once in each java image.
HELLO = {
    "python": "def main(args):\n    return {'x': args.get('x')}\n",
    "nodejs": "function main(params) { return { x: params.x }; }\n",
    "go": "package main\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n"
          "\treturn map[string]interface{}{\"x\": obj[\"x\"]}\n}\n",
    "php": "<?php\nfunction main(array $args) : array\n{\n    return [\"x\" => $args[\"x\"] ?? null];\n}\n",
    "ruby": "def main(args)\n  { \"x\" => args[\"x\"] }\nend\n",
    "rust": "extern crate serde_json;\nuse serde_json::{json, Error, Value};\n\n"
            "pub fn main(args: Value) -> Result<Value, Error> {\n    Ok(json!({\"x\": args[\"x\"]}))\n}\n",
    "java": "import com.google.gson.JsonObject;\n\npublic class Hello {\n"
            "    public static JsonObject main(JsonObject args) {\n        JsonObject response = new JsonObject();\n"
            "        response.add(\"x\", args.get(\"x\"));\n        return response;\n    }\n}\n",
}
JAVA_MAIN = "Hello"


def kind_samples(kinds: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The `exec` of each kind's HELLO, and why a kind has none. A java kind's is a jar of it, compiled in the kind's
    image as tests/integration/test_runtime_java.py compiles its jars, with `main` (java kinds require it)."""
    from contracts import entities
    from tests.integration.kinds import compile_jar

    execs: dict[str, dict[str, Any]] = {}
    why: dict[str, str] = {}
    jars: dict[str, str] = {}  # image -> base64 jar
    for kind in kinds:
        rt = entities.RUNTIMES[kind]
        code = HELLO.get(rt.family)
        if code is None:
            why[kind] = "no sample action in bench"
        elif rt.family == "java":
            image = f"{rt.image}:latest"
            try:
                jars[image] = jars.get(image) or compile_jar(image, {f"{JAVA_MAIN}.java": code})
            except Exception as e:  # the row says why; the other kinds still run
                why[kind] = f"its jar did not build in {image}: {str(e).strip()[:100]}"
                continue
            execs[kind] = {"kind": kind, "code": jars[image], "main": JAVA_MAIN}
        else:
            execs[kind] = {"kind": kind, "code": code}
    return execs, why


def cold_kinds(ctx: Ctx) -> Result:
    """Every kind's cold start, prewarmed (a stem cell of its image) and not (512 MB: no stem cell has that), on a
    one-invoker stack of its own whose prewarm pool holds one stem cell of every image."""
    from contracts import entities
    from tests.stack import start_stack

    kinds = sorted(entities.RUNTIMES)
    samples, why = kind_samples(kinds)  # before the stack: building jars is no part of what is measured
    stems = sorted({entities.image_kind(k) for k in kinds})
    env = {"WSK_INVOKER_PREWARM": " ".join(f"{k}@256" for k in stems),
           "WSK_INVOKER_MEMORY_MB": str(256 * len(stems) + 1024)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        stack = start_stack(ctx.base, invokers=1)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    n = ctx.dur(5, 2)
    res: dict[str, Any] = {}
    rows: list[Row] = []
    try:
        c = stack.client(stack.subject("benchkinds", limits={"invocationsPerMinute": 1000}))
        for kind in kinds:
            if kind not in samples:
                rows.append(("3 cold", f"{kind}: {why[kind]}", "-", ""))
                continue
            def put(name: str, kind: str = kind, memory: int = 256) -> None:
                r = c.put(f"actions/{name}", {"exec": samples[kind], "limits": {"memory": memory}}, overwrite=True)
                r.raise_for_status()

            res[kind] = {label: cold_invokes(c, n, partial(put, memory=memory), refill_s=3)
                         for label, memory in (("prewarmed", 256), ("no_prewarm", 512))}
            rows += [
                ("3 cold", f"{kind}: prewarmed (p50/p90/p99)", lat(res[kind]["prewarmed"]["end_to_end"]),
                 f"initTime p50 {fmt_ms(res[kind]['prewarmed']['initTime'].get('p50'))}"),
                ("3 cold", f"{kind}: no prewarm (512 MB)", lat(res[kind]["no_prewarm"]["end_to_end"]),
                 f"initTime p50 {fmt_ms(res[kind]['no_prewarm']['initTime'].get('p50'))}"),
            ]
    finally:
        stack.stop()
    return res, rows


# ---------------------------------------------------------------- 4. triggers

def triggers(ctx: Ctx) -> Result:
    c = ctx.client()
    name = "bench-rule-target"
    put_action(ctx, name)
    res: dict[str, Any] = {}
    rows: list[Row] = []
    for nrules in (1, 10):
        trig = f"bench-trig-{nrules}"
        r = c.put(f"triggers/{trig}", {}, overwrite=True)
        if r.status_code != 200:
            return _unavailable(res, rows, f"PUT trigger answered {r.status_code}")
        for i in range(nrules):
            r = c.put(f"rules/bench-rule-{nrules}-{i}", {"trigger": f"/_/{trig}", "action": f"/_/{name}"},
                      overwrite=True)
            if r.status_code != 200:
                return _unavailable(res, rows, f"PUT rule answered {r.status_code}: {r.text[:80]}")
        # as the warm sections do: containers for each rule's activation exist, so the fan-out is measured, not
        # cold starts (a first fire of N rules on a cold action starts N containers, as OpenWhisk would)
        warm(ctx, name, nrules)
        first, last = [], []
        with Tap(ctx.s, hops=False) as tap:
            for _ in range(ctx.dur(10, 5)):
                before = tap.count(name)
                t = time.time() * 1000
                r = c.post(f"triggers/{trig}", {"x": 1})
                if r.status_code not in (200, 202):
                    return _unavailable(res, rows, f"POST trigger answered {r.status_code}")
                deadline = time.monotonic() + 15
                while tap.count(name) < before + nrules and time.monotonic() < deadline:
                    time.sleep(0.005)
                seen = sorted(v for a, v in tap.completed.items() if tap.names.get(a) == name and v >= t)
                if len(seen) >= nrules:
                    first.append(seen[0] - t)
                    last.append(seen[nrules - 1] - t)
        res[f"rules{nrules}"] = {"first": summary(first), "all": summary(last)}
        rows.append(("4 triggers", f"fire → {nrules} action(s) completed (all; p50/p90/p99)", lat(summary(last)),
                     f"first completion p50 {fmt_ms(summary(first).get('p50'))}"))
    p1, p10 = res["rules1"]["all"].get("p50"), res["rules10"]["all"].get("p50")
    if p1 and p10:
        res["ratio_10_to_1_p50"] = p10 / p1
        rows.append(("4 triggers", "  10 rules / 1 rule, p50 (all completed)", f"{p10 / p1:.1f}x", "target ≤ 3x"))
    return res, rows


def _unavailable(res: dict[str, Any], rows: list[Row], why: str) -> Result:
    res["available"] = False
    res["reason"] = why
    rows.append(("4 triggers", "fire → action completion", "not available", why))
    return res, rows


# ---------------------------------------------------------------- 5. CRUD

def crud(ctx: Ctx) -> Result:
    d = ctx.dur(10, 5)
    res: dict[str, Any] = {}
    rows: list[Row] = []
    for conns in (1, 8):
        w = wrk(ctx, "put.lua", f"{ctx.stack.url}/", conns, d,
                env={"WSK_PATH": "/api/v1/namespaces/_/actions"})
        res[f"put_c{conns}"] = w
        rows.append(("5 CRUD", f"PUT action (new name), c={conns}", f"{w['rps']:.0f}/s",
                     f"latency {lat(w)}; HTTP {dict(sorted(w['codes'].items()))}"))
    c = ctx.client()
    sess = requests.Session()
    sess.auth = c.auth
    url = c.url("actions/bench-ryw")
    puts, gets, stale = [], [], 0
    for i in range(ctx.dur(50, 15)):
        code = ECHO + f"# v{i}\n"
        t = time.perf_counter()
        r = sess.put(url, json={"exec": {"kind": "python:3", "code": code}}, params={"overwrite": "true"}, timeout=30)
        t1 = time.perf_counter()
        g = sess.get(url, timeout=30)
        t2 = time.perf_counter()
        if r.status_code == 200:
            puts.append((t1 - t) * 1000)
            gets.append((t2 - t1) * 1000)
            stale += g.status_code != 200 or g.json().get("exec", {}).get("code") != code
    res["ryw"] = {"put": summary(puts), "get": summary(gets), "stale": stale, "n": len(puts)}
    rows.append(("5 CRUD", "read-your-write: PUT (answers after projection)", lat(res["ryw"]["put"]), ""))
    rows.append(("5 CRUD", "read-your-write: GET right after", lat(res["ryw"]["get"]),
                 f"stale reads: {stale}/{len(puts)}"))
    return res, rows


# ---------------------------------------------------------------- 6. replay

def replay(ctx: Ctx) -> Result:
    """Calls the replay tool when it exists (bench/replay.py or cli/replay.py with measure(settings, quick))."""
    for mod in ("bench.replay", "cli.replay"):
        if importlib.util.find_spec(mod) is None:
            continue
        m = importlib.import_module(mod)
        if hasattr(m, "measure"):
            out: dict[str, Any] = m.measure(ctx.s, ctx.quick)
            note = f"{out.get('events', '?')} events, peak RSS {out.get('peak_rss_mb', 0):.0f} MB; target > 20k/s"
            rows: list[Row] = [("6 replay", "replay speed", f"{out.get('events_per_s', 0):.0f} events/s", note)]
            if out.get("bulk_ceiling_docs_per_s") and out.get("ratio") is not None:  # newer bench.replay only
                rows.append(("6 replay", "  replay / raw _bulk_docs ceiling (same CouchDB, same run)",
                             f"{100 * out['ratio']:.0f} %",
                             f"{out.get('events_per_s', 0):.0f} events/s = {100 * out['ratio']:.0f} % of the raw "
                             f"_bulk_docs ceiling {out['bulk_ceiling_docs_per_s']:.0f} docs/s; target ≥ 80 %"))
            return out, rows
        return {"available": False}, [("6 replay", "replay speed", "not available", f"{mod} has no measure()")]
    return {"available": False}, [("6 replay", "replay speed", "not available", "no replay tool yet")]
