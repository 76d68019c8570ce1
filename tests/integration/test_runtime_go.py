"""The go:1.24 kind (Debian trixie's Go 1.24, compiled at init like apache/openwhisk-runtime-go's golang1.24 image):
OpenWhisk's documented examples cold then warm, logs, `--main`, zips of sources and of a precompiled `exec` (made by
the image itself as an offline compiler, `-compile main`), and the error paths with OpenWhisk's statuses and texts."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import time
import uuid
import zipfile
from typing import Any

import pytest
import requests

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

KIND = "go:1.24"
IMAGE = "streamwhisk/action-go124:latest"
NO_BINARY = "The action failed to generate or locate a binary. See logs for details."
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr): (.*)$")

# docs/actions-go.md's hello.go, as printed there.
HELLO = """package main

import "log"

// Main is the function implementing the action
func Main(obj map[string]interface{}) map[string]interface{} {
  // do your work
  name, ok := obj["name"].(string)
  if !ok {
    name = "world"
  }
  msg := make(map[string]interface{})
  msg["message"] = "Hello, " + name + "!"
  // log in stdout or in stderr
  log.Printf("name=%s\\n", name)
  // encode the result back in json
  return msg
}
"""
# What the action sees: the toolchain it was built with, the activation's environment, one line on each stream.
ENV = """package main

import (
	"fmt"
	"os"
	"runtime"
)

func Main(obj map[string]interface{}) map[string]interface{} {
	fmt.Println("to stdout")
	fmt.Fprintln(os.Stderr, "to stderr")
	return map[string]interface{}{
		"version":       runtime.Version(),
		"action_name":   os.Getenv("__OW_ACTION_NAME"),
		"activation_id": os.Getenv("__OW_ACTIVATION_ID"),
		"namespace":     os.Getenv("__OW_NAMESPACE"),
		"deadline":      os.Getenv("__OW_DEADLINE") != "",
		"param":         obj["p"],
	}
}
"""
ENTRIES = """package main

func Main(obj map[string]interface{}) map[string]interface{} {
	return map[string]interface{}{"entry": "Main"}
}

func Hello(obj map[string]interface{}) map[string]interface{} {
	return map[string]interface{}{"entry": "Hello"}
}
"""


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    return stack.client(stack.subject(uniq("go"), limits={"invocationsPerMinute": 1000,
                                                          "concurrentInvocations": 50}))


def put(c: Client, code: str, binary: bool = False, main: str | None = None, kind: str = KIND,
        **limits: int) -> str:
    name = uniq("go")
    exec_: dict[str, Any] = {"kind": kind, "code": code, **({"binary": True} if binary else {})}
    if main:
        exec_["main"] = main
    r = c.put(f"actions/{name}", {"exec": exec_, **({"limits": limits} if limits else {})}, overwrite=True)
    assert r.status_code == 200, r.text
    assert r.json()["exec"]["kind"] == KIND
    return name


def invoke(c: Client, name: str, params: Any = None) -> dict[str, Any]:
    r = c.post(f"actions/{name}", {} if params is None else params, blocking=True)
    assert r.status_code in (200, 502), r.text
    rec: dict[str, Any] = r.json()
    return rec


def anns(rec: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in rec["annotations"]}


def logs(c: Client, aid: str, until: str = "") -> list[str]:
    """The activation's log lines, once they (and a line containing `until`) are there."""
    deadline = time.monotonic() + 20
    out: list[str] = []
    while time.monotonic() < deadline:
        r = c.get(f"activations/{aid}/logs")
        if r.status_code == 200:
            out = r.json()["logs"]
            if out and any(until in line for line in out):
                break
        time.sleep(0.2)
    return out


def zipped(files: dict[str, str | bytes], mode: int | None = None) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return base64.b64encode(buf.getvalue()).decode()


