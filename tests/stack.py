"""A whole Streamwhisk stack for tests: shared infra (Kafka, PouchDB Server, Docker, images), own components.

Each test session gets its own topic/database prefix, ports and state dir, so it never touches the stack
that `streamwhisk up` runs. The components are the real processes (`python -m api` etc.).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from cli import admin, services
from cli.install import install_all
from contracts import keys
from contracts.settings import Settings, load

say = services.say


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Client:
    """A tiny OpenWhisk REST client over `requests`, as the tests use it."""

    base: str
    auth: tuple[str, str]
    namespace: str = "_"

    def url(self, path: str) -> str:
        return f"{self.base}/api/v1/namespaces/{self.namespace}/{path}"

    def req(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        q = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        return requests.request(method, self.url(path), json=body, params=q, auth=self.auth, timeout=90)

    def put(self, path: str, body: Any, **params: Any) -> requests.Response:
        return self.req("PUT", path, body, **params)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.req("GET", path, **params)

    def delete(self, path: str, **params: Any) -> requests.Response:
        return self.req("DELETE", path, **params)

    def post(self, path: str, body: Any = None, **params: Any) -> requests.Response:
        return self.req("POST", path, body, **params)


@dataclass
class Stack:
    settings: Settings
    base_settings: Settings
    env: dict[str, str] = field(default_factory=dict)  # more environment for its components (start_stack)

    @property
    def url(self) -> str:
        """Through nginx, as users reach it."""
        return f"http://127.0.0.1:{self.settings.nginx_port}"

    def client(self, authkey: str = keys.GUEST_KEY, namespace: str = "_") -> Client:
        uid, key = keys.split(authkey)
        return Client(self.url, (uid, key), namespace)

    def subject(self, name: str, limits: dict[str, Any] | None = None, namespace: str | None = None) -> str:
        import asyncio

        key: str = asyncio.run(admin.create_subject(self.settings, name, namespace or name, None, limits))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the API learns subjects from the log
            r = self.client(key).get("actions")
            if r.status_code == 200:
                return key
            time.sleep(0.1)
        raise TimeoutError(f"subject {name} not visible to the API")

    def stop(self) -> None:
        services.stop_all(self.settings, say)


def start_infra() -> Settings:
    base = load()
    install_all(base, say, tests=True)
    services.ensure_docker(base, say)
    services.start_kafka(base, say)
    services.start_couch(base, say)
    services.start_connect(base, say)  # shared, like Kafka: connector feeds
    from runtimes.build import IMAGES, ensure_images

    ensure_images(lambda m: say(f"[images] {m}"), repos=list(IMAGES))  # every kind is tested
    return base


def start_stack(base: Settings, invokers: int = 2, env: dict[str, str] | None = None, **overrides: Any) -> Stack:
    """A private stack on the shared infrastructure; overrides are other Settings fields (partitions, ...); env is
    more environment for the Streamwhisk processes (not Kafka, PouchDB or nginx)."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    home = Path(tempfile.mkdtemp(prefix=f"sw-{prefix}-"))
    s = dataclasses.replace(
        base, home=home, prefix=prefix, api_port=free_port(), nginx_port=free_port(), invokers=invokers,
        socket_root=Path("/run/streamwhisk") / prefix, **{"metrics_base_port": 0, **overrides},  # free ports
    )
    stack = Stack(s, base, dict(env or {}))
    try:
        services.ensure_action_network(s, say)
        started = time.monotonic()
        for comp in services.components(s):
            services.start_component(s, comp.name, comp.module, comp.args, say, wait=False, env=stack.env)
        for comp in services.components(s):
            services.wait_component(s, comp.name, say, started)
        services.start_nginx(s, say)
        admin.ensure_guest_subject(s)
        _wait_invokable(stack, invokers)
        if not services.wait_catalog(s, say, timeout=180):
            raise TimeoutError("the feed service did not install the /whisk.system catalog")
    except BaseException:
        stack.stop()
        raise
    return stack


def _wait_invokable(stack: Stack, invokers: int) -> None:
    """Ready when the guest key works and an action runs (invokers pinged the balancer)."""
    c = stack.client()
    deadline = time.monotonic() + 90
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = c.put("actions/_warmup", {"exec": {"kind": "python:3", "code": "def main(a):\n    return a"}},
                      overwrite=True)
            if r.status_code == 200:
                r = c.post("actions/_warmup", {"x": 1}, blocking=True, result=True)
                if r.status_code == 200:
                    return
            last = (r.status_code, r.text[:300])
        except requests.RequestException as e:
            last = e
        time.sleep(0.5)
    raise TimeoutError(f"stack not ready: {last}")


CLIENTS = Path(__file__).resolve().parent / "clients"


def npm_client(script: str) -> Path:
    """A script of tests/clients with the `openwhisk` npm package installed (npm install on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed for the real-client tests (Debian: apt-get install nodejs npm)")
    if not (CLIENTS / "node_modules" / "openwhisk").is_dir():
        subprocess.run(["npm", "install", "--prefix", str(CLIENTS), "--no-audit", "--no-fund"], check=True,
                       capture_output=True, timeout=300)
    return CLIENTS / script


def run_npm_client(script: str, stack: Stack, authkey: str, suffix: str, **more: str) -> dict[str, Any]:
    """Run a tests/clients script against the stack (APIHOST, AUTH, SUFFIX and `more` in its env); it prints JSON
    last."""
    env = {"PATH": str(Path(shutil.which("node") or "node").parent), "APIHOST": stack.url, "AUTH": authkey,
           "SUFFIX": suffix, **more}
    run = subprocess.run(["node", str(npm_client(script))], cwd=CLIENTS, env=env, capture_output=True, text=True,
                         timeout=240)
    if run.returncode != 0:
        raise AssertionError(f"{script} failed: {run.stderr[-2000:]}")
    if keys.split(authkey)[1] in run.stdout:
        raise AssertionError(f"{script} printed the auth key")
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return out
