"""contracts/metrics.py's endpoint and the launcher's per-part ports (no Kafka needed: lag stays empty)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cli.services import components, metrics_port
from contracts import metrics
from contracts.settings import Settings
from contracts.topics import MAX_INVOKERS


def test_every_part_gets_its_own_port() -> None:
    s = Settings(metrics_base_port=29100, invokers=MAX_INVOKERS, streams_workers=16, partitions=16)
    ports = [metrics_port(s, c.name) for c in components(s)]
    assert len(ports) == len(set(ports)) and all(p > 29099 for p in ports)
    assert metrics_port(dataclasses.replace(s, metrics_base_port=0), "api") == 0  # any free port


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.headers["Content-Type"], r.read().decode()


def test_serve_writes_its_port_and_falls_back_when_taken(tmp_path: Path) -> None:
    async def go() -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            ep = await metrics.serve("invoker3", tmp_path, "127.0.0.1:1", component="invoker", port=taken)
            try:
                port = metrics.read_port(tmp_path, "invoker3")
                assert port and port != taken and ep.port == port
                metrics.add_text("unit", lambda: '# HELP x_total y\n# TYPE x_total counter\nx_total{a="1"} 2.0\n')
                ctype, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
                assert ctype.startswith("text/plain; version=0.0.4")
                names = {f.name for f in text_string_to_metric_families(text)}
                assert {"process_cpu_seconds", "python_info", "x", "streamwhisk_kafka_consumer_lag"} <= names
                assert ep.lag.component == "invoker"
            finally:
                metrics._texts.pop("unit", None)
                await ep.stop()
        assert metrics.read_port(tmp_path, "invoker3") is None and metrics.get() is None

    asyncio.run(go())
