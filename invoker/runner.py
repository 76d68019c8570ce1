"""The invoker: consume this invoker's assignment topic, run each activation in a container, emit completions.

Delivery is at-most-once, as in OpenWhisk: a restarted invoker never runs work assigned before it started, and a
running one remembers the ids it started, so nothing runs twice (the balancer's health tracking routes new work
elsewhere; the watchdog closes what was lost). Offsets are committed once a second, only to say where to resume.

Tunables (environment):
- WSK_INVOKER_PAUSE_GRACE_S (10): an idle warm container is paused after this; unpaused on its next activation.
- WSK_INVOKER_IDLE_REMOVE_S (600): an idle warm container is removed after this.
- WSK_INVOKER_PREWARM ("python:3@256"): stem cells kept ready, `kind@memoryMB` separated by spaces or commas.
- WSK_ACTION_NETWORK ("default"): "default" gives actions the walled-off action network (invoker/network.py),
  "none" no network at all. A namespace limit `actionNetwork: "none"` takes it away for one tenant.
- WSK_ACTION_DENY (unset): more CIDRs actions may not reach (e.g. the platform's hosts on other machines).
- WSK_ACTION_API_HOST (unset): __OW_API_HOST in action containers; by default the ingress on the action
  network's gateway, the one platform address an action can reach.
- __OW_API_KEY, for actions with `provide-api-key`, is a key minted here for that activation only
  (contracts/keys.py): no user key travels through Kafka, and the invoker holds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import docker.errors
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client.core import GaugeMetricFamily

from contracts import bus, entities, events, keys, metrics
from contracts.events import ActivationAssigned, ActivationCompleted, ActivationRequested, InvokerPing
from contracts.settings import Settings
from contracts.topics import Topics
from invoker import network, outcome
from invoker.code import CodeMissing, Codes
from invoker.containers import (
    ActionContainer,
    ContainerSpec,
    ContainerStartError,
    DockerDriver,
    ImageMissing,
    engine_unreachable,
)
from invoker.pool import Key, Pool, Slot
from runtimes import build

log = logging.getLogger("invoker")

IMAGES = {kind: f"{rt.image}:latest" for kind, rt in entities.RUNTIMES.items()}  # stem cells key by image kind
PAUSE_GRACE_S = float(os.environ.get("WSK_INVOKER_PAUSE_GRACE_S", "10"))
IDLE_REMOVE_S = float(os.environ.get("WSK_INVOKER_IDLE_REMOVE_S", "600"))
PING_EVERY_S = 1.0
STALE_IDS_WINDOW_MS = 480_000  # as admission's rebuild (streams/admission.py WINDOW_MS): ids older are not re-sent
COMMIT_EVERY_S = 1.0  # at most once needs no commit per activation: a restart skips what came before it
PROVISION_ERROR = "Failed to provision resources to run the action."
ENGINE_CHECK_EVERY = 2  # reaper ticks (s) between engine pings
ENGINE_WAIT_S = 60.0  # how long an activation waits for a restarting engine before it fails
ENGINE_TRIES = 5  # containers tried per activation (each lost before the request reached it) before it fails
ENGINE_DOWN = "The container engine (dockerd) is not reachable; the action was not run."
ENGINE_LOST = ("The container running the action was stopped by the container engine (dockerd stopped or "
               "restarted, or the container was removed); the action may or may not have completed. It was not "
               "retried.")


def parse_prewarm(spec: str) -> list[tuple[str, int]]:
    """`kind@memoryMB` items; a bare kind means 256 MB.

    >>> parse_prewarm("python:3@256, nodejs:18")
    [('python:3', 256), ('nodejs:18', 256)]
    """
    out = []
    for item in spec.replace(",", " ").split():
        kind, _, mem = item.partition("@")
        out.append((entities.image_kind(kind), int(mem or 256)))  # python:3.11@256: a python:3 stem cell
    return out


PREWARM = parse_prewarm(os.environ.get("WSK_INVOKER_PREWARM", "python:3@256"))
API_HOST = os.environ.get("WSK_ACTION_API_HOST", "")


async def log_ends(bootstrap: str, topic: str, window_ms: int = STALE_IDS_WINDOW_MS) -> tuple[dict[int, int], set[str]]:
    """Each partition's end offset in `topic` now (every message below it was written before this call), and the
    activation ids assigned in the `window_ms` before: a copy of one of those written later (a produce retried,
    or sent again by hand) is stale too, though its offset is new."""
    c = bus.consumer(bootstrap, group=None)
    await c.start()
    try:
        tps = await bus.partitions(c, topic)
        c.assign(tps)
        ends = await c.end_offsets(tps)
        found = await c.offsets_for_times(dict.fromkeys(tps, events.now_ms() - window_ms))
        todo = {tp: ends[tp] for tp in tps if found.get(tp) is not None and found[tp].offset < ends[tp]}
        for tp in todo:
            c.seek(tp, found[tp].offset)
        ids: set[str] = set()
        while todo:
            for m, ev in bus.decoded(await c.getmany(*todo, timeout_ms=500), "assignment"):
                if isinstance(ev, ActivationAssigned) and m.offset < ends[TopicPartition(m.topic, m.partition)]:
                    ids.add(ev.request.activation_id)
            todo = {tp: end for tp, end in todo.items() if await c.position(tp) < end}
        return {tp.partition: end for tp, end in ends.items()}, ids
    finally:
        await c.stop()


def fresh(partition: int, offset: int, starts: Mapping[int, int]) -> bool:
    """Whether an assignment was written after this invoker started: at or past its partition's end offset then
    (`log_ends`). Offsets, not timestamps: a wall-clock step, or another clock than the worker's, must not make new
    work look old (never run) or old work new (run twice).

    >>> fresh(0, 7, {0: 7}), fresh(0, 6, {0: 7}), fresh(1, 0, {0: 7})
    (True, False, True)
    """
    return offset >= starts.get(partition, 0)


def provides_api_key(action: dict[str, Any]) -> bool:
    """OpenWhisk's rule: a truthy `provide-api-key`; actions from before the annotation existed have none: yes.

    >>> provides_api_key({"annotations": [{"key": "provide-api-key", "value": False}]}), provides_api_key({})
    (False, True)
    """
    for a in action.get("annotations") or []:
        if a.get("key") == "provide-api-key":
            return bool(a.get("value"))
    return True


def start_failure(kind: str, image: str, e: Exception) -> outcome.Outcome:
    """As OpenWhisk: a user's (blackbox) image is the developer's problem, a managed runtime's is ours (one not
    built yet is being built: runtimes are built on first use, see runtimes/build.py)."""
    log.warning("container start failed for %s: %s", image, e)
    if kind != "blackbox" and isinstance(e, ImageMissing):
        return outcome.internal_error(f"The runtime for kind '{kind}' is not ready yet: its image {image} is being "
                                      "built on this machine. Try again in a minute or two.")
    if kind != "blackbox":
        return outcome.internal_error(PROVISION_ERROR)
    if isinstance(e, ImageMissing):
        return outcome.developer_error(f"Failed to pull container image '{image}'.")
    return outcome.developer_error("The action did not initialize and exited unexpectedly.")


class ContainerLost(Exception):
    """The container was gone before the request reached it: the activation can run elsewhere."""


class EngineDown(Exception):
    """The engine did not come back within ENGINE_WAIT_S."""


class Invoker:
    def __init__(self, settings: Settings, index: int, user_memory_mb: int = 2048) -> None:
        self.s = settings
        self.index = index
        self.t = Topics(settings.prefix)
        self.prefix = f"{settings.container_prefix}{index}_"
        self.pool = Pool(user_memory_mb)
        self.containers: dict[str, ActionContainer] = {}
        self.driver = DockerDriver(settings.socket_root / f"{settings.prefix}{index}")
        self.capacity = asyncio.Condition()
        self.prewarming = asyncio.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.producer: Any = None
        self.codes = Codes(settings)
        self.network = "none"  # until the walled-off network is in place (run)
        self.api_host = API_HOST or settings.api_host
        self.secret = keys.activation_secret(settings.home)
        self.incarnation = uuid.uuid4().hex[:12]

    async def _setup_network(self) -> None:
        if not network.WANTED:
            return
        try:
            net = await asyncio.to_thread(network.ensure, self.s)
        except Exception as e:  # no wall, no network: isolation comes first
            log.error("action network unavailable, actions get no network: %s", e)
            self.network = "none"
            return
        self.network = net.name
        self.api_host = API_HOST or f"http://{net.gateway}:{self.s.nginx_port}"
        log.info("action network %s (%s, gateway %s)", net.name, net.subnet, net.gateway)

    # --- container lifecycle ------------------------------------------------------------------------

    async def _start_container(self, kind: str, image: str, memory_mb: int, net: str | None = None) -> ActionContainer:
        spec = ContainerSpec(
            image=image, name=f"{self.prefix}{uuid.uuid4().hex[:12]}", memory_mb=memory_mb,
            env={"__OW_API_HOST": self.api_host},
            labels={"streamwhisk.invoker": str(self.index), "streamwhisk.kind": kind},
            user_memory_mb=self.pool.user_memory_mb, network=net or self.network,
            **({"action_dir": "/tmp/action"} if kind == "blackbox" else {}),
        )
        c = await self.driver.start(spec)
        self.containers[c.name] = c
        return c

    async def _destroy(self, slot: Slot) -> None:
        self.pool.slots.pop(slot.name, None)
        c = self.containers.pop(slot.name, None)
        if c is not None:
            try:
                await self.driver.remove(c)
            except Exception:
                log.exception("removing %s", slot.name)
        async with self.capacity:
            self.capacity.notify_all()

    def _build(self, image: str) -> None:
        repo = image.rsplit(":", 1)[0]
        if repo in build.IMAGES and not build.building(repo):
            log.info("building the missing runtime image %s", repo)
            build.build_in_background([repo], self.s.home / "logs" / "images.log")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _forget_lost(self) -> None:
        """Drop the idle pooled containers the engine no longer has, then prewarm again."""
        alive = await self.driver.alive_names(self.prefix)
        for slot in [s for n, s in self.pool.slots.items() if n in self.containers and n not in alive and not s.busy]:
            slot.busy = True
            await self._destroy(slot)
        self._spawn(self.prewarm())

    async def prewarm(self) -> None:
        async with self.prewarming:
            await self._prewarm()

    async def _prewarm(self) -> None:
        for kind, mem in PREWARM:
            if self.pool.stem_cell(kind, mem) is not None:
                continue
            # A stem cell is worth more than the least recently used idle warm container (OpenWhisk reserves
            # prewarm memory apart from the pool); without this a pool filled by load never prewarms again.
            evict = self.pool.evictable(mem)
            for s in evict or []:
                s.busy = True
                await self._destroy(s)
            if self.pool.free_mb() >= mem:
                slot = Slot(name="", memory_mb=mem, kind=kind, busy=True)
                placeholder = f"prewarm-{uuid.uuid4().hex}"
                self.pool.slots[placeholder] = slot
                try:
                    c = await self._start_container(kind, IMAGES[kind], mem)
                except Exception:
                    log.exception("prewarm %s failed", kind)
                    self.pool.slots.pop(placeholder, None)
                    continue
                self.pool.slots.pop(placeholder, None)
                slot.name, slot.busy, slot.last_used = c.name, False, time.monotonic()
                self.pool.slots[c.name] = slot

    async def _acquire(self, key: Key, kind: str, memory_mb: int, net: str | None) -> tuple[Slot, bool]:
        """A reserved slot for this activation and whether it still needs /init."""
        async with self.capacity:
            while True:
                slot = self.pool.warm(key)
                if slot is not None:
                    slot.busy = True
                    return slot, False
                slot = self.pool.stem_cell(kind, memory_mb) if net is None else None
                if slot is not None:
                    slot.busy, slot.key = True, key
                    return slot, True
                evict = self.pool.evictable(memory_mb)
                if evict is not None:
                    for s in evict:
                        s.busy = True
                    for s in evict:
                        self._spawn(self._destroy(s))
                    for s in evict:
                        self.pool.slots.pop(s.name, None)
                    name = f"pending-{uuid.uuid4().hex}"
                    slot = Slot(name=name, memory_mb=memory_mb, kind=kind, key=key, busy=True, network=net)
                    self.pool.slots[name] = slot
                    return slot, True
                await self.capacity.wait()

    async def _release(self, slot: Slot, keep: bool) -> None:
        if not keep:
            await self._destroy(slot)
            return
        slot.busy, slot.last_used = False, time.monotonic()
        async with self.capacity:
            self.capacity.notify_all()

    # --- one activation ---------------------------------------------------------------------------------

    async def handle(self, req: ActivationRequested, net: str | None = None) -> None:
        """Run one activation; net "none" when its namespace may not have the action network."""
        action = req.action
        exec_ = action.get("exec", {})
        kind = exec_.get("kind", "")
        limits = action.get("limits", {})
        memory_mb, timeout_ms = int(limits.get("memory", 256)), int(limits.get("timeout", 60000))
        log_limit = int(limits.get("logs", 10)) * 1048576
        doc_id = f"{action['namespace']}/{action['name']}"
        # The network is part of the key: a namespace whose limit changed gets new containers.
        key: Key = (req.namespace, doc_id, f"{action.get('version')}@{action.get('updated')}@{net or ''}")
        image = exec_.get("image") if kind == "blackbox" else IMAGES.get(entities.image_kind(kind))
        start, t0 = events.now_ms(), time.monotonic()
        init_ms: int | None = None
        logs: list[str] = []
        slot: Slot | None = None
        cold = False
        try:
            if image is None:
                res = outcome.internal_error(f"The runtime '{kind}' is not available on this invoker.")
            else:
                # Stem cells go by image: a python:3 stem cell serves python:3.11.
                slot, cold = await self._acquire(key, entities.image_kind(kind), memory_mb, net)
                start, t0 = events.now_ms(), time.monotonic()
                deadline, tries = time.monotonic() + ENGINE_WAIT_S, 0
                while True:
                    try:
                        res, init_ms, logs = await self._execute(slot, cold, req, image, timeout_ms, log_limit)
                        break
                    except Exception as lost:
                        # The action never saw the request: the engine lost the container, or is itself going
                        # away or restarting (dockerd restarted, or the container was removed behind our back).
                        # Drop it and every other lost one, wait for the engine, then run on a fresh container.
                        if not isinstance(lost, ContainerLost) and not engine_unreachable(lost):
                            raise
                        tries += 1
                        log.warning("activation %s: %r; running it on another container", req.activation_id, lost)
                        await self._destroy(slot)
                        slot = None
                        if tries > ENGINE_TRIES:
                            raise
                        if not await self.driver.engine_back(deadline - time.monotonic()):
                            raise EngineDown from lost
                        try:
                            await self._forget_lost()
                        except Exception as e:  # the engine went away again: try again while time is left
                            if not engine_unreachable(e):
                                raise
                            await asyncio.sleep(0.5)
                        slot, cold = await self._acquire(key, entities.image_kind(kind), memory_mb, net)
                        start, t0 = events.now_ms(), time.monotonic()
        except Exception as e:
            log.exception("activation %s failed", req.activation_id)
            down = isinstance(e, EngineDown) or engine_unreachable(e)
            res = outcome.internal_error(ENGINE_DOWN if down else f"Failed to run the action: {e}")
        end = start + int((time.monotonic() - t0) * 1000)  # a wall-clock step during the run is not its duration
        if slot is not None:
            await self._release(slot, res.keep_container)
        rec = outcome.record(
            activation_id=req.activation_id, namespace=req.namespace, subject=req.subject, action=action,
            outcome=res, start=start, end=end, requested_at=req.at, init_ms=init_ms, logs=logs, cause=req.cause,
        )
        done = ActivationCompleted(
            activation_id=req.activation_id, namespace=req.namespace, invoker=self.index, record=rec,
            memory_mb=memory_mb,
        )
        await bus.send(self.producer, self.t.completions, req.namespace, done)
        if cold or not res.keep_container:  # a stem cell was used or a container removed: make a new one, once
            self._spawn(self.prewarm())  # the record is out: container creation competes with nothing of it

    async def _execute(
        self, slot: Slot, cold: bool, req: ActivationRequested, image: str, timeout_ms: int, log_limit: int
    ) -> tuple[outcome.Outcome, int | None, list[str]]:
        action = req.action
        exec_ = action.get("exec", {})
        c = self.containers.get(slot.name)
        if c is None:  # a pending slot: cold start a fresh container
            try:
                c = await self._start_container(slot.kind, image, slot.memory_mb, slot.network)
            except (ContainerStartError, TimeoutError) as e:
                if isinstance(e, ImageMissing) and slot.kind != "blackbox":
                    self._build(image)
                return start_failure(slot.kind, image, e), None, []
            self.pool.slots.pop(slot.name, None)
            slot.name = c.name
            self.pool.slots[c.name] = slot
        elif c.paused:
            try:
                await self.driver.unpause(c)
            except docker.errors.NotFound as e:
                raise ContainerLost(f"container {c.name} is gone") from e
        since = time.time_ns()
        deadline = str(events.now_ms() + timeout_ms)
        ow_env = {
            "__OW_NAMESPACE": req.namespace, "__OW_ACTION_NAME": f"/{action['namespace']}/{action['name']}",
            "__OW_ACTION_VERSION": str(action.get("version", "")), "__OW_ACTIVATION_ID": req.activation_id,
            "__OW_TRANSACTION_ID": req.transaction_id, "__OW_DEADLINE": deadline,
        }
        if provides_api_key(action):  # good for this activation only; the API also refuses it once it completed
            ow_env["__OW_API_KEY"] = keys.mint(self.secret, req.activation_id, req.subject, req.namespace,
                                               int(deadline) + keys.ACTIVATION_KEY_GRACE_MS)
        init_ms: int | None = None
        if cold:
            try:
                code = await self.codes.code(action)
            except CodeMissing as e:
                return outcome.internal_error(str(e)), None, []
            init_params = {p["key"]: str(p["value"]) for p in action.get("parameters", []) if p.get("init")}
            value: dict[str, Any] = {
                "name": action["name"], "main": exec_.get("main", "main"),
                "binary": bool(exec_.get("binary", False)), "env": {**init_params, **ow_env},
            }
            if code:  # omitted for a blackbox image that brings its own action
                value["code"] = code
            payload = {"value": value}
            r = await self.driver.init(c, payload, timeout_ms / 1000)
            if not r.sent:
                raise ContainerLost(f"container {c.name} is gone")
            init_ms = int(r.elapsed_ms)
            oom = r.status is None and await self.driver.was_oom_killed(c)
            if r.status is None and not r.timed_out and not oom and await self.driver.killed_by_engine(c):
                raise ContainerLost(f"container {c.name} was stopped by the engine during /init")
            failed = outcome.from_init(r, timeout_ms, oom)
            if failed is not None:
                lr = await self.driver.logs(c, since, log_limit, wait_s=0.5)
                return failed, init_ms, lr.lines
        run = {
            "value": req.params, "namespace": req.namespace, "action_name": ow_env["__OW_ACTION_NAME"],
            "action_version": ow_env["__OW_ACTION_VERSION"], "activation_id": req.activation_id,
            "transaction_id": req.transaction_id, "deadline": deadline,
        }
        if "__OW_API_KEY" in ow_env:
            run["api_key"] = ow_env["__OW_API_KEY"]
        r = await self.driver.run(c, run, timeout_ms / 1000)
        if not r.sent:
            raise ContainerLost(f"container {c.name} is gone")
        try:
            oom = r.status is None and not r.timed_out and await self.driver.was_oom_killed(c)
            if r.status is None and not r.timed_out and not oom and await self.driver.killed_by_engine(c):
                return outcome.internal_error(ENGINE_LOST), init_ms, []
            res = outcome.from_run(r, timeout_ms, oom)
            lr = await self.driver.logs(c, since, log_limit, wait_s=2.0 if res.keep_container else 0.3)
        except Exception as e:  # the action got the request: it is never run again
            if not engine_unreachable(e):
                raise
            return outcome.internal_error(ENGINE_LOST), init_ms, []
        lines = lr.lines
        if not lr.complete and not res.keep_container:
            lines = [*lines, "The action did not initialize or run as expected. Log data might be missing."]
        return res, init_ms, lines

    # --- loops ------------------------------------------------------------------------------------------

    async def _ping(self) -> None:
        while True:
            ev = InvokerPing(invoker=self.index, incarnation=self.incarnation, user_memory_mb=self.pool.user_memory_mb,
                             free_memory_mb=self.pool.free_mb(), warm=self.pool.warm_action_ids())
            try:
                await bus.send(self.producer, self.t.health, str(self.index), ev)
            except Exception:
                log.exception("ping failed")
            await asyncio.sleep(PING_EVERY_S)

    async def _reaper(self) -> None:
        """Pause containers idle past the grace period; remove those idle for long; after the engine comes back
        from a restart (which took every container with it), rebuild the pool. It outlives any failure."""
        engine_was_up, tick = True, 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            if tick % ENGINE_CHECK_EVERY == 0:
                up = await self.driver.engine_up()
                if up != engine_was_up:
                    log.warning("container engine %s", "is back: rebuilding the pool" if up else "UNREACHABLE")
                    engine_was_up = up
                    if up:  # the wall's rules outlive dockerd, but re-apply them: isolation comes first
                        await self._setup_network()
                        with contextlib.suppress(Exception):
                            await self._forget_lost()
                if not up:
                    continue
            try:
                try:
                    await self._reap(time.monotonic())
                except docker.errors.NotFound:  # a container the engine lost behind our back: drop every such one
                    await self._forget_lost()
            except Exception:
                log.exception("reaping idle containers failed")

    async def _reap(self, now: float) -> None:
        for s in self.pool.idle_since(now - IDLE_REMOVE_S):
            s.busy = True
            await self._destroy(s)
        for s in self.pool.idle_since(now - PAUSE_GRACE_S):
            c = self.containers.get(s.name)
            if c is not None and not c.paused and not s.busy:
                s.busy = True
                try:
                    await self.driver.pause(c)
                finally:
                    s.busy = False

    def pool_metrics(self) -> Any:
        """Containers by state and memory, read from the pool at scrape time."""
        inv = str(self.index)
        c = GaugeMetricFamily("streamwhisk_invoker_containers", "Action containers by state",
                              labels=["invoker", "state"])
        slots = list(self.pool.slots.values())
        c.add_metric([inv, "busy"], sum(1 for s in slots if s.busy))
        c.add_metric([inv, "warm"], sum(1 for s in slots if not s.busy and s.key is not None))
        c.add_metric([inv, "prewarm"], sum(1 for s in slots if not s.busy and s.key is None))
        yield c
        m = GaugeMetricFamily("streamwhisk_invoker_memory_mb", "Action container memory (MB)",
                              labels=["invoker", "kind"])
        m.add_metric([inv, "used"], self.pool.used_mb())
        m.add_metric([inv, "limit"], self.pool.user_memory_mb)
        yield m

    async def run(self, stop: asyncio.Event | None = None) -> None:
        started_ids = OrderedDict[str, None]()
        ep = await metrics.serve(f"invoker{self.index}", self.s.home, self.s.kafka, component="invoker")
        ep.lag.group(f"{self.s.prefix}-invoker{self.index}", [self.t.invoker(self.index)], from_start=False)
        metrics.register("streamwhisk_invoker_pool", self.pool_metrics)
        await bus.ensure_topics(self.s.kafka, [self.t.invoker(self.index), self.t.completions, self.t.health],
                                self.s.partitions)
        # What was assigned before this start, by offset, and by id for copies written since
        starts, before = await log_ends(self.s.kafka, self.t.invoker(self.index))
        started_ids.update(dict.fromkeys(before))
        removed = await self.driver.remove_all(self.prefix)
        await self._setup_network()
        if removed:
            log.info("removed %d leftover containers", removed)
        self.producer = bus.producer(self.s.kafka)
        await self.producer.start()
        consumer = bus.consumer(self.s.kafka, self.t.invoker(self.index),
                                group=f"{self.s.prefix}-invoker{self.index}", from_start=False)
        await consumer.start()
        bg = [asyncio.create_task(self._ping()), asyncio.create_task(self._reaper()),
              asyncio.create_task(self.codes.run())]
        await self.prewarm()
        log.info("invoker %d ready", self.index)
        committed = 0.0
        try:
            while stop is None or not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for m, ev in bus.decoded(batch, "assignment"):
                    if not isinstance(ev, ActivationAssigned):
                        continue
                    # At most once: never run work assigned before this process started, nor twice after
                    # a rebalance; the watchdog (streams/watchdog.py) gives those a final record.
                    aid = ev.request.activation_id
                    if not fresh(m.partition, m.offset, starts) or aid in started_ids:
                        log.warning("not running stale or repeated assignment %s", aid)
                        continue
                    started_ids[aid] = None
                    if len(started_ids) > 100_000:
                        started_ids.popitem(last=False)
                    self._spawn(self.handle(ev.request, ev.network))
                if batch and time.monotonic() - committed > COMMIT_EVERY_S:
                    committed = time.monotonic()
                    try:
                        await consumer.commit()  # where a restart resumes; what it re-reads is stale (above)
                    except KafkaError as e:  # e.g. the group rebalanced during a broker restart
                        log.warning("offset commit failed: %r", e)
        finally:
            for t in bg:
                t.cancel()
            await consumer.stop()
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=10)
            await self.producer.stop()
            await self.driver.remove_all(self.prefix)
            await self.driver.close()
