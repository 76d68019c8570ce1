"""Helpers of the per-family runtime tests (test_runtimes_builtin.py and test_runtime_{java,php,ruby,go,rust}.py);
compile_jar is also the bench's (bench/sections.py cold_kinds)."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import tempfile
import time
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from contracts import entities
from tests.stack import Client, Stack

MALFORMED = "The request content was malformed:\n"
NO_START = "Cannot start action. Check logs for details."
NO_BINARY = "The action failed to generate or locate a binary. See logs for details."
# A log line as the activation's logs give it: time, stream, text.
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr): (.*)$")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def client(stack: Stack, prefix: str) -> Client:
    """A client of a new subject, with room for a test module's invokes."""
    return stack.client(stack.subject(uniq(prefix), limits={"invocationsPerMinute": 1000,
                                                            "concurrentInvocations": 50}))


def client_fixture(prefix: str) -> Any:
    """A module's fixture `c` (`c = client_fixture("go")`): its `client`."""

    @pytest.fixture(scope="module")
    def c(stack: Stack) -> Client:
        return client(stack, prefix)

    return c


def put(c: Client, kind: str, code: str, main: str | None = None, binary: bool = False, stored: str | None = None,
        **limits: int) -> str:
    """A new action of `kind` (`binary` if said, else as OpenWhisk computes it); its name. The kind is kept as given,
    or stored as `stored` (a family's `:default`)."""
    name = uniq(kind.replace(":", "").replace(".", ""))
    exec_: dict[str, Any] = {"kind": kind, "code": code, **({"binary": True} if binary else {})}
    if main is not None:
        exec_["main"] = main
    r = c.put(f"actions/{name}", {"exec": exec_, **({"limits": limits} if limits else {})}, overwrite=True)
    assert r.status_code == 200, r.text
    assert r.json()["exec"]["kind"] == (stored or kind)
    return name


def invoke(c: Client, name: str, params: Any = None) -> dict[str, Any]:
    """The activation record of a blocking invoke."""
    r = c.post(f"actions/{name}", params if params is not None else {}, blocking=True)
    assert r.status_code in (200, 502), r.text
    rec: dict[str, Any] = r.json()
    return rec


def anns(rec: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in rec["annotations"]}


def cold_then_warm(c: Client, kind: str, code: str, main: str | None = None, version: Any = None,
                   results: tuple[Any, Any] | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A new action invoked twice, with {"name": "Ada"} then {"name": "Bob"}: its name and both records, the first a
    cold start of `kind`, the second warm. With `version`, the action is the tests' hello: it greets each by name
    ("Hello Ada!") and tells the runtime's version; with `results`, both succeed with these results."""
    name = put(c, kind, code, main=main)
    cold = invoke(c, name, {"name": "Ada"})
    warm = invoke(c, name, {"name": "Bob"})
    assert "initTime" in anns(cold) and "initTime" not in anns(warm)
    assert anns(cold)["kind"] == kind
    if version is not None:
        assert cold["response"]["result"] == {"greeting": "Hello Ada!", "version": version}
        assert warm["response"]["result"]["greeting"] == "Hello Bob!"
    if results is not None:
        assert cold["response"]["status"] == "success" and cold["response"]["success"] is True
        assert (cold["response"]["result"], warm["response"]["result"]) == results
    return name, cold, warm


def init_fails(c: Client, kind: str, code: str, error: str, want: str, main: str | None = None) -> list[str]:
    """A new action whose init fails: a developer error that answers {"error": error} and nothing else; its log lines,
    once they hold `want`."""
    rec = invoke(c, put(c, kind, code, main=main))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": error}
    return logs(c, rec["activationId"], want)


def logs(c: Client, aid: str, want: str | None = None) -> list[str]:
    """The activation's log lines, once there (and holding `want`, if given)."""
    out: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = c.get(f"activations/{aid}/logs")
        if r.status_code == 200 and r.json()["logs"]:
            out = r.json()["logs"]
            if want is None or any(want in line for line in out):
                return out
        time.sleep(0.2)
    return out


def clean_logs(c: Client, aid: str, want: str) -> list[str]:
    """The activation's log lines (as `logs`), each a well-formed line and none the ActionLoop's end-of-run sentinel."""
    lines = logs(c, aid, want)
    assert all(LINE.match(line) for line in lines) and not any("XXX_THE_END" in line for line in lines), lines
    return lines


def zipped(files: Mapping[str, str | bytes], mode: int | None = None) -> str:
    """The base64 of a zip of `files`; every entry with the Unix `mode` if given (0: no mode bits at all), else
    zipfile's (rw-------)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            if mode is None:
                zf.writestr(name, data)
            else:
                info = zipfile.ZipInfo(name)
                info.external_attr = mode << 16
                zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return base64.b64encode(buf.getvalue()).decode()


def error_of(rec: dict[str, Any]) -> tuple[str, Any]:
    return rec["response"]["status"], rec["response"]["result"].get("error")


def family_is_listed(stack: Stack, family: str, default: str, require_main: bool) -> list[dict[str, Any]]:
    """GET / lists every kind of the family, one of them the default, with OpenWhisk's requireMain; the list."""
    info: list[dict[str, Any]] = requests.get(f"{stack.url}/", timeout=10).json()["runtimes"][family]
    assert {r["kind"] for r in info} == {k for k, rt in entities.RUNTIMES.items() if rt.family == family}
    assert [r["kind"] for r in info if r["default"]] == [default]
    assert {r["requireMain"] for r in info} == {require_main}
    return info


def compile_offline(image: str, source: bytes, main: str = "main") -> subprocess.CompletedProcess[bytes]:
    """An ActionLoop image as an offline compiler (`docker run -i IMAGE -compile main <src >zip`): on success, the
    zip of the action's `exec` on stdout."""
    return subprocess.run(["docker", "run", "-i", "--rm", "--network", "none", image, "-compile", main],
                          input=source, capture_output=True, timeout=300, check=False)


def compile_jar(image: str, sources: dict[str, str]) -> str:
    """The base64 of a jar of `sources`, compiled in `image` (its JRE's javac module, gson on the class path)."""
    with tempfile.TemporaryDirectory() as d:
        for rel, text in sources.items():
            Path(d, "src", rel).parent.mkdir(parents=True, exist_ok=True)
            Path(d, "src", rel).write_text(text)
        dc = docker.from_env()
        try:
            dc.containers.run(image, ["sh", "-c", "java -m jdk.compiler/com.sun.tools.javac.Main -encoding UTF-8 "
                                      "-cp /opt/ow/java/gson.jar -d /w/out $(find /w/src -name '*.java')"],
                              volumes={d: {"bind": "/w", "mode": "rw"}}, remove=True, network_disabled=True)
        finally:
            dc.close()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: streamwhisk tests\r\n\r\n")
            for cls in sorted(Path(d, "out").rglob("*.class")):
                jar.write(cls, str(cls.relative_to(Path(d, "out"))))
        return base64.b64encode(buf.getvalue()).decode()
