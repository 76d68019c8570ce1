"""The rust:1.85 kind (Debian trixie's rustc 1.85 and cargo, serde's crates from Debian's packaged registry, compiled
at init like apache/openwhisk-runtime-rust's image): OpenWhisk's documented examples cold then warm, logs, `--main`,
zips with a Cargo.toml, a precompiled binary, and the error paths with OpenWhisk's statuses and texts."""

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

KIND = "rust:1.85"
IMAGE = "streamwhisk/action-rust185:latest"
NO_BINARY = "The action failed to generate or locate a binary. See logs for details."
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr): (.*)$")

# docs/actions-rust.md's hello.rs, as printed there, plus one log line.
HELLO = """extern crate serde_json;

use serde_derive::{Deserialize, Serialize};
use serde_json::{Error, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Input {
    #[serde(default = "stranger")]
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Output {
    greeting: String,
}

fn stranger() -> String {
    "stranger".to_string()
}

pub fn main(args: Value) -> Result<Value, Error> {
    let input: Input = serde_json::from_value(args)?;
    let output = Output {
        greeting: format!("Hello, {}", input.name),
    };
    println!("greeting {}", input.name);
    serde_json::to_value(output)
}
"""
# OpenWhisk's ActionLoopRustBasicTests: testEnv and testEntryPointOtherThanMain, plus errors of every kind.
ENTRIES = """extern crate serde_json;
use serde_json::{json, Error, Value};
use std::env;

pub fn main(_args: Value) -> Result<Value, Error> {
    eprintln!("hello stderr");
    Ok(json!({
        "action_name": env::var("__OW_ACTION_NAME").ok(),
        "activation_id": env::var("__OW_ACTIVATION_ID").ok(),
        "namespace": env::var("__OW_NAMESPACE").ok(),
        "deadline": env::var("__OW_DEADLINE").is_ok(),
    }))
}

pub fn naim(args: Value) -> Result<Value, Error> {
    Ok(args)
}

pub fn fails(_args: Value) -> Result<Value, String> {
    Err("it \\"failed\\"".to_string())
}

pub fn panics(_args: Value) -> Result<Value, String> {
    panic!("boom")
}

pub fn exits(_args: Value) -> Result<Value, String> {
    std::process::exit(1)
}

pub fn sleeps(_args: Value) -> Result<Value, String> {
    std::thread::sleep(std::time::Duration::from_secs(20));
    Ok(Value::Null)
}
"""


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def c(stack: Stack) -> Client:
    return stack.client(stack.subject(uniq("rust"), limits={"invocationsPerMinute": 1000,
                                                            "concurrentInvocations": 50}))


def put(c: Client, code: str, binary: bool = False, main: str | None = None, kind: str = KIND,
        **limits: int) -> str:
    name = uniq("rs")
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


