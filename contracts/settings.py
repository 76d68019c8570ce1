"""Ports, addresses and paths every component reads from the environment (prefix WSK_)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _home() -> Path:
    return Path(_env("WSK_HOME", str(REPO / ".state")))


def local_data_dirs(home: Path) -> str:
    """Where the local stack's Kafka and PouchDB Server keep their data (cli/services.py), as WSK_DISK_GUARD."""
    return f"kafka={home / 'kafka' / 'data'},pouchdb={home / 'pouchdb'}"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=_home)
    kafka: str = field(default_factory=lambda: _env("WSK_KAFKA", "127.0.0.1:29092"))
    kafka_controller_port: int = field(default_factory=lambda: int(_env("WSK_KAFKA_CONTROLLER_PORT", "29093")))
    couchdb: str = field(default_factory=lambda: _env("WSK_COUCHDB", "http://127.0.0.1:25984"))
    api_port: int = field(default_factory=lambda: int(_env("WSK_API_PORT", "23233")))
    nginx_port: int = field(default_factory=lambda: int(_env("WSK_NGINX_PORT", "3233")))
    connect_port: int = field(default_factory=lambda: int(_env("WSK_CONNECT_PORT", "28083")))
    # Prefix for topics, consumer groups and CouchDB databases, so tests can run side by side.
    prefix: str = field(default_factory=lambda: _env("WSK_PREFIX", "whisk"))
    invokers: int = field(default_factory=lambda: int(_env("WSK_INVOKERS", "1")))
    # Partitions of every topic (fixed when the topics are made) and how many Faust workers share them.
    partitions: int = field(default_factory=lambda: int(_env("WSK_PARTITIONS", "1")))
    streams_workers: int = field(default_factory=lambda: int(_env("WSK_STREAMS_WORKERS", "1")))
    socket_root: Path = field(default_factory=lambda: Path(_env("WSK_SOCKET_ROOT", "/run/streamwhisk")))
    # Data dirs whose filesystems the API watches, "label=path,...", labels kafka and pouchdb (api/diskguard.py):
    # with less than disk_reserve_mb free on one, writes through the API get 503. Empty: none (remote disks).
    disk_guard: str = field(default_factory=lambda: _env("WSK_DISK_GUARD", local_data_dirs(_home())))
    disk_reserve_mb: int = field(default_factory=lambda: int(_env("WSK_DISK_RESERVE_MB", "256")))
    # Local /metrics ports: each part gets base + its offset (cli/services.py metrics_port) as WSK_METRICS_PORT;
    # 0: every part takes a free port. Either way the port in use is in <home>/run/<part>.metrics.
    metrics_base_port: int = field(default_factory=lambda: int(_env("WSK_METRICS_BASE_PORT", "29100")))

    @property
    def api_host(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def container_prefix(self) -> str:
        """Action containers of this stack are named <container_prefix><invoker>_<id>."""
        return f"wsk{self.prefix}"

    @property
    def guarded_dirs(self) -> list[tuple[str, Path]]:
        out = []
        for item in filter(None, (i.strip() for i in self.disk_guard.split(","))):
            label, sep, path = item.partition("=")
            if not sep or not label.strip() or not path.strip():
                raise ValueError(f"WSK_DISK_GUARD: {item!r} is not label=path")
            out.append((label.strip(), Path(path.strip())))
        return out

    def db(self, name: str) -> str:
        return f"{self.prefix}_{name}"


def load() -> Settings:
    return Settings()
