"""Prometheus `/metrics` for every component: the HTTP endpoint, Kafka consumer lag, and shared helpers.

Each process serves `GET /metrics` (Prometheus text format 0.0.4) on WSK_METRICS_PORT, with prometheus_client's
default collectors (process_*, python_*, gc) and whatever the component registers. Unset: no endpoint; 0: any free
port. The launcher gives each local part its own port (cli/services.py metrics_port); in Kubernetes every pod uses
9095. The bound port is written to <home>/run/<part>.metrics, where `streamwhisk status` and the tests find it.

Consumer lag (`streamwhisk_kafka_consumer_lag{component,group,topic,partition}`) is computed in the background every
LAG_EVERY_S (end offsets minus the group's committed offsets, or a group-less consumer's positions) and cached, so a
scrape never waits on Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from contracts import bus

log = logging.getLogger("metrics")
disable_created_metrics()  # no *_created series: the contract (contracts/metric_names.py) has none

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LAG_EVERY_S = 5.0
LAG = "streamwhisk_kafka_consumer_lag"

# Components that render part of their exposition themselves (exact upstream names, see projections/usermetrics.py)
TextSource = Callable[[], str]
_texts: dict[str, TextSource] = {}


def add_text(name: str, source: TextSource) -> None:
    """Text appended to every scrape of this process (families prometheus_client would rename); a name given
    again replaces its source (a component restarted within the process)."""
    _texts[name] = source


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    out = generate_latest(registry)
    for source in list(_texts.values()):
        try:
            out += source().encode()
        except Exception:  # one broken source must not take the whole endpoint down
            log.exception("metrics text source failed")
    return out


async def handle(request: web.Request) -> web.Response:
    """GET /metrics (also mounted on the API's own app)."""
    return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE})


def port_file(home: Path, part: str) -> Path:
    return home / "run" / f"{part}.metrics"


def read_port(home: Path, part: str) -> int | None:
    """The port `part` serves /metrics on now, as it wrote it (None: not serving)."""
    try:
        return int(port_file(home, part).read_text().strip())
    except (OSError, ValueError):
        return None


def wanted_port() -> int | None:
    raw = os.environ.get("WSK_METRICS_PORT", "").strip()
    return int(raw) if raw else None


@dataclass
class _Group:
    group: str
    topics: tuple[str, ...]  # partitions of these without a committed offset are reported too
    from_start: bool  # where such a consumer would begin: the whole log (lag = end) or the end (lag 0)
    owned: Callable[[], set[int]] | None  # only these partition numbers (workers sharing a group)