def zipped(files: dict[str, str | bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return base64.b64encode(buf.getvalue()).decode()


def test_listed_as_the_rust_family_default(stack: Stack, c: Client) -> None:
    info = requests.get(f"{stack.url}/", timeout=10).json()["runtimes"]
    assert [(r["kind"], r["image"], r["default"]) for r in info["rust"]] == [
        (KIND, "streamwhisk/action-rust185", True)]
    assert put(c, HELLO, kind="rust:default")  # stored as rust:1.85 (put checks)
    version = subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "rustc", "--version"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    assert version.startswith("rustc 1.85.")


def test_docs_hello_cold_then_warm_with_logs(c: Client) -> None:
    name = put(c, HELLO)
    cold = invoke(c, name, {"name": "Ada"})
    warm = invoke(c, name, {"name": "Bob"})
    assert cold["response"]["status"] == "success" and cold["response"]["success"] is True
    assert cold["response"]["result"] == {"greeting": "Hello, Ada"}
    assert warm["response"]["result"] == {"greeting": "Hello, Bob"}
    assert "initTime" in anns(cold) and "initTime" not in anns(warm)
    assert anns(cold)["kind"] == KIND
    assert invoke(c, name)["response"]["result"] == {"greeting": "Hello, stranger"}
    lines = logs(c, cold["activationId"], "greeting Ada")
    assert any(line.endswith("stdout: greeting Ada") for line in lines), lines
    assert all(LINE.match(line) for line in lines) and not any("XXX_THE_END" in line for line in lines)
    # serde's error for a parameter of the wrong type: the launcher answers {"error": ...}, an application error.
    rec = invoke(c, name, {"name": 3})
    assert rec["response"]["status"] == "application error"
    assert rec["response"]["result"] == {"error": "invalid type: integer `3`, expected a string"}


def test_environment_and_main_names_another_function(c: Client) -> None:
    rec = invoke(c, put(c, ENTRIES))
    result = rec["response"]["result"]
    assert result["activation_id"] == rec["activationId"]
    assert result["namespace"] == rec["namespace"] and result["deadline"] is True
    assert result["action_name"].startswith(f"/{rec['namespace']}/rs-")
    assert any(line.endswith("stderr: hello stderr") for line in logs(c, rec["activationId"], "hello stderr"))
    rec = invoke(c, put(c, ENTRIES, main="naim"), {"a": [1, {"b": None}]})
    assert rec["response"]["result"] == {"a": [1, {"b": None}]}


def test_arrays_in_and_out(c: Client) -> None:
    # runtime-rust's "support array as input param".
    code = """extern crate serde_json;
use serde_json::{Error, Value};

pub fn main(args: Value) -> Result<Value, Error> {
    let input = args.as_array();
    let default = ["c", "d"];
    match input {
        None => serde_json::to_value(default),
        Some(x) => serde_json::to_value(x),
    }
}
"""
    echo = put(c, code)
    assert invoke(c, echo)["response"]["result"] == ["c", "d"]
    # runtime-rust's "support return array result"; in a sequence an action's array is the next one's input.
    first = put(c, "extern crate serde_json;\nuse serde_json::{Error, Value};\n\n"
                   "pub fn main(_args: Value) -> Result<Value, Error> {\n"
                   "    let output = [\"a\", \"b\"];\n    serde_json::to_value(output)\n}\n")
    seq = uniq("rsseq")
    r = c.put(f"actions/{seq}", {"exec": {"kind": "sequence", "components": [f"/_/{first}", f"/_/{echo}"]}})
    assert r.status_code == 200, r.text
    rec = invoke(c, seq)
    assert rec["response"]["status"] == "success" and rec["response"]["result"] == ["a", "b"]


def test_zip_with_cargo_toml(c: Client) -> None:
    # docs/actions-rust.md's layout: Cargo.toml and src/lib.rs (here with a module, serde's derive feature, another
    # package name and edition).
    files: dict[str, str | bytes] = {
        "Cargo.toml": '[package]\nname = "hello-zip"\nversion = "0.1.0"\nauthors = ["John Doe <john@doe.com>"]\n'
                      'edition = "2021"\n\n[dependencies]\nserde_json = "1.0"\n'
                      'serde = { version = "1.0", features = ["derive"] }\n',
        "src/lib.rs": "mod word;\nuse serde::Serialize;\nuse serde_json::{Error, Value};\n\n#[derive(Serialize)]\n"
                      "struct Out { word: String, name: Value }\n\n"
                      "pub fn main(args: Value) -> Result<Value, Error> {\n"
                      "    serde_json::to_value(Out { word: word::word(), name: args[\"name\"].clone() })\n}\n",
        "src/word.rs": 'pub fn word() -> String { "zipped".into() }\n',
    }
    rec = invoke(c, put(c, zipped(files), binary=True), {"name": "Zed"})
    assert rec["response"]["result"] == {"word": "zipped", "name": "Zed"}


def test_precompiled_binary(c: Client) -> None:
    # The image as an offline compiler, as OpenWhisk's ActionLoop images: `-compile main` turns sources into a zip.
    p = subprocess.run(["docker", "run", "-i", "--rm", "--network", "none", IMAGE, "-compile", "main"],
                       input=HELLO.encode(), capture_output=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    with zipfile.ZipFile(io.BytesIO(p.stdout)) as zf:
        assert zf.namelist() == ["exec"] and zf.read("exec")[:4] == b"\x7fELF"
    rec = invoke(c, put(c, base64.b64encode(p.stdout).decode(), binary=True), {"name": "Bin"})
    assert rec["response"]["result"] == {"greeting": "Hello, Bin"}
    assert anns(rec)["initTime"] < 2000  # nothing to compile


def test_compile_error_fails_the_init_with_the_compiler_message_in_the_logs(c: Client) -> None:
    code = "use serde_json::{Error, Value};\npub fn main(args: Value) -> Result<Value, Error> {\n    Ok(args +)\n}\n"
    rec = invoke(c, put(c, code))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": NO_BINARY}
    lines = logs(c, rec["activationId"], "expected expression")
    assert any(line.endswith("stderr: error: expected expression, found `)`") for line in lines), lines
    assert any("--> actions/src/lib.rs:3:" in line for line in lines), lines
    # A --main that the crate does not have.
    rec = invoke(c, put(c, ENTRIES, main="nothere"))
    assert rec["response"]["result"] == {"error": NO_BINARY}
    assert any("nothere" in line for line in logs(c, rec["activationId"], "nothere"))


def test_runtime_errors(c: Client) -> None:
    # Err(...) is answered {"error": its text}: an application error, the text also logged.
    rec = invoke(c, put(c, ENTRIES, main="fails"))
    assert rec["response"]["status"] == "application error"
    assert rec["response"]["result"] == {"error": 'it "failed"'}
    assert any(line.endswith('stderr: error: it "failed"') for line in logs(c, rec["activationId"], "failed"))
    # A panic ends the process: the proxy answers 400 "command exited" (runtime-go's), a developer error.
    rec = invoke(c, put(c, ENTRIES, main="panics"))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "command exited"}
    lines = logs(c, rec["activationId"], "panicked")
    assert any(re.search(r"stderr: thread 'main' panicked at actions/src/lib\.rs:\d+:\d+:$", line) for line in lines)
    assert any(line.endswith("stderr: boom") for line in lines), lines
    rec = invoke(c, put(c, ENTRIES, main="exits"))  # std::process::exit(1)
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "command exited"}


def test_timeout(c: Client) -> None:
    rec = invoke(c, put(c, ENTRIES, main="sleeps", timeout=5000))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "The action exceeded its time limits of 5000 milliseconds."}
    assert anns(rec)["timeout"] is True
