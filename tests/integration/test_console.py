"""The web console (/console/) in a real browser: Debian's chromium, headless, driven through playwright-core
(tests/clients/console.js) against the stack through nginx.

With WSK_SCREENSHOTS=docs/console a screenshot of each page is written there (1200x800), for docs/console.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from api.console import LiveHub
from cli.services import settings_env
from contracts import keys
from contracts.events import now_ms
from contracts.settings import REPO
from contracts.topics import Topics
from projections import catalog
from projections.audit import iso
from projections.couch import Couch
from tests.stack import CLIENTS, Client, Stack

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("WSK_CHROMIUM", "/usr/bin/chromium")
HELLO = ("def main(args):\n"
         "    print('hello log line for', args.get('name', 'world'))\n"
         "    return {'greeting': 'Hello ' + args.get('name', 'world')}\n")
DOC = "def main(args):\n    return {'v': %d}\n"
BOOM = "def main(args):\n    raise ValueError('boom')\n"


class Browser:
    """One chromium page behind tests/clients/console.js: `call(op, ...)` runs a step and returns its value."""

    def __init__(self, base: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BASE": base, "CHROMIUM": CHROMIUM,
               "HOME": os.environ.get("HOME", "/root")}
        self.proc = subprocess.Popen(["node", str(CLIENTS / "console.js")], cwd=CLIENTS, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def call(self, op: str, **kw: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"browser driver ended: {self.proc.stderr.read()[-2000:] if self.proc.stderr else ''}")
        out: dict[str, Any] = json.loads(line)
        if not out["ok"]:
            raise AssertionError(f"{op} {kw}: {out['error']}")
        return out.get("value")

    def login(self, key: str) -> str:
        self.call("goto", url="/console/login")
        self.call("fill", selector="#key", value=key)
        url: str = self.call("submit", selector="#login button", until="**/console/live")
        return url

    def shot(self, name: str) -> None:
        where = os.environ.get("WSK_SCREENSHOTS")
        if where:
            out = (REPO / where / f"{name}.png") if not Path(where).is_absolute() else Path(where) / f"{name}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            self.call("screenshot", path=str(out))

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.write(json.dumps({"op": "close"}) + "\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() or shutil.which("node") is None:
        pytest.fail(f"{CHROMIUM} and node are needed (Debian: apt-get install chromium nodejs npm)")
    if not (CLIENTS / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "install", "--prefix", str(CLIENTS), "--no-audit", "--no-fund"], check=True,
                       capture_output=True, timeout=300)
    b = Browser(stack.url)
    yield b
    b.close()


@pytest.fixture(scope="module")
def user(stack: Stack) -> tuple[str, Client]:
    key = stack.subject("console-ann")
    return key, stack.client(key)


def invoke(c: Client, action: str, **params: Any) -> dict[str, Any]:
    r = c.post(f"actions/{action}", params, blocking=True)
    assert r.status_code == 200, r.text
    rec: dict[str, Any] = r.json()
    return rec


def test_pages_are_served_with_a_csp_and_no_key(stack: Stack) -> None:
    r = requests.get(f"{stack.url}/console/live", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script src=" in r.text and "<script>" not in r.text  # no inline script
    bad = requests.get(f"{stack.url}/console/api/whoami", auth=("nobody", "wrong"), timeout=10)
    assert bad.status_code == 401 and "WWW-Authenticate" not in bad.headers  # no browser password dialog
    assert requests.get(f"{stack.url}/console/api/whoami", timeout=10).status_code == 401


def test_login_help_and_a_bad_key_get_the_401_view(stack: Stack, browser: Browser) -> None:
    browser.call("goto", url="/console/login")
    browser.call("click", selector="#help summary")
    assert "streamwhisk up" in browser.call("text", selector="#help")
    browser.shot("login")
    uid = keys.split(keys.GUEST_KEY)[0]
    browser.call("fill", selector="#key", value=f"{uid}:not-the-key")
    browser.call("click", selector="#login button")
    browser.call("wait", selector="#unauthorized")
    assert "401" in browser.call("text", selector="#unauthorized")
    assert browser.call("url").endswith("/console/login")
    assert browser.call("eval", js="sessionStorage.length") == 0
    browser.shot("unauthorized")
    # a key that stops working mid-session (here: replaced by a bad one) gets the same view on any page
    browser.call("eval", js=f"sessionStorage.setItem('streamwhisk.key', '{uid}:not-the-key')")
    browser.call("goto", url="/console/live")
    browser.call("wait", selector="#unauthorized")


def test_live_list_receives_a_new_activation_without_reload(browser: Browser, user: tuple[str, Client]) -> None:
    key, c = user
    assert browser.login(key).endswith("/console/live")
    # the key lives in this tab's sessionStorage only: not in localStorage, not in a cookie
    assert browser.call("eval", js="sessionStorage.getItem('streamwhisk.key')") == key
    assert browser.call("eval", js="[localStorage.length, document.cookie]") == [0, ""]
    browser.call("wait", selector="#live-state.connected")
    browser.call("eval", js="window.__notReloaded = true")
    assert c.put("actions/hello", {"exec": {"kind": "python:3", "code": HELLO}}).status_code == 200
    first = invoke(c, "hello", name="Ann")
    second = c.post("actions/hello", {"name": "Bob"})  # non-blocking: shows up when it completes
    assert second.status_code == 202
    assert c.put("actions/boom", {"exec": {"kind": "python:3", "code": BOOM}}).status_code == 200
    third = c.post("actions/boom", {}, blocking=True)
    assert third.status_code == 502, third.text  # an application error
    for aid in (first["activationId"], second.json()["activationId"], third.json()["activationId"]):
        browser.call("wait", selector=f'#live tbody tr[data-id="{aid}"]', timeout=30000)
    row = browser.call("text", selector=f'#live tbody tr.ok[data-id="{first["activationId"]}"]')
    assert "console-ann/hello" in row and "success" in row
    row = browser.call("text", selector=f'#live tbody tr.err[data-id="{third.json()["activationId"]}"]')
    assert "console-ann/boom" in row and "application error" in row
    assert browser.call("eval", js="window.__notReloaded === true")
    assert browser.call("text", selector="#who") == "console-ann"
    browser.shot("live")
    # a new page asks for the last ones from the log: both are there again
    browser.call("goto", url="/console/live")
    browser.call("wait", selector=f'#live tbody tr[data-id="{first["activationId"]}"]', timeout=15000)
    assert browser.call("problems") == []


def test_activation_page_shows_result_logs_and_timing(browser: Browser, user: tuple[str, Client]) -> None:
    _, c = user
    rec = invoke(c, "hello", name="Carol")
    browser.call("goto", url=f"/console/activation?id={rec['activationId']}")
    browser.call("wait", selector="#result")
    assert json.loads(browser.call("text", selector="#result")) == {"greeting": "Hello Carol"}
    assert "hello log line for Carol" in browser.call("text", selector="#logs")
    timing = browser.call("text", selector="#timing")
    assert "success" in timing and "ms" in timing and "console-ann/hello" in timing
    assert "waitTime" in browser.call("text", selector="#annotations")
    browser.shot("activation")


def test_action_page_charts_every_recent_activation(browser: Browser, user: tuple[str, Client]) -> None:
    _, c = user
    assert c.put("actions/chart", {"exec": {"kind": "python:3", "code": HELLO}}).status_code == 200
    for i in range(6):
        invoke(c, "chart", name=f"n{i}")
    deadline = time.monotonic() + 30
    docs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # the activations view is a projection: wait until it has all six
        docs = c.get("activations", name="chart", docs=True, limit=50).json()
        if len(docs) == 6:
            break
        time.sleep(0.3)
    assert len(docs) == 6
    colds = sum(1 for d in docs if any(a["key"] == "initTime" for a in d["annotations"]))
    assert colds >= 1  # the first one started a container
    browser.call("goto", url="/console/action?name=chart&limit=50")
    browser.call("wait", selector="svg.latency")
    for series in ("duration", "waitTime", "initTime"):
        assert browser.call("count", selector=f'svg.latency circle.pt[data-series="{series}"]') == 6
    assert browser.call("count", selector="svg.coldstarts rect.bar") == 6
    assert browser.call("count", selector="svg.coldstarts rect.bar.cold") == colds
    assert browser.call("text", selector="#n-points") == "6"
    assert browser.call("text", selector="#n-cold") == str(colds)
    browser.shot("action")
    browser.call("goto", url="/console/action")  # no name: the namespace's actions
    browser.call("waitText", selector="ul.actions a", text="chart")


def test_audit_page_shows_the_state_as_of_a_time(browser: Browser, user: tuple[str, Client], stack: Stack) -> None:
    _, c = user
    before = now_ms()
    time.sleep(0.05)
    assert c.put("actions/doc", {"exec": {"kind": "python:3", "code": DOC % 1}}).status_code == 200
    time.sleep(0.05)
    v1 = now_ms()
    time.sleep(0.05)
    assert c.put("actions/doc", {"exec": {"kind": "python:3", "code": DOC % 2}}, overwrite=True).status_code == 200
    time.sleep(0.05)
    v2 = now_ms()
    for at, expect in ((v1, "{'v': 1}"), (v2, "{'v': 2}")):
        browser.call("goto", url=f"/console/audit?entity=console-ann/doc&as_of={iso(at)}")
        browser.call("wait", selector="#state", timeout=30000)
        state = browser.call("text", selector="#state")
        assert expect in state and '"version"' in state
        assert browser.call("eval", js="document.querySelector('input[name=as_of]').value") == iso(at)
    trail = browser.call("texts", selector="table.trail tbody tr")
    puts = [t for t in trail if "put" in t and "entity" in t]
    assert len(puts) == 2, trail
    browser.shot("audit")
    browser.call("goto", url=f"/console/audit?entity=console-ann/doc&as_of={before}")
    browser.call("wait", selector="#state.absent", timeout=30000)
    assert "did not exist" in browser.call("text", selector="#state")
    # another namespace's entity: refused for a user key (the operator key may read it)
    browser.call("goto", url="/console/audit?entity=guest/anything")
    browser.call("wait", selector="#failed")
    assert "403" in browser.call("text", selector="#failed")
    r = requests.get(f"{stack.url}/console/api/audit", params={"entity": "console-ann/doc", "as_of": str(v1)},
                     auth=keys.split(keys.SYSTEM_KEY), timeout=60)
    assert r.status_code == 200 and "{'v': 1}" in r.json()["doc"]["exec"]["code"]


def test_replay_page_for_the_operator(browser: Browser, user: tuple[str, Client], stack: Stack) -> None:
    browser.call("goto", url="/console/replay")  # a user key: not the operator
    browser.call("wait", selector="#failed")
    assert "403" in browser.call("text", selector="#failed")
    # a replay that builds a generation beside the live one (no switch) is what the page then shows
    p = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--no-switch", "--json"],
                       env=settings_env(stack.settings), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    gen = out["generation"]
    assert browser.login(keys.SYSTEM_KEY).endswith("/console/live")
    browser.call("goto", url="/console/replay")
    browser.call("wait", selector="#live-gen")
    assert browser.call("text", selector="#who") == "whisk.system (operator)"
    # first the replay's own progress events (the replays topic): this run, newest first, done
    run = browser.call("texts", selector="table.runs tbody tr:first-child td")
    assert run[0] == str(gen) and run[1] == "done" and "100%" in run[2], run
    assert run[3] == f"{out['events']:,}/{out['total']:,}" and "--no-switch" in run[8], run
    live = int(browser.call("text", selector="#live-gen"))
    assert gen > live
    building = browser.call("text", selector="li.building")
    assert f"generation {gen}" in building and "%" in building
    rows = [browser.call("texts", selector=f"table.topics tbody tr:nth-child({i}) td") for i in (1, 2, 3)]
    assert {r[0] for r in rows} == {f"{stack.settings.prefix}.{t}" for t in ("subjects", "entities", "completions")}
    for _, end, projected, behind, *_ in rows:  # the live projector's position, from its progress events
        assert 0 < int(projected.replace(",", "")) <= int(end.replace(",", ""))
        assert int(behind.replace(",", "")) == int(end.replace(",", "")) - int(projected.replace(",", ""))
    browser.shot("replay")
    assert browser.call("problems") == []
    couch = Couch(stack.settings.couchdb)  # other tests count generations: leave none behind
    for db in catalog.names(stack.settings, gen).values():
        couch.delete_db(db)


async def test_one_consumer_per_process_only_while_someone_watches(stack: Stack, user: tuple[str, Client]) -> None:
    """The live list's hub against the real completions topic: each stream gets only its namespace's
    completions, and the shared consumer goes away with the last stream."""
    import asyncio

    hub = LiveHub(stack.settings.kafka, Topics(stack.settings.prefix).completions)
    ann, other = await hub.subscribe("console-ann"), await hub.subscribe("nobody-here")
    try:
        consumer = hub._consumer
        assert consumer is not None and hub._consumer is consumer  # one for both
        made = await asyncio.to_thread(user[1].put, "actions/hub", {"exec": {"kind": "python:3", "code": HELLO}},
                                       overwrite=True)
        assert made.status_code == 200
        rec = await asyncio.to_thread(invoke, user[1], "hub", name="Hub")
        _, _, got = await asyncio.wait_for(ann.queue.get(), 30)
        assert got["activation_id"] == rec["activationId"] and other.queue.empty()
        await hub.unsubscribe(ann)
        assert hub._consumer is consumer
        await hub.unsubscribe(other)
        assert hub._consumer is None and hub._task is None
    finally:
        await hub.close()
