"""Build the action runtime images locally (no registry is reachable).

Base image: Debian bookworm minbase + python3 via mmdebstrap, imported with `docker import`.
Action image: base + the stdlib action proxy. Tags are content hashes so rebuilds are skipped.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).resolve().parent
PROXY = HERE / "python" / "proxy.py"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"

# Docs/man/locales are never needed by actions; excluding them at dpkg level keeps the image small.
DPKG_EXCLUDES = [
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
]
CLEANUP_HOOK = (
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/* "$1"/usr/share/doc/* '
    '"$1"/usr/share/man/* "$1"/usr/share/locale/*/'
)

DOCKERFILE = """FROM {base}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
COPY proxy.py /opt/ow/proxy.py
CMD ["python3", "-u", "/opt/ow/proxy.py"]
"""


def host_mirror() -> str:
    """Reuse the Debian mirror the host's apt is configured with (falls back to deb.debian.org)."""
    for src in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(Path("/etc/apt/sources.list.d").glob("*")):
        if not src.is_file():
            continue
        text = src.read_text(errors="replace")
        for m in re.finditer(r"(?:URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = m.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


def _mmdebstrap_args(mirror: str) -> list[str]:
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    args = ["mmdebstrap", "--variant=minbase", "--include=python3", "--quiet"]
    if Path(MERGED_USR_HOOKS).is_dir():  # merge /usr without the usrmerge package (it drags in ~50 MB of perl)
        args.append(f"--hook-dir={MERGED_USR_HOOKS}")
    args += [f"--dpkgopt={o}" for o in DPKG_EXCLUDES]
    args += [f"--customize-hook={CLEANUP_HOOK}", SUITE, "-"]
    args += [
        f"deb {mirror} {SUITE} main",
        f"deb {mirror} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ]
    return args


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build_base(tag: str, mirror: str, progress: Callable[[str], None]) -> None:
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed; cannot build the base image (apt-get install mmdebstrap)")
    args = _mmdebstrap_args(mirror)
    progress(f"building {tag}: {' '.join(args[:3])} ... | docker import (mirror {mirror})")
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        deb = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        imp = subprocess.run(
            ["docker", "import", "-", tag], stdin=deb.stdout, capture_output=True, text=True, check=False
        )
        assert deb.stdout is not None
        deb.stdout.close()
        rc = deb.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if rc != 0:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"mmdebstrap failed (exit {rc}) building {tag} from {mirror}:\n{tail}")
    if imp.returncode != 0:
        raise RuntimeError(f"docker import failed for {tag}: {imp.stderr.strip()}")
    progress(f"built {tag} in {time.monotonic() - t0:.1f}s")


def _build_action(client: docker.DockerClient, base: str, tag: str, progress: Callable[[str], None]) -> None:
    progress(f"building {tag} on {base}")
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(DOCKERFILE.format(base=base))
        shutil.copy(PROXY, Path(ctx, "proxy.py"))
        client.images.build(path=ctx, tag=tag, rm=True, forcerm=True, pull=False)


def ensure_images(progress: Callable[[str], None] = print, force: bool = False) -> dict[str, str]:
    """Build (or reuse) the runtime images; returns kind -> image tag."""
    client = docker.from_env()
    try:
        mirror = host_mirror()
        base_tag = f"streamwhisk/base-python:{_digest(' '.join(_mmdebstrap_args('MIRROR')))}"
        if force or not _exists(client, base_tag):
            _build_base(base_tag, mirror, progress)
        else:
            progress(f"base image {base_tag} exists")
        action_tag = f"streamwhisk/action-python:{_digest(base_tag, DOCKERFILE, PROXY.read_bytes())}"
        if force or not _exists(client, action_tag):
            _build_action(client, base_tag, action_tag, progress)
        else:
            progress(f"action image {action_tag} exists")
        client.images.get(action_tag).tag("streamwhisk/action-python", "latest")
        size_mb = client.images.get(action_tag).attrs["Size"] / 1e6
        progress(f"python:3 -> {action_tag} ({size_mb:.1f} MB)")
        return {"python:3": action_tag}
    finally:
        client.close()


if __name__ == "__main__":
    import sys

    t = time.monotonic()
    images = ensure_images(force="--force" in sys.argv)
    print(f"{images} in {time.monotonic() - t:.1f}s")
