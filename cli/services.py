"""Start, check and stop the parts of a local stack. Shared by `streamwhisk up/down/status` and the tests.

Every process we start has a pid file in <home>/run and a log in <home>/logs; a part whose pid file points at a
live process is left alone, so `up` is idempotent. `up` runs the parts under supervisord (cli/supervise.py,
enabled by `supervise()`), which restarts a crashed one; the test harness starts its private stacks directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cli import procs
from cli import supervise as sv
from cli.install import kafka_libs, pouchdb_bin
from contracts.settings import REPO, Settings
from invoker import network

Progress = Callable[[str], None]

DEPLOY = REPO / "deploy"
STOP_TIMEOUT = 10.0


class StartError(Exception):
    """A part did not start or did not become ready; the message says which and shows its log tail."""


def say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- paths, env, templates

def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def logs_dir(settings: Settings) -> Path:
    return settings.home / "logs"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return logs_dir(settings) / f"{name}.log"


def kafka_hostport(settings: Settings) -> tuple[str, int]:
    host, port = settings.kafka.split(",")[0].rsplit(":", 1)
    return host, int(port)


def couch_hostport(settings: Settings) -> tuple[str, int]:
    url = urlsplit(settings.couchdb)
    return url.hostname or "127.0.0.1", url.port or 5984


def settings_env(settings: Settings) -> dict[str, str]:
    """os.environ plus every setting as WSK_<FIELD>, so children see exactly our settings."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for f in dataclasses.fields(settings):
        env[f"WSK_{f.name.upper()}"] = str(getattr(settings, f.name))
    return env


def render(template: Path, out: Path, values: dict[str, str]) -> bool:
    """Fill {{name}} placeholders (nginx and Kafka configs are full of $ and ${}); True if the file changed."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and out.read_text() == text:
        return False
    out.write_text(text)
    return True


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """Serialise up/down on one home, so two concurrent runs do not both start (or stop) a part."""
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    with open(run_dir(settings) / "cli.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- readiness checks

def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# What a probe of a port that does not (yet) serve HTTP raises: refused, timed out, or something else on the port
# answering with bytes that are no HTTP response (BadStatusLine).
NO_ANSWER = (OSError, ValueError, http.client.HTTPException)


def http_status(url: str, timeout: float = 3.0) -> int | None:
    """HTTP status of a GET (any status counts as an answer), None if nothing answered."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except NO_ANSWER:
        return None


def _wait(what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], bool] | None) -> float:
    t0 = time.monotonic()
    while True:
        if check():
            return time.monotonic() - t0
        if alive is not None and not alive():
            raise StartError(f"{what}: process exited")
        if time.monotonic() - t0 > timeout:
            raise StartError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.2)


def wait_tcp(host: str, port: int, timeout: float, alive: Callable[[], bool] | None = None) -> float:
    return _wait(f"tcp {host}:{port}", lambda: tcp_open(host, port), timeout, alive)


def wait_http(url: str, timeout: float, expect: int | None = 200,
              alive: Callable[[], bool] | None = None) -> float:
    """Wait until GET url answers with status `expect` (any status if None); returns seconds waited."""
    def ok() -> bool:
        status = http_status(url)
        return status is not None and (expect is None or status == expect)
    return _wait(f"GET {url}", ok, timeout, alive)


def wait_catalog(settings: Settings, progress: Progress = say, timeout: float = 60) -> bool:
    """The feed service installs the /whisk.system packages when it starts (feeds/catalog.py). Wait until the
    catalog's last entry is readable (the puts are decided and projected in order), so they are usable once
    `up` (or a test stack) is. False (and a warning) if they are not: the rest of the stack works without."""
    import base64

    from contracts.keys import SYSTEM_KEY
    from feeds.catalog import entries

    t0 = time.monotonic()
    last = entries()[-1][1].split("/", 1)[1]
    req = urllib.request.Request(
        f"http://127.0.0.1:{settings.api_port}/api/v1/namespaces/whisk.system/actions/{last}?code=false",
        headers={"Authorization": "Basic " + base64.b64encode(SYSTEM_KEY.encode()).decode()})

    def readable() -> bool:
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                return int(resp.status) == 200
        except NO_ANSWER:
            return False

    try:
        _wait("the /whisk.system catalog", readable, timeout, None)
    except StartError as e:
        progress(f"[catalog] warning: {e} (see {log_file(settings, 'feeds')})")
        return False
    progress(f"[catalog] /whisk.system packages ready ({time.monotonic() - t0:.1f} s)")
    return True


