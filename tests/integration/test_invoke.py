"""Invocation end to end on real Kafka, CouchDB and Docker: status codes, limits, logs, params, runtimes, throttles."""

from __future__ import annotations

import base64
import io
import re
import threading
import time
import uuid
import zipfile
from typing import Any

import pytest
import requests

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr): (.*)$")
ECHO = "def main(args):\n    return args\n"


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    """A namespace of its own, with throttles out of the way."""
    key = stack.subject(f"inv{uuid.uuid4().hex[:6]}", limits={"invocationsPerMinute": 10000,
                                                              "concurrentInvocations": 100})
    return stack.client(key)


def put(c: Client, name: str, code: str, kind: str = "python:3", **extra: Any) -> dict[str, Any]:
    r = c.put(f"actions/{name}", {"exec": {"kind": kind, "code": code}, **extra}, overwrite=True)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def ann(rec: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in rec["annotations"]}


def record(c: Client, aid: str, wait_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        r = c.get(f"activations/{aid}")
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            doc: dict[str, Any] = r.json()
            return doc
        time.sleep(0.2)


# --- status codes ---------------------------------------------------------------------------------------


def test_success_result_only_and_array(c: Client) -> None:
    put(c, "echo", ECHO)
    r = c.post("actions/echo", {"a": 1}, blocking=True, result=True)
    assert r.status_code == 200 and r.json() == {"a": 1}
    assert len(r.headers["x-openwhisk-activation-id"]) == 32
    put(c, "arr", "def main(a):\n    return [1, 2, a.get('x')]\n")
    r = c.post("actions/arr", {"x": 3}, blocking=True)
    assert r.status_code == 200 and r.json()["response"]["result"] == [1, 2, 3]
    assert r.json()["logs"] == []  # the blocking answer comes before the logs are collected
    assert c.post("actions/arr", {"x": 3}, blocking=True, result=True).json() == [1, 2, 3]


def test_application_error_is_502_with_error_only(c: Client) -> None:
    put(c, "apperr", "def main(a):\n    return {'error': 'boom', 'other': 1}\n")
    r = c.post("actions/apperr", {}, blocking=True)
    assert r.status_code == 502, r.text
    resp = r.json()["response"]
    assert resp["status"] == "application error" and resp["success"] is False
    assert resp["result"] == {"error": "boom"}
    assert c.post("actions/apperr", {}, blocking=True, result=True).json() == {"error": "boom"}
    # Python (ActionLoop) semantics: an uncaught exception is an application error too.
    put(c, "raises", "def main(a):\n    raise ValueError('nope')\n")
    r = c.post("actions/raises", {}, blocking=True)
    assert r.status_code == 502 and r.json()["response"]["status"] == "application error"
    assert r.json()["response"]["result"] == {"error": "nope"}


@pytest.mark.parametrize(("code", "message"), [
    ("def main(a):\n    return 42\n", "The action did not return a dictionary or array."),
    ("def main(a):\n    import os\n    os._exit(3)\n",
     "The action did not produce a valid response and exited unexpectedly."),
    ("def main(a) oops\n", "The action failed to generate or locate a binary. See logs for details."),
    ("x = 1\n", "Cannot start action. Check logs for details."),  # no main
])
def test_developer_errors_are_502(c: Client, code: str, message: str) -> None:
    name = f"dev{uuid.uuid4().hex[:6]}"
    put(c, name, code)
    r = c.post(f"actions/{name}", {}, blocking=True)
    assert r.status_code == 502, r.text
    resp = r.json()["response"]
    assert resp["status"] == "action developer error" and resp["success"] is False
    assert set(resp["result"]) == {"error"}
    assert message in resp["result"]["error"]
    summary = [s for s in c.get("activations", name=name).json()]
    deadline = time.monotonic() + 10
    while not summary and time.monotonic() < deadline:
        time.sleep(0.2)
        summary = c.get("activations", name=name).json()
    assert summary[0]["statusCode"] == 2


def test_blackbox_image_missing_is_developer_error(c: Client) -> None:
    r = c.put("actions/nobox", {"exec": {"kind": "blackbox", "image": "streamwhisk/no-such-image:1"}},
              overwrite=True)
    assert r.status_code == 200, r.text
    r = c.post("actions/nobox", {}, blocking=True)
    assert r.status_code == 502, r.text
    assert r.json()["response"]["result"] == {"error": "Failed to pull container image 'streamwhisk/no-such-image:1'."}


def test_non_blocking_is_202_at_once(c: Client) -> None:
    put(c, "sleepy", "import time\ndef main(a):\n    time.sleep(a.get('s', 3))\n    return {'slept': a.get('s', 3)}\n")
    t0 = time.monotonic()
    r = c.post("actions/sleepy", {"s": 2})
    assert r.status_code == 202 and set(r.json()) == {"activationId"}, r.text
    assert time.monotonic() - t0 < 1.5
    assert r.headers["x-openwhisk-activation-id"] == r.json()["activationId"]
    assert record(c, r.json()["activationId"])["response"]["result"] == {"slept": 2}


def test_blocking_wait_times_out_into_202(c: Client) -> None:
    put(c, "sleepy", "import time\ndef main(a):\n    time.sleep(a.get('s', 3))\n    return {'slept': a.get('s', 3)}\n")
    t0 = time.monotonic()
    r = c.post("actions/sleepy", {"s": 3}, blocking=True, timeout=1000)
    took = time.monotonic() - t0
    assert r.status_code == 202 and set(r.json()) == {"activationId"}, r.text
    assert 0.9 < took < 2.5, took
    rec = record(c, r.json()["activationId"])  # it carried on and was stored
    assert rec["response"]["result"] == {"slept": 3}
    for bad in ("0", "60001", "x"):
        r = c.post("actions/sleepy", {}, blocking=True, timeout=bad)
        assert r.status_code == 400 and r.json()["error"] == "Timeout must be number of milliseconds up to 60000."


# --- limits ---------------------------------------------------------------------------------------------


def test_action_timeout_destroys_the_container(c: Client) -> None:
    code = ("import socket, time\n"
            "def main(a):\n    time.sleep(a.get('s', 0))\n    return {'host': socket.gethostname()}\n")
    put(c, "slow", code, limits={"timeout": 1000})
    first = c.post("actions/slow", {}, blocking=True, result=True).json()["host"]
    t0 = time.monotonic()
    r = c.post("actions/slow", {"s": 5}, blocking=True)
    assert 0.9 < time.monotonic() - t0 < 4
    assert r.status_code == 502, r.text
    rec = r.json()
    assert rec["response"]["result"] == {"error": "The action exceeded its time limits of 1000 milliseconds."}
    assert rec["response"]["status"] == "action developer error"
    assert ann(rec)["timeout"] is True
    after = c.post("actions/slow", {}, blocking=True)
    assert ann(after.json()).get("initTime") is not None  # a cold start: the timed-out container is gone
    assert after.json()["response"]["result"]["host"] != first
    assert _container_gone(first)


def _container_gone(host: str, wait_s: float = 10) -> bool:
    import docker
    import docker.errors

    client = docker.from_env()
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                client.containers.get(host)
            except docker.errors.NotFound:
                return True
            time.sleep(0.2)
        return False
    finally:
        client.close()


def test_memory_limit_kills_the_action(c: Client) -> None:
    code = "def main(a):\n    blocks = [bytearray(50 * 1024 * 1024) for _ in range(6)]\n    return {'n': len(blocks)}\n"
    put(c, "hog", code, limits={"memory": 128})
    r = c.post("actions/hog", {}, blocking=True)
    assert r.status_code == 502, r.text
    assert r.json()["response"]["result"] == {"error": "The action exhausted its memory and was aborted."}
    assert r.json()["response"]["status"] == "action developer error"


def test_result_over_1mb_is_truncated_application_error(c: Client) -> None:
    put(c, "big", "def main(a):\n    return {'x': 'y' * 1100000}\n")
    r = c.post("actions/big", {}, blocking=True)
    assert r.status_code == 502, r.text
    resp = r.json()["response"]
    assert resp["status"] == "application error"
    msg = resp["result"]["error"]
    m = re.match(r"The action produced a response that exceeded the allowed length: (\d+) > 1048576 bytes\. "
                 r"The truncated response was: (.*)$", msg, re.S)
    assert m, msg[:200]
    assert int(m.group(1)) >= 1100000 and m.group(2).startswith('{"x":')
    assert len(m.group(2)) <= 1048576


# --- logs -----------------------------------------------------------------------------------------------


def test_logs_format_and_sentinel(c: Client) -> None:
    code = ("import sys\n"
            "def main(a):\n    print('out line')\n    print('err line', file=sys.stderr)\n    return {}\n")
    put(c, "logger", code)
    aid = c.post("actions/logger", {}, blocking=True).json()["activationId"]
    logs = c.get(f"activations/{aid}/logs").json()["logs"]
    # Docker timestamps each stream in its own goroutine, so the order across streams is not guaranteed.
    got = sorted(m.group(2, 3) for m in map(LINE.match, logs) if m)
    assert got == [("stderr", "err line"), ("stdout", "out line")]
    assert all(LINE.match(x) for x in logs) and not any("XXX_THE_END" in x for x in logs)


def test_log_limit_truncates(c: Client) -> None:
    code = "def main(a):\n    for i in range(1500):\n        print(str(i).rjust(999, '.'))\n    return {}\n"
    put(c, "chatty", code, limits={"logs": 1})
    aid = c.post("actions/chatty", {}, blocking=True).json()["activationId"]
    logs = record(c, aid)["logs"]
    assert logs[-1] == "Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes."
    assert 900 < len(logs) < 1100
    assert sum(len(x) + 1 for x in logs[:-1]) <= 1048576


# --- parameters and environment -------------------------------------------------------------------------


def test_parameter_merge_package_binding_action_payload(c: Client) -> None:
    pkg = f"pkg{uuid.uuid4().hex[:6]}"
    p = lambda **kv: [{"key": k, "value": v} for k, v in kv.items()]  # noqa: E731
    r = c.put(f"packages/{pkg}", {"parameters": p(a="pkg", b="pkg", c="pkg", d="pkg")})
    assert r.status_code == 200, r.text
    r = c.put(f"actions/{pkg}/echo", {"exec": {"kind": "python:3", "code": ECHO}, "parameters": p(c="act", d="act")})
    assert r.status_code == 200, r.text
    r = c.post(f"actions/{pkg}/echo", {"d": "payload"}, blocking=True, result=True)
    assert r.json() == {"a": "pkg", "b": "pkg", "c": "act", "d": "payload"}, r.text

    rec = c.post(f"actions/{pkg}/echo", {}, blocking=True).json()
    own = rec["namespace"]
    r = c.put(f"packages/{pkg}b", {"binding": {"namespace": own, "name": pkg}, "parameters": p(b="bind", c="bind",
                                                                                             d="bind")})
    assert r.status_code == 200, r.text
    r = c.post(f"actions/{pkg}b/echo", {"d": "payload"}, blocking=True)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"] == {"a": "pkg", "b": "bind", "c": "act", "d": "payload"}
    a = ann(r.json())
    assert a["binding"] == f"{own}/{pkg}b" and a["path"] == f"{own}/{pkg}/echo"


def test_final_annotation_protects_defined_params(c: Client) -> None:
    put(c, "fin", ECHO, parameters=[{"key": "a", "value": 1}], annotations=[{"key": "final", "value": True}])
    r = c.post("actions/fin", {"a": 2}, blocking=True)
    assert r.status_code == 400
    assert r.json()["error"] == "Request defines parameters that are not allowed (e.g., reserved properties)."
    assert c.post("actions/fin", {"b": 2}, blocking=True, result=True).json() == {"a": 1, "b": 2}


def test_init_params_and_ow_environment(c: Client) -> None:
    code = ("import os\n"
            "def main(a):\n"
            "    env = {k: v for k, v in os.environ.items() if k.startswith('__OW_') or k == 'SECRET'}\n"
            "    return {'args': a, 'env': env}\n")
    doc = put(c, "envy", code, parameters=[{"key": "SECRET", "value": "s3", "init": True},
                                           {"key": "plain", "value": 1}])
    t0 = int(time.time() * 1000)
    r = c.post("actions/envy", {"x": 1}, blocking=True)
    assert r.status_code == 200, r.text
    rec = r.json()
    out, ns = rec["response"]["result"], rec["namespace"]
    assert out["args"] == {"plain": 1, "x": 1}  # init params go to /init, not /run
    env = out["env"]
    assert env["SECRET"] == "s3"
    assert env["__OW_NAMESPACE"] == ns and env["__OW_ACTION_NAME"] == f"/{ns}/envy"
    assert env["__OW_ACTIVATION_ID"] == rec["activationId"] and env["__OW_ACTION_VERSION"] == doc["version"]
    assert t0 < int(env["__OW_DEADLINE"]) <= t0 + 60000 + 5000
    assert env["__OW_TRANSACTION_ID"] == r.headers["X-Request-ID"]
    assert "__OW_API_KEY" not in env  # keys never travel through Kafka (see invoker docs)


# --- runtimes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["python", "python:default", "python:3"])
def test_python_kind_aliases(c: Client, kind: str) -> None:
    name = f"k{uuid.uuid4().hex[:6]}"
    assert put(c, name, ECHO, kind=kind)["exec"]["kind"] == "python:3"
    assert c.post(f"actions/{name}", {"k": kind}, blocking=True, result=True).json() == {"k": kind}


def test_zip_action(c: Client) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "from helper import twice\ndef main(a):\n    return {'v': twice(a['v'])}\n")
        zf.writestr("helper.py", "def twice(x):\n    return 2 * x\n")
    code = base64.b64encode(buf.getvalue()).decode()
    doc = put(c, "zipped", code)
    assert doc["exec"]["binary"] is True
    assert c.post("actions/zipped", {"v": 21}, blocking=True, result=True).json() == {"v": 42}


