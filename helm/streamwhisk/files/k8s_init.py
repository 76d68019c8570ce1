"""In-cluster setup steps of the Helm chart, run with the streamwhisk image's python (mounted from a ConfigMap).

  python3 k8s_init.py topics         create missing topics (WSK_PARTITIONS partitions, WSK_REPLICATION replicas)
  python3 k8s_init.py databases      create the CouchDB databases and design docs
  python3 k8s_init.py subjects       publish the guest and whisk.system subjects (keys from GUEST_KEY / SYSTEM_KEY)
  python3 k8s_init.py invoker-id     print this invoker's id: the StatefulSet ordinal of POD_NAME (engine=pod), else
                                     this node's (NODE_NAME, INVOKER_NODE_IDS JSON)
  python3 k8s_init.py api-relay      relay TCP from RELAY_LISTEN to RELAY_UPSTREAM (host:port each): the API as actions
                                     in an engine=pod invoker reach it, on the pod's own address
  python3 k8s_init.py pull-runtimes  make the runtime images exist on the node's Docker (RUNTIME_IMAGES JSON)

Every step is idempotent and bounded in time (INIT_TIMEOUT seconds), so jobs and init containers can rerun it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

MAX_INVOKERS = 16  # contracts.topics.MAX_INVOKERS; kept here so invoker-id needs no Kafka client imports


def invoker_id(node: str, ids: dict[str, int], max_invokers: int = MAX_INVOKERS) -> int:
    """The node's id from the explicit map, else a stable hash of its name (collisions: list the node)."""
    if node in ids:
        n = int(ids[node])
        if not 0 <= n < max_invokers:
            raise ValueError(f"invoker id {n} for node {node} is outside 0..{max_invokers - 1}")
        return n
    return zlib.crc32(node.encode()) % max_invokers


def ordinal_id(pod: str, max_invokers: int = MAX_INVOKERS) -> int:
    """A StatefulSet pod's ordinal (name-N) as its invoker id: stable across restarts and rescheduling.

    >>> ordinal_id("sw-streamwhisk-invoker-3")
    3
    """
    stem, _, n = pod.rpartition("-")
    if not stem or not n.isdigit() or not 0 <= int(n) < max_invokers:
        raise ValueError(f"pod {pod!r} has no ordinal in 0..{max_invokers - 1}")
    return int(n)


def split_hostport(s: str) -> tuple[str, int]:
    """'host:port' -> (host, port).

    >>> split_hostport("sw-api.sw.svc:80")
    ('sw-api.sw.svc', 80)
    """
    host, _, port = s.rpartition(":")
    return host, int(port)


def api_relay(listen: str, upstream: str) -> None:
    """Forward every connection on listen to upstream, bytes untouched (HTTP keep-alive and bodies pass through).

    Actions in an engine=pod invoker reach only the pod's own relay port (the action wall refuses every cluster
    address); the relay's own connection to the API Service leaves the pod as the pod's, as the invoker's do."""
    import asyncio
    import signal

    up_host, up_port = split_hostport(upstream)
    # As a container's PID 1 the default action of SIGTERM is ignored: exit at once (no state to keep).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(up_host, up_port), 10)
        except (TimeoutError, OSError) as e:
            print(f"api-relay: {upstream}: {e}", flush=True)
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
        for w in (cw, uw):
            w.close()

    async def serve() -> None:
        host, port = split_hostport(listen)
        server = await asyncio.start_server(handle, host, port, reuse_address=True)
        print(f"api-relay: {listen} -> {upstream}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# Made by their own service with their own configs (feed_state is compacted), not here.
OWN_CONFIG = ("feed_state",)


def topic_names(prefix: str, max_invokers: int = MAX_INVOKERS) -> list[str]:
    """Every topic of contracts.topics.Topics (its str properties) and the invoker topics, but OWN_CONFIG ones."""
    from contracts.topics import Topics

    t = Topics(prefix)
    names = [getattr(t, n) for n, v in vars(Topics).items() if isinstance(v, property) and n not in OWN_CONFIG]
    return sorted({n for n in names if isinstance(n, str)} | {t.invoker(i) for i in range(max_invokers)})


def retry(what: str, step: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return step()
        except Exception as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what}: giving up after {timeout:.0f} s: {type(e).__name__}: {e}") from e
            print(f"{what}: {type(e).__name__}: {e}; retrying", flush=True)
            time.sleep(3)


def create_topics(bootstrap: str, names: list[str], partitions: int, replication: int) -> list[str]:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from contracts.bus import topic_configs  # retention by topic kind, as the components create them

    async def go() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
        await admin.start()
        try:
            missing = [n for n in names if n not in set(await admin.list_topics())]
            if missing:
                # another init container may win the race; same settings
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(n, partitions, replication, topic_configs=topic_configs(n))
                                               for n in missing])
            return missing
        finally:
            await admin.close()

    return asyncio.run(go())


def main(argv: list[str]) -> int:
    step = argv[1] if len(argv) > 1 else ""
    timeout = float(os.environ.get("INIT_TIMEOUT", "300"))
    if step == "invoker-id" and os.environ.get("POD_NAME") and not os.environ.get("NODE_NAME"):
        print(ordinal_id(os.environ["POD_NAME"]))
        return 0
    if step == "api-relay":
        api_relay(os.environ["RELAY_LISTEN"], os.environ["RELAY_UPSTREAM"])
        return 0
    if step == "invoker-id":
        print(invoker_id(os.environ["NODE_NAME"], json.loads(os.environ.get("INVOKER_NODE_IDS") or "{}")))
        return 0
    if step == "pull-runtimes":
        import docker

        client = docker.from_env()
        for img in json.loads(os.environ.get("RUNTIME_IMAGES") or "[]"):
            src, tag = img.get("image") or "", img["tag"]
            if src:
                try:
                    client.images.get(src)
                except docker.errors.ImageNotFound:
                    print(f"pulling {src}", flush=True)
                    retry(f"pull {src}", lambda s=src: client.images.pull(s), timeout)
                repo, _, version = tag.rpartition(":")
                client.images.get(src).tag(repo, version)
            else:
                client.images.get(tag)  # must already be on the node: fail loudly rather than at first invoke
            print(f"runtime image {tag} ready", flush=True)
        return 0

    from contracts.settings import load

    settings = load()
    if step == "topics":
        names = topic_names(settings.prefix)
        parts, repl = int(os.environ.get("WSK_PARTITIONS", "1")), int(os.environ.get("WSK_REPLICATION", "1"))
        made = retry("topics", lambda: create_topics(settings.kafka, names, parts, repl), timeout)
        print(f"topics: {len(names)} present, {len(made)} created ({parts} partitions x {repl} replicas)")
    elif step == "databases":
        from projections.couch import Couch
        from projections.runner import ensure_databases

        retry("databases", lambda: ensure_databases(Couch(settings.couchdb), settings), timeout)
        print("databases ready")
    elif step == "subjects":
        import asyncio

        from cli.admin import create_subject
        from contracts import keys

        async def both() -> None:
            await create_subject(settings, keys.SYSTEM_SUBJECT, keys.SYSTEM_SUBJECT, os.environ["SYSTEM_KEY"])
            await create_subject(settings, keys.GUEST_SUBJECT, keys.GUEST_SUBJECT, os.environ["GUEST_KEY"])

        retry("subjects", lambda: asyncio.run(both()), timeout)
        print("subjects guest and whisk.system ready")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
