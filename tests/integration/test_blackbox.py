"""Blackbox actions as OpenWhisk users make them: `wsk sdk install docker` (the skeleton from /blackbox.tar.gz),
built on this node and run with --docker; zips with an `exec` run with --native; an absent image is named."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.stack import Client, Stack

pytestmark = pytest.mark.integration


def _put(c: Client, name: str, image: str, code: str | None = None) -> None:
    exec_: dict[str, Any] = {"kind": "blackbox", "image": image, **({"code": code, "binary": True} if code else {})}
    r = c.put(f"actions/{name}", {"exec": exec_}, overwrite=True)
    assert r.status_code == 200, r.text


def _invoke(c: Client, name: str, params: dict[str, Any]) -> dict[str, Any]:
    r = c.post(f"actions/{name}", params, blocking=True)
    assert r.status_code in (200, 502), r.text
    rec: dict[str, Any] = r.json()
    return rec


@pytest.fixture(scope="module")
def skeleton_image(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """What `wsk sdk install docker` fetches, unpacked and built with its own script."""
    r = requests.get(f"{stack.url}/blackbox.tar.gz", timeout=10)
    assert r.status_code == 200
    root = tmp_path_factory.mktemp("sdk")
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        tar.extractall(root, filter="data")
    skel = root / "dockerSkeleton"
    assert {p.name for p in skel.iterdir()} >= {"Dockerfile", "exec", "buildAndPush.sh", "README.md"}
    tag = f"streamwhisk-test/skeleton-{uuid.uuid4().hex[:8]}"
    subprocess.run(["sh", "buildAndPush.sh", tag], cwd=skel, check=True, capture_output=True, timeout=300)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_the_sdk_skeleton_builds_and_runs(stack: Stack, skeleton_image: str) -> None:
    c = stack.client()
    _put(c, "skel", skeleton_image)
    rec = _invoke(c, "skel", {"name": "World"})
    assert rec["response"]["result"] == {"msg": "Hello from an arbitrary program!", "args": {"name": "World"}}
    warm = _invoke(c, "skel", {"n": 2})
    assert warm["response"]["result"]["args"] == {"n": 2}
    logs = c.get(f"activations/{rec['activationId']}/logs").json()["logs"]
    assert any(line.endswith("stdout: This is an example log message from an arbitrary program!") for line in logs)


def _zip_exec(script: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("exec")
        info.external_attr = 0o755 << 16
        zf.writestr(info, script)
    return base64.b64encode(buf.getvalue()).decode()


def test_native_zip_and_its_errors(stack: Stack) -> None:
    """`--native` is the skeleton image (under OpenWhisk's name) with a zip holding `exec`."""
    c = stack.client()
    _put(c, "native", "openwhisk/dockerskeleton",
         _zip_exec('#!/bin/sh\necho "env $__OW_ACTION_NAME"\necho "{\\"got\\": $1}"\n'))
    rec = _invoke(c, "native", {"a": 1})
    assert rec["response"]["result"] == {"got": {"a": 1}}
    _put(c, "native_bad", "openwhisk/dockerskeleton", _zip_exec("#!/bin/sh\necho not json\n"))
    bad = _invoke(c, "native_bad", {})
    assert bad["response"]["status"] == "action developer error"
    assert bad["response"]["result"] == {"error": "The action did not return a dictionary."}
    _put(c, "stub", "openwhisk/dockerskeleton")  # no code: the image's own /action/exec
    assert _invoke(c, "stub", {})["response"]["result"] == {
        "error": "This is a stub action. Replace it with custom logic."}


def test_an_absent_image_is_named(stack: Stack) -> None:
    c = stack.client()
    image = f"nobody/absent-{uuid.uuid4().hex[:6]}"
    _put(c, "absent", image)
    rec = _invoke(c, "absent", {})
    assert rec["response"]["status"] == "action developer error"
    assert rec["response"]["result"] == {"error": f"Failed to pull container image '{image}'."}