def precompile(source: bytes, main: str = "main") -> bytes:
    """docs/actions-go.md "Precompiling Go Sources Offline": `docker run -i IMAGE -compile main <src >zip`."""
    p = subprocess.run(["docker", "run", "-i", "--rm", "--network", "none", IMAGE, "-compile", main], input=source,
                       capture_output=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout


def test_listed_as_the_go_family_default(stack: Stack, c: Client) -> None:
    info = requests.get(f"{stack.url}/", timeout=10).json()["runtimes"]
    assert [(r["kind"], r["image"], r["default"]) for r in info["go"]] == [
        (KIND, "streamwhisk/action-go124", True)]
    assert put(c, HELLO, kind="go:default")  # stored as go:1.24 (put checks)


def test_docs_hello_cold_then_warm_with_logs(c: Client) -> None:
    name = put(c, HELLO)
    cold = invoke(c, name, {"name": "Ada"})
    warm = invoke(c, name, {"name": "Bob"})
    assert cold["response"]["status"] == "success" and cold["response"]["success"] is True
    assert cold["response"]["result"] == {"message": "Hello, Ada!"}
    assert warm["response"]["result"] == {"message": "Hello, Bob!"}
    assert "initTime" in anns(cold) and "initTime" not in anns(warm)
    assert anns(cold)["kind"] == KIND
    assert invoke(c, name)["response"]["result"] == {"message": "Hello, world!"}
    # log.Printf writes to stderr with its date and time prefix.
    lines = logs(c, cold["activationId"], "name=Ada")
    assert any(re.search(r"stderr: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d name=Ada$", line) for line in lines), lines
    assert all(LINE.match(line) for line in lines) and not any("XXX_THE_END" in line for line in lines)


def test_environment_version_and_both_streams(c: Client) -> None:
    name = put(c, ENV)
    rec = invoke(c, name, {"p": [1, "two"]})
    result = rec["response"]["result"]
    assert result["version"].startswith("go1.24")
    assert result["activation_id"] == rec["activationId"]
    assert result["action_name"] == f"/{rec['namespace']}/{name}"
    assert result["namespace"] == rec["namespace"] and result["deadline"] is True
    assert result["param"] == [1, "two"]
    lines = logs(c, rec["activationId"], "to stderr")
    got = sorted(m.group(2, 3) for m in map(LINE.match, lines) if m)
    assert got == [("stderr", "to stderr"), ("stdout", "to stdout")]


def test_main_names_another_function_capitalised(c: Client) -> None:
    assert invoke(c, put(c, ENTRIES))["response"]["result"] == {"entry": "Main"}
    assert invoke(c, put(c, ENTRIES, main="hello"))["response"]["result"] == {"entry": "Hello"}
    assert invoke(c, put(c, ENTRIES, main="Hello"))["response"]["result"] == {"entry": "Hello"}


def test_arrays_in_and_out(c: Client) -> None:
    # runtime-go's "support return array result" and "support array as input param": in a sequence, an action's
    # array is the next one's input.
    first = put(c, "package main\n\nfunc Main(obj map[string]interface{}) []interface{} {\n"
                   "\treturn []interface{}{\"a\", obj[\"b\"]}\n}\n")
    then = put(c, "package main\n\nfunc Main(obj []interface{}) []interface{} {\n\treturn append(obj, \"c\")\n}\n")
    assert invoke(c, first, {"b": "b"})["response"]["result"] == ["a", "b"]
    seq = uniq("goseq")
    r = c.put(f"actions/{seq}", {"exec": {"kind": "sequence", "components": [f"/_/{first}", f"/_/{then}"]}})
    assert r.status_code == 200, r.text
    rec = invoke(c, seq, {"b": "b"})
    assert rec["response"]["status"] == "success" and rec["response"]["result"] == ["a", "b", "c"]


def test_zip_of_sources(c: Client) -> None:
    # Sources at the top level of the zip, all in package main.
    files: dict[str, str | bytes] = {
        "main.go": "package main\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n"
                   "\treturn map[string]interface{}{\"word\": word()}\n}\n",
        "word.go": "package main\n\nfunc word() string { return \"zipped\" }\n",
    }
    assert invoke(c, put(c, zipped(files), binary=True))["response"]["result"] == {"word": "zipped"}
    # runtime-go's "deploy a zip main src with subdir": a local package brought in by go.mod's replace.
    files = {
        "hello/hello.go": "package hello\n\nfunc Hello(obj map[string]interface{}) map[string]interface{} {\n"
                          "\treturn map[string]interface{}{\"hello-Hello\": "
                          "\"Hello, \" + obj[\"name\"].(string) + \"!\"}\n}\n",
        "hello/go.mod": "module hello\n",
        "main.go": "package main\n\nimport \"hello\"\n\nfunc Main(args map[string]interface{}) map[string]interface{} "
                   "{\n\treturn hello.Hello(args)\n}\n",
        "go.mod": "module action\nreplace hello => ./hello\nrequire hello v0.0.0-00010101000000-000000000000\n",
    }
    rec = invoke(c, put(c, zipped(files), binary=True), {"name": "Demo"})
    assert rec["response"]["result"] == {"hello-Hello": "Hello, Demo!"}


def test_own_action_loop(c: Client) -> None:
    # docs/ACTION.md: a source with its own func main() implements the ActionLoop protocol itself (no launcher).
    code = """package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	out := os.NewFile(3, "pipe")
	if os.Getenv("__OW_WAIT_FOR_ACK") != "" {
		fmt.Fprintln(out, `{"ok": true}`)
	}
	in := bufio.NewScanner(os.Stdin)
	for n := 1; in.Scan(); n++ {
		fmt.Fprintf(out, "{\\"own\\": %d}\\n", n)
	}
}
"""
    name = put(c, code)
    assert invoke(c, name)["response"]["result"] == {"own": 1}
    assert invoke(c, name)["response"]["result"] == {"own": 2}


def test_precompiled_exec_in_a_zip(c: Client) -> None:
    out = precompile(HELLO.encode())
    with zipfile.ZipFile(io.BytesIO(out)) as zf:
        assert zf.namelist() == ["exec"]
        exe = zf.read("exec")
        assert exe[:4] == b"\x7fELF" and (zf.getinfo("exec").external_attr >> 16) & 0o111
    # The zip as the image made it, and the bare binary in a zip without mode bits (OpenWhisk makes it executable).
    for code in (base64.b64encode(out).decode(), zipped({"exec": exe})):
        rec = invoke(c, put(c, code, binary=True), {"name": "Bin"})
        assert rec["response"]["result"] == {"message": "Hello, Bin!"}
        assert anns(rec)["initTime"] < 2000  # nothing to compile
    # A compile error is the offline compiler's exit status, with go's message.
    p = subprocess.run(["docker", "run", "-i", "--rm", "--network", "none", IMAGE, "-compile", "main"],
                       input=b"package main\n\nfunc Main(\n", capture_output=True, timeout=300, check=False)
    assert p.returncode == 1 and p.stdout == b"" and b"syntax error" in p.stderr


def test_compile_error_fails_the_init_with_the_compiler_message_in_the_logs(c: Client) -> None:
    code = "package main\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n\treturn obj +\n}\n"
    rec = invoke(c, put(c, code))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": NO_BINARY}
    lines = logs(c, rec["activationId"], "syntax error")
    assert any(re.search(r"stderr: \./exec__\.go:5:1: syntax error: unexpected }", line) for line in lines), lines
    # A main that is missing is a compile error too.
    rec = invoke(c, put(c, ENTRIES, main="nothere"))
    assert rec["response"]["result"] == {"error": NO_BINARY}
    assert any("undefined: Nothere" in line for line in logs(c, rec["activationId"], "undefined"))


def test_wrong_signature_cannot_start(c: Client) -> None:
    code = "package main\n\nfunc Main(obj map[string]interface{}) string {\n\treturn \"no\"\n}\n"
    rec = invoke(c, put(c, code))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "Cannot start action. Check logs for details."}
    lines = logs(c, rec["activationId"], "Support map")
    assert any(line.endswith("stdout: Support map and slice and array only") for line in lines), lines


