"""The go:1.24 kind (Debian trixie's Go 1.24, compiled at init like apache/openwhisk-runtime-go's golang1.24 image):
OpenWhisk's documented examples cold then warm, logs, `--main`, zips of sources and of a precompiled `exec` (made by
the image itself as an offline compiler, `-compile main`), and the error paths with OpenWhisk's statuses and texts."""

from __future__ import annotations

import base64
import io
import re
import zipfile

import pytest

from tests.integration import kinds
from tests.integration.kinds import LINE, NO_BINARY, NO_START, anns, invoke, logs, put, uniq, zipped
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

KIND = "go:1.24"
IMAGE = "streamwhisk/action-go124:latest"

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


c = kinds.client_fixture("go")


def test_listed_as_the_go_family_default(stack: Stack, c: Client) -> None:
    info = kinds.family_is_listed(stack, "go", KIND, require_main=False)
    assert [r["image"] for r in info] == ["streamwhisk/action-go124"]
    assert put(c, "go:default", HELLO, stored=KIND)  # stored as go:1.24 (put checks)


def test_docs_hello_cold_then_warm_with_logs(c: Client) -> None:
    name, cold, _ = kinds.cold_then_warm(c, KIND, HELLO, results=({"message": "Hello, Ada!"},
                                                                  {"message": "Hello, Bob!"}))
    assert invoke(c, name)["response"]["result"] == {"message": "Hello, world!"}
    # log.Printf writes to stderr with its date and time prefix.
    lines = kinds.clean_logs(c, cold["activationId"], "name=Ada")
    assert any(re.search(r"stderr: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d name=Ada$", line) for line in lines), lines


def test_environment_version_and_both_streams(c: Client) -> None:
    name = put(c, KIND, ENV)
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
    assert invoke(c, put(c, KIND, ENTRIES))["response"]["result"] == {"entry": "Main"}
    assert invoke(c, put(c, KIND, ENTRIES, main="hello"))["response"]["result"] == {"entry": "Hello"}
    assert invoke(c, put(c, KIND, ENTRIES, main="Hello"))["response"]["result"] == {"entry": "Hello"}


def test_arrays_in_and_out(c: Client) -> None:
    # runtime-go's "support return array result" and "support array as input param": in a sequence, an action's
    # array is the next one's input.
    first = put(c, KIND, "package main\n\nfunc Main(obj map[string]interface{}) []interface{} {\n"
                         "\treturn []interface{}{\"a\", obj[\"b\"]}\n}\n")
    then = put(c, KIND, "package main\n\nfunc Main(obj []interface{}) []interface{} {\n"
                        "\treturn append(obj, \"c\")\n}\n")
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
    assert invoke(c, put(c, KIND, zipped(files), binary=True))["response"]["result"] == {"word": "zipped"}
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
    rec = invoke(c, put(c, KIND, zipped(files), binary=True), {"name": "Demo"})
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
    name = put(c, KIND, code)
    assert invoke(c, name)["response"]["result"] == {"own": 1}
    assert invoke(c, name)["response"]["result"] == {"own": 2}


def test_precompiled_exec_in_a_zip(c: Client) -> None:
    # docs/actions-go.md "Precompiling Go Sources Offline": `docker run -i IMAGE -compile main <src >zip`.
    p = kinds.compile_offline(IMAGE, HELLO.encode())
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    out = p.stdout
    with zipfile.ZipFile(io.BytesIO(out)) as zf:
        assert zf.namelist() == ["exec"]
        exe = zf.read("exec")
        assert exe[:4] == b"\x7fELF" and (zf.getinfo("exec").external_attr >> 16) & 0o111
    # The zip as the image made it, and the bare binary in a zip without mode bits (OpenWhisk makes it executable).
    for code in (base64.b64encode(out).decode(), zipped({"exec": exe}, mode=0)):
        rec = invoke(c, put(c, KIND, code, binary=True), {"name": "Bin"})
        assert rec["response"]["result"] == {"message": "Hello, Bin!"}
        assert anns(rec)["initTime"] < 2000  # nothing to compile
    # A compile error is the offline compiler's exit status, with go's message.
    p = kinds.compile_offline(IMAGE, b"package main\n\nfunc Main(\n")
    assert p.returncode == 1 and p.stdout == b"" and b"syntax error" in p.stderr


def test_compile_error_fails_the_init_with_the_compiler_message_in_the_logs(c: Client) -> None:
    code = "package main\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n\treturn obj +\n}\n"
    lines = kinds.init_fails(c, KIND, code, NO_BINARY, "syntax error")
    assert any(re.search(r"stderr: \./exec__\.go:5:1: syntax error: unexpected }", line) for line in lines), lines
    # A main that is missing is a compile error too.
    lines = kinds.init_fails(c, KIND, ENTRIES, NO_BINARY, "undefined", main="nothere")
    assert any("undefined: Nothere" in line for line in lines), lines


def test_wrong_signature_cannot_start(c: Client) -> None:
    code = "package main\n\nfunc Main(obj map[string]interface{}) string {\n\treturn \"no\"\n}\n"
    lines = kinds.init_fails(c, KIND, code, NO_START, "Support map")
    assert any(line.endswith("stdout: Support map and slice and array only") for line in lines), lines


def test_runtime_errors(c: Client) -> None:
    # A returned {"error": ...} is an application error.
    code = ("package main\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n"
            "\treturn map[string]interface{}{\"error\": \"bad input\", \"other\": 1}\n}\n")
    rec = invoke(c, put(c, KIND, code))
    assert rec["response"]["status"] == "application error"
    assert rec["response"]["result"] == {"error": "bad input"}
    # A panic ends the process: runtime-go's proxy answers 400 "command exited", a developer error; the trace is logged.
    code = ("package main\n\nimport \"os\"\n\nfunc Main(obj map[string]interface{}) map[string]interface{} {\n"
            "\tif obj[\"exit\"] != nil {\n\t\tos.Exit(1)\n\t}\n\tpanic(\"boom\")\n}\n")
    name = put(c, KIND, code)
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
    name = put(c, KIND, code, timeout=5000)
    rec = invoke(c, name)
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "The action exceeded its time limits of 5000 milliseconds."}
    assert anns(rec)["timeout"] is True
