"""The machine's wall clock jumps (an NTP step, `date -s`): +1 h under load, then back to 1 h behind the real time.

Every Streamwhisk process runs under libfaketime with its offset in one file that the test rewrites, so all of them
see the step (within 2 s of each other); their monotonic clocks stay real, as a step leaves CLOCK_MONOTONIC alone.
The machine's own clock is never touched; Kafka, PouchDB Server and dockerd keep it (so while our processes are an
hour ahead, the invoker finds no log line of dockerd's newer than an activation's start: those records have no logs
and each run waits 2 s for them; a real step moves dockerd's stamps too). Every accepted activation must run once and
get its real record (no watchdog closure, no skipped assignment), no caller may get an error, each record's duration
must be its end - start and as long as the action ran, and invokes keep working after.
"""

from __future__ import annotations

import glob
import itertools
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from cli import services
from contracts.settings import Settings
from tests.chaos import faults
from tests.stack import Client, Stack, start_stack

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

SHIM = Path(__file__).resolve().parent / "faketime"  # sitecustomize.py: a libfaketime 0.9.10 workaround
HOUR_S = 3600
SLEEP_S = 1.5
NAP = f"import time\ndef main(a):\n    time.sleep({SLEEP_S})\n    return {{'i': a.get('i')}}\n"
THREADS = 4
PHASES = (("before", 0, 6.0), ("ahead", HOUR_S, 15.0), ("behind", -HOUR_S, 15.0))  # (name, offset s, load s)
LIMITS = {"invocationsPerMinute": 100000, "concurrentInvocations": 1000}
MAX_DURATION_MS = 30_000  # the action sleeps 1.5 s (+ a cold start on a loaded machine); a jump would add 3.6e6


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise RuntimeError("libfaketime is needed for the clock-jump test (Debian: apt-get install faketime)")
    return found[0]