@dataclass(eq=False)  # hashable: prometheus_client keeps collectors in a dict
class ConsumerLag:
    """The lag collector of one process: groups (committed offsets) and group-less consumers (positions)."""

    component: str
    bootstrap: str
    groups: list[_Group] = field(default_factory=list)
    consumers: list[tuple[str, AIOKafkaConsumer]] = field(default_factory=list)
    cache: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (group, topic, partition) -> lag
    refreshed: float = 0.0

    def group(self, group: str, topics: Iterable[str] = (), from_start: bool = True,
              owned: Callable[[], set[int]] | None = None) -> None:
        self.groups.append(_Group(group, tuple(topics), from_start, owned))

    def consumer(self, label: str, c: AIOKafkaConsumer) -> None:
        """A consumer that commits nothing (it keeps its offsets elsewhere): lag from its positions."""
        self.consumers.append((label, c))

    def forget(self, c: AIOKafkaConsumer) -> None:
        self.consumers = [(label, k) for label, k in self.consumers if k is not c]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(LAG, "Messages not yet consumed: end offset minus committed offset (or position)",
                              labels=["component", "group", "topic", "partition"])
        for (group, topic, part), lag in sorted(self.cache.items()):
            g.add_metric([self.component, group, topic, str(part)], lag)
        yield g

    async def refresh(self, admin: AIOKafkaAdminClient, probe: AIOKafkaConsumer) -> None:
        positions: dict[tuple[str, TopicPartition], int] = {}
        for grp in self.groups:
            committed = await admin.list_consumer_group_offsets(grp.group)
            for tp, om in committed.items():
                if om.offset >= 0:
                    positions[(grp.group, tp)] = om.offset
        for label, c in self.consumers:
            for tp in c.assignment():
                with contextlib.suppress(Exception):  # not positioned yet (just assigned)
                    positions[(label, tp)] = await c.position(tp)
        # Metadata of these topics only: a client with no topics set asks for every topic of the cluster, which on
        # a broker with thousands of topics stalled every process's event loop for seconds at each refresh.
        wanted = sorted({t for grp in self.groups for t in grp.topics} | {tp.topic for _, tp in positions})
        parts = await bus.existing_partitions(probe, wanted) if wanted else {}
        if parts:
            admin._client.set_topics(sorted(parts))  # their periodic metadata refreshes too
            await probe._client.set_topics(sorted(parts))
        positions = {k: v for k, v in positions.items() if k[1].topic in parts}
        for grp in self.groups:
            for topic in grp.topics:  # partitions without a committed offset, made since too
                for p in parts.get(topic, ()):
                    positions.setdefault((grp.group, TopicPartition(topic, p)), -1 if grp.from_start else -2)
            if grp.owned is not None:
                mine = grp.owned()
                positions = {k: v for k, v in positions.items() if k[0] != grp.group or k[1].partition in mine}
        fresh: dict[tuple[str, str, int], int] = {}
        tps = sorted({tp for _, tp in positions}, key=lambda tp: (tp.topic, tp.partition))
        ends = await probe.end_offsets(tps) if tps else {}
        starts = await probe.beginning_offsets(tps) if any(v == -1 for v in positions.values()) else {}
        for (group, tp), pos in positions.items():
            end = ends.get(tp)
            if end is None:
                continue
            at = end if pos == -2 else starts.get(tp, 0) if pos == -1 else pos
            fresh[(group, tp.topic, tp.partition)] = max(0, end - at)
        self.cache = fresh
        self.refreshed = time.monotonic()

    async def run(self, every_s: float = LAG_EVERY_S) -> None:
        """Refresh the cache forever; Kafka being away only makes the figures older."""
        admin: AIOKafkaAdminClient | None = None
        probe: AIOKafkaConsumer | None = None
        try:
            while True:
                try:
                    if admin is None or probe is None:
                        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
                        await admin.start()
                        probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                                 enable_auto_commit=False, metadata_max_age_ms=30000)
                        await probe.start()
                    await self.refresh(admin, probe)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("consumer lag not refreshed: %r", e)
                    admin, probe = await _close(admin, probe)
                await asyncio.sleep(every_s)
        finally:
            await _close(admin, probe)


async def _close(admin: AIOKafkaAdminClient | None, probe: AIOKafkaConsumer | None) -> tuple[None, None]:
    with contextlib.suppress(Exception):
        if admin is not None:
            await admin.close()
    with contextlib.suppress(Exception):
        if probe is not None:
            await probe.stop()
    return None, None


class _Registered(Collector):
    def __init__(self, fn: Callable[[], Iterable[Any]]) -> None:
        self.fn = fn

    def collect(self) -> Iterable[Any]:
        return self.fn()


_registered: dict[str, _Registered] = {}


def register(name: str, fn: Callable[[], Iterable[Any]]) -> None:
    """A collector given as a function yielding metric families, read at scrape time (on the event loop).
    Registering a name again replaces its function (a component started twice in one process)."""
    if name in _registered:
        _registered[name].fn = fn
        return
    _registered[name] = _Registered(fn)
    REGISTRY.register(_registered[name])


@dataclass
class Endpoint:
    """One process's /metrics: its HTTP server (if any) and its lag collector."""

    part: str
    home: Path
    lag: ConsumerLag
    runner: web.AppRunner | None = None
    port: int | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.runner is not None:
            await self.runner.cleanup()
        with contextlib.suppress(OSError):
            port_file(self.home, self.part).unlink(missing_ok=True)
        global _endpoint
        if _endpoint is self:  # a later serve() starts afresh
            _endpoint = None
            with contextlib.suppress(KeyError):
                REGISTRY.unregister(self.lag)


