"""Install what the stack needs and is missing: apt packages, the Kafka classpath (Maven), PouchDB Server (npm)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from contracts.settings import REPO, Settings

Progress = Callable[[str], None]

KAFKA_POM = REPO / "deploy" / "kafka" / "pom.xml"
POUCHDB_VERSION = "4.2.0"

# binary -> Debian package; only packages whose binary is missing get installed.
APT_PACKAGES = {
    "dockerd": "docker.io",
    "docker": "docker.io",
    "nginx": "nginx",
    "mmdebstrap": "mmdebstrap",
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
    "node": "nodejs",
    "npm": "npm",
    "iptables": "iptables",  # the action network's wall (invoker/network.py)
    "ip": "iproute2",  # test hosts in network namespaces (tests/nethost.py)
}
# Only the test suite needs these (`streamwhisk test`), not `up`.
TEST_APT_PACKAGES = {
    "faketime": "faketime",  # libfaketime: clock jumps in tests/chaos/test_clock_jump.py
    "chromium": "chromium",  # headless browser for the console's tests (tests/integration/test_console.py)
}


class InstallError(Exception):
    """A prerequisite could not be installed; the message says which, the command and its output tail."""


def kafka_libs(settings: Settings) -> Path:
    return settings.home / "kafka-libs"


def pouchdb_bin(settings: Settings) -> Path:
    return settings.home / "node" / "node_modules" / ".bin" / "pouchdb-server"


def _stamp(settings: Settings, name: str) -> Path:
    return settings.home / "stamps" / name


def _run(what: str, argv: Sequence[str], log: Path, cwd: Path | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log, "wb") as out:
        rc = subprocess.call(list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL)
    if rc != 0:
        lines = log.read_text(errors="replace").splitlines()[-20:]
        raise InstallError(f"installing {what} failed (exit {rc}): {' '.join(argv)}\n  log: {log}\n"
                           + "\n".join("  | " + line for line in lines))


def ensure_apt(settings: Settings, progress: Progress, tests: bool = False) -> None:
    wanted = {**APT_PACKAGES, **(TEST_APT_PACKAGES if tests else {})}
    missing = sorted({pkg for binary, pkg in wanted.items() if shutil.which(binary) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        names = " ".join(missing)
        raise InstallError(f"missing packages {names}: run as root or `apt-get install {names}`")
    t0 = time.monotonic()
    progress(f"[apt] installing {' '.join(missing)}…")
    log = settings.home / "logs" / "install-apt.log"
    _run("apt package index", ["apt-get", "update"], log)
    _run(", ".join(missing), ["apt-get", "install", "-y", "--no-install-recommends", *missing], log)
    progress(f"[apt] installed ({time.monotonic() - t0:.1f} s)")


def ensure_kafka_libs(settings: Settings, progress: Progress) -> None:
    libs, stamp = kafka_libs(settings), _stamp(settings, "kafka-libs.sha256")
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    if libs.is_dir() and stamp.is_file() and stamp.read_text().strip() == digest:
        return
    t0 = time.monotonic()
    progress("[kafka] downloading jars via maven…")
    # Download next to the final dir and swap, so a failed run never leaves a half classpath behind.
    tmp = libs.with_name(libs.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _run("Kafka jars (Maven Central)",
         ["mvn", "-B", "-q", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
          f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
         settings.home / "logs" / "install-kafka.log")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    progress(f"[kafka] {len(list(libs.glob('*.jar')))} jars in {libs} ({time.monotonic() - t0:.1f} s)")


def ensure_pouchdb(settings: Settings, progress: Progress) -> None:
    if pouchdb_bin(settings).exists():
        return
    t0 = time.monotonic()
    progress(f"[couchdb] installing pouchdb-server@{POUCHDB_VERSION} via npm…")
    prefix = settings.home / "node"
    prefix.mkdir(parents=True, exist_ok=True)
    _run("PouchDB Server (npm)",
         ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(prefix),
          f"pouchdb-server@{POUCHDB_VERSION}"],
         settings.home / "logs" / "install-pouchdb.log")
    progress(f"[couchdb] pouchdb-server installed ({time.monotonic() - t0:.1f} s)")


def install_all(settings: Settings, progress: Progress = print, tests: bool = False) -> None:
    ensure_apt(settings, progress, tests)
    ensure_kafka_libs(settings, progress)
    ensure_pouchdb(settings, progress)
