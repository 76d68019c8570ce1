"""Kafka Connect REST calls for connector feeds (the worker is started by `streamwhisk up`, cli/services.py)."""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from feeds.schedule import FeedError

FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"
TIMEOUT = aiohttp.ClientTimeout(total=30)
# The Kubernetes chart runs Connect as its own Deployment (Service name here); locally it is on 127.0.0.1.
HOST = os.environ.get("WSK_CONNECT_HOST", "127.0.0.1")


def connector_config(user: dict[str, Any], topic: str) -> dict[str, str]:
    """The connector's config: the user's `connector` object (or `file` for a FileStreamSource), writing to topic."""
    given = user.get("connector_config") or {}
    if not isinstance(given, dict):
        raise FeedError("connector_config must be an object")
    conf = {str(k): str(v) for k, v in given.items()}
    conf.setdefault("connector.class", FILE_SOURCE)
    if conf["connector.class"] in (FILE_SOURCE, "FileStreamSource"):
        if "file" not in conf and not isinstance(user.get("file"), str):
            raise FeedError("a file source connector feed needs the 'file' parameter")
        conf.setdefault("file", str(user.get("file")))
    conf.setdefault("tasks.max", "1")
    conf["topic"] = topic
    conf["topics"] = topic
    return conf


async def create(port: int, name: str, config: dict[str, str]) -> None:
    url = f"http://{HOST}:{port}/connectors/{name}/config"
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s, s.put(url, json=config) as r:
            if r.status >= 300:
                raise FeedError(f"Kafka Connect refused the connector: {r.status} {await r.text()}")
    except aiohttp.ClientError as e:
        raise FeedError(f"Kafka Connect is not reachable: {e}") from e


async def delete(port: int, name: str) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s, s.delete(f"http://{HOST}:{port}/connectors/{name}"):
        pass


async def exists(port: int, name: str) -> bool:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as s, s.get(f"http://{HOST}:{port}/connectors/{name}") as r:
        return r.status == 200
