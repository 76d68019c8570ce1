"""Get the tools that check the Helm chart: `helm` and an offline Kubernetes schema validator.

No release binaries can be downloaded here, so helm is built from its Go module (`go install`, ~3 min on
2 cores the first time; the Go build cache makes later builds quick) and the schemas come from the
kubernetes-validate wheel (PyPI), which ships them: nothing is fetched at validation time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HELM_VERSION = "v3.18.4"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
# Where we put the helm we build (outside the work tree: a fresh clone reuses it).
TOOLS_BIN = Path(os.environ.get("WSK_TOOLS_BIN", str(Path.home() / ".cache" / "streamwhisk" / "bin")))
BUILD_TIMEOUT = 1200.0


class ToolError(Exception):
    """A tool could not be found or installed; the message says which and why."""


def _helm_ok(path: str) -> bool:
    try:
        out = subprocess.run([path, "version", "--short"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip().startswith("v3.")


def find_helm() -> str | None:
    for cand in (shutil.which("helm"), str(TOOLS_BIN / "helm")):
        if cand and Path(cand).is_file() and _helm_ok(cand):
            return cand
    return None


def ensure_helm() -> str:
    """Path of a helm v3 binary, built with `go install` into TOOLS_BIN if none is there."""
    found = find_helm()
    if found:
        return found
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if go is None:
        raise ToolError("helm is not installed and there is no Go toolchain to build it "
                        f"(go install {HELM_MODULE}@{HELM_VERSION})")
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(TOOLS_BIN), GOFLAGS="-buildvcs=false", CGO_ENABLED="0")
    # The version string helm reports; a plain `go install` would say "v3.18" without the patch level.
    ldflags = f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"
    argv = [go, "install", "-ldflags", ldflags, f"{HELM_MODULE}@{HELM_VERSION}"]
    try:
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ToolError(f"building helm took over {BUILD_TIMEOUT:.0f} s: {' '.join(argv)}") from None
    if res.returncode != 0 or not _helm_ok(str(TOOLS_BIN / "helm")):
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
        raise ToolError(f"building helm failed (exit {res.returncode}): {' '.join(argv)}\n{tail}")
    return str(TOOLS_BIN / "helm")


def ensure_validator() -> None:
    """kubernetes-validate in this interpreter's environment (pip install on first use)."""
    if importlib.util.find_spec("kubernetes_validate") is not None:
        return
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", KUBERNETES_VALIDATE],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise ToolError(f"pip install {KUBERNETES_VALIDATE} failed:\n{res.stderr.strip()[-2000:]}")
    importlib.invalidate_caches()


def validate(doc: dict[str, Any], kube_version: str) -> None:
    """Raise ValueError naming the object if doc does not match the (strict) schema of kube_version."""
    ensure_validator()
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        meta = doc.get("metadata") or {}
        path = "/".join(str(p) for p in e.path)
        raise ValueError(f"{doc.get('kind')}/{meta.get('name')}: {path}: {e.message}") from None


def main() -> int:
    """`python -m cli.helmtools`: install both and print where helm is."""
    try:
        helm = ensure_helm()
        ensure_validator()
    except ToolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(helm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