def kafka_healthy(bootstrap: str, timeout: float = 10.0) -> bool:
    """A metadata round trip through aiokafka (a bare TCP accept comes before the broker can serve)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def check() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            await asyncio.wait_for(admin.list_topics(), timeout)
        finally:
            # close after a failed start may raise; health is already decided
            with contextlib.suppress(Exception):
                await admin.close()

    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(check())
        else:  # called from async code (tests): asyncio.run needs a thread without a loop
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, check()).result()
        return True
    except Exception:
        return False


def couch_healthy(settings: Settings) -> bool:
    req = urllib.request.Request(settings.couchdb.rstrip("/") + "/", headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return isinstance(json.loads(resp.read()), dict)
    except NO_ANSWER:
        return False


def docker_healthy(timeout: float = 20.0) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# ---------------------------------------------------------------- starting

def _already(settings: Settings, name: str, progress: Progress) -> bool:
    pid = procs.read_pid(pid_file(settings, name))
    if pid is not None:
        progress(f"[{name}] already running (pid {pid})")
        return True
    return False


_SUPERVISORS: dict[Path, sv.Supervisor] = {}  # by WSK_HOME: stacks whose parts supervisord runs


def supervise(settings: Settings) -> None:
    """From now on, parts this process starts for this stack run under supervisord (started if needed)."""
    sup = sv.Supervisor(settings)
    sup.ensure(settings_env(settings))
    _SUPERVISORS[settings.home] = sup


def _spawn(settings: Settings, name: str, argv: list[str], env: dict[str, str] | None = None,
           cwd: Path | None = None) -> Callable[[], bool]:
    pf = pid_file(settings, name)
    sup = _SUPERVISORS.get(settings.home)
    if sup is not None:
        sup.run(name, argv, env, cwd, log_file(settings, name))
        # alive while supervisord keeps it: the pid file follows restarts (cli/supervise_events.py)
        return lambda: procs.read_pid(pf) is not None or sup.state(name) not in ("FATAL", "STOPPED", None)
    procs.spawn(argv, log_file(settings, name), pf, env=env, cwd=cwd)
    return lambda: procs.read_pid(pf) is not None


def _fail(settings: Settings, name: str, err: StartError) -> StartError:
    log = log_file(settings, name)
    return StartError(f"[{name}] {err}\n  log: {log}\n" + "\n".join(
        "  | " + line for line in procs.tail(log).splitlines()))


def ensure_docker(settings: Settings, progress: Progress = say) -> None:
    """Use a running Docker daemon, else start dockerd ourselves (and only then will `down` stop it)."""
    t0 = time.monotonic()
    if docker_healthy():
        return
    if _already(settings, "dockerd", progress):
        return
    if shutil.which("dockerd") is None:
        raise StartError("[docker] dockerd not installed (apt-get install docker.io)")
    progress("[docker] starting dockerd…")
    alive = _spawn(settings, "dockerd", ["dockerd"])
    try:
        _wait("docker info", docker_healthy, 60, alive)
    except StartError as e:
        raise _fail(settings, "dockerd", e) from None
    progress(f"[docker] ready ({time.monotonic() - t0:.1f} s)")


def _java(settings: Settings) -> list[str]:
    return ["java", "-cp", str(kafka_libs(settings) / "*")]


def start_kafka(settings: Settings, progress: Progress = say) -> None:
    """Single-node KRaft broker+controller; storage is formatted on first start only."""
    if _already(settings, "kafka", progress):
        return
    host, port = kafka_hostport(settings)
    for p in (port, settings.kafka_controller_port):
        if tcp_open(host, p):
            raise StartError(f"[kafka] {host}:{p} is already in use by a process we did not start")
    t0 = time.monotonic()
    kdir, data = settings.home / "kafka", settings.home / "kafka" / "data"
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    conf, log4j = kdir / "server.properties", kdir / "log4j.properties"
    render(DEPLOY / "kafka" / "server.properties.tmpl", conf, {
        "host": host, "port": str(port), "controller_port": str(settings.kafka_controller_port),
        "data_dir": str(data)})
    render(DEPLOY / "kafka" / "log4j.properties.tmpl", log4j, {"logs_dir": str(logs_dir(settings))})
    log4j_opt = f"-Dlog4j.configuration=file:{log4j}"
    if not (data / "meta.properties").exists():
        progress("[kafka] formatting storage…")
        try:
            uuid = subprocess.run([*_java(settings), log4j_opt, "kafka.tools.StorageTool", "random-uuid"],
                                  capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            subprocess.run([*_java(settings), log4j_opt, "kafka.tools.StorageTool", "format", "-t", uuid,
                            "-c", str(conf)], capture_output=True, text=True, check=True)
        except subprocess.CalledProcessError as e:
            raise StartError(f"[kafka] formatting storage failed: {' '.join(e.cmd)}\n{e.stdout}{e.stderr}") from None
    progress(f"[kafka] starting on {host}:{port}…")
    alive = _spawn(settings, "kafka", [
        "java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs_dir(settings)}", log4j_opt,
        "-cp", str(kafka_libs(settings) / "*"), "kafka.Kafka", str(conf)])
    try:
        wait_tcp(host, port, 60, alive)
        _wait("kafka metadata", lambda: kafka_healthy(settings.kafka, 5), 60, alive)
    except StartError as e:
        raise _fail(settings, "kafka", e) from None
    progress(f"[kafka] ready on {host}:{port} ({time.monotonic() - t0:.1f} s)")


def start_couch(settings: Settings, progress: Progress = say) -> None:
    """PouchDB Server, which speaks the CouchDB HTTP API, with its data in <home>/pouchdb."""
    if _already(settings, "couchdb", progress):
        return
    host, port = couch_hostport(settings)
    if tcp_open(host, port):
        raise StartError(f"[couchdb] {host}:{port} is already in use by a process we did not start")
    t0 = time.monotonic()
    ddir = settings.home / "pouchdb"
    ddir.mkdir(parents=True, exist_ok=True)
    # pouchdb-server keeps its own settings (and a uuid) in config.json; only steer its log file.
    cfg_path = ddir / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    cfg.setdefault("log", {})["file"] = str(log_file(settings, "couchdb-requests"))
    cfg_path.write_text(json.dumps(cfg, indent=2))
    progress(f"[couchdb] starting pouchdb-server on {host}:{port}…")
    alive = _spawn(settings, "couchdb", [
        str(pouchdb_bin(settings)), "--host", host, "--port", str(port), "--dir", str(ddir),
        "--config", str(cfg_path), "-n"], cwd=ddir)
    try:
        _wait(f"GET {settings.couchdb}", lambda: couch_healthy(settings), 60, alive)
    except StartError as e:
        raise _fail(settings, "couchdb", e) from None
    progress(f"[couchdb] ready on {settings.couchdb} ({time.monotonic() - t0:.1f} s)")


CONNECT_LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.reflections=ERROR
"""


