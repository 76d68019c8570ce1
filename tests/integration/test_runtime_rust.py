"""The rust:1.85 kind (Debian trixie's rustc 1.85 and cargo, serde's crates from Debian's packaged registry, compiled
at init like apache/openwhisk-runtime-rust's image): OpenWhisk's documented examples cold then warm, logs, `--main`,
zips with a Cargo.toml, a precompiled binary, and the error paths with OpenWhisk's statuses and texts."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import zipfile

import pytest

from tests.integration import kinds
from tests.integration.kinds import NO_BINARY, anns, invoke, logs, put, uniq, zipped
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

KIND = "rust:1.85"
IMAGE = "streamwhisk/action-rust185:latest"

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


c = kinds.client_fixture("rust")


def test_listed_as_the_rust_family_default(stack: Stack, c: Client) -> None:
    info = kinds.family_is_listed(stack, "rust", KIND, require_main=False)
    assert [r["image"] for r in info] == ["streamwhisk/action-rust185"]
    assert put(c, "rust:default", HELLO, stored=KIND)  # stored as rust:1.85 (put checks)
    version = subprocess.run(["docker", "run", "--rm", "--network", "none", IMAGE, "rustc", "--version"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    assert version.startswith("rustc 1.85.")


def test_docs_hello_cold_then_warm_with_logs(c: Client) -> None:
    name, cold, _ = kinds.cold_then_warm(c, KIND, HELLO, results=({"greeting": "Hello, Ada"},
                                                                  {"greeting": "Hello, Bob"}))
    assert invoke(c, name)["response"]["result"] == {"greeting": "Hello, stranger"}
    lines = kinds.clean_logs(c, cold["activationId"], "greeting Ada")
    assert any(line.endswith("stdout: greeting Ada") for line in lines), lines
    # serde's error for a parameter of the wrong type: the launcher answers {"error": ...}, an application error.
    rec = invoke(c, name, {"name": 3})
    assert rec["response"]["status"] == "application error"
    assert rec["response"]["result"] == {"error": "invalid type: integer `3`, expected a string"}


def test_environment_and_main_names_another_function(c: Client) -> None:
    name = put(c, KIND, ENTRIES)
    rec = invoke(c, name)
    result = rec["response"]["result"]
    assert result["activation_id"] == rec["activationId"]
    assert result["namespace"] == rec["namespace"] and result["deadline"] is True
    assert result["action_name"] == f"/{rec['namespace']}/{name}"
    assert any(line.endswith("stderr: hello stderr") for line in logs(c, rec["activationId"], "hello stderr"))
    rec = invoke(c, put(c, KIND, ENTRIES, main="naim"), {"a": [1, {"b": None}]})
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
    echo = put(c, KIND, code)
    assert invoke(c, echo)["response"]["result"] == ["c", "d"]
    # runtime-rust's "support return array result"; in a sequence an action's array is the next one's input.
    first = put(c, KIND, "extern crate serde_json;\nuse serde_json::{Error, Value};\n\n"
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
    rec = invoke(c, put(c, KIND, zipped(files), binary=True), {"name": "Zed"})
    assert rec["response"]["result"] == {"word": "zipped", "name": "Zed"}


def test_precompiled_binary(c: Client) -> None:
    # The image as an offline compiler, as OpenWhisk's ActionLoop images: `-compile main` turns sources into a zip.
    p = kinds.compile_offline(IMAGE, HELLO.encode())
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    with zipfile.ZipFile(io.BytesIO(p.stdout)) as zf:
        assert zf.namelist() == ["exec"] and zf.read("exec")[:4] == b"\x7fELF"
    rec = invoke(c, put(c, KIND, base64.b64encode(p.stdout).decode(), binary=True), {"name": "Bin"})
    assert rec["response"]["result"] == {"greeting": "Hello, Bin"}
    assert anns(rec)["initTime"] < 2000  # nothing to compile


def test_compile_error_fails_the_init_with_the_compiler_message_in_the_logs(c: Client) -> None:
    code = "use serde_json::{Error, Value};\npub fn main(args: Value) -> Result<Value, Error> {\n    Ok(args +)\n}\n"
    lines = kinds.init_fails(c, KIND, code, NO_BINARY, "expected expression")
    assert any(line.endswith("stderr: error: expected expression, found `)`") for line in lines), lines
    assert any("--> actions/src/lib.rs:3:" in line for line in lines), lines
    # A --main that the crate does not have.
    lines = kinds.init_fails(c, KIND, ENTRIES, NO_BINARY, "nothere", main="nothere")
    assert any("nothere" in line for line in lines), lines


def test_runtime_errors(c: Client) -> None:
    # Err(...) is answered {"error": its text}: an application error, the text also logged.
    rec = invoke(c, put(c, KIND, ENTRIES, main="fails"))
    assert rec["response"]["status"] == "application error"
    assert rec["response"]["result"] == {"error": 'it "failed"'}
    assert any(line.endswith('stderr: error: it "failed"') for line in logs(c, rec["activationId"], "failed"))
    # A panic ends the process: the proxy answers 400 "command exited" (runtime-go's), a developer error.
    rec = invoke(c, put(c, KIND, ENTRIES, main="panics"))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "command exited"}
    lines = logs(c, rec["activationId"], "panicked")
    assert any(re.search(r"stderr: thread 'main' panicked at actions/src/lib\.rs:\d+:\d+:$", line) for line in lines)
    assert any(line.endswith("stderr: boom") for line in lines), lines
    rec = invoke(c, put(c, KIND, ENTRIES, main="exits"))  # std::process::exit(1)
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "command exited"}


def test_timeout(c: Client) -> None:
    rec = invoke(c, put(c, KIND, ENTRIES, main="sleeps", timeout=5000))
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": "The action exceeded its time limits of 5000 milliseconds."}
    assert anns(rec)["timeout"] is True
