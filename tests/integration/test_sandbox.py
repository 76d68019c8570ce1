"""What a real function needs from its sandbox, on the real stack: outbound network with the platform walled off,
a writable action directory that can hold compiled modules, and an activation-scoped API key."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from contracts import keys
from invoker import network
from tests.kafkalog import messages_about, topics
from tests.nethost import NetHost, net_host
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

PROBE = """
import os, socket, urllib.request

def connect(host, port):
    s = socket.socket()
    s.settimeout(2.0)
    try:
        s.connect((host, port))
        return "open"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()

def main(a):
    out = {"api_host": os.environ.get("__OW_API_HOST"), "has_key": "__OW_API_KEY" in os.environ}
    try:
        out["fetched"] = urllib.request.urlopen(a["url"], timeout=5).read().decode()
    except Exception as e:
        out["fetched"] = "error: " + repr(e)
    out["targets"] = {f"{h}:{p}": connect(h, p) for h, p in a.get("targets", [])}
    out["interfaces"] = sorted(os.listdir("/sys/class/net"))
    return out
"""

LISTENER = """
import socket, threading
srv = None

def main(a):
    global srv
    if srv is None:  # a warm container keeps listening
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", 8080))
        srv.listen(16)
        threading.Thread(target=lambda: [srv.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((a["gateway"], 9))
    return {"ip": u.getsockname()[0]}
"""


@pytest.fixture
def host(tmp_path: Path) -> Iterator[NetHost]:
    with net_host(tmp_path) as h:
        yield h


@pytest.fixture(scope="module")
def net(stack: Stack) -> network.ActionNetwork:
    found = network.find(stack.settings)
    assert found is not None, "the stack has no action network"
    return found


def _action(c: Client, name: str, code: str, kind: str = "python:3", **extra: Any) -> None:
    r = c.put(f"actions/{name}", {"exec": {"kind": kind, "code": code}, **extra}, overwrite=True)
    assert r.status_code == 200, r.text


def _run(c: Client, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    r = c.post(f"actions/{name}", params or {}, blocking=True)
    assert r.status_code == 200, r.text
    rec: dict[str, Any] = r.json()
    assert rec["response"]["success"], rec
    result: dict[str, Any] = rec["response"]["result"]
    return {**result, "_activation": rec["activationId"]}


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A service of the host on all its addresses (as a careless one would be): no action may reach it."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


def _host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout.split()
    return sorted({w.split("/")[0] for w in out if w.count(".") == 3 and "/" in w} - {"127.0.0.1"})


def test_action_reaches_the_outside_and_only_the_ingress_of_the_platform(
    stack: Stack, net: network.ActionNetwork, host: NetHost, host_listener: int
) -> None:
    s = stack.settings
    platform = {"kafka": int(s.kafka.rsplit(":", 1)[1]), "kafka-controller": s.kafka_controller_port,
                "couchdb": int(s.couchdb.rsplit(":", 1)[1]), "connect": s.connect_port, "api": s.api_port,
                "dockerd": 2375, "host-service": host_listener}
    # Our own listener answers from the host on the gateway address: a refusal below is the wall's doing.
    socket.create_connection((net.gateway, host_listener), timeout=2).close()
    targets = [(a, p) for a in _host_addresses() for p in platform.values()]
    targets += [(a, s.nginx_port) for a in _host_addresses() if a != net.gateway]
    c = stack.client()
    _action(c, "sb_probe", PROBE)
    res = _run(c, "sb_probe", {"url": host.url, "targets": [[net.gateway, s.nginx_port], *targets]})
    assert res["fetched"] == host.token  # outbound network, to a host outside the platform
    assert res["api_host"] == f"http://{net.gateway}:{s.nginx_port}"
    assert res["targets"].pop(f"{net.gateway}:{s.nginx_port}") == "open"  # the ingress, as in OpenWhisk
    opened = {k: v for k, v in res["targets"].items() if v == "open"}
    assert opened == {}, f"reachable from an action: {opened}"
    assert set(res["targets"].values()) <= {"ConnectionRefusedError"}, res["targets"]  # refused at once, by us
    assert res["interfaces"] == ["eth0", "lo"]


def test_the_wall_refuses_metadata_and_listed_ranges(stack: Stack, net: network.ActionNetwork,
                                                      tmp_path: Path) -> None:
    """The forward chain: metadata ranges always, plus what the operator lists (here: a second test host)."""
    _, bridge, chain = network.names(stack.settings.prefix)
    rules = subprocess.run(["iptables", "-S", f"{chain}-FWD"], capture_output=True, text=True).stdout
    for cidr in network.METADATA:
        assert f"-d {cidr} -p tcp -j REJECT" in rules
    jumps = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True).stdout
    assert f"-i {bridge} -j {chain}-FWD" in jumps
    c = stack.client()
    _action(c, "sb_probe", PROBE)
    with net_host(tmp_path) as allowed, net_host(tmp_path) as denied:
        network.ensure(stack.settings, (f"{denied.ip}/32",))
        try:
            ok = _run(c, "sb_probe", {"url": allowed.url})
            no = _run(c, "sb_probe", {"url": denied.url})
        finally:
            network.ensure(stack.settings)
    assert ok["fetched"] == allowed.token
    assert "Connection refused" in no["fetched"], no


def test_no_tenant_reaches_another_tenants_container(stack: Stack, net: network.ActionNetwork) -> None:
    alice = stack.client(stack.subject(f"sba{uuid.uuid4().hex[:6]}"))
    bob = stack.client(stack.subject(f"sbb{uuid.uuid4().hex[:6]}"))
    _action(alice, "listener", LISTENER)
    _action(bob, "sb_probe", PROBE)
    ip = _run(alice, "listener", {"gateway": net.gateway})["ip"]
    socket.create_connection((ip, 8080), timeout=2).close()  # it listens: the host reaches it
    res = _run(bob, "sb_probe", {"url": "http://127.0.0.1:1/", "targets": [[ip, 8080]]})
    assert res["targets"][f"{ip}:8080"] != "open", res  # inter-container traffic is off


def test_a_namespace_limit_takes_the_network_away(stack: Stack, host: NetHost) -> None:
    c = stack.client(stack.subject(f"sbn{uuid.uuid4().hex[:6]}", limits={"actionNetwork": "none"}))
    _action(c, "sb_probe", PROBE)
    res = _run(c, "sb_probe", {"url": host.url})
    assert res["interfaces"] == ["lo"]
    assert res["fetched"].startswith("error:"), res


SCRATCH = """
import os, subprocess

def main(a):
    cwd = os.getcwd()
    open("scratch.txt", "w").write("kept")  # relative: the action's directory
    with open("/tmp/hello.sh", "w") as f:
        f.write("#!/bin/sh\\necho from-tmp\\n")
    os.chmod("/tmp/hello.sh", 0o755)
    ran = subprocess.run(["/tmp/hello.sh"], capture_output=True, text=True).stdout.strip()
    written = 0
    try:
        with open("fill", "wb") as f:
            for _ in range(1024):
                f.write(b"x" * 1048576)
                f.flush()
                written += 1
    except OSError as e:
        full = e.strerror
    else:
        full = None
    os.remove("fill")
    try:
        open("/etc/pwned", "w")
        rootfs = "writable"
    except OSError:
        rootfs = "read-only"
    return {"cwd": cwd, "kept": open("scratch.txt").read(), "ran": ran, "written_mb": written, "full": full,
            "rootfs": rootfs}
"""


def test_the_action_directory_is_writable_and_executable_within_a_size_limit(stack: Stack) -> None:
    c = stack.client()
    _action(c, "sb_scratch", SCRATCH, limits={"memory": 256})
    res = _run(c, "sb_scratch")
    assert res["cwd"] == "/action" and res["kept"] == "kept"
    assert res["ran"] == "from-tmp"  # /tmp allows exec
    assert res["full"] == "No space left on device" and res["written_mb"] <= 128, res
    assert res["rootfs"] == "read-only"


# A SeBS-style package: the benchmark wrapper as __main__.py (a marker file in the working directory tells cold
# from warm, the handler comes from a package), and dependencies with compiled modules in virtualenv/.
SEBS_MAIN = """
import datetime, os

def main(args):
    begin = datetime.datetime.now()
    from function import function
    ret = function.handler(args)
    end = datetime.datetime.now()
    cold = not os.path.exists("cold_run")
    if cold:
        open("cold_run", "a").close()
    return {"begin": begin.timestamp(), "end": end.timestamp(), "is_cold": cold, "result": ret}
"""
SEBS_FUNCTION = """
import msgpack
from msgpack import _cmsgpack

def handler(event):
    packed = msgpack.packb({"n": event.get("n", 0), "items": list(range(5))})
    return {"unpacked": msgpack.unpackb(packed), "compiled": _cmsgpack.__file__.endswith(".so")}
"""


@pytest.fixture(scope="module")
def sebs_zip(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("sebs")
    site = root / "virtualenv" / "lib" / "python3.11" / "site-packages"
    # The runtime image's Python is Debian bookworm's 3.11: fetch the matching compiled wheel, whatever runs pip.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "--target", str(site), "msgpack==1.0.8"], check=True)
    assert list(site.glob("msgpack/_cmsgpack*.so"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__main__.py", SEBS_MAIN)
        zf.writestr("function/__init__.py", "")
        zf.writestr("function/function.py", SEBS_FUNCTION)
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, str(f.relative_to(root)))
    return base64.b64encode(buf.getvalue()).decode()


def test_sebs_style_zip_with_compiled_dependencies_runs_unmodified(stack: Stack, sebs_zip: str) -> None:
    c = stack.client()
    r = c.put("actions/sb_sebs", {"exec": {"kind": "python:3", "code": sebs_zip, "binary": True}}, overwrite=True)
    assert r.status_code == 200, r.text
    first, second = _run(c, "sb_sebs", {"n": 7}), _run(c, "sb_sebs", {"n": 8})
    assert first["result"] == {"unpacked": {"n": 7, "items": [0, 1, 2, 3, 4]}, "compiled": True}
    assert first["is_cold"] is True and second["is_cold"] is False  # the marker stayed in the action's directory
    assert second["result"]["unpacked"]["n"] == 8


# --- the activation-scoped API key -----------------------------------------------------------------------------

CALLER = """
const openwhisk = require('openwhisk');
const http = require('http');

function report(url, body) {  // out of band: the key itself must appear in no record
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST' }, (res) => { res.resume(); res.on('end', resolve); });
    req.on('error', reject);
    req.end(body);
  });
}