def start_connect(settings: Settings, progress: Progress = say) -> None:
    """A distributed Kafka Connect worker (connectors and offsets live in Kafka topics) for connector feeds."""
    if _already(settings, "connect", progress):
        return
    url = f"http://127.0.0.1:{settings.connect_port}/"
    if http_status(url) == 200:
        progress(f"[connect] already running on {url}")
        return
    t0 = time.monotonic()
    cdir = settings.home / "connect"
    cdir.mkdir(parents=True, exist_ok=True)
    conf, log4j = cdir / "worker.properties", cdir / "log4j.properties"
    group = f"{settings.prefix}-connect"
    conf.write_text("\n".join([
        f"bootstrap.servers={settings.kafka}", f"group.id={group}",
        f"listeners=http://127.0.0.1:{settings.connect_port}",
        "rest.advertised.host.name=127.0.0.1", f"rest.advertised.port={settings.connect_port}",
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.storage.StringConverter",
        *(f"{k}.storage.topic={group}-{k}s" for k in ("config", "offset", "status")),
        *(f"{k}.storage.replication.factor=1" for k in ("config", "offset", "status")),
        "offset.storage.partitions=1", "status.storage.partitions=1", "offset.flush.interval.ms=1000",
        "scheduled.rebalance.max.delay.ms=0", "",
    ]))
    log4j.write_text(CONNECT_LOG4J)
    progress(f"[connect] starting Kafka Connect on {url}…")
    alive = _spawn(settings, "connect", [
        "java", "-Xms128m", "-Xmx384m", "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}",
        "-cp", str(kafka_libs(settings) / "*"), "org.apache.kafka.connect.cli.ConnectDistributed", str(conf)])
    try:
        wait_http(url, 120, 200, alive)
    except StartError as e:
        raise _fail(settings, "connect", e) from None
    progress(f"[connect] ready on {url} ({time.monotonic() - t0:.1f} s)")


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    args: tuple[str, ...] = ()


