"""A stack started by `streamwhisk up` (not by the test harness) heals itself.

`up` runs its own Kafka, PouchDB Server, Kafka Connect, the Streamwhisk processes and nginx under supervisord in a
temporary WSK_HOME with ports of its own (the Kafka jars and pouchdb-server of the shared infrastructure are
linked in, so nothing is downloaded). Each part is killed with SIGKILL; it must come back by itself and the stack
must serve again (a blocking invoke through nginx), and `status` must show the restart. A part that keeps crashing
is stopped and reported, and `up` brings it back. `down` must leave no process and no container of the stack.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cli import procs
from cli.supervise import CRASH_LIMIT
from contracts import keys
from contracts.settings import REPO, Settings

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

PARTS = ["api", "streams", "projections", "invoker0", "feeds", "nginx", "connect", "couchdb", "kafka"]
CODE = "def main(a):\n    return {'healed': a.get('n')}\n"
FIGURES: dict[str, tuple[float, float]] = {}


def _free_ports(n: int) -> list[int]:
    """Ports below the ephemeral range (other tests' free_port() takes those), free now."""
    out: list[int] = []
    while len(out) < n:
        p = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        if p not in out:
            out.append(p)
    return out


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _ours(home: Path) -> list[int]:
    """Live processes of this stack: its home in their command line or in their environment."""
    mark, env_mark = str(home).encode(), f"WSK_HOME={home}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            named = mark in (proc / "cmdline").read_bytes() or env_mark in (proc / "environ").read_bytes().split(b"\0")
            if named and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def upstack(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    home = tmp_path_factory.mktemp("upstack")
    (home / "stamps").mkdir()
    (home / "kafka-libs").symlink_to(infra.home / "kafka-libs")
    (home / "node").symlink_to(infra.home / "node")
    (home / "stamps" / "kafka-libs.sha256").write_text((infra.home / "stamps" / "kafka-libs.sha256").read_text())
    kafka, controller, couch, connect, nginx, api = _free_ports(6)
    prefix = f"h{os.urandom(3).hex()}"
    env = {**os.environ, "WSK_HOME": str(home), "WSK_KAFKA": f"127.0.0.1:{kafka}",
           "WSK_KAFKA_CONTROLLER_PORT": str(controller), "WSK_COUCHDB": f"http://127.0.0.1:{couch}",
           "WSK_CONNECT_PORT": str(connect), "WSK_NGINX_PORT": str(nginx), "WSK_API_PORT": str(api),
           "WSK_PREFIX": prefix, "WSK_INVOKERS": "1", "WSK_STREAMS_WORKERS": "1"}
    up = _cli(env, "up", "--no-images")
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield home, env
    finally:
        down = _cli(env, "down", timeout=300)
        left = _ours(home)
        containers = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^/?{prefix}[0-9]+_"],
                                    capture_output=True, text=True).stdout.split()
        assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
        assert not left, f"left running after down: {left}"
        assert not containers, f"action containers left after down: {containers}"


def _invoke_ok(env: dict[str, str], n: int) -> bool:
    url = f"http://127.0.0.1:{env['WSK_NGINX_PORT']}/api/v1/namespaces/_/actions/heal"
    try:
        r = requests.post(url, params={"blocking": "true", "result": "true"}, json={"n": n},
                          auth=tuple(keys.GUEST_KEY.split(":", 1)), timeout=30)  # type: ignore[arg-type]
        return r.status_code == 200 and r.json() == {"healed": n}
    except (requests.RequestException, ValueError):
        return False


def _wait(what: str, check: object, timeout: float) -> float:
    t0 = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def test_each_part_killed_comes_back_by_itself_and_serves(upstack: tuple[Path, dict[str, str]]) -> None:
    home, env = upstack
    base = f"http://127.0.0.1:{env['WSK_NGINX_PORT']}/api/v1/namespaces/_/actions/heal"
    r = requests.put(base, json={"exec": {"kind": "python:3", "code": CODE}}, params={"overwrite": "true"},
                     auth=tuple(keys.GUEST_KEY.split(":", 1)), timeout=60)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert _wait("first invoke", lambda: _invoke_ok(env, 0), 120) >= 0
    for i, part in enumerate(PARTS, start=1):
        pidf = home / "run" / f"{part}.pid"
        old = procs.read_pid(pidf)
        assert old is not None, f"{part} is not running"
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)
        back = _wait(f"{part} restarted", lambda: procs.read_pid(pidf) not in (None, old), 180)  # noqa: B023
        serving = _wait(f"serving after {part}", lambda: _invoke_ok(env, i), 240)  # noqa: B023
        FIGURES[part] = (back, time.monotonic() - t0)
        del serving
    report = ", ".join(f"{p}: back {b:.1f} s, serving {s:.1f} s" for p, (b, s) in FIGURES.items())
    print(f"\nrecovery after kill -9: {report}")
    # every part healthy again (Kafka Connect's REST comes up last: it rejoins its group after Kafka's restart)
    _wait("status all ok", lambda: _cli(env, "status", timeout=120).returncode == 0, 180)
    status = _cli(env, "status", timeout=120)
    rows = {line.split()[0]: line for line in status.stdout.splitlines()[1:] if line.strip()}
    for part in PARTS:
        if part in rows:  # (connect has no row of its own)
            assert "terminated by SIGKILL" in rows[part] and rows[part].split()[5] != "0", rows[part]


def test_a_part_that_keeps_crashing_is_stopped_and_reported_then_up_restores_it(
        upstack: tuple[Path, dict[str, str]]) -> None:
    home, env = upstack
    pidf = home / "run" / "feeds.pid"
    state = home / "run" / "supervision.json"
    def looping() -> bool:
        return '"crash_loop": "stopped after' in state.read_text()

    for _ in range(CRASH_LIMIT):  # (fewer if the part's crashes of the test above are still in the window)
        _wait("feeds running or given up", lambda: procs.read_pid(pidf) is not None or looping(), 60)
        if looping():
            break
        old = _wait_pid(pidf)
        time.sleep(2.5)  # past startsecs: a crash of a running part, not a failed start
        os.kill(old, signal.SIGKILL)
        _wait("feeds exit seen", lambda: procs.read_pid(pidf) != old, 30)  # noqa: B023
    time.sleep(5)
    assert procs.read_pid(pidf) is None  # no longer restarted
    status = _cli(env, "status", timeout=120)
    assert status.returncode == 1
    assert f"feeds stopped after {CRASH_LIMIT} crashes" in status.stdout, status.stdout
    assert "crash-loop" in next(line for line in status.stdout.splitlines() if line.startswith("feeds"))
    up = _cli(env, "up", "--no-images")
    assert up.returncode == 0, up.stdout[-2000:]
    assert _cli(env, "status", timeout=120).returncode == 0


def _wait_pid(pidf: Path) -> int:
    try:
        _wait(f"{pidf.stem} running", lambda: procs.read_pid(pidf) is not None, 60)
    except AssertionError as e:
        home = pidf.parent.parent
        raise AssertionError(f"{e}\n{procs.tail(home / 'logs' / 'supervisord.log', 30)}\n"
                             f"{(home / 'run' / 'supervision.json').read_text()}") from None
    pid = procs.read_pid(pidf)
    assert pid is not None
    return pid