NODE_OK = "function main(args) { return {hello: args.name, node: process.version}; }"


def test_nodejs_actions(c: Client) -> None:
    doc = put(c, "js", NODE_OK, kind="nodejs:default")
    kind = doc["exec"]["kind"]
    assert kind.startswith("nodejs:")
    r = c.post("actions/js", {"name": "n"}, blocking=True)
    assert r.status_code == 200, r.text
    out = r.json()["response"]["result"]
    assert out["hello"] == "n" and out["node"].startswith(f"v{kind.split(':')[1]}.")
    put(c, "jspromise", "function main(a) { return new Promise(r => setTimeout(() => r({late: true}), 50)); }",
        kind=kind)
    assert c.post("actions/jspromise", {}, blocking=True, result=True).json() == {"late": True}
    put(c, "jsreject", "function main(a) { return Promise.reject({error: 'rejected'}); }", kind=kind)
    r = c.post("actions/jsreject", {}, blocking=True)
    assert r.status_code == 502 and r.json()["response"]["status"] == "application error"
    assert r.json()["response"]["result"] == {"error": {"error": "rejected"}}  # runner.js: {error: serializeError(e)}
    put(c, "jsthrow", "function main(a) { throw new Error('kaput'); }", kind=kind)
    r = c.post("actions/jsthrow", {}, blocking=True)
    assert r.status_code == 502 and r.json()["response"]["status"] == "action developer error"
    assert r.json()["response"]["result"]["error"].startswith("An error has occurred: Error: kaput")
    put(c, "jsscalar", "function main(a) { return 7; }", kind=kind)
    r = c.post("actions/jsscalar", {}, blocking=True)
    assert r.json()["response"]["result"] == {"error": "The action did not return a dictionary."}
    put(c, "jslog", "function main(a) { console.log('js says hi'); console.error('js err'); return {}; }",
        kind=kind)
    aid = c.post("actions/jslog", {}, blocking=True).json()["activationId"]
    logs = record(c, aid)["logs"]
    # Docker timestamps each stream in its own goroutine, so the order across streams is not guaranteed.
    assert sorted(x.split(" ", 1)[1] for x in logs) == ["stderr: js err", "stdout: js says hi"]