def components(settings: Settings) -> list[Component]:
    """Streamwhisk's own processes in start order."""
    parts = [Component("api", "api"), Component("streams", "streams")]
    # More Faust workers share the partitions (WSK_STREAMS_WORKERS <= WSK_PARTITIONS to give each some work).
    parts += [Component(f"streams{i}", "streams", ("--id", str(i))) for i in range(1, settings.streams_workers)]
    parts.append(Component("projections", "projections"))
    parts += [Component(f"invoker{i}", "invoker", ("--id", str(i))) for i in range(settings.invokers)]
    parts.append(Component("feeds", "feeds"))  # alarm and Kafka feed providers (feeds/)
    return parts


def metrics_port(settings: Settings, name: str) -> int:
    """The /metrics port of a part (its WSK_METRICS_PORT): metrics_base_port + api 0, projections 1, feeds 2,
    streams workers 10+id, invokers 30+id (contracts/topics.py MAX_INVOKERS: 16); 0 (any free port) when the
    base is 0.

    >>> s = Settings(metrics_base_port=29100)
    >>> [metrics_port(s, n) for n in ("api", "streams", "streams1", "invoker3", "feeds")]
    [29100, 29110, 29111, 29133, 29102]
    """
    if not settings.metrics_base_port:
        return 0
    fixed = {"api": 0, "projections": 1, "feeds": 2}
    if name in fixed:
        return settings.metrics_base_port + fixed[name]
    for stem, first in (("streams", 10), ("invoker", 30)):
        num = name[len(stem):]
        if name.startswith(stem) and (num.isdigit() or not num):
            return settings.metrics_base_port + first + int(num or 0)
    return 0


