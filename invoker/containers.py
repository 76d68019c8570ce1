"""Docker driver for action containers.

The invoker reaches the in-container proxy over a unix socket in a bind-mounted host directory, so actions need no
port of their own; their network is the walled-off action network (invoker/network.py) or none.
The root filesystem is read-only; /action (the action's directory) and /tmp are size-limited tmpfs mounts that
allow exec and mmap, as compiled modules in a zip's virtualenv/ need. The docker SDK is blocking, so every call
goes through asyncio.to_thread.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import logging
import os
import re
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import orjson
import requests.exceptions
from docker.types import LogConfig, Ulimit

from contracts import readiness

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
CONTAINER_SOCKET_DIR = "/run/ow"
SOCKET_NAME = "proxy.sock"
ACTION_DIR = "/action"
FALLBACK_CAP_DROP = ["NET_RAW", "NET_ADMIN"]  # OpenWhisk's own flags, used only if dropping ALL breaks the proxy
log = logging.getLogger("invoker.docker")
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    name: str  # unique container name, e.g. "wsk0_<12hex>"
    memory_mb: int = 256
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user_memory_mb: int = 2048  # the invoker's pool size; cpu shares are proportional to memory
    network: str = "none"  # a docker network name, or "none"
    # Where the action's code goes (writable, exec): a blackbox image keeps its own /action (OpenWhisk's skeleton
    # puts /action/exec there), so its proxy writes under /tmp instead.
    action_dir: str = ACTION_DIR


@dataclass
class ActionContainer:
    id: str
    name: str
    socket_path: str
    spec: ContainerSpec
    paused: bool = False


@dataclass(frozen=True)
class HttpResult:
    status: int | None  # None when the connection failed/dropped or timed out
    body: bytes
    elapsed_ms: float
    timed_out: bool = False
    sent: bool = True  # False: the proxy could not be reached, the request never left (the container is gone)


@dataclass(frozen=True)
class LogResult:
    lines: list[str]
    complete: bool  # the sentinel was seen on both stdout and stderr
    truncated: bool


class ProxyClient:
    """HTTP/1.1 to an action proxy over its unix socket, on one kept-alive connection. The proxy protocol is two
    POSTs with JSON bodies, one at a time per container, so this does what a general client does at a fraction
    of the CPU per call (it is the invoker's most frequent I/O)."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, payload: Any, timeout_s: float) -> HttpResult:
        t0 = time.monotonic()
        try:
            status, body = await asyncio.wait_for(self._post(path, orjson.dumps(payload)), timeout_s)
        except TimeoutError:
            self.close()
            return HttpResult(None, b"", (time.monotonic() - t0) * 1000, timed_out=True)
        except NotSent as ex:
            self.close()
            return HttpResult(None, str(ex).encode(), (time.monotonic() - t0) * 1000, sent=False)
        except (OSError, EOFError, ValueError, IndexError) as ex:  # dropped or garbled: the proxy died
            self.close()
            return HttpResult(None, str(ex).encode(), (time.monotonic() - t0) * 1000)
        return HttpResult(status, body, (time.monotonic() - t0) * 1000)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._conn is not None and (self._conn[0].at_eof() or self._conn[1].is_closing()):
            self.close()  # the proxy closed the idle connection: it saw no request on it
        if self._conn is None:
            try:
                self._conn = await asyncio.open_unix_connection(self.socket_path)
            except OSError as e:
                raise NotSent(f"cannot reach the action proxy: {e}") from e
        reader, writer = self._conn
        writer.write(b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n"):
            if not line:
                raise EOFError("connection closed in the headers")
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            data = b""
            while size := int((await reader.readline()).split(b";")[0], 16):
                data += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        elif b"content-length" in headers:
            data = await reader.readexactly(int(headers[b"content-length"]))
        else:  # the body ends with the connection
            data = await reader.read()
            headers[b"connection"] = b"close"
        if headers.get(b"connection") == b"close":
            self.close()
        return status, data

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


class ContainerStartError(RuntimeError):
    pass


class NotSent(OSError):
    """The proxy's socket refused the connection: nothing of the request reached the container."""


class ImageMissing(ContainerStartError):
    """Docker has no such image (no registry is reachable, so it cannot be pulled either)."""


def parse_ts_ns(ts: str) -> int:
    """RFC3339Nano (as docker writes it, trailing zeros trimmed) -> unix ns."""
    m = _TS.match(ts)
    if not m:
        raise ValueError(f"bad docker timestamp {ts!r}")
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = (m.group(2) or "").ljust(9, "0")[:9]
    return secs * 1_000_000_000 + int(frac)


def _frames(raw: bytes) -> list[tuple[str, str, str]]:
    """Split docker's multiplexed log stream into (timestamp, stream, text) lines."""
    out: list[tuple[str, str, str]] = []
    i = 0
    while i + 8 <= len(raw):
        kind, size = raw[i], struct.unpack(">I", raw[i + 4 : i + 8])[0]
        payload = raw[i + 8 : i + 8 + size].decode(errors="replace").rstrip("\n")
        i += 8 + size
        ts, _, text = payload.partition(" ")
        out.append((ts, "stderr" if kind == 2 else "stdout", text))
    return out


def limit_lines(lines: list[str], limit_bytes: int) -> tuple[list[str], bool]:
    """Keep whole lines while they fit in limit_bytes, then OpenWhisk's truncation notice.

    >>> limit_lines(["abc", "def"], 5)
    (['abc', 'Logs were truncated because the total bytes size exceeds the limit of 5 bytes.'], True)
    """
    out: list[str] = []
    size = 0
    for line in lines:
        n = len(line.encode()) + 1
        if size + n > limit_bytes:
            out.append(f"Logs were truncated because the total bytes size exceeds the limit of {limit_bytes} bytes.")
            return out, True
        out.append(line)
        size += n
    return out, False


def engine_unreachable(e: BaseException) -> bool:
    """A docker API call failed because dockerd is not there (stopped or restarting), not because of the container.

    >>> engine_unreachable(requests.exceptions.ConnectionError("Connection aborted.")), engine_unreachable(OSError())
    (True, False)
    """
    return isinstance(e, requests.exceptions.ConnectionError) or (
        isinstance(e, docker.errors.DockerException) and isinstance(e.__context__, requests.exceptions.ConnectionError))


def wait_for_engine(say: Any, every_s: float = 1.0) -> docker.DockerClient:
    """A client of a reachable engine: the invoker starts before dockerd (start in any order) and waits for it."""
    tries = 0
    while True:
        try:
            client = docker.from_env(max_pool_size=32)  # asks the engine for its API version
            client.api.ping()
            readiness.ready()
            return client
        except docker.errors.DockerException as e:
            readiness.waiting("the container engine (dockerd)")
            if tries % 10 == 0:
                say(f"waiting for the container engine (dockerd): {e}")
        time.sleep(every_s)
        tries += 1


class DockerDriver:
    def __init__(
        self,
        socket_root: Path,
        *,
        label_prefix: str = "streamwhisk",
        pids_limit: int = 1024,
        log_max_size: str = "10m",
        read_only_rootfs: bool = True,
    ) -> None:
        self.socket_root = Path(socket_root)
        self.label_prefix = label_prefix
        self.pids_limit = pids_limit
        self.log_max_size = log_max_size
        self.read_only_rootfs = read_only_rootfs
        self.cap_drop = ["ALL"]
        self._client = wait_for_engine(log.warning)
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self._socket = host.removeprefix("unix://") if host.startswith("unix://") else None
        self._api = self._client.api
        self._proxies: dict[str, ProxyClient] = {}
        self._docker_root: str | None = None
        self._log_offsets: dict[str, tuple[int, int]] = {}  # (inode, bytes read) of each container's json-file log
        self._log_paths: dict[str, str] = {}  # container id -> its json-file log, once found

    # ---- lifecycle -------------------------------------------------------------------------------------

    def _host_config(self, spec: ContainerSpec, sock_dir: Path) -> dict[str, Any]:
        return self._api.create_host_config(
            binds={str(sock_dir): {"bind": CONTAINER_SOCKET_DIR, "mode": "rw"}},
            mem_limit=f"{spec.memory_mb}m",
            memswap_limit=f"{spec.memory_mb}m",  # equal to mem_limit: no swap
            cpu_shares=max(1024 * spec.memory_mb // spec.user_memory_mb, 2),
            pids_limit=self.pids_limit,
            cap_drop=self.cap_drop,
            security_opt=["no-new-privileges"],
            ulimits=[Ulimit(name="nofile", soft=1024, hard=1024)],
            network_mode=spec.network,
            read_only=self.read_only_rootfs,
            # What an action writes is memory (tmpfs pages count against its limit): each mount takes at most half,
            # so a full disk is ENOSPC for the writer, not an OOM kill of the action.
            tmpfs={d: f"size={max(spec.memory_mb // 2, 16)}m,mode=1777,exec"
                   for d in ("/tmp", *([] if spec.action_dir.startswith("/tmp/") else [spec.action_dir]))},
            log_config=LogConfig(type="json-file", config={"max-size": self.log_max_size, "max-file": "1"}),
        )

    def _create_and_start(self, spec: ContainerSpec, sock_dir: Path) -> str:
        env = {**spec.env, "OW_PROXY_SOCKET": f"{CONTAINER_SOCKET_DIR}/{SOCKET_NAME}", "OW_ACTION_DIR": spec.action_dir}
        labels = {f"{self.label_prefix}.managed": "true", **spec.labels}
        try:
            created = self._api.create_container(
                spec.image,
                name=spec.name,
                environment=env,
                labels=labels,
                host_config=self._host_config(spec, sock_dir),
            )
        except docker.errors.ImageNotFound as e:
            raise ImageMissing(spec.image) from e
        cid: str = created["Id"]
        self._api.start(cid)
        return cid

    async def start(self, spec: ContainerSpec, ready_timeout_s: float = 10) -> ActionContainer:
        sock_dir = self.socket_root / spec.name
        sock_dir.mkdir(parents=True, exist_ok=True)
        sock_path = sock_dir / SOCKET_NAME
        if len(str(sock_path)) > 100:  # AF_UNIX sun_path limit is 108 bytes
            raise ValueError(f"socket path too long: {sock_path}")
        sock_path.unlink(missing_ok=True)
        try:
            cid = await asyncio.to_thread(self._create_and_start, spec, sock_dir)
        except BaseException:
            shutil.rmtree(sock_dir, ignore_errors=True)
            raise
        c = ActionContainer(id=cid, name=spec.name, socket_path=str(sock_path), spec=spec)
        try:
            await self._wait_ready(c, ready_timeout_s)
        except ContainerStartError:
            await self.remove(c)
            if self.cap_drop != ["ALL"]:
                raise
            self.cap_drop = FALLBACK_CAP_DROP
            try:
                return await self.start(spec, ready_timeout_s)
            except ContainerStartError:
                self.cap_drop = ["ALL"]  # caps were not the problem; keep the strict default
                raise
        except BaseException:
            await self.remove(c)
            raise
        self._proxies[cid] = ProxyClient(c.socket_path)
        return c

    async def _wait_ready(self, c: ActionContainer, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        next_check = time.monotonic() + 0.5
        while True:
            try:
                _, writer = await asyncio.open_unix_connection(c.socket_path)
                writer.close()
                return
            except OSError:
                pass
            now = time.monotonic()
            if now > next_check:  # catch a proxy that died instead of waiting for the full timeout
                next_check = now + 0.5
                state = (await asyncio.to_thread(self._api.inspect_container, c.id))["State"]
                if not state.get("Running"):
                    logs = await asyncio.to_thread(self._api.logs, c.id, tail=20)
                    raise ContainerStartError(
                        f"container {c.name} exited ({state.get('ExitCode')}): {logs.decode(errors='replace')}"
                    )
            if now > deadline:
                raise TimeoutError(f"container {c.name} proxy not ready after {timeout_s}s")
            await asyncio.sleep(0.005)

    async def pause(self, c: ActionContainer) -> None:
        await asyncio.to_thread(self._api.pause, c.id)
        c.paused = True

    async def unpause(self, c: ActionContainer) -> None:
        await asyncio.to_thread(self._api.unpause, c.id)
        c.paused = False

    def _remove_sync(self, cid: str, sock_dir: Path) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._api.remove_container(cid, force=True)
        shutil.rmtree(sock_dir, ignore_errors=True)

    async def remove(self, c: ActionContainer) -> None:
        proxy = self._proxies.pop(c.id, None)
        self._log_offsets.pop(c.id, None)
        self._log_paths.pop(c.id, None)
        if proxy is not None:
            proxy.close()
        await asyncio.to_thread(self._remove_sync, c.id, Path(c.socket_path).parent)

    async def alive_names(self, name_prefix: str) -> set[str]:
        """Names of this invoker's containers the engine still runs (or holds paused)."""
        found = await asyncio.to_thread(self._api.containers, filters={"name": f"^/{re.escape(name_prefix)}"})
        return {c["Names"][0].lstrip("/") for c in found if c.get("State") in ("running", "paused")}

    async def remove_all(self, name_prefix: str) -> int:
        found = await asyncio.to_thread(self._api.containers, all=True, filters={"name": f"^/{re.escape(name_prefix)}"})
        names = {cid["Id"]: cid["Names"][0].lstrip("/") for cid in found}
        names = {k: v for k, v in names.items() if v.startswith(name_prefix)}
        await asyncio.gather(
            *(asyncio.to_thread(self._remove_sync, cid, self.socket_root / n) for cid, n in names.items())
        )
        await asyncio.to_thread(self._remove_stale_dirs, name_prefix)
        return len(names)

    def _remove_stale_dirs(self, name_prefix: str) -> None:
        for d in self.socket_root.glob(f"{name_prefix}*"):  # socket dirs of containers already gone
            shutil.rmtree(d, ignore_errors=True)

    def _engine_up(self) -> bool:
        # A stopping dockerd removes its socket first but still answers on kept-alive connections: look at both.
        if self._socket is not None and not os.path.exists(self._socket):
            return False
        try:
            return bool(self._api.ping())
        except Exception:
            return False

    async def engine_up(self) -> bool:
        return await asyncio.to_thread(self._engine_up)

    async def engine_back(self, timeout_s: float) -> bool:
        """Wait (bounded) for the engine after it went away; True once it answers."""
        deadline = time.monotonic() + timeout_s
        while not await self.engine_up():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.5)
        return True

    async def close(self) -> None:
        for proxy in self._proxies.values():
            proxy.close()
        self._proxies.clear()
        await asyncio.to_thread(self._client.close)

    # ---- proxy protocol --------------------------------------------------------------------------------

    async def _post(self, c: ActionContainer, path: str, payload: dict[str, Any], timeout_s: float) -> HttpResult:
        proxy = self._proxies.get(c.id)
        if proxy is None:
            return HttpResult(None, b"no connection (container removed?)", 0.0, sent=False)
        return await proxy.post(path, payload, timeout_s)

    async def init(self, c: ActionContainer, payload: dict[str, Any], timeout_s: float) -> HttpResult:
        return await self._post(c, "/init", payload, timeout_s)

    async def run(self, c: ActionContainer, payload: dict[str, Any], timeout_s: float) -> HttpResult:
        return await self._post(c, "/run", payload, timeout_s)

    # ---- logs / state ----------------------------------------------------------------------------------

    def _fetch_logs(self, cid: str, since_ns: int) -> bytes:
        params = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "since": f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}",
        }
        # The SDK's logs() merges stdout and stderr; the raw multiplexed stream keeps them apart.
        res = self._api._get(self._api._url("/containers/{0}/logs", cid), params=params)
        self._api._raise_for_status(res)
        return bytes(res.content)

    def _log_file(self, cid: str) -> str | None:
        """Docker's json-file log of the container, when this process can read it (as OpenWhisk's invoker does)."""
        if self._docker_root is None:
            try:
                self._docker_root = str(self._api.info().get("DockerRootDir") or "")
            except docker.errors.APIError:
                self._docker_root = ""
        path = f"{self._docker_root}/containers/{cid}/{cid}-json.log"
        return path if self._docker_root and os.access(path, os.R_OK) else None

    def _read_log_file(self, cid: str, path: str) -> list[tuple[str, str, str]]:
        """New complete lines since the last read: (timestamp, stream, text)."""
        inode, offset = self._log_offsets.get(cid, (0, 0))
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below; absent for a moment while docker rotates it
        except FileNotFoundError:
            return []
        with f:
            st = os.fstat(f.fileno())
            if st.st_ino != inode or offset > st.st_size:
                offset = 0  # a new file: docker rotated it (max-size)
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._log_offsets[cid] = (st.st_ino, offset + end)
        out = []
        for raw in data[:end].splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            out.append((entry["time"], entry["stream"], entry["log"].rstrip("\n")))
        return out

    async def logs(self, c: ActionContainer, since_ns: int, limit_bytes: int, wait_s: float = 2.0) -> LogResult:
        """The activation's log lines since since_ns, read until both sentinels are seen or wait_s passes."""
        got: list[tuple[int, str, str, str]] = []
        seen = {"stdout": False, "stderr": False}
        # One cursor per stream: docker copies stdout and stderr in separate goroutines, so a later stderr line
        # can reach the log before an earlier stdout line; a shared cursor would then skip the stdout line.
        cursors = {"stdout": since_ns - 1, "stderr": since_ns - 1}
        path = self._log_paths.get(c.id)
        if path is None:
            path = await asyncio.to_thread(self._log_file, c.id)
            if path is not None:  # not there yet: look again next time (meanwhile the logs API serves)
                self._log_paths[c.id] = path
        deadline = time.monotonic() + wait_s
        while True:
            start = min(cursors.values())
            if path is not None:
                # The new lines of a local file: read in place (tens of microseconds), cheaper than a thread
                # handoff per poll; the logs API would cost several ms per poll.
                frames = self._read_log_file(c.id, path)
            else:
                frames = _frames(await asyncio.to_thread(self._fetch_logs, c.id, max(start, since_ns)))
            for ts, stream, text in frames:
                ts_ns = parse_ts_ns(ts)
                if ts_ns <= cursors.get(stream, start):
                    continue  # before this activation, or already read in a previous poll
                cursors[stream] = ts_ns
                if SENTINEL in text:
                    seen[stream] = True
                else:
                    got.append((ts_ns, ts, stream, text))
            complete = all(seen.values())
            if complete or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.003 if path is not None else 0.02)
        ordered = sorted(got, key=lambda g: g[0])  # stable: docker may hand the two streams over out of order
        lines, truncated = limit_lines([f"{ts} {stream}: {text}" for _, ts, stream, text in ordered], limit_bytes)
        return LogResult(lines=lines, complete=complete, truncated=truncated)

    async def killed_by_engine(self, c: ActionContainer) -> bool:
        """Whether the engine signalled the container (docker stop or rm -f, or dockerd's own shutdown): meant
        for after a dropped connection, to tell that from the action crashing its proxy."""
        def check() -> bool:
            found = self._api.events(since=0, until=time.time(), filters={"container": c.id, "event": "kill"},
                                     decode=True)
            try:
                return any(True for _ in found)
            finally:
                found.close()

        return await asyncio.to_thread(check)

    async def was_oom_killed(self, c: ActionContainer, wait_s: float = 1.0) -> bool:
        """Meant for after a dropped connection: docker records the OOM event asynchronously, so poll."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                info = await asyncio.to_thread(self._api.inspect_container, c.id)
            except docker.errors.NotFound:
                return False
            if info["State"].get("OOMKilled"):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