def test_nodejs_zip_with_package_json(c: Client) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("package.json", '{"name": "z", "main": "lib.js"}')
        zf.writestr("lib.js", "exports.main = function (a) { return {sum: a.x + a.y}; };")
    put(c, "jszip", base64.b64encode(buf.getvalue()).decode(), kind="nodejs:default")
    assert c.post("actions/jszip", {"x": 2, "y": 3}, blocking=True, result=True).json() == {"sum": 5}


def test_blackbox_local_image(c: Client) -> None:
    from runtimes.build import BLACKBOX_TEST_IMAGE

    r = c.put("actions/box", {"exec": {"kind": "blackbox", "image": BLACKBOX_TEST_IMAGE}}, overwrite=True)
    assert r.status_code == 200, r.text
    r = c.post("actions/box", {"who": "box"}, blocking=True)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["result"] == {"blackbox": True, "args": {"who": "box"}}
    assert ann(r.json())["kind"] == "blackbox"


# --- isolation ------------------------------------------------------------------------------------------


def test_action_cannot_reach_the_platform(c: Client, stack: Stack) -> None:
    targets = [("127.0.0.1", 29092), ("127.0.0.1", 25984), ("172.17.0.1", 29092), ("172.17.0.1", 25984),
               ("172.17.0.1", stack.settings.api_port), ("172.17.0.1", stack.settings.nginx_port)]
    code = ("import socket\n"
            "def main(a):\n"
            "    out = {}\n"
            "    for host, port in a['targets']:\n"
            "        s = socket.socket()\n"
            "        s.settimeout(2)\n"
            "        try:\n"
            "            s.connect((host, port))\n"
            "            out[f'{host}:{port}'] = 'connected'\n"
            "        except OSError as e:\n"
            "            out[f'{host}:{port}'] = type(e).__name__ + ' ' + str(e.errno)\n"
            "        finally:\n"
            "            s.close()\n"
            "    out['ifaces'] = [n for _, n in socket.if_nameindex()]\n"
            "    return out\n")
    put(c, "probe", code)
    out = c.post("actions/probe", {"targets": targets}, blocking=True, result=True).json()
    assert sorted(out.pop("ifaces")) == ["eth0", "lo"], out  # the walled-off action network (test_sandbox.py)
    assert all(v != "connected" for v in out.values()), out
    assert out["172.17.0.1:29092"] == "ConnectionRefusedError 111", out  # refused by the wall, at once


