"""Build the action runtime images locally (no registry is reachable).

Base images: Debian bookworm minbase + python3 (or nodejs and unzip) via mmdebstrap, imported with `docker import`.
Action images: base + the action proxy. Tags are content hashes so rebuilds are skipped.

Node.js: Debian bookworm ships nodejs 18 (18.20.x), so the kind is honestly `nodejs:18`.
Blackbox: a small local test image (the python image with a built-in action) stands in for a user's image.
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
NODE_PROXY = HERE / "nodejs" / "proxy.js"
NODE_PACKAGES = ("package.json", "package-lock.json")  # what every nodejs action can require (openwhisk, ...)
BLACKBOX_TEST_IMAGE = "streamwhisk/blackbox-test:latest"
BLACKBOX_ACTION = """def main(args):
    print("blackbox running")
    return {"blackbox": True, "args": args}
"""
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
NODE_DOCKERFILE = """FROM {base}
ENV LANG=C.UTF-8 NODE_ENV=production NODE_PATH=/opt/ow/node_modules
ADD node_modules.tar /opt/ow/
COPY proxy.js /opt/ow/proxy.js
CMD ["node", "/opt/ow/proxy.js"]
"""
BLACKBOX_DOCKERFILE = """FROM {base}
ENV OW_BUILTIN_ACTION=/opt/action/__main__.py
COPY action.py /opt/action/__main__.py
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


def _mmdebstrap_args(mirror: str, include: str = "python3") -> list[str]:
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    args = ["mmdebstrap", "--variant=minbase", f"--include={include}", "--quiet"]
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


def _build_base(tag: str, mirror: str, progress: Callable[[str], None], include: str = "python3") -> None:
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed; cannot build the base image (apt-get install mmdebstrap)")
    args = _mmdebstrap_args(mirror, include)
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


def _build_image(
    client: docker.DockerClient, dockerfile: str, files: dict[str, bytes], tag: str, progress: Callable[[str], None],
    prepare: Callable[[Path], None] | None = None,
) -> None:
    progress(f"building {tag}")
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(dockerfile)
        for name, data in files.items():
            Path(ctx, name).write_bytes(data)
        if prepare is not None:
            prepare(Path(ctx))
        client.images.build(path=ctx, tag=tag, rm=True, forcerm=True, pull=False)


def _node_modules(ctx: Path) -> None:
    """npm on the host (the image build has no registry) installs the locked packages; the image ADDs the tar."""
    stage = ctx / "npm"
    stage.mkdir()
    for name in NODE_PACKAGES:
        shutil.copy(HERE / "nodejs" / name, stage / name)
    subprocess.run(["npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=stage,
                   check=True, capture_output=True)
    subprocess.run(["tar", "-cf", str(ctx / "node_modules.tar"), "-C", str(stage), "node_modules"], check=True)
    shutil.rmtree(stage)


def _ensure(
    client: docker.DockerClient, dockerfile: str, files: dict[str, bytes], repo: str, force: bool,
    progress: Callable[[str], None], prepare: Callable[[Path], None] | None = None,
) -> str:
    """Build `repo:<content hash>` unless present (prepare adds derived files); tag it `repo:latest` too."""
    tag = f"{repo}:{_digest(dockerfile, *(n.encode() + b'=' + d for n, d in sorted(files.items())))}"
    if force or not _exists(client, tag):
        _build_image(client, dockerfile, files, tag, progress, prepare)
    client.images.get(tag).tag(repo, "latest")
    return tag


def _ensure_base(
    client: docker.DockerClient, repo: str, include: str, mirror: str, force: bool, progress: Callable[[str], None]
) -> str:
    tag = f"{repo}:{_digest(' '.join(_mmdebstrap_args('MIRROR', include)))}"
    if force or not _exists(client, tag):
        _build_base(tag, mirror, progress, include)
    else:
        progress(f"base image {tag} exists")
    return tag


def ensure_images(progress: Callable[[str], None] = print, force: bool = False) -> dict[str, str]:
    """Build (or reuse) the runtime images; returns kind -> image tag (and "blackbox" -> the local test image)."""
    client = docker.from_env()
    try:
        mirror = host_mirror()
        py_base = _ensure_base(client, "streamwhisk/base-python", "python3", mirror, force, progress)
        py = _ensure(client, DOCKERFILE.format(base=py_base), {"proxy.py": PROXY.read_bytes()},
                     "streamwhisk/action-python", force, progress)
        node_base = _ensure_base(client, "streamwhisk/base-nodejs", "nodejs,unzip", mirror, force, progress)
        node_files = {"proxy.js": NODE_PROXY.read_bytes(), **{n: (HERE / "nodejs" / n).read_bytes()
                                                               for n in NODE_PACKAGES}}
        node = _ensure(client, NODE_DOCKERFILE.format(base=node_base), node_files, "streamwhisk/action-nodejs",
                       force, progress, _node_modules)
        box = _ensure(client, BLACKBOX_DOCKERFILE.format(base=py), {"action.py": BLACKBOX_ACTION.encode()},
                      BLACKBOX_TEST_IMAGE.split(":")[0], force, progress)
        images = {"python:3": py, "nodejs:18": node, "blackbox": box}
        for kind, tag in images.items():
            progress(f"{kind} -> {tag} ({client.images.get(tag).attrs['Size'] / 1e6:.1f} MB)")
        return images
    finally:
        client.close()


if __name__ == "__main__":
    import sys

    t = time.monotonic()
    images = ensure_images(force="--force" in sys.argv)
    print(f"{images} in {time.monotonic() - t:.1f}s")
