"""Machine facts, per-process RSS sampling and py-spy profiles of the stack's processes."""

from __future__ import annotations

import collections
import os
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

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


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process and its children (nginx workers, the JVM is one process)."""
    total = 0
    found = False
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    found = True
        except OSError:
            continue
    return total / 1024 if found else None


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids]


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process (for CPU share per process during a section)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples RSS of the given processes every `every` seconds in a thread until stop()."""

    def __init__(self, pids: dict[str, int], every: float = 1.0) -> None:
        self.pids = pids
        self.every = every
        self.samples: dict[str, list[float]] = collections.defaultdict(list)
        self.cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                v = rss_mb(pid)
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
        for name, pid in self.pids.items():
            vals = self.samples.get(name, [])
            c0, c1 = self.cpu0.get(name), cpu_seconds(pid)
            out[name] = {
                "rss_max_mb": round(max(vals), 1) if vals else 0.0,
                "rss_last_mb": round(vals[-1], 1) if vals else 0.0,
                "cpu_pct": round(100 * (c1 - c0) / wall, 1) if c0 is not None and c1 is not None else 0.0,
                "cpu_s": round(c1 - c0, 2) if c0 is not None and c1 is not None else 0.0,
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