def module_available(module: str) -> bool:
    """True if `python -m module` can run (a package needs a __main__)."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{module}.__main__")
    except (ImportError, ValueError):
        return False
    return spec is not None


def start_component(settings: Settings, name: str, module: str, args: tuple[str, ...] | list[str] = (),
                    progress: Progress = say, wait: bool = True,
                    env: Mapping[str, str] | None = None) -> Literal["started", "running", "absent"]:
    """Start `<python> -m module args` unless running or the module does not exist (yet); wait: check readiness.
    `env`: more environment for the process (tests: e.g. libfaketime's)."""
    if not module_available(module):
        progress(f"[{name}] not available yet")
        return "absent"
    if _already(settings, name, progress):
        return "running"
    more = {"WSK_METRICS_PORT": str(metrics_port(settings, name)), **(env or {})}
    _spawn(settings, name, [sys.executable, "-m", module, *args], env={**settings_env(settings), **more}, cwd=REPO)
    if wait:
        wait_component(settings, name, progress, time.monotonic())
    return "started"


def wait_component(settings: Settings, name: str, progress: Progress, started: float) -> None:
    """API: GET /ping -> 200 within 60 s; others: still alive 2 s after start."""
    pf = pid_file(settings, name)

    def alive() -> bool:
        return procs.read_pid(pf) is not None

    try:
        if name == "api":
            wait_http(f"http://127.0.0.1:{settings.api_port}/ping", 60, 200, alive)
        else:
            time.sleep(max(0.0, started + 2 - time.monotonic()))
            if not alive():
                raise StartError("process exited")
    except StartError as e:
        raise _fail(settings, name, e) from None
    progress(f"[{name}] ready ({time.monotonic() - started:.1f} s)")


def nginx_paths(settings: Settings) -> tuple[Path, Path, Path]:
    prefix = settings.home / "nginx"
    return prefix, prefix / "nginx.conf", prefix / "logs" / "error.log"


def ensure_action_network(settings: Settings, progress: Progress = say) -> None:
    """The walled-off network of action containers, made before nginx so that nginx listens on its gateway."""
    if not network.WANTED:
        progress("[network] actions get no network (WSK_ACTION_NETWORK=none)")
        return
    prune_action_networks(settings, progress)
    try:
        net = network.ensure(settings)
    except Exception as e:  # the invokers then give actions no network: isolation comes first
        progress(f"[network] warning: no action network, actions will have none: {e}")
        return
    progress(f"[network] {net.name}: {net.subnet}, platform walled off; API for actions at "
             f"http://{net.gateway}:{settings.nginx_port}")


def left_behind(created: str, now_s: float, grace_s: float = 600) -> bool:
    """Old enough that a stack with no live process is gone, not still starting (Docker's RFC 3339 time, UTC).

    >>> from calendar import timegm
    >>> left_behind("2026-12-01T06:00:00.123456789Z", timegm((2026, 12, 1, 6, 11, 0)))
    True
    >>> left_behind("2026-12-01T06:00:00Z", timegm((2026, 12, 1, 6, 9, 0)))
    False
    """
    return created[:19] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_s - grace_s))


def prune_action_networks(settings: Settings, progress: Progress = say) -> None:
    """Remove the networks of stacks whose processes are all gone (a killed test run leaves its own behind, and
    Docker's address pools run out after about thirty)."""
    try:
        found = network.stacks()
    except Exception:  # no Docker: ensure() says so
        return
    for prefix, home, created in found:
        run = Path(home) / "run" if home else None
        if prefix == settings.prefix or run is None or not left_behind(created, time.time()):
            continue
        if any(procs.read_pid(p) for p in run.glob("*.pid")):
            continue
        network.remove(prefix)
        progress(f"[network] removed {network.names(prefix)[0]}, left by a stack that is gone ({home})")