_endpoint: Endpoint | None = None


def get() -> Endpoint | None:
    """This process's endpoint, once `serve` ran."""
    return _endpoint


async def serve(part: str, home: Path, bootstrap: str, component: str | None = None,
                port: int | None = None) -> Endpoint:
    """Start this process's /metrics (once; a second call returns the first endpoint) and its lag refresher.

    `part` names the process (api, streams1, invoker0, ...; the port file), `component` the label value of its
    lag series (api, streams, invoker, ...). The port is WSK_METRICS_PORT unless given; if it is taken, any free
    port is used (and written to the port file) rather than no endpoint."""
    global _endpoint
    if _endpoint is not None:
        return _endpoint
    lag = ConsumerLag(component or part.rstrip("0123456789"), bootstrap)
    REGISTRY.register(lag)
    ep = _endpoint = Endpoint(part, home, lag)
    ep.tasks.append(asyncio.create_task(lag.run(), name="metrics-lag"))
    want = wanted_port() if port is None else port
    if want is None:
        return ep
    app = web.Application()
    app.router.add_get("/metrics", handle)
    ep.runner = web.AppRunner(app, access_log=None)
    await ep.runner.setup()
    host = os.environ.get("WSK_METRICS_HOST", "127.0.0.1")  # Kubernetes: 0.0.0.0
    site = None
    for p in dict.fromkeys((want, 0)):
        try:
            site = web.TCPSite(ep.runner, host, p)
            await site.start()
            break
        except OSError as e:
            log.warning("metrics port %d not available (%s)%s", p, e, ", using a free one" if p else "")
            site = None
    if site is None:
        return ep
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    ep.port = int(sockets[0].getsockname()[1]) if sockets else want
    with contextlib.suppress(OSError):
        f = port_file(home, part)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(".metrics.tmp")
        tmp.write_text(str(ep.port))
        os.replace(tmp, f)
    log.info("metrics on http://%s:%d/metrics", host, ep.port)
    return ep


# --- the API's requests -------------------------------------------------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_requests: Any = None
_durations: Any = None


def _api_metrics() -> tuple[Any, Any]:
    global _requests, _durations
    if _requests is None:
        from prometheus_client import Counter, Histogram

        _requests = Counter("streamwhisk_api_requests", "API requests answered", ["method", "code"])
        _durations = Histogram("streamwhisk_api_request_duration_seconds", "API request duration", ["method"])
    return _requests, _durations


@web.middleware
async def api_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Outermost middleware of the API: counts and times every request; answers GET /metrics itself (open, not
    audited: a scrape every few seconds is no API call worth an event)."""
    if request.path == "/metrics" and request.method == "GET":
        return await handle(request)
    requests_, durations = _api_metrics()
    method = request.method if request.method in _METHODS else "other"
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        requests_.labels(method, str(status)).inc()
        durations.labels(method).observe(time.perf_counter() - started)


# --- replay progress (ReplayProgress events on `<prefix>.replays`, folded by projections/replay.py's follow) ------

_replay: dict[str, Any] = {}


def replay_progress(generation: int, events: int, total: int, done: bool = False, run: str | None = None) -> None:
    """streamwhisk_replay_progress_ratio and streamwhisk_replay_events_total for a replay into `generation`
    (events read so far, of total; done: ratio 1). `run` tells runs apart: a new run into the same generation
    counts from 0 again, so the counter keeps adding up every run's events."""
    if not _replay:
        from prometheus_client import Counter, Gauge

        _replay["ratio"] = Gauge("streamwhisk_replay_progress_ratio", "Share of the log a replay has read",
                                 ["generation"])
        _replay["events"] = Counter("streamwhisk_replay_events", "Events read by a replay", ["generation"])
        _replay["seen"] = {}
    gen = str(generation)
    seen_run, seen = _replay["seen"].get(gen, (run, 0))
    if seen_run != run:
        seen = 0
    _replay["ratio"].labels(gen).set(1.0 if done or not total else min(1.0, events / total))
    _replay["events"].labels(gen).inc(max(0, events - seen))
    _replay["seen"][gen] = (run, max(events, seen))
