"""The Serverless Framework with its OpenWhisk plugin (serverless-openwhisk) against the local API, gateway included.

A service with two `http` events is deployed, `serverless info` lists the API gateway endpoints, requests through
them reach the functions, and `serverless remove` takes routes and actions away again. The Framework and the
plugin are the npm packages pinned in tests/clients/serverless (installed there on first use): Framework v3,
the last major that runs offline without a login (v4 needs a Serverless account or license key).

The plugin's last release (0.18.4) writes `https://<apihost>` into the swagger's target URLs (the repository's
newer `formatApiHost` is unreleased), so with our http API host they read `https://http://127.0.0.1:...`; the
gateway has to route by the web action path in them, as it does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from contracts import keys
from tests.stack import CLIENTS, Stack

pytestmark = pytest.mark.integration

SERVERLESS = CLIENTS / "serverless"

HANDLER = """\
'use strict';

function hello(params) {
  return { greeting: `Hello ${params.name || 'world'}`, method: params.__ow_method };
}

function item(params) {
  const { __ow_headers: headers, ...rest } = params;
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json', 'x-served-by': 'item' },
    body: { path: params.__ow_path, params: rest, host: headers.host },
  };
}

module.exports = { hello, item };
"""

SERVICE = """\
service: {service}
frameworkVersion: '3'
configValidationMode: 'off'

provider:
  name: openwhisk
  runtime: nodejs

functions:
  hello:
    handler: handler.hello
    events:
      - http: GET /hello
  item:
    handler: handler.item
    events:
      - http:
          method: GET
          path: /items/{{id}}
          resp: http

plugins:
  - serverless-openwhisk
"""

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ENDPOINT = re.compile(r"^(GET|PUT|POST|DELETE|PATCH|HEAD|OPTIONS) (\S+) --> (\S+)$", re.MULTILINE)


def serverless_bin() -> Path:
    """The Framework's CLI from tests/clients/serverless (npm ci on first use; install scripts are not needed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed for the Serverless Framework test (apt-get install nodejs npm)")
    cli = SERVERLESS / "node_modules" / "serverless" / "bin" / "serverless.js"
    if not (cli.is_file() and (SERVERLESS / "node_modules" / "serverless-openwhisk").is_dir()):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=SERVERLESS, check=True,
                       capture_output=True, timeout=900)
    return cli


class Sls:
    """Runs `serverless <command>` in a service directory with the subject's credentials in the environment (the
    plugin's OW_APIHOST / OW_AUTH), a private HOME (no ~/.wskprops, no ~/.serverless of the machine) and the
    Framework's telemetry, notifications and update checks off."""

    def __init__(self, service_dir: Path, home: Path, apihost: str, authkey: str) -> None:
        self.dir = service_dir
        self.cli = serverless_bin()
        self.secret = keys.split(authkey)[1]
        node = shutil.which("node") or "node"
        self.env = {
            "PATH": os.pathsep.join(dict.fromkeys([str(Path(node).parent), "/usr/bin", "/bin"])),
            "HOME": str(home), "OW_APIHOST": apihost, "OW_AUTH": authkey, "WSK_CONFIG_FILE": str(home / ".wskprops"),
            "SLS_TELEMETRY_DISABLED": "1", "SLS_TRACKING_DISABLED": "1", "SLS_NOTIFICATIONS_MODE": "off",
            "SLS_DEPRECATION_DISABLE": "*", "SLS_INTERACTIVE_SETUP_DISABLE": "1", "CI": "1", "NO_COLOR": "1",
        }

    def __call__(self, *args: str) -> str:
        run = subprocess.run(["node", str(self.cli), *args], cwd=self.dir, env=self.env, capture_output=True,
                             text=True, timeout=300, stdin=subprocess.DEVNULL)
        out = ANSI.sub("", run.stdout + run.stderr)
        assert self.secret not in out, f"serverless {args[0]} printed the auth key's secret"
        assert run.returncode == 0, f"serverless {' '.join(args)} failed ({run.returncode}):\n{out[-4000:]}"
        return out


def endpoints(info: str) -> dict[tuple[str, str], str]:
    """(method, URL) -> action of the `endpoints (api-gw):` lines of `serverless info`."""
    return {(m[1], m[2]): m[3] for m in ENDPOINT.finditer(info)}


def test_serverless_http_events(stack: Stack, tmp_path: Path) -> None:
    key = stack.subject("slsuser")
    tenant = keys.split(key)[0]
    service = f"sw{uuid.uuid4().hex[:6]}"
    hello, item = f"{service}-dev-hello", f"{service}-dev-item"
    svc_dir, home = tmp_path / "service", tmp_path / "home"
    svc_dir.mkdir()
    home.mkdir()
    (svc_dir / "handler.js").write_text(HANDLER)
    (svc_dir / "serverless.yml").write_text(SERVICE.format(service=service))
    sls = Sls(svc_dir, home, stack.url, key)
    client = stack.client(key)

    out = sls("deploy")
    assert "Deploying API Gateway definitions" in out, out

    # both functions are web actions now, and the Framework invokes them as plain actions too
    for name in (hello, item):
        r = client.get(f"actions/{name}")
        assert r.status_code == 200, r.text
        ann = {a["key"]: a["value"] for a in r.json()["annotations"]}
        assert ann["web-export"] is True and isinstance(ann["require-whisk-auth"], str)
    invoked = sls("invoke", "-f", "hello", "-d", json.dumps({"name": "Kafka"}))
    assert json.loads(invoked[invoked.index("{"):invoked.rindex("}") + 1]) == {"greeting": "Hello Kafka"}

    # `serverless info` lists the gateway's endpoints, on our host, under /api/<tenant>
    base = f"{stack.url}/api/{tenant}"
    info = sls("info")
    assert endpoints(info) == {("GET", f"{base}/hello"): hello, ("GET", f"{base}/items/{{id}}"): item}, info
    assert hello in info and item in info

    # a request through the gateway reaches the function: query parameters, method and, for the `http`
    # response type with a path parameter, the request's path as __ow_path
    r = requests.get(f"{base}/hello", params={"name": "Gateway"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"greeting": "Hello Gateway", "method": "get"}
    r = requests.get(f"{base}/items/42", params={"q": "x", "n": "1"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-served-by") == "item"
    got = r.json()
    assert got["path"].endswith("/items/42"), got
    assert got["params"]["q"] == "x" and got["params"]["n"] == "1" and got["params"]["__ow_method"] == "get", got
    r = requests.get(f"{base}/items/abc-7", timeout=60)
    assert r.status_code == 200 and r.json()["path"].endswith("/items/abc-7"), r.text

    # the gateway supplies the action's require-whisk-auth secret: the web action alone refuses a request without it
    r = requests.get(f"{stack.url}/api/v1/web/slsuser/default/{hello}.json", timeout=60)
    assert r.status_code == 401, r.text

    # remove: the routes answer 404 and the actions are gone
    sls("remove")
    for path in ("hello", "items/42"):
        r = requests.get(f"{base}/{path}", timeout=60)
        assert r.status_code == 404, (path, r.status_code, r.text)
    for name in (hello, item):
        assert client.get(f"actions/{name}").status_code == 404
    info = sls("info")
    assert not endpoints(info), info