class Clock:
    """The offset libfaketime gives every process of the stack, in seconds from the real time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(0)

    def set(self, offset_s: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+d}\n")
        tmp.replace(self.path)  # a reader never sees a half-written file

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            # The file is read again within 2 s (libfaketime caches by whole seconds), so processes see the step up
            # to 2 s apart, as a cluster's machines would. FAKETIME_NO_CACHE reads it on every clock call: a
            # quarter of a core for a Faust worker, which then stalls for seconds on a loaded machine.
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # a clock step moves CLOCK_REALTIME only
            "NO_FAKE_STAT": "1",  # file times stay as the kernel wrote them
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")])),
        }


@pytest.fixture(scope="module")
def clocked(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Clock]]:
    clock = Clock(tmp_path_factory.mktemp("clock") / "offset")
    s = start_stack(infra, env=clock.env())
    yield s, clock
    clock.set(0)
    s.stop()


@dataclass
class Call:
    i: int
    phase: str
    blocking: bool
    status: int | None
    aid: str | None
    result: Any
    took_s: float
    error: str = ""


class Load:
    def __init__(self, c: Client) -> None:
        self.c = c
        self.phase = "before"
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ids = itertools.count()

    def one(self, blocking: bool) -> Call:
        with self.lock:
            i, phase = next(self.ids), self.phase
        t0 = time.monotonic()
        try:
            r = self.c.post("actions/nap", {"i": i}, blocking=blocking)
        except requests.RequestException as e:
            return Call(i, phase, blocking, None, None, None, time.monotonic() - t0, repr(e))
        took = time.monotonic() - t0
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        result = (body.get("response") or {}).get("result") if blocking else None
        return Call(i, phase, blocking, r.status_code, body.get("activationId"), result, took, r.text[:300])

    def run(self, k: int) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            call = self.one(blocking=(k + n) % 2 == 0)
            with self.lock:
                self.calls.append(call)


def invoker_log_lines(stack: Stack, text: str) -> int:
    logs = [services.log_file(stack.settings, f"invoker{i}") for i in range(stack.settings.invokers)]
    return sum(p.read_text(errors="replace").count(text) for p in logs if p.exists())


def test_clock_jump(clocked: tuple[Stack, Clock]) -> None:
    stack, clock = clocked
    c = stack.client(stack.subject("clockjump", limits=LIMITS))
    faults.put_action(c, "nap", NAP, memory=128, timeout=30000)
    load = Load(c)
    assert load.one(blocking=True).status == 200  # warm

    threads = [threading.Thread(target=load.run, args=(k,), daemon=True) for k in range(THREADS)]
    for t in threads:
        t.start()
    jumped: dict[str, float] = {}  # phase -> real (unfaked) wall time of its step
    for name, offset, load_s in PHASES:
        with load.lock:
            load.phase = name
        clock.set(offset)
        jumped[name] = time.time()
        time.sleep(load_s)
    load.stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a caller hung"

    # After the jumps (the clock stays 1 h behind): new invokes still work, and at once.
    with load.lock:
        load.phase = "after"
    after = [load.one(blocking=True) for _ in range(5)]
    calls = load.calls + after

    bad = [cl for cl in calls if cl.status != (200 if cl.blocking else 202)]
    wrong = [cl for cl in calls if cl.blocking and cl.status == 200 and cl.result != {"i": cl.i}]
    accepted = {cl.aid: cl for cl in calls if cl.aid and cl.status in (200, 202, 500, 502)}
    ns = "clockjump"
    found = faults.wait_records(stack, ns, set(accepted), 90)
    lost = set(accepted) - set(found)
    evs = [e for e in faults.completions(stack.settings) if e.activation_id in accepted]
    per_id = Counter(e.activation_id for e in evs)
    several = sorted(a for a, n in per_id.items() if n > 1)  # e.g. a watchdog close, then the real record
    runs = Counter(e.activation_id for e in evs if e.record and e.record["response"]["statusCode"] != 3)
    doubled = sorted(a for a, n in runs.items() if n > 1)
    closed = sorted(a for a, d in found.items() if d["response"]["statusCode"] == 3)
    not_real = sorted(a for a, d in found.items() if d["response"]["result"] != {"i": accepted[a].i})
    durations = [d["duration"] for d in found.values()]
    inconsistent = sorted(a for a, d in found.items()
                          if d["end"] - d["start"] != d["duration"] or not 0 <= d["duration"] <= MAX_DURATION_MS)
    skipped = invoker_log_lines(stack, "not running stale or repeated assignment")

    # The step did reach the components: records of the "ahead" phase started about an hour after the real time.
    def offset_s(phase: str) -> float:
        return statistics.median([found[a]["start"] / 1000 - jumped[phase]
                                  for a, cl in accepted.items() if cl.phase == phase and a in found] or [0.0])
    ahead, behind = offset_s("ahead"), offset_s("behind")

    by_phase = Counter(cl.phase for cl in accepted.values())
    status = Counter(f"{cl.status}" for cl in calls)

    def worst(phase: str) -> float:
        return round(max([cl.took_s for cl in calls if cl.blocking and cl.phase == phase] or [0.0]), 1)

    faults.report("clock_jump", {
        "accepted": len(accepted), "by_phase": dict(by_phase), "status": dict(status),
        "lost": len(lost), "doubled_runs": len(doubled), "several_records": len(several),
        "closed_by_watchdog": len(closed), "not_real_result": len(not_real),
        "skipped_assignments": skipped, "bad_duration": len(inconsistent),
        "duration_ms_max": max(durations or [0]), "duration_ms_min": min(durations or [0]),
        "blocking_s_max": {p: worst(p) for p in ("before", "ahead", "behind", "after")},
        "blocking_s_p50": round(statistics.median([cl.took_s for cl in calls if cl.blocking] or [0.0]), 2),
        "after_s": [round(cl.took_s, 2) for cl in after],
        "clock_offset_s": {"ahead": round(ahead), "behind": round(behind)},
    })
    assert not bad, [(cl.phase, cl.blocking, cl.status, cl.error[:200]) for cl in bad[:10]]
    assert not wrong, [(cl.i, cl.result) for cl in wrong[:10]]
    assert not lost, f"{len(lost)} accepted activations without a record"
    assert not closed, [found[a]["response"]["result"] for a in closed[:5]]
    assert not doubled and not several, (doubled[:10], several[:10])
    assert not not_real, [(a, found[a]["response"]) for a in not_real[:5]]
    assert not inconsistent, [(found[a]["start"], found[a]["end"], found[a]["duration"]) for a in inconsistent[:10]]
    assert skipped == 0
    assert all(cl.status == 200 and cl.result == {"i": cl.i} for cl in after)
    assert HOUR_S - 60 < ahead < HOUR_S + 60 and -HOUR_S - 60 < behind < -HOUR_S + 60, (ahead, behind)
