"""The Python and Node.js kinds, each on the image that really runs its version: OpenWhisk's documented examples,
cold then warm, logs, `main`, zips, and the error paths with OpenWhisk's statuses and texts."""

from __future__ import annotations

import json

import pytest
import requests

from contracts import entities
from tests.integration import kinds
from tests.integration.kinds import invoke, logs, put, zipped
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

PY_KINDS = {"python:3": (3, 11), "python:3.11": (3, 11), "python:3.13": (3, 13)}
NODE_KINDS = {"nodejs:18": 18, "nodejs:20": 20, "nodejs:22": 22}

# docs/actions-python.md and docs/actions-nodejs.md's hello examples, plus the version the runtime reports.
PY_HELLO = """import sys

def main(args):
    name = args.get("name", "stranger")
    greeting = "Hello " + name + "!"
    print(greeting)
    return {"greeting": greeting, "version": list(sys.version_info[:2])}

def hello(args):
    return {"entry": "hello"}
"""
NODE_HELLO = """function main(params) {
  const greeting = 'Hello ' + (params.name || 'stranger') + '!';
  console.log(greeting);
  return { greeting, version: Number(process.versions.node.split('.')[0]) };
}
function hello() { return { entry: 'hello' }; }
exports.main = main;
exports.hello = hello;
"""
TIMEOUT = "The action exceeded its time limits of 1000 milliseconds."


c = kinds.client_fixture("rt")


def test_every_kind_is_listed_with_one_default_per_family(stack: Stack) -> None:
    info = requests.get(f"{stack.url}/", timeout=10).json()["runtimes"]
    for family in ("python", "nodejs"):
        kinds = {r["kind"]: r["default"] for r in info[family]}
        assert set(kinds) == {k for k, rt in entities.RUNTIMES.items() if rt.family == family}
        assert sum(kinds.values()) == 1


@pytest.mark.parametrize("kind", [*PY_KINDS, *NODE_KINDS])
def test_hello_cold_then_warm_with_logs(c: Client, kind: str) -> None:
    code = PY_HELLO if kind.startswith("python") else NODE_HELLO
    want = PY_KINDS.get(kind) or NODE_KINDS[kind]
    _, cold, _ = kinds.cold_then_warm(c, kind, code, version=list(want) if isinstance(want, tuple) else want)
    assert any(line.endswith("stdout: Hello Ada!") for line in logs(c, cold["activationId"]))


@pytest.mark.parametrize("kind", [*PY_KINDS, *NODE_KINDS])
def test_main_names_another_entry(c: Client, kind: str) -> None:
    name = put(c, kind, PY_HELLO if kind.startswith("python") else NODE_HELLO, main="hello")
    assert invoke(c, name)["response"]["result"] == {"entry": "hello"}


@pytest.mark.parametrize("kind", [*PY_KINDS, *NODE_KINDS])
def test_zip_actions(c: Client, kind: str) -> None:
    if kind.startswith("python"):
        files = {"__main__.py": "from helper import word\n\ndef main(a):\n    return {'word': word()}\n",
                 "helper.py": "def word():\n    return 'zipped'\n"}
    else:
        files = {"package.json": json.dumps({"name": "z", "main": "lib/entry.js"}),
                 "lib/entry.js": "const w = require('./word');\nexports.main = () => ({ word: w() });\n",
                 "lib/word.js": "module.exports = () => 'zipped';\n"}
    name = put(c, kind, zipped(files), binary=True)
    assert invoke(c, name)["response"]["result"] == {"word": "zipped"}


@pytest.mark.parametrize("kind", [*PY_KINDS, *NODE_KINDS])
def test_error_paths(c: Client, kind: str) -> None:
    py = kind.startswith("python")
    # A runtime exception: Python's ActionLoop answers {"error": str(ex)} (application error); Node's service
    # answers 502 "An error has occurred: ..." (developer error).
    rec = invoke(c, put(c, kind, "def main(a):\n    raise ValueError('boom')\n" if py
                        else "function main() { throw new Error('boom'); }"))
    if py:
        assert rec["response"]["status"] == "application error"
        assert rec["response"]["result"] == {"error": "boom"}
    else:
        assert rec["response"]["status"] == "action developer error"
        assert rec["response"]["result"]["error"].startswith("An error has occurred: Error: boom")
    # The process ends in the middle of a run.
    rec = invoke(c, put(c, kind, "import os\ndef main(a):\n    os._exit(1)\n" if py
                        else "function main() { process.exit(1); }"))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {
        "error": "The action did not produce a valid response and exited unexpectedly."}
    # Past the time limit.
    rec = invoke(c, put(c, kind, "import time\ndef main(a):\n    time.sleep(5)\n" if py
                        else "function main() { return new Promise(() => {}); }", timeout=1000))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": TIMEOUT}
    # A syntax error at init (texts checked in detail by test_ow_edge_cases.py).
    rec = invoke(c, put(c, kind, "def main(a)\n    return a\n" if py else "function main(a) { return a +; }"))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"]["error"].startswith(
        "The action failed to generate or locate a binary." if py else "Initialization has failed due to: Syntax")
