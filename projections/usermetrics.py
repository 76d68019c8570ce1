"""OpenWhisk's user-events metrics, folded from the completions log (hosted by the projections process).

Names, types, labels and buckets are those of apache/openwhisk core/monitoring/user-events (PrometheusRecorder,
simpleclient 0.6), so its Grafana dashboards work unchanged:

- openwhisk_action_activations_total{namespace,initiator,action,kind,memory} counter
- openwhisk_action_coldStarts_total{namespace,initiator,action} counter
- openwhisk_action_status{namespace,initiator,action,status} counter (no _total: simpleclient 0.6 adds none)
- openwhisk_action_status_code{namespace,initiator,action,status_code} counter (a result's statusCode)
- openwhisk_action_{waitTime,initTime,duration}_seconds{namespace,initiator,action} histograms, default buckets
- openwhisk_action_response_size_bytes{namespace,initiator,action} histogram, 10 linear buckets of 1 MiB from 0
- openwhisk_action_memory{namespace,initiator,action} gauge (the action's memory limit, MB)
- openwhisk_action_limit_{concurrent,timed}_total{namespace} counters, from rejected (429) completions

As upstream: `namespace` is the root of the action's path, `action` the rest (package/name), `initiator` the
invoking namespace, cold start = an initTime annotation (> 0), and only records with `path` and `kind` annotations
(actions, sequences, conductors; not trigger records) are activations.

The fold (`observe`) is pure logic over a JSON state per completions partition; the shell (`run`) reads the
completions topic in a consumer group (so projections replicas split the partitions and nothing is counted twice),
and checkpoints each partition's state with its next offset into one message on the compacted `usermetrics` topic
every CHECKPOINT_EVERY_S and on revocation/shutdown. A partition (re)gained starts from its last checkpoint and
folds the rest of the log: counts are exact across restarts, and with no checkpoint the whole retained log is
folded again (a replay). No message is written per activation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from contracts import bus, events, metrics
from contracts.events import ActivationCompleted
from contracts.settings import Settings
from contracts.topics import Topics

log = logging.getLogger("projections.usermetrics")

Json = dict[str, Any]
CHECKPOINT_VERSION = 1
CHECKPOINT_EVERY_S = 10.0
RECENT_IDS = 5000  # per partition: a completion seen again (a late record after the watchdog's) counts once

# prometheus simpleclient's default buckets, as upstream's histograms use (upper bounds, seconds)
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
MAX_ACTIVATION_ENTITY = 1048576  # upstream's response size buckets: linearBuckets(0, 1 MiB, 10)
SIZE_BUCKETS = tuple(float(i * MAX_ACTIVATION_ENTITY) for i in range(10))
# ActivationResponse.statusForCode: the `status` label values
STATUS = {0: "success", 1: "application_error", 2: "action_developer_error", 3: "whisk_internal_error"}

ACTIVATIONS = "openwhisk_action_activations_total"
COLD_STARTS = "openwhisk_action_coldStarts_total"
STATUS_METRIC = "openwhisk_action_status"
STATUS_CODE = "openwhisk_action_status_code"
WAIT_TIME = "openwhisk_action_waitTime_seconds"
INIT_TIME = "openwhisk_action_initTime_seconds"
DURATION = "openwhisk_action_duration_seconds"
RESPONSE_SIZE = "openwhisk_action_response_size_bytes"
MEMORY = "openwhisk_action_memory"
LIMIT_CONCURRENT = "openwhisk_action_limit_concurrent_total"
LIMIT_TIMED = "openwhisk_action_limit_timed_total"


@dataclass(frozen=True)
class Labels:
    """What upstream's Activation event says about one activation record."""

    namespace: str
    initiator: str
    action: str
    kind: str
    memory: int
    status: str
    cold: bool
    wait_ms: int
    init_ms: int
    duration_ms: int
    size: int | None = None
    status_code: int | None = None


def _annotations(record: Json) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in record.get("annotations") or []:
        if isinstance(a, dict) and "key" in a:
            out[a["key"]] = a.get("value")
    return out


def _ms(v: Any) -> int:
    try:
        return max(0, int(v))
    except (TypeError, ValueError):
        return 0