# --- throttles ------------------------------------------------------------------------------------------


def _not_near_minute_end() -> None:
    """Rate windows are wall-clock minutes; stay clear of a boundary so the count is deterministic."""
    s = time.time() % 60
    if s > 50:
        time.sleep(61 - s)


def test_rate_throttle_429(stack: Stack) -> None:
    c = stack.client(stack.subject(f"throttled{uuid.uuid4().hex[:4]}", limits={"invocationsPerMinute": 3}))
    put(c, "echo", ECHO)
    _not_near_minute_end()
    codes = [c.post("actions/echo", {}).status_code for _ in range(3)]
    assert codes == [202, 202, 202]
    r = c.post("actions/echo", {}, blocking=True)
    assert r.status_code == 429
    assert r.json()["error"] == "Too many requests in the last minute (count: 4, allowed: 3)."
    assert re.fullmatch(r"\w+", r.json()["code"])


def test_concurrency_throttle_429(stack: Stack) -> None:
    c = stack.client(stack.subject(f"conc{uuid.uuid4().hex[:4]}", limits={"concurrentInvocations": 1}))
    put(c, "sleepy", "import time\ndef main(a):\n    time.sleep(a.get('s', 0))\n    return {}\n")
    first = c.post("actions/sleepy", {"s": 3})
    assert first.status_code == 202
    r = c.post("actions/sleepy", {})
    assert r.status_code == 429, r.text
    assert r.json()["error"] == "Too many concurrent requests in flight (count: 1, allowed: 1)."
    record(c, first.json()["activationId"])  # once it completed the slot is free again
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = c.post("actions/sleepy", {}, blocking=True)
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text