def render_nginx(settings: Settings) -> bool:
    prefix, conf, _ = nginx_paths(settings)
    for sub in ("logs", "temp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    sdk = prefix / "sdk" / "blackbox.tar.gz"
    sdk.parent.mkdir(exist_ok=True)
    with tarfile.open(sdk, "w:gz") as tar:  # served at /blackbox.tar.gz: wsk sdk install docker
        tar.add(REPO / "sdk" / "docker", arcname="dockerSkeleton")
    net = network.find(settings)  # actions call the API back on the gateway of their network (as in OpenWhisk)
    return render(DEPLOY / "nginx" / "nginx.conf.tmpl", conf, {
        # As root, workers would drop to nobody and could not write our temp dirs.
        "user_directive": "user root;" if os.geteuid() == 0 else "",
        "prefix": str(prefix), "listen": f"127.0.0.1:{settings.nginx_port}",
        "listen_actions": f"listen {net.gateway}:{settings.nginx_port};" if net else "",
        "upstream": f"127.0.0.1:{settings.api_port}"})


def nginx_argv(settings: Settings, *extra: str) -> list[str]:
    prefix, conf, err = nginx_paths(settings)
    # -e: nginx otherwise opens /var/log/nginx/error.log before reading our config.
    return ["nginx", "-p", f"{prefix}/", "-c", str(conf), "-e", str(err), *extra]


def nginx_test(settings: Settings) -> None:
    render_nginx(settings)
    res = subprocess.run(nginx_argv(settings, "-t"), capture_output=True, text=True)
    if res.returncode != 0:
        raise StartError(f"[nginx] config test failed: {' '.join(nginx_argv(settings, '-t'))}\n{res.stderr}")


def start_nginx(settings: Settings, progress: Progress = say, api_available: bool = True) -> None:
    """Our own nginx master (foreground, tracked by pid file) on 127.0.0.1:nginx_port; /etc/nginx is untouched."""
    t0 = time.monotonic()
    changed = render_nginx(settings)
    pid = procs.read_pid(pid_file(settings, "nginx"))
    if pid is not None:
        if changed:
            nginx_test(settings)
            os.kill(pid, signal.SIGHUP)  # reload the new config in place
            progress(f"[nginx] config changed, reloaded (pid {pid})")
        else:
            progress(f"[nginx] already running (pid {pid})")
        return
    if tcp_open("127.0.0.1", settings.nginx_port):
        raise StartError(f"[nginx] 127.0.0.1:{settings.nginx_port} is already in use by a process we did not start")
    nginx_test(settings)
    guard = [sys.executable, "-m", "cli.nginx_guard", str(settings.nginx_port), "--"]
    alive = _spawn(settings, "nginx", [*guard, *nginx_argv(settings, "-g", "daemon off;")], cwd=REPO)
    url = f"http://127.0.0.1:{settings.nginx_port}/api/v1"
    try:
        wait_http(url, 30 if api_available else 10, 200 if api_available else None, alive)
    except StartError as e:
        raise _fail(settings, "nginx", e) from None
    progress(f"[nginx] ready on http://127.0.0.1:{settings.nginx_port} ({time.monotonic() - t0:.1f} s)")


# ---------------------------------------------------------------- stopping

def remove_action_containers(settings: Settings, progress: Progress = say) -> None:
    """docker rm -f this stack's action containers (managed label, name <container_prefix><n>_), no one else's."""
    if not docker_healthy(5):
        return
    name = f"name=^/?{settings.container_prefix}[0-9]+_"
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=streamwhisk.managed", "--filter", name],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        progress(f"[docker] removed {len(ids)} action container(s)")


def stop_all(settings: Settings, progress: Progress = say, remove_containers: bool = True) -> None:
    """Stop, in reverse start order, every process we started (dockerd only if we started it); under
    supervisord, through it (a part killed behind its back would be restarted), and then supervisord itself."""
    sup = sv.Supervisor(settings)
    if sup.running():
        _SUPERVISORS[settings.home] = sup
    rundir = run_dir(settings)
    known = ["nginx", *reversed([c.name for c in components(settings)])]
    # Invokers from an earlier run with a larger WSK_INVOKERS, or anything else we left a pid file for.
    extra = sorted((p.stem for p in rundir.glob("*.pid")), reverse=True) if rundir.is_dir() else []
    tail = ["couchdb", "kafka", "dockerd"]
    order = known + [n for n in extra if n not in known and n not in tail and n != "supervisord"]
    for name in order:
        _stop(settings, name, progress)
    if remove_containers:
        remove_action_containers(settings, progress)
        network.remove(settings.prefix)
    for name in tail:
        _stop(settings, name, progress)
    sup_ = _SUPERVISORS.get(settings.home)
    if sup_ is not None:
        for name in sup_.programs():  # anything it still runs that we had no pid file for (stopped through it)
            _stop(settings, name, progress)
        _SUPERVISORS.pop(settings.home, None)
        pid = sup_.pid()
        sup_.shutdown()
        progress(f"[supervisord] stopped (pid {pid})")


def _stop(settings: Settings, name: str, progress: Progress) -> None:
    t0 = time.monotonic()
    sup = _SUPERVISORS.get(settings.home)
    if sup is not None:
        pid = procs.read_pid(pid_file(settings, name))
        if not sup.stop(name):
            pid = procs.stop(pid_file(settings, name), STOP_TIMEOUT)  # (not one of its programs)
    else:
        pid = procs.stop(pid_file(settings, name), STOP_TIMEOUT)
    if pid is not None:
        progress(f"[{name}] stopped (pid {pid}, {time.monotonic() - t0:.1f} s)")