def _user_status_code(result: Any) -> int | None:
    """Upstream's Activation.userDefinedStatusCode: result.error.statusCode, else result.statusCode (400 if not
    a number)."""
    if not isinstance(result, dict):
        return None
    err = result.get("error")
    code = err.get("statusCode") if isinstance(err, dict) and "statusCode" in err else result.get("statusCode")
    if code is None:
        return None
    if isinstance(code, bool) or not isinstance(code, int | float | str):
        return 400
    try:
        return int(code)
    except ValueError:
        return 400


def labels(ev: ActivationCompleted) -> Labels | None:
    """The labels and figures of an activation record; None for rejections and records that are no action's."""
    rec = ev.record
    if not isinstance(rec, dict):
        return None
    ann = _annotations(rec)
    path, kind = ann.get("path"), ann.get("kind")
    if not isinstance(path, str) or not isinstance(kind, str) or "/" not in path:
        return None
    namespace, action = path.split("/", 1)
    raw_response = rec.get("response")
    response: Json = raw_response if isinstance(raw_response, dict) else {}
    code = response.get("statusCode")
    status = STATUS.get(code) if isinstance(code, int) else None
    if status is None:  # a record without statusCode: from its status text ("action developer error", ...)
        status = str(response.get("status") or STATUS[3]).replace(" ", "_")
    raw_limits = ann.get("limits")
    limits: Json = raw_limits if isinstance(raw_limits, dict) else {}
    memory = _ms(limits.get("memory")) or ev.memory_mb
    init = _ms(ann.get("initTime"))
    size = response.get("size")
    return Labels(
        namespace=namespace, initiator=str(rec.get("namespace") or ev.namespace), action=action, kind=kind,
        memory=memory, status=status, cold=init > 0, wait_ms=_ms(ann.get("waitTime")), init_ms=init,
        duration_ms=_ms(rec.get("duration")), size=size if isinstance(size, int) else None,
        status_code=_user_status_code(response.get("result")),
    )


def limit_kind(ev: ActivationCompleted) -> str | None:
    """'concurrent' or 'timed' for a throttled (429) rejection (streams/throttle.py's texts), else None."""
    if ev.rejected_status != 429:
        return None
    return "concurrent" if "concurrent" in (ev.rejected or "").lower() else "timed"


# --- the fold ------------------------------------------------------------------------------------------------
# State (JSON, one per completions partition):
#   {"series": {"<ns>\x1f<initiator>\x1f<action>": Series}, "limits": {"concurrent": {ns: n}, "timed": {ns: n}},
#    "recent": {activation id: 1, oldest first}}
# Series: {"kinds": {"<kind>\x1f<memory>": n}, "cold": n, "status": {s: n}, "codes": {code: n}, "memory": mb,
#          "wait"/"init"/"duration"/"size": Histogram}; Histogram: {"b": [count per bucket, +Inf last], "n", "s"}
SEP = "\x1f"


def empty() -> Json:
    return {"series": {}, "limits": {"concurrent": {}, "timed": {}}, "recent": {}}


def _hist(buckets: tuple[float, ...]) -> Json:
    return {"b": [0] * (len(buckets) + 1), "n": 0, "s": 0.0}


def _observe_hist(h: Json, buckets: tuple[float, ...], value: float) -> None:
    i = next((i for i, le in enumerate(buckets) if value <= le), len(buckets))
    h["b"][i] += 1
    h["n"] += 1
    h["s"] += value


def _series() -> Json:
    return {"kinds": {}, "cold": 0, "status": {}, "codes": {}, "memory": 0, "wait": _hist(TIME_BUCKETS),
            "init": _hist(TIME_BUCKETS), "duration": _hist(TIME_BUCKETS), "size": _hist(SIZE_BUCKETS)}


