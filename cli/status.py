"""Health of each part of a local stack, for `streamwhisk status`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from api.diskguard import MiB, low_disks, sample
from cli import procs, supervise
from cli.services import (
    components,
    couch_healthy,
    couch_hostport,
    docker_healthy,
    http_status,
    kafka_healthy,
    kafka_hostport,
    module_available,
    pid_file,
    tcp_open,
)
from contracts import metrics, readiness
from contracts.settings import Settings


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int | None
    port: str
    health: str  # ok | failing | absent (module not written yet)
    restarts: int = 0  # by supervisord after a crash (cli/supervise.py)
    last_exit: str | None = None  # its reason and age, e.g. "terminated by SIGKILL, 12 s ago"
    crash_loop: str | None = None  # why supervision gave up on it
    note: str | None = None  # e.g. the API's refusal while its data disk is almost full
    metrics: str | None = None  # its /metrics URL (contracts/metrics.py), while it serves one

    @property
    def healthy(self) -> bool:
        return self.health in ("ok", "absent")


def status(settings: Settings) -> list[PartStatus]:
    def pid(name: str) -> int | None:
        return procs.read_pid(pid_file(settings, name))

    def ok(flag: bool) -> str:
        return "ok" if flag else "failing"

    host, kport = kafka_hostport(settings)
    api_ok = http_status(f"http://127.0.0.1:{settings.api_port}/ping") == 200
    rows = [
        PartStatus("docker", pid("dockerd"), "-", ok(docker_healthy(10))),
        PartStatus("kafka", pid("kafka"), str(kport), ok(tcp_open(host, kport) and kafka_healthy(settings.kafka, 5))),
        PartStatus("couchdb", pid("couchdb"), str(couch_hostport(settings)[1]), ok(couch_healthy(settings))),
        PartStatus("connect", pid("connect"), str(settings.connect_port),
                   ok(http_status(f"http://127.0.0.1:{settings.connect_port}/") == 200)),
    ]
    rows = _disks(rows, settings)
    for c in components(settings):
        p = pid(c.name)
        if not module_available(c.module):
            health = "absent"
        elif c.name == "api":
            health = ok(p is not None and api_ok)
        else:
            health = ok(p is not None)
        waits = readiness.read(settings.home, c.name) if p is not None else None
        rows.append(PartStatus(c.name, p, str(settings.api_port) if c.name == "api" else "-",
                               "waiting" if waits else health, note=f"{c.name} waits for {waits}" if waits else None,
                               metrics=metrics_url(settings, c.name) if p is not None else None))
    nginx_status = http_status(f"http://127.0.0.1:{settings.nginx_port}/api/v1")
    nginx_ok = nginx_status == 200 if module_available("api") else nginx_status is not None
    rows.append(PartStatus("nginx", pid("nginx"), str(settings.nginx_port), ok(pid("nginx") is not None and nginx_ok)))
    return [_supervised(r, settings) for r in rows]


def _disks(rows: list[PartStatus], settings: Settings) -> list[PartStatus]:
    """kafka and couchdb are "disk-low" while the API refuses writes for their data disk (api/diskguard.py)."""
    disks, reserve = sample(settings.guarded_dirs), settings.disk_reserve_mb * MiB
    low = {label for labels, free in disks if free < reserve for label in labels}
    low_text = low_disks(disks, reserve)
    text = f"{low_text}; the API refuses writes until there is room again" if low_text else None
    part = {"kafka": "kafka", "pouchdb": "couchdb", "couchdb": "couchdb"}
    return [dataclasses.replace(r, health="disk-low", note=text)
            if r.health == "ok" and any(part.get(label) == r.name for label in low) else r for r in rows]


def _supervised(row: PartStatus, settings: Settings) -> PartStatus:
    """The row with supervisord's restarts and last exit (from the event listener's record)."""
    name = "dockerd" if row.name == "docker" else row.name
    part = supervise.read_state(settings).get(name)
    if not part:
        return row
    last = part.get("last_exit")
    age = f", {time.time() - last['at']:.0f} s ago" if last else ""
    loop = part.get("crash_loop")
    return dataclasses.replace(row, restarts=int(part.get("restarts", 0)),
                               last_exit=f"{last['reason']}{age}" if last else None, crash_loop=loop,
                               health="crash-loop" if loop and row.pid is None else row.health)



def metrics_url(settings: Settings, part: str) -> str | None:
    port = metrics.read_port(settings.home, part)
    return f"http://127.0.0.1:{port}/metrics" if port else None


def metrics_endpoints(settings: Settings) -> dict[str, str]:
    """Each running Streamwhisk process's /metrics URL, by part (api, streams, streams1, projections, invoker0,
    ..., feeds), from the port files the parts write (contracts/metrics.py)."""
    out = {}
    for c in components(settings):
        url = metrics_url(settings, c.name) if procs.read_pid(pid_file(settings, c.name)) is not None else None
        if url:
            out[c.name] = url
    return out


if __name__ == "__main__":  # python -m cli.status: the /metrics endpoints of the stack at WSK_HOME
    from contracts.settings import load

    for part, url in metrics_endpoints(load()).items():
        print(f"{part:<12} {url}")