# --- two invokers ---------------------------------------------------------------------------------------


def test_concurrent_invokes_spread_over_both_invokers(stack: Stack, c: Client) -> None:
    names = [f"spread{i}" for i in range(6)]
    for n in names:
        put(c, n, "import time\ndef main(a):\n    time.sleep(1)\n    return {}\n")
    results: dict[str, requests.Response] = {}

    def go(n: str) -> None:
        results[n] = c.post(f"actions/{n}", {}, blocking=True)

    threads = [threading.Thread(target=go, args=(n,)) for n in names]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    took = time.monotonic() - t0
    assert all(r.status_code == 200 for r in results.values()), {n: r.text for n, r in results.items()}
    ids = {r.json()["activationId"] for r in results.values()}
    by_invoker = _invokers_of(stack, ids)
    assert set(by_invoker.values()) == {0, 1}, by_invoker
    assert took < 6, took  # they ran side by side, not one after the other


def _invokers_of(stack: Stack, ids: set[str]) -> dict[str, int]:
    """Read the completion events back from Kafka: each names the invoker that ran it."""
    import asyncio

    from contracts import bus, events
    from contracts.events import ActivationCompleted
    from contracts.topics import Topics

    async def read() -> dict[str, int]:
        topic = Topics(stack.settings.prefix).completions
        cons = bus.consumer(stack.settings.kafka, topic, group=None, from_start=True)
        await cons.start()
        found: dict[str, int] = {}
        try:
            deadline = time.monotonic() + 20
            while len(found) < len(ids) and time.monotonic() < deadline:
                batch = await cons.getmany(timeout_ms=500)
                for msgs in batch.values():
                    for m in msgs:
                        ev = events.decode(m.value)
                        if isinstance(ev, ActivationCompleted) and ev.activation_id in ids and ev.invoker is not None:
                            found[ev.activation_id] = ev.invoker
        finally:
            await cons.stop()
        return found

    return asyncio.run(read())