def observe(state: Json, ev: ActivationCompleted) -> Json:
    """Fold one completion into the state and return it. The fold owns the state (updated in place: a per-event
    copy of every series would cost more than the event); the same events in the same order give the same state."""
    kind = limit_kind(ev)
    if kind is not None:
        per = state["limits"][kind]
        per[ev.namespace] = per.get(ev.namespace, 0) + 1
        return state
    lb = labels(ev)
    if lb is None:
        return state
    recent: dict[str, int] = state["recent"]
    if ev.activation_id in recent:
        return state
    recent[ev.activation_id] = 1
    while len(recent) > RECENT_IDS:
        del recent[next(iter(recent))]
    key = SEP.join((lb.namespace, lb.initiator, lb.action))
    s = state["series"].get(key)
    if s is None:
        s = state["series"][key] = _series()
    km = f"{lb.kind}{SEP}{lb.memory}"
    s["kinds"][km] = s["kinds"].get(km, 0) + 1
    s["memory"] = lb.memory
    if lb.cold:
        s["cold"] += 1
        _observe_hist(s["init"], TIME_BUCKETS, lb.init_ms / 1000)
    _observe_hist(s["wait"], TIME_BUCKETS, lb.wait_ms / 1000)
    _observe_hist(s["duration"], TIME_BUCKETS, lb.duration_ms / 1000)
    s["status"][lb.status] = s["status"].get(lb.status, 0) + 1
    if lb.size is not None:
        _observe_hist(s["size"], SIZE_BUCKETS, float(lb.size))
    if lb.status_code is not None:
        code = str(lb.status_code)
        s["codes"][code] = s["codes"].get(code, 0) + 1
    return state


def fold(evs: Iterable[ActivationCompleted], state: Json | None = None) -> Json:
    st = state if state is not None else empty()
    for ev in evs:
        st = observe(st, ev)
    return st


def _add_hist(a: Json, b: Json) -> Json:
    return {"b": [x + y for x, y in zip(a["b"], b["b"], strict=True)], "n": a["n"] + b["n"], "s": a["s"] + b["s"]}


def merge(states: Iterable[Json]) -> Json:
    """The sum of several partitions' states (what one process serves)."""
    out = empty()
    for st in states:
        for key, s in st["series"].items():
            cur = out["series"].get(key)
            if cur is None:
                out["series"][key] = orjson.loads(orjson.dumps(s))
                continue
            for field in ("kinds", "status", "codes"):
                for k, n in s[field].items():
                    cur[field][k] = cur[field].get(k, 0) + n
            cur["cold"] += s["cold"]
            cur["memory"] = s["memory"] or cur["memory"]
            for h in ("wait", "init", "duration", "size"):
                cur[h] = _add_hist(cur[h], s[h])
        for kind in ("concurrent", "timed"):
            for ns, n in st["limits"][kind].items():
                out["limits"][kind][ns] = out["limits"][kind].get(ns, 0) + n
    return out


# --- exposition (simpleclient 0.6's text, so the names stay exactly upstream's) ---------------------------------

HELP = {
    ACTIVATIONS: ("counter", "Activation Count"),
    COLD_STARTS: ("counter", "Cold start counts"),
    STATUS_METRIC: ("counter", "Activation failure status type"),
    STATUS_CODE: ("counter", "status code returned in action result response set by developer"),
    WAIT_TIME: ("histogram", "Internal system hold time"),
    INIT_TIME: ("histogram", "Time it took to initialize an action, e.g. docker init"),
    DURATION: ("histogram", "Actual time the action code was running"),
    RESPONSE_SIZE: ("histogram", "Activation Response size"),
    MEMORY: ("gauge", "Memory consumption of the action containers"),
    LIMIT_CONCURRENT: ("counter", "a user has exceeded its limit for concurrent invocations"),
    LIMIT_TIMED: ("counter", "the user has reached its per minute limit for the number of invocations"),
}


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    return repr(float(v))


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())


_LE = {buckets: [f',le="{_num(le)}"}} ' for le in (*buckets, math.inf)] for buckets in (TIME_BUCKETS, SIZE_BUCKETS)}


