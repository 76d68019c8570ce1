"""Soak (#19): mixed load on a stack started by `up`, one part killed every few minutes, a replay in the middle.

    ./streamwhisk soak --minutes 60 --seed 7        # or: .venv/bin/python -m bench.soak --minutes 60 --seed 7

The stack is started by `up` (supervisord) in a temporary WSK_HOME with its own ports and prefix
(tests/upstack.py). Load threads invoke (python and node, blocking and not, a sequence), fire a trigger with a
rule, and PUT/GET/DELETE actions and packages; a seeded schedule SIGKILLs one supervised part every `--every`
minutes (a seeded shuffle of the parts, so each comes up before any repeats) and `replay` rebuilds the projections
into a new generation halfway. Then the load stops and every accepted activation must have its record, no
activation may have run twice (completions topic), every acknowledged write must read back as written, and
every part's memory (RSS of its process tree, sampled every 30 s) gets a least-squares slope. The report is a
JSON file plus a summary; the exit code is 1 if anything was lost, doubled or did not come back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from cli import procs
from contracts.settings import Settings, load
from tests import upstack as us

OUT = Path(__file__).resolve().parent / "out" / "soak.json"
LIMITS = {"invocationsPerMinute": 100000, "concurrentInvocations": 1000, "firesPerMinute": 100000}
PY = "def main(a):\n    return {'py': a.get('i')}\n"
NODE = "function main(a) { return {node: a.i}; }\n"
PROBE = "def main(a):\n    return {'p': a.get('n')}\n"
# Watchdog closures (streams/watchdog.py): a record the platform wrote, not an execution.
WATCHDOG_TEXTS = ("The invoker running this activation", "The activation did not complete within its time limit")


@dataclass
class Config:
    minutes: float = 60.0
    seed: int = 7
    every: float = 4.0  # minutes between kills (jittered by +-25 %)
    invokers: int = 2
    threads: int = 3
    pause: float = 0.3  # seconds between one thread's requests: a modest rate a 2-core machine copes with
    warmup: float = 5.0  # minutes of each incarnation left out of the memory fit
    sample_every: float = 30.0
    settle: float = 300.0  # seconds to wait for records after the load stops
    replay: bool = True
    out: Path = OUT
    keep: bool = False

    def parts(self) -> list[str]:
        return ["api", "streams", "projections", *(f"invoker{i}" for i in range(self.invokers)), "feeds", "nginx",
                "connect", "couchdb", "kafka"]


def now_s(t0: float) -> float:
    return round(time.monotonic() - t0, 1)


# --- load ---------------------------------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: Counter[str] = field(default_factory=Counter)  # "op status"
    accepted: dict[str, str] = field(default_factory=dict)  # activation id -> op (200/202 with an id)
    other_ids: dict[str, str] = field(default_factory=dict)  # id in another answer (e.g. 500 watchdog close)
    wrong_results: list[str] = field(default_factory=list)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # "actions/x" -> model
    acked_writes: int = 0
    latency: list[float] = field(default_factory=list)  # of accepted requests


class Loader(threading.Thread):
    """One load thread: its own entities, so its model of their last acknowledged write is exact."""

    OPS: tuple[tuple[str, int], ...] = (
        ("py_blocking", 4), ("py", 4), ("node_blocking", 2), ("node", 2), ("seq_blocking", 1), ("fire", 3),
        ("put_action", 2), ("get_action", 1), ("delete_action", 1), ("put_package", 1), ("delete_package", 1),
        ("list", 1),
    )

    def __init__(self, k: int, base: str, auth: tuple[str, str], cfg: Config, tally: Tally,
                 stop: threading.Event) -> None:
        super().__init__(name=f"load{k}", daemon=True)
        self.k, self.base, self.auth, self.cfg, self.tally, self.stop = k, base, auth, cfg, tally, stop
        self.rng = random.Random(cfg.seed * 1000 + k)
        self.http = requests.Session()
        self.ops = [op for op, w in self.OPS for _ in range(w)]

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            self.one(self.rng.choice(self.ops), i)
            self.stop.wait(self.cfg.pause)

    def one(self, op: str, i: int) -> None:
        name = f"soak{self.k}_{self.rng.randrange(4)}"
        pkg = f"soakpkg{self.k}_{self.rng.randrange(2)}"
        marker = f"{self.k}-{i}"
        body: Any = {"i": i}
        blocking = op.endswith("_blocking")
        params: dict[str, str] = {"blocking": "true"} if blocking else {}
        method, path = "POST", ""
        if op.startswith("py"):
            path = "actions/soakpy"
        elif op.startswith("node"):
            path = "actions/soaknode"
        elif op == "seq_blocking":
            path = "actions/soakseq"
        elif op == "fire":
            path = "triggers/soaktick"
        elif op == "put_action":
            method, path, params = "PUT", f"actions/{name}", {"overwrite": "true"}
            body = {"exec": {"kind": "python:3", "code": f"def main(a):\n    return {{'m': '{marker}'}}\n"}}
        elif op == "put_package":
            method, path, params = "PUT", f"packages/{pkg}", {"overwrite": "true"}
            body = {"parameters": [{"key": "m", "value": marker}]}
        elif op == "get_action":
            method, path, body = "GET", f"actions/{name}", None
        elif op == "delete_action":
            method, path, body = "DELETE", f"actions/{name}", None
        elif op == "delete_package":
            method, path, body = "DELETE", f"packages/{pkg}", None
        else:
            method, path, body, params = "GET", "activations", None, {"limit": "10"}
        t0 = time.monotonic()
        try:
            r = self.http.request(method, f"{self.base}/{path}", json=body, params=params, auth=self.auth,
                                  timeout=90)
            code, data = str(r.status_code), _json(r)
        except requests.RequestException as e:
            code, data = f"exc:{type(e).__name__}", None
        took = time.monotonic() - t0
        with self.tally.lock:
            self.tally.status[f"{op} {code}"] += 1
            self.note(op, method, path, code, data, took, i, marker)

    def note(self, op: str, method: str, path: str, code: str, data: Any, took: float, i: int, marker: str) -> None:
        t = self.tally
        aid = data.get("activationId") if isinstance(data, dict) else None
        if method == "POST":
            if aid and code in ("200", "202"):
                t.accepted[aid] = op
                t.latency.append(took)
                result = (data.get("response") or {}).get("result") if code == "200" else None
                want = {"py_blocking": {"py": i}, "node_blocking": {"node": i}}.get(op)
                if want is not None and result is not None and result != want:
                    t.wrong_results.append(f"{aid}: {result} != {want}")
            elif aid:
                t.other_ids[aid] = f"{op} {code}"
            return
        if method == "GET":
            return
        # a write: 200 is acknowledged (and a DELETE's 404 says it is absent); anything else may or may not land
        if method == "PUT" and code == "200":
            t.acked_writes += 1
            t.entities[path] = {"state": "present", "marker": marker}
        elif method == "DELETE" and code in ("200", "404"):
            t.acked_writes += code == "200"
            t.entities[path] = {"state": "absent"}
        else:
            t.entities[path] = {"state": "unknown", "after": f"{method} {code}"}


def _json(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


# --- memory -------------------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """RSS of each part's process tree (the pid in its pid file and its descendants), every `every` s."""

    def __init__(self, stack: us.UpStack, parts: list[str], every: float, t0: float) -> None:
        super().__init__(name="rss", daemon=True)
        self.stack, self.parts, self.every, self.t0 = stack, parts, every, t0
        self.samples: list[tuple[float, str, int, int]] = []  # t (s), part, pid, rss (KiB)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)

    def sample(self) -> None:
        kids = _children()
        t = now_s(self.t0)
        for part in self.parts:
            pid = procs.read_pid(self.stack.pid_file(part))
            if pid is None:
                continue
            tree, total = [pid], 0
            while tree:
                p = tree.pop()
                total += _rss_kib(p)
                tree += kids.get(p, [])
            if total:
                self.samples.append((t, part, pid, total))


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out[ppid].append(int(proc.name))
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x.

    >>> slope([(0, 1), (1, 3), (2, 5)])
    2.0
    """
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def memory(samples: list[tuple[float, str, int, int]], warmup_s: float,
           after_s: float | None = None) -> dict[str, dict[str, Any]]:
    """Per part: slope (MiB/hour) over its longest-lived incarnation, after that incarnation's warm-up; and, when
    `after_s` is given (the replay's end plus a warm-up), over its samples from then on only, as the replay's bulk
    writes make PouchDB Server grow for a while and a fit across that peak says nothing about a leak."""
    runs: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for t, part, pid, kib in samples:
        runs[part][pid].append((t, kib / 1024))
    out: dict[str, dict[str, Any]] = {}
    for part, by_pid in runs.items():
        pid, pts = max(by_pid.items(), key=lambda kv: kv[1][-1][0] - kv[1][0][0])
        fit = [(t, m) for t, m in pts if t - pts[0][0] >= warmup_s]
        if len(fit) < 3:
            out[part] = {"pid": pid, "incarnations": len(by_pid), "samples": len(fit), "slope_mib_per_h": None,
                         "first_mib": round(pts[0][1], 1), "last_mib": round(pts[-1][1], 1)}
            continue
        out[part] = {
            "pid": pid, "incarnations": len(by_pid), "samples": len(fit),
            "span_min": round((fit[-1][0] - fit[0][0]) / 60, 1),
            "slope_mib_per_h": round(slope([(t / 3600, m) for t, m in fit]), 2),
            "first_mib": round(fit[0][1], 1), "last_mib": round(fit[-1][1], 1),
            "max_mib": round(max(m for _, m in fit), 1),
        }
        later = [(t, m) for t, m in fit if after_s is not None and t >= after_s]
        if len(later) >= 3:
            out[part]["slope_after_replay_mib_per_h"] = round(slope([(t / 3600, m) for t, m in later]), 2)
    return out


# --- chaos --------------------------------------------------------------------------------------------


def schedule(cfg: Config, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds from the start, part): every `every` minutes +-25 %, parts in seeded shuffles."""
    out: list[tuple[float, str]] = []
    order: list[str] = []
    k = 1
    while (at := (k + rng.uniform(-0.25, 0.25)) * cfg.every * 60) < (cfg.minutes - 0.2) * 60:
        if not order:
            order = rng.sample(cfg.parts(), len(cfg.parts()))
        out.append((at, order.pop(0)))
        k += 1
    return out


def kill(stack: us.UpStack, part: str, probe: Callable[[int], bool], t0: float, n: int) -> dict[str, Any]:
    """SIGKILL the part; seconds until supervisord's new pid, and until a blocking invoke through nginx works."""
    pidf = stack.pid_file(part)
    old = procs.read_pid(pidf)
    rec: dict[str, Any] = {"at_s": now_s(t0), "at_ms": int(time.time() * 1000), "part": part, "old_pid": old}
    if old is None:
        rec["error"] = "not running before the kill"
        return rec
    k0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    try:
        rec["back_s"] = round(us.wait(f"{part} restarted", lambda: procs.read_pid(pidf) not in (None, old), 180), 1)
        rec["new_pid"] = procs.read_pid(pidf)
        us.wait(f"serving after {part}", lambda: probe(n), 300, every=0.5)
        rec["serving_s"] = round(time.monotonic() - k0, 1)
    except AssertionError as e:
        rec["error"] = str(e)
    return rec


def replay(stack: us.UpStack, t0: float) -> dict[str, Any]:
    at = now_s(t0)
    try:
        r = stack.cli("replay", "--json", timeout=900)
    except Exception as e:  # a hung replay: report it, keep going
        return {"at_s": at, "error": f"{type(e).__name__}: {e}"}
    rec: dict[str, Any] = {"at_s": at, "seconds": round(now_s(t0) - at, 1), "exit": r.returncode}
    if r.returncode == 0:
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        rec.update({k: summary.get(k) for k in ("events", "docs", "generation", "switched", "poison")})
    else:
        rec["error"] = (r.stdout + r.stderr)[-2000:]
    return rec


# --- verification -------------------------------------------------------------------------------------


def fetch(base: str, auth: tuple[str, str], ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Records of `ids` through the API (GET /activations/{id}), retrying the missing ones until `timeout`."""
    found: dict[str, dict[str, Any]] = {}
    http = requests.Session()

    def get(aid: str) -> tuple[str, dict[str, Any] | None]:
        try:
            r = http.get(f"{base}/activations/{aid}", auth=auth, timeout=30)
            return aid, r.json() if r.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return aid, None

    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(4) as pool:
        while True:
            for aid, rec in pool.map(get, sorted(ids - found.keys())):
                if rec is not None:
                    found[aid] = rec
            if found.keys() >= ids or time.monotonic() > deadline:
                return found
            time.sleep(5)


def named_in_logs(records: list[dict[str, Any]]) -> set[str]:
    """Rule activations named in trigger records (JSON lines) and components named in sequence records."""
    out: set[str] = set()
    for rec in records:
        for line in rec.get("logs") or []:
            try:
                v = json.loads(line)
            except ValueError:
                v = line
            if isinstance(v, dict) and v.get("activationId"):
                out.add(v["activationId"])
            elif isinstance(v, str) and len(v) == 32:
                out.add(v)
    return out


def is_watchdog(rec: dict[str, Any] | None) -> bool:
    err = ((rec or {}).get("response") or {}).get("result") or {}
    return isinstance(err, dict) and str(err.get("error", "")).startswith(WATCHDOG_TEXTS)


def executions(settings: Settings) -> dict[str, Any]:
    """From the completions topic: activations completed twice by an invoker, and watchdog-closed ones an invoker
    completed later (that one ran, its record was replaced)."""
    from cli.audit import read_log
    from contracts.events import ActivationCompleted

    logged = asyncio.run(read_log(settings, [f"{settings.prefix}.completions"]))
    runs: Counter[str] = Counter()
    closed: set[str] = set()
    total: Counter[str] = Counter()
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)  # what each completion said, for the report
    for _, _, _, ev in logged:
        if not isinstance(ev, ActivationCompleted):
            continue
        total[ev.activation_id] += 1
        rec = ev.record or {}
        seen[ev.activation_id].append({
            "invoker": ev.invoker, "watchdog": is_watchdog(ev.record), "start": rec.get("start"),
            "end": rec.get("end"), "status": (rec.get("response") or {}).get("status"), "at": ev.at})
        if is_watchdog(ev.record):
            closed.add(ev.activation_id)
        elif ev.invoker is not None and ev.record is not None:
            runs[ev.activation_id] += 1
    doubled = sorted(a for a, n in runs.items() if n > 1)
    late = sorted(a for a in closed if runs[a])
    # the watchdog's closure after the real completion: last wins, so the final record is the error
    overwritten = sorted(a for a in late if seen[a][-1]["watchdog"])
    details = {a: seen[a] for a in [*doubled, *late][:20]}
    return {"completions": sum(total.values()), "invoker_completions": sum(runs.values()),
            "watchdog_closures": len(closed), "doubled": len(doubled), "doubled_ids": doubled[:20],
            "closed_then_completed": len(late), "closed_then_completed_ids": late[:20],
            "closure_after_completion": len(overwritten), "closure_after_completion_ids": overwritten[:20],
            "more_than_one_record": sum(n > 1 for n in total.values()), "details": details}


def check_entities(base: str, auth: tuple[str, str], model: dict[str, dict[str, Any]],
                   timeout: float = 60) -> dict[str, Any]:
    """Every entity whose last write was answered: the API shows that write (or its absence)."""
    definite = {p: m for p, m in model.items() if m["state"] != "unknown"}

    def wrong() -> dict[str, str]:
        bad = {}
        for path, m in definite.items():
            try:
                r = requests.get(f"{base}/{path}", auth=auth, timeout=30)
            except requests.RequestException as e:
                bad[path] = f"{type(e).__name__}"
                continue
            if m["state"] == "absent":
                if r.status_code != 404:
                    bad[path] = f"expected absent, got {r.status_code}"
                continue
            data = _json(r) or {}
            got = (data.get("exec") or {}).get("code", "") if path.startswith("actions/") else \
                {p["key"]: p["value"] for p in data.get("parameters") or []}.get("m", "")
            if r.status_code != 200 or m["marker"] not in str(got):
                bad[path] = f"expected write {m['marker']}, got {r.status_code} {str(got)[:80]}"
        return bad

    deadline = time.monotonic() + timeout
    while (bad := wrong()) and time.monotonic() < deadline:
        time.sleep(5)
    return {"entities": len(model), "checked": len(definite), "uncertain": len(model) - len(definite),
            "mismatches": len(bad), "mismatched": dict(list(bad.items())[:20])}


# --- the run ------------------------------------------------------------------------------------------


def setup(stack: us.UpStack) -> tuple[str, tuple[str, str]]:
    """The soak subject (high limits), its actions, a sequence, a trigger with a rule; its key and API base."""
    made = stack.cli("admin", "create", "soak", "--limits", json.dumps(LIMITS), timeout=120)
    if made.returncode != 0:
        raise RuntimeError(f"admin create: {made.stdout}{made.stderr}")
    uid, key = made.stdout.strip().splitlines()[-1].split(":", 1)
    auth = (uid, key)
    base = f"{stack.url}/api/v1/namespaces/_"
    us.wait("subject visible", lambda: requests.get(f"{base}/actions", auth=auth, timeout=10).status_code == 200, 60)
    puts: list[tuple[str, dict[str, Any]]] = [
        ("actions/soakpy", {"exec": {"kind": "python:3", "code": PY}}),
        ("actions/soaknode", {"exec": {"kind": "nodejs:20", "code": NODE}}),
        ("actions/soakprobe", {"exec": {"kind": "python:3", "code": PROBE}}),
        ("actions/soakseq", {"exec": {"kind": "sequence", "components": ["/soak/soakpy", "/soak/soaknode"]}}),
        ("triggers/soaktick", {}),
        ("rules/soakrule", {"trigger": "/soak/soaktick", "action": "/soak/soakpy"}),
    ]
    for path, body in puts:
        r = requests.put(f"{base}/{path}", json=body, params={"overwrite": "true"}, auth=auth, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"PUT {path}: {r.status_code} {r.text[:300]}")
    for action in ("soakpy", "soaknode", "soakseq"):
        us.wait(f"{action} runs", lambda a=action: requests.post(  # type: ignore[misc]
            f"{base}/actions/{a}", json={"i": 0}, params={"blocking": "true"}, auth=auth, timeout=60
        ).status_code == 200, 120, every=1)
    return base, auth


def run(cfg: Config, base_settings: Settings | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    base_settings = base_settings or load()
    if not (base_settings.home / "kafka-libs").exists():
        from cli.install import install_all
        install_all(base_settings, say)
    from runtimes.build import ensure_images

    ensure_images(lambda m: None)  # the default python and nodejs images (shared; present after any `up`)
    home = Path(tempfile.mkdtemp(prefix="sw-soak-"))
    stack = us.prepare(base_settings, home, invokers=cfg.invokers, prefix_letter="s")
    report: dict[str, Any] = {
        "command": " ".join(sys.argv), "seed": cfg.seed, "minutes": cfg.minutes, "every_min": cfg.every,
        "invokers": cfg.invokers, "threads": cfg.threads, "cpus": os.cpu_count(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "home": str(home),
        "prefix": stack.settings.prefix,
    }
    sampler: Sampler | None = None
    try:
        say(f"[soak] up in {home} (prefix {stack.settings.prefix})")
        t_up = time.monotonic()
        us.up(stack)
        report["up_s"] = round(time.monotonic() - t_up, 1)
        api, auth = setup(stack)
        probe_n = iter(range(1, 10**9))

        def probe(n: int) -> bool:
            return stack.invoke_ok("soakprobe", n, authkey=":".join(auth))

        rng = random.Random(cfg.seed)
        plan = schedule(cfg, rng)
        report["schedule"] = [{"at_s": round(a, 1), "part": p} for a, p in plan]
        say(f"[soak] load for {cfg.minutes:g} min, kills: "
            + ", ".join(f"{p} at {a / 60:.1f} min" for a, p in plan))
        tally, stop = Tally(), threading.Event()
        t0 = time.monotonic()
        sampler = Sampler(stack, cfg.parts(), cfg.sample_every, t0)
        sampler.start()
        loaders = [Loader(k, api, auth, cfg, tally, stop) for k in range(cfg.threads)]
        for t in loaders:
            t.start()
        kills: list[dict[str, Any]] = []
        replay_at = cfg.minutes * 60 / 2 if cfg.replay else None
        end = t0 + cfg.minutes * 60
        while time.monotonic() < end:
            elapsed = time.monotonic() - t0
            if replay_at is not None and elapsed >= replay_at:
                replay_at = None
                say(f"[soak] {elapsed / 60:.1f} min: replay")
                report["replay"] = replay(stack, t0)
                say(f"[soak] replay: {report['replay']}")
            elif plan and elapsed >= plan[0][0]:
                _, part = plan.pop(0)
                say(f"[soak] {elapsed / 60:.1f} min: kill -9 {part}")
                kills.append(kill(stack, part, probe, t0, next(probe_n)))
                say(f"[soak] {kills[-1]}")
            else:
                time.sleep(1)
        stop.set()
        for t in loaders:
            t.join(120)
        elapsed = time.monotonic() - t0
        sampler.stop.set()
        say(f"[soak] load stopped after {elapsed / 60:.1f} min; verifying")
        report.update(verify(cfg, stack, api, auth, tally, elapsed))
        report["kills"] = kills
        replayed = report.get("replay", {})
        after = replayed["at_s"] + replayed.get("seconds", 0) + cfg.warmup * 60 if replayed else None
        report["memory"] = memory(sampler.samples, cfg.warmup * 60, after)
        report["rss_mib"] = [(t, part, pid, round(kib / 1024, 1)) for t, part, pid, kib in sampler.samples]
        report["memory_samples"] = len(sampler.samples)
        report["status"] = stack.cli("status", timeout=120).stdout
    finally:
        if sampler is not None:
            sampler.stop.set()
        if cfg.keep:
            report["down"] = ["kept: run `WSK_HOME=... ./streamwhisk down`"]
        else:
            say("[soak] down")
            report["down"] = stack.down()
    report["ok"] = ok(report)
    if report["ok"] and not cfg.keep and not (report.get("activations") or {}).get("closed_then_completed"):
        shutil.rmtree(home, ignore_errors=True)
    else:  # its logs and Kafka data, to look into
        report["kept_home"] = str(home)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(report, indent=1, default=str))
    say(summary(report) + f"\n[soak] report: {cfg.out}")
    return report


def verify(cfg: Config, stack: us.UpStack, api: str, auth: tuple[str, str], tally: Tally,
           elapsed: float) -> dict[str, Any]:
    accepted = set(tally.accepted)
    found = fetch(api, auth, accepted | set(tally.other_ids), cfg.settle)
    named = named_in_logs([found[a] for a in accepted if a in found
                           and tally.accepted[a] in ("fire", "seq_blocking")]) - accepted
    found_named = fetch(api, auth, named, cfg.settle / 2)
    lost = sorted((accepted - found.keys()) | (named - found_named.keys()))
    every = {**found, **found_named}
    ops = Counter(op.split()[0] for op in tally.status.elements())
    by_op: dict[str, dict[str, int]] = defaultdict(dict)
    for key, n in sorted(tally.status.items()):
        op, code = key.split(" ", 1)
        by_op[op][code] = n
    lat = sorted(tally.latency) or [0.0]
    total = sum(tally.status.values())
    return {
        "load_s": round(elapsed, 1),
        "requests": {"total": total, "per_s": round(total / elapsed, 2), "by_op": dict(ops), "by_status": by_op,
                     "refused": sum(n for k, n in tally.status.items() if k.split()[1][0] in "5e"),  # 5xx, no answer
                     "accepted_p50_ms": round(lat[len(lat) // 2] * 1000),
                     "accepted_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000)},
        "activations": {
            "accepted": len(accepted), "named_in_records": len(named),
            "found": len(accepted & found.keys()) + len(found_named), "lost": len(lost), "lost_ids": lost[:20],
            "closed_by_watchdog": sum(is_watchdog(every.get(a)) for a in accepted | named),
            "other_answers_with_id": len(tally.other_ids),
            "other_answers_without_record": sorted(set(tally.other_ids) - found.keys())[:20],
            "wrong_results": tally.wrong_results[:20],
            **executions(stack.settings),
        },
        "writes": {"acknowledged": tally.acked_writes, **check_entities(api, auth, tally.entities)},
    }


def ok(report: dict[str, Any]) -> bool:
    a = report.get("activations") or {}
    return bool(a) and a["lost"] == 0 and a["doubled"] == 0 and not a["wrong_results"] \
        and report["writes"]["mismatches"] == 0 and all("error" not in k for k in report.get("kills", [])) \
        and "error" not in report.get("replay", {}) and not report.get("down")


def summary(r: dict[str, Any]) -> str:
    if "activations" not in r:
        return f"[soak] FAILED before verification (see {r.get('home')})"
    a, w, q = r["activations"], r["writes"], r["requests"]
    lines = [
        f"[soak] {'OK' if r['ok'] else 'FAILED'}: {r['load_s'] / 60:.1f} min, seed {r['seed']}, "
        f"{q['total']:,} requests ({q['per_s']}/s), {q['refused']:,} answered 5xx or not at all",
        f"  activations: {a['accepted']:,} accepted + {a['named_in_records']:,} named in records, "
        f"{a['found']:,} found, {a['lost']} lost, {a['doubled']} run twice, {a['closed_by_watchdog']} closed by "
        f"the watchdog, {a['closed_then_completed']} both closed by it and completed by an invoker "
        f"({a.get('closure_after_completion', 0)} of them closed last)",
        f"  writes: {w['acknowledged']:,} acknowledged, {w['checked']} entities checked, {w['mismatches']} "
        f"mismatches ({w['uncertain']} left uncertain by an unanswered last write)",
        f"  replay: {r.get('replay')}",
    ]
    for k in r.get("kills", []):
        lines.append(f"  kill {k['part']:<12} at {k['at_s'] / 60:5.1f} min: back {k.get('back_s', '-')} s, "
                     f"serving {k.get('serving_s', '-')} s{' ERROR ' + k['error'] if 'error' in k else ''}")
    for part, m in sorted(r.get("memory", {}).items()):
        later = m.get("slope_after_replay_mib_per_h")
        lines.append(f"  rss {part:<12} {m['first_mib']:>7} -> {m['last_mib']:>7} MiB (max {m.get('max_mib')}), "
                     f"slope {m['slope_mib_per_h']} MiB/h over {m.get('span_min', '-')} min ({m['samples']} "
                     f"samples, {m['incarnations']} incarnations){f', {later} after the replay' if later else ''}")
    if r.get("down"):
        lines.append(f"  down: {r['down']}")
    if r.get("kept_home"):
        lines.append(f"  kept (logs, Kafka data): {r['kept_home']}")
    return "\n".join(lines)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=float(os.environ.get("WSK_SOAK_MINUTES", "60")))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--every", type=float, default=4.0, help="minutes between kills (default 4, jittered)")
    p.add_argument("--invokers", type=int, default=2)
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--warmup", type=float, default=5.0, help="minutes of each process left out of the memory fit")
    p.add_argument("--no-replay", action="store_true")
    p.add_argument("--out", type=Path, default=OUT, help=f"JSON report (default {OUT})")
    p.add_argument("--keep", action="store_true", help="leave the stack running")


def config(args: argparse.Namespace) -> Config:
    return Config(minutes=args.minutes, seed=args.seed, every=args.every, invokers=args.invokers,
                  threads=args.threads, warmup=args.warmup, replay=not args.no_replay, out=args.out, keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="soak", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    configure(p)
    return 0 if run(config(p.parse_args(argv)))["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