def test_runtime_errors(c: Client) -> None:
    # A returned {"error": ...} is an application error.
    code = ("package main\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n"
            "\treturn map[string]interface{}{\"error\": \"bad input\", \"other\": 1}\n}\n")
    rec = invoke(c, put(c, code))
    assert rec["response"]["status"] == "application error"
    assert rec["response"]["result"] == {"error": "bad input"}
    # A panic ends the process: runtime-go's proxy answers 400 "command exited", a developer error; the trace is logged.
    code = ("package main\n\nimport \"os\"\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n"
            "\tif obj[\"exit\"] != nil {\n\t\tos.Exit(1)\n\t}\n\tpanic(\"boom\")\n}\n")
    name = put(c, code)
    rec = invoke(c, name)
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "command exited"}
    assert any(line.endswith("stderr: panic: boom") for line in logs(c, rec["activationId"], "panic: boom"))
    rec = invoke(c, name, {"exit": True})  # os.Exit(1)
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "command exited"}
    assert "initTime" in anns(rec)  # the container was not reused after the developer error


def test_timeout(c: Client) -> None:
    code = ("package main\n\nimport \"time\"\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n"
            "\ttime.Sleep(20 * time.Second)\n\treturn obj\n}\n")
    # The limit covers the run (a cold start's compile is the init's, with its own limit of the same length).
    name = put(c, code, timeout=5000)
    rec = invoke(c, name)
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "The action exceeded its time limits of 5000 milliseconds."}
    assert anns(rec)["timeout"] is True
