"""The Go and Rust compile scripts' source handling (runtimes/{go,rust}/compile) and the ActionLoop image's offline
compiler (runtimes/actionloop/precompile.py), without a toolchain: what they lay out for `go build` / `cargo build`."""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

RUNTIMES = Path(__file__).resolve().parents[2] / "runtimes"


def load(family: str, name: str = "compile") -> ModuleType:
    path = RUNTIMES / family / name
    loader = importlib.machinery.SourceFileLoader(f"{family}_{name.removesuffix('.py')}", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


GO = load("go")
RUST = load("rust")


@pytest.mark.parametrize(("main", "func"), [("main", "Main"), ("hello", "Hello"), ("Hello", "Hello"),
                                            ("helloWorld", "Helloworld")])  # Python's capitalize, as OpenWhisk's
def test_go_single_file_gets_the_launcher_calling_the_capitalised_main(tmp_path: Path, main: str, func: str) -> None:
    (tmp_path / "exec").write_text("package main\n\nfunc X() {}\n")
    GO.sources(main, str(tmp_path))
    assert (tmp_path / "exec__.go").read_text() == "package main\n\nfunc X() {}\n"
    launcher = (tmp_path / "main__.go").read_text()
    assert f"reflect.ValueOf({func})" in launcher and "Main" not in launcher.replace(func, "")


def test_go_own_main_means_no_launcher(tmp_path: Path) -> None:
    (tmp_path / "exec").write_text("package main\n\nimport \"os\"\n\nfunc main () {\n\tos.Exit(0)\n}\n")
    GO.sources("main", str(tmp_path))
    assert (tmp_path / "exec__.go").exists() and not (tmp_path / "main__.go").exists()


def test_go_zip_with_a_main_folder_gets_the_launcher_there(tmp_path: Path) -> None:
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "main.go").write_text("package main\n")
    GO.sources("main", str(tmp_path))
    assert (tmp_path / "main" / "main__.go").exists() and not (tmp_path / "exec__.go").exists()


def test_go_build_env_is_offline_and_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("__OW_API_KEY", "secret")
    env = GO.go_env()
    assert env["GOTOOLCHAIN"] == "local" and env["CGO_ENABLED"] == "0" and env["GOCACHE"] == GO.CACHE
    assert "__OW_API_KEY" not in env


def test_rust_single_file_becomes_lib_rs_with_the_default_manifest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "exec").write_text("pub fn naim() {}\n")
    ws = tmp_path / "build"
    RUST.sources("naim", str(src), str(ws))
    assert not src.exists()
    assert (ws / "actions" / "src" / "lib.rs").read_text() == "pub fn naim() {}\n"
    assert (ws / "actions" / "Cargo.toml").read_text() == RUST.ACTION_CARGO
    assert 'serde_derive = "1.0"' in RUST.ACTION_CARGO  # the docs' example derives with serde_derive
    main_rs = (ws / "action_loop" / "src" / "main.rs").read_text()
    assert "use actions::naim as action_main;" in main_rs and RUST.USE not in main_rs
    assert 'package = "actions"' in (ws / "action_loop" / "Cargo.toml").read_text()
    assert 'directory = "/usr/share/cargo/registry"' in (ws / ".cargo" / "config.toml").read_text()
    assert 'members = ["action_loop", "actions"]' in (ws / "Cargo.toml").read_text()


def test_rust_zip_keeps_its_manifest_and_any_package_name(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "src").mkdir(parents=True)
    (src / "src" / "lib.rs").write_text("pub fn main() {}\n")
    (src / "Cargo.toml").write_text('[package]\nname = "hello-zip"\nversion = "0.1.0"\n')
    ws = tmp_path / "build"
    RUST.sources("main", str(src), str(ws))
    assert (ws / "actions" / "Cargo.toml").read_text().startswith('[package]\nname = "hello-zip"')
    assert 'package = "hello-zip"' in (ws / "action_loop" / "Cargo.toml").read_text()
    assert "use actions::main as action_main;" in (ws / "action_loop" / "src" / "main.rs").read_text()


def test_precompile_zips_what_the_compiler_made(tmp_path: Path) -> None:
    """`-compile main`: stdin through the proxy's extract and $OW_COMPILER; stdout a zip with an executable exec."""
    compiler = tmp_path / "compile"
    compiler.write_text('#!/bin/sh\necho "compiling $1" >&2\necho compiler-noise\n'
                        'printf "#!/bin/sh\\n# from %s\\n" "$(cat "$2/exec")" > "$3/exec"\n')
    compiler.chmod(0o755)
    env = {**os.environ, "OW_COMPILER": str(compiler)}
    p = subprocess.run([sys.executable, str(RUNTIMES / "actionloop" / "precompile.py"), "hello"],
                       input=b"the source", capture_output=True, env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert b"compiling hello" in p.stderr and b"compiler-noise" in p.stderr  # nothing but the zip on stdout
    with zipfile.ZipFile(io.BytesIO(p.stdout)) as zf:
        assert zf.namelist() == ["exec"]
        assert zf.read("exec") == b"#!/bin/sh\n# from the source\n"
        assert (zf.getinfo("exec").external_attr >> 16) & 0o755 == 0o755
    compiler.write_text("#!/bin/sh\necho 'bad code' >&2\nexit 1\n")
    p = subprocess.run([sys.executable, str(RUNTIMES / "actionloop" / "precompile.py"), "main"],
                       input=b"x", capture_output=True, env=env, timeout=60, check=False)
    assert p.returncode == 1 and p.stdout == b"" and b"bad code" in p.stderr


def test_proxy_makes_a_zipped_binary_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime-go chmods bin/exec: a zip's ELF `exec` without mode bits still runs."""
    proxy = load("actionloop", "proxy.py")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("exec", b"\x7fELF not really")
    monkeypatch.setenv("OW_COMPILER", "/nonexistent/compiler")  # a binary is not compiled
    src = proxy._extract(base64.b64encode(buf.getvalue()).decode(), True, str(tmp_path))
    exe = proxy._build(src, "main")
    assert exe == str(tmp_path / "1" / "bin" / "exec") and os.access(exe, os.X_OK)
