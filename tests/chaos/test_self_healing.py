"""A stack started by `streamwhisk up` (not by the test harness) heals itself.

`up` runs its own Kafka, PouchDB Server, Kafka Connect, the Streamwhisk processes and nginx under supervisord in a
temporary WSK_HOME with ports of its own (the Kafka jars and pouchdb-server of the shared infrastructure are
linked in, so nothing is downloaded). Each part is killed with SIGKILL; it must come back by itself and the stack
must serve again (a blocking invoke through nginx), and `status` must show the restart. A part that keeps crashing
is stopped and reported, and `up` brings it back. `down` must leave no process and no container of the stack.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cli import procs
from cli.supervise import CRASH_LIMIT
from contracts import keys
from contracts.settings import Settings
from tests import upstack as us

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

PARTS = ["api", "streams", "projections", "invoker0", "feeds", "nginx", "connect", "couchdb", "kafka"]
CODE = "def main(a):\n    return {'healed': a.get('n')}\n"
FIGURES: dict[str, tuple[float, float]] = {}


@pytest.fixture(scope="module")
def upstack(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    stack = us.prepare(infra, tmp_path_factory.mktemp("upstack"))
    try:
        us.up(stack)
        yield stack.home, stack.env
    finally:
        problems = stack.down()
        assert not problems, problems


def _invoke_ok(env: dict[str, str], n: int) -> bool:
    url = f"http://127.0.0.1:{env['WSK_NGINX_PORT']}/api/v1/namespaces/_/actions/heal"
    try:
        r = requests.post(url, params={"blocking": "true", "result": "true"}, json={"n": n},
                          auth=tuple(keys.GUEST_KEY.split(":", 1)), timeout=30)  # type: ignore[arg-type]
        return r.status_code == 200 and r.json() == {"healed": n}
    except (requests.RequestException, ValueError):
        return False


_cli, _wait = us.cli, us.wait


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
    lines = status.stdout.splitlines()
    col = lines[0].split().index("RESTARTS")
    rows = {line.split()[0]: line for line in lines[1:] if line.strip()}
    for part in PARTS:
        if part in rows:  # (connect has no row of its own)
            assert "terminated by SIGKILL" in rows[part] and rows[part].split()[col] != "0", rows[part]


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