async function main(params) {
  const ow = openwhisk();
  const child = await ow.actions.invoke({ name: params.child, blocking: true, result: true, params: { n: 41 } });
  const listed = await ow.activations.list({ limit: 5 });
  await report(params.report, process.env.__OW_API_KEY || '');
  return { child, listed: Array.isArray(listed), api_host: process.env.__OW_API_HOST };
}
exports.main = main;
"""


def _grep_couchdb(stack: Stack, needle: str) -> list[str]:
    base = stack.settings.couchdb
    dbs = [d for d in requests.get(f"{base}/_all_dbs", timeout=10).json() if d.startswith(f"{stack.settings.prefix}_")]
    return [d for d in dbs if needle in requests.get(f"{base}/{d}/_all_docs", params={"include_docs": "true"},
                                                     timeout=30).text]


def _grep_logs(stack: Stack, needle: str) -> list[str]:
    files = [f for f in stack.settings.home.rglob("*") if f.is_file() and "log" in f.name]
    found = [str(f) for f in files if needle in f.read_text(errors="replace")]
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={stack.settings.container_prefix}"],
                         capture_output=True, text=True).stdout.split()
    for cid in ids:
        out = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
        if needle in out.stdout + out.stderr:
            found.append(f"container {cid}")
    return found


def test_an_action_calls_back_with_a_key_good_for_its_activation_only(
    stack: Stack, net: network.ActionNetwork, host: NetHost
) -> None:
    c = stack.client()
    _action(c, "sb_child", "def main(a):\n    return {'got': a.get('n')}\n")
    _action(c, "sb_caller", CALLER, kind="nodejs:18", annotations=[{"key": "provide-api-key", "value": True}])
    res = _run(c, "sb_caller", {"child": "sb_child", "report": host.url})
    assert res["child"] == {"got": 41} and res["listed"] is True  # the npm client, inside the container
    assert res["api_host"] == f"http://{net.gateway}:{stack.settings.nginx_port}"
    [minted] = host.received()
    uid, secret = keys.split(minted)
    assert uid == str(uuid.UUID(hex=res["_activation"])) and secret and minted != keys.GUEST_KEY
    # Over with the activation: refused at once, long before its expiry.
    r = requests.get(f"{stack.url}/api/v1/namespaces/_/actions", auth=(uid, secret), timeout=10)
    assert r.status_code == 401, r.text
    # A forged or tampered key is refused too.
    forged = requests.get(f"{stack.url}/api/v1/namespaces/_/actions", auth=(uid, secret[:-2] + "AA"), timeout=10)
    assert forged.status_code == 401
    time.sleep(1)  # the projector and the audit trail have caught up with the activation
    assert messages_about(stack.settings, topics(stack.settings), {secret}) == []
    assert _grep_couchdb(stack, secret) == []
    assert _grep_logs(stack, secret) == []


def test_no_key_without_provide_api_key(stack: Stack, host: NetHost) -> None:
    c = stack.client()
    _action(c, "sb_probe", PROBE)  # created without the annotation: the API adds provide-api-key false
    assert json.dumps(c.get("actions/sb_probe").json()["annotations"]).count("provide-api-key") == 1
    res = _run(c, "sb_probe", {"url": host.url})
    assert res["has_key"] is False and res["api_host"]
