"""Machine facts, per-process RSS/CPU sampling, container CPU, Kafka message counts and py-spy profiles."""

from __future__ import annotations

import asyncio
import collections
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from contracts import bus
from contracts.settings import Settings

PY_SPY = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy"


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def stack_pids(*settings: Settings) -> dict[str, int]:
    """name -> pid of every live process with a pid file under <home>/run (ours and the shared infra's)."""
    out: dict[str, int] = {}
    for s in settings:
        for f in sorted((s.home / "run").glob("*.pid")):
            try:
                pid = int(f.read_text().split()[0])
            except (ValueError, IndexError):
                continue
            if Path(f"/proc/{pid}").exists():
                out.setdefault(f.stem, pid)
    return out


def stack_procs(*settings: Settings, containers: Collection[str] = ()) -> dict[str, list[int]]:
    """name -> pids: each pid-file process with its children (nginx's workers), then Docker's daemons by name
    (dockerd, containerd; whoever started them) and the containerd shims of the given containers (ids)."""
    docker = docker_pids(set(containers))
    taken = {p for pids in docker.values() for p in pids}
    out = {name: [pid, *(c for c in _children(pid) if c not in taken)]
           for name, pid in stack_pids(*settings).items() if pid not in taken}  # our dockerd.pid: listed below
    return {**out, **docker}


def docker_pids(containers: set[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = collections.defaultdict(list)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if comm in ("dockerd", "containerd"):
            out[comm].append(int(d.name))
        elif comm.startswith("containerd-shim"):  # comm is cut at 15 chars; one shim per container, `-id <id>`
            cid = argv[argv.index("-id") + 1] if "-id" in argv[:-1] else ""
            if cid in containers:
                out["containerd-shim"].append(int(d.name))
    return dict(out)


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process and its children (nginx workers, the JVM is one process)."""
    return _total(_rss_mb, [pid, *_children(pid)])


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids]


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process, all its threads (for CPU share per process during a section)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _total(fn: Callable[[int], float | None], pids: list[int]) -> float | None:
    """Sum of fn over the processes still alive (None when none is)."""
    vals = [v for v in map(fn, pids) if v is not None]
    return sum(vals) if vals else None


def container_cpu(name_prefix: str) -> dict[str, float]:
    """Container id -> CPU seconds so far (cgroup usage) of the running containers named <name_prefix><n>_*."""
    ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"name=^/?{name_prefix}[0-9]+_"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    return {cid: v for cid in ids if (v := _cgroup_cpu(cid)) is not None}


def _cgroup_cpu(cid: str) -> float | None:
    """CPU seconds of a container's cgroup: cgroup v1 (cpuacct.usage, ns) or v2 (cpu.stat usage_usec)."""
    cg = Path("/sys/fs/cgroup")
    for pattern in (f"*/docker/{cid}/cpuacct.usage", f"*/*/docker-{cid}.scope/cpuacct.usage",
                    f"docker/{cid}/cpu.stat", f"*/docker-{cid}.scope/cpu.stat"):
        for f in cg.glob(pattern):
            try:
                text = f.read_text()
            except OSError:  # the container went away
                return None
            if f.name == "cpuacct.usage":
                return int(text) / 1e9
            return int(text.split("usage_usec")[1].split()[0]) / 1e6
    return None


def topic_offsets(settings: Settings) -> dict[str, int]:
    """Topic -> messages so far (end offsets summed over partitions) of every topic of this stack: <prefix>.<name>
    and Faust's changelog/internal topics <prefix>-streams-..."""
    return asyncio.run(_topic_offsets(settings.kafka, settings.prefix))


async def _topic_offsets(bootstrap: str, prefix: str) -> dict[str, int]:
    c = bus.consumer(bootstrap, group=None)
    await c.start()
    try:
        cluster = await c._client.fetch_all_metadata()
        tps = [TopicPartition(t, p) for t in cluster.topics() if t.startswith((f"{prefix}.", f"{prefix}-"))
               for p in cluster.partitions_for_topic(t) or ()]
        out: dict[str, int] = collections.defaultdict(int)
        for tp, end in (await c.end_offsets(tps)).items():
            out[tp.topic] += end
        return dict(out)
    finally:
        await c.stop()


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """after - before per key (keys new in `after` start at 0; gone ones are dropped)."""
    return {k: v - before.get(k, 0) for k, v in after.items()}


class RssSampler:
    """Samples RSS of the given processes every `every` seconds in a thread until stop()."""

    def __init__(self, pids: dict[str, list[int]], every: float = 1.0) -> None:
        self.pids = pids
        self.every = every
        self.samples: dict[str, list[float]] = collections.defaultdict(list)
        self.cpu0 = {pid: cpu_seconds(pid) for group in pids.values() for pid in group}
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pids in self.pids.items():
                v = _total(_rss_mb, pids)
                if v is not None:
                    self.samples[name].append(v)
            self._stop.wait(self.every)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._thread.join(5)
        wall = time.monotonic() - self.t0
        out: dict[str, dict[str, float]] = {}
        for name, pids in self.pids.items():
            vals = self.samples.get(name, [])
            # per process, of those alive at both ends (a process gone meanwhile takes its CPU with it)
            cpu = sum(c1 - c0 for pid in pids
                      if (c0 := self.cpu0.get(pid)) is not None and (c1 := cpu_seconds(pid)) is not None)
            out[name] = {
                "rss_max_mb": round(max(vals), 1) if vals else 0.0,
                "rss_last_mb": round(vals[-1], 1) if vals else 0.0,
                "cpu_pct": round(100 * cpu / wall, 1),
                "cpu_s": round(cpu, 2),
            }
        return out


class Profiler:
    """py-spy record (raw collapsed stacks) of some processes for a bounded time, in the background."""

    def __init__(self, out_dir: Path, tag: str, pids: dict[str, int], seconds: int) -> None:
        self.procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        exe = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
        if exe is None:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            path = out_dir / f"{tag}-{name}.txt"
            cmd = [exe, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw", "-o", str(path),
                   "--nonblocking"]
            self.procs.append((name, path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))

    def wait(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, path, p in self.procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
            if path.exists():
                out[name] = {"file": str(path), **top_frames(path.read_text())}
        return out


def top_frames(collapsed: str, n: int = 12) -> dict[str, Any]:
    """Busy samples and the functions with the most inclusive samples (py-spy skips idle threads)."""
    total = 0
    incl: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for f in stack.split(";")]
        for f in set(frames):
            incl[f] += c
        own[frames[-1]] += c
    return {
        "samples": total,
        "inclusive": [(f, round(100 * c / total, 1)) for f, c in incl.most_common(n * 3)] if total else [],
        "self": [(f, round(100 * c / total, 1)) for f, c in own.most_common(n)] if total else [],
    }