def render(state: Json) -> str:
    """Prometheus text format 0.0.4 of a (merged) state. Built from preformatted label strings: it runs on the
    event loop at each scrape, with thousands of series."""
    lines: dict[str, list[str]] = {name: [] for name in HELP}
    for key, s in sorted(state["series"].items()):
        ns, init, action = key.split(SEP)
        base = _labels({"namespace": ns, "initiator": init, "action": action})
        add = lines[ACTIVATIONS].append
        for km, n in sorted(s["kinds"].items()):
            kind, mem = km.split(SEP)
            add(f'{ACTIVATIONS}{{{base},kind="{_esc(kind)}",memory="{mem}"}} {float(n)!r}\n')
        lines[COLD_STARTS].append(f"{COLD_STARTS}{{{base}}} {float(s['cold'])!r}\n")
        for st, n in sorted(s["status"].items()):
            lines[STATUS_METRIC].append(f'{STATUS_METRIC}{{{base},status="{_esc(st)}"}} {float(n)!r}\n')
        for code, n in sorted(s["codes"].items()):
            lines[STATUS_CODE].append(f'{STATUS_CODE}{{{base},status_code="{_esc(code)}"}} {float(n)!r}\n')
        lines[MEMORY].append(f"{MEMORY}{{{base}}} {float(s['memory'])!r}\n")
        for name, h, buckets in ((WAIT_TIME, s["wait"], TIME_BUCKETS), (INIT_TIME, s["init"], TIME_BUCKETS),
                                 (DURATION, s["duration"], TIME_BUCKETS), (RESPONSE_SIZE, s["size"], SIZE_BUCKETS)):
            if name == RESPONSE_SIZE and not h["n"]:
                continue  # upstream observes a size only when the record has one
            out = lines[name]
            cum = 0
            head = f"{name}_bucket{{{base}"
            for le, n in zip(_LE[buckets], h["b"], strict=True):
                cum += n
                out.append(f"{head}{le}{float(cum)!r}\n")
            out.append(f"{name}_count{{{base}}} {float(h['n'])!r}\n")
            out.append(f"{name}_sum{{{base}}} {float(h['s'])!r}\n")
    for kind, name in (("concurrent", LIMIT_CONCURRENT), ("timed", LIMIT_TIMED)):
        for ns, n in sorted(state["limits"][kind].items()):
            lines[name].append(f'{name}{{namespace="{_esc(ns)}"}} {float(n)!r}\n')
    text = []
    for name, (typ, help_) in HELP.items():
        if lines[name]:
            text.append(f"# HELP {name} {help_}\n# TYPE {name} {typ}\n")
            text.extend(lines[name])
    return "".join(text)


# --- checkpoints ----------------------------------------------------------------------------------------------

def checkpoint_key(partition: int) -> bytes:
    return f"usermetrics/{partition}".encode()


def encode_checkpoint(partition: int, offset: int, state: Json) -> bytes:
    """One partition's state and the next offset to fold: one message, so the two never disagree."""
    return orjson.dumps({"v": CHECKPOINT_VERSION, "partition": partition, "offset": offset, "state": state})


def decode_checkpoint(raw: bytes | None) -> tuple[int, int, Json] | None:
    """(partition, offset, state), or None for a tombstone or an unknown version (folded again from the start)."""
    if not raw:
        return None
    try:
        d = orjson.loads(raw)
        if d.get("v") != CHECKPOINT_VERSION:
            return None
        st = d["state"]
        if not all(k in st for k in ("series", "limits", "recent")):
            return None
        return int(d["partition"]), int(d["offset"]), st
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


# --- the shell ------------------------------------------------------------------------------------------------

class UserMetrics:
    """Folds the completions partitions this process holds; its text is added to the process's /metrics."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.t = Topics(settings.prefix)
        self.group = f"{settings.prefix}-usermetrics"
        self.states: dict[int, Json] = {}  # partition -> state
        self.next: dict[int, int] = {}  # partition -> next offset to fold
        self.saved: dict[int, int] = {}  # partition -> offset of its last checkpoint
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.version = 0  # bumped whenever a state changes
        self.rendered: tuple[int, str] = (-1, "")

    def text(self) -> str:
        """The exposition, rendered again only after the states changed (scrapes of an idle stack cost nothing)."""
        if self.rendered[0] != self.version:
            states = list(self.states.values())
            self.rendered = (self.version, render(states[0] if len(states) == 1 else merge(states)))
        return self.rendered[1]

    async def load_checkpoints(self, parts: set[int]) -> dict[int, tuple[int, Json]]:
        """The latest checkpoint of each of `parts`, read from the compacted topic up to its end now."""
        c = bus.consumer(self.s.kafka, group=None)
        await c.start()
        found: dict[int, tuple[int, Json]] = {}
        try:
            tps = await bus.partitions(c, self.t.usermetrics)
            c.assign(tps)
            ends = await c.end_offsets(tps)
            await c.seek_to_beginning(*tps)
            todo = {tp for tp in tps if ends[tp] > 0}
            while todo:
                batch = await c.getmany(*todo, timeout_ms=500)
                for msgs in batch.values():
                    for m in msgs:
                        cp = decode_checkpoint(m.value)
                        if m.key is not None and m.key.startswith(b"usermetrics/") and cp is None:
                            found.pop(int(m.key.split(b"/")[1]), None)  # tombstone: start over
                        elif cp is not None and cp[0] in parts:
                            found[cp[0]] = (cp[1], cp[2])
                todo = {tp for tp in todo if await c.position(tp) < ends[tp]}
        finally:
            await c.stop()
        return found

    async def assigned(self, tps: set[TopicPartition]) -> None:
        parts = {tp.partition for tp in tps if tp.topic == self.t.completions}
        new = parts - set(self.states)
        if not new or self.consumer is None:
            return
        found = await self.load_checkpoints(new)
        for p in sorted(new):
            tp = TopicPartition(self.t.completions, p)
            offset, st = found.get(p, (0, empty()))
            self.states[p], self.next[p], self.saved[p] = st, offset, offset
            self.version += 1
            if offset:
                self.consumer.seek(tp, offset)
            else:
                await self.consumer.seek_to_beginning(tp)
            log.info("usermetrics: completions[%d] from offset %d (%s)", p, offset,
                     "checkpoint" if p in found else "no checkpoint: the whole log")

    async def revoked(self, tps: set[TopicPartition]) -> None:
        parts = {tp.partition for tp in tps if tp.topic == self.t.completions}
        with contextlib.suppress(KafkaError, asyncio.TimeoutError):
            await asyncio.wait_for(self.checkpoint(parts), 10)
        self.version += 1
        for p in parts:
            self.states.pop(p, None)
            self.next.pop(p, None)
            self.saved.pop(p, None)

    async def checkpoint(self, parts: Iterable[int] | None = None) -> int:
        """Write the state of every held (or the given) partition that moved since its last checkpoint."""
        if self.producer is None:
            return 0
        n = 0
        for p in sorted(self.states if parts is None else parts):
            if p not in self.states or self.next[p] == self.saved.get(p):
                continue
            off = self.next[p]
            await self.producer.send_and_wait(self.t.usermetrics, encode_checkpoint(p, off, self.states[p]),
                                              key=checkpoint_key(p))
            self.saved[p] = off
            n += 1
        return n

    async def run(self, stop: asyncio.Event | None = None) -> None:
        t = self.t
        await bus.ensure_topics(self.s.kafka, [t.completions], self.s.partitions)
        await bus.ensure_topics(self.s.kafka, [t.usermetrics], 1)
        self.producer = bus.producer(self.s.kafka)
        await self.producer.start()
        c = self.consumer = bus.consumer(self.s.kafka, group=self.group)
        shell = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await shell.revoked(set(revoked))

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await shell.assigned(set(assigned))

        c.subscribe([t.completions], listener=Listener())
        await c.start()
        metrics.add_text("usermetrics", self.text)
        ep = metrics.get()
        if ep is not None:
            ep.lag.consumer(self.group, c)
        saved_at = time.monotonic()
        try:
            while stop is None or not stop.is_set():
                batch = await c.getmany(timeout_ms=500, max_records=1000)
                for tp, msgs in batch.items():
                    st = self.states.get(tp.partition)
                    if st is None:  # revoked meanwhile
                        continue
                    for m in msgs:
                        if m.offset < self.next[tp.partition]:
                            continue
                        try:
                            ev = events.decode(m.value)
                        except events.DecodeError:
                            ev = None  # the projector dead-letters it; nothing to count
                        if isinstance(ev, ActivationCompleted):
                            st = observe(st, ev)
                        self.next[tp.partition] = m.offset + 1
                    self.states[tp.partition] = st
                    self.version += 1
                if time.monotonic() - saved_at >= CHECKPOINT_EVERY_S:
                    try:
                        await self.checkpoint()
                    except KafkaError as e:  # counts stay in memory; the next checkpoint carries them
                        log.warning("usermetrics checkpoint failed: %r", e)
                    saved_at = time.monotonic()
        finally:
            with contextlib.suppress(KafkaError, asyncio.TimeoutError):
                await asyncio.wait_for(self.checkpoint(), 10)
            if ep is not None:
                ep.lag.forget(c)
            await c.stop()
            await self.producer.stop()

