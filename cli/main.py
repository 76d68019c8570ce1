"""`streamwhisk` command line: up, down, status, install (more subcommands register in COMMANDS)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cli import admin, audit, replay, services, status, testcmd
from cli.install import InstallError, install_all
from cli.services import StartError, say
from contracts.settings import REPO, Settings, load

GUEST_KEY = ("23bc46b1-71f6-4ed5-8c54-816aa4f8c502:"
             "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP")


@dataclass(frozen=True)
class Command:
    """A subcommand: run(settings, args) -> exit code; configure adds its own arguments."""
    run: Callable[[Settings, argparse.Namespace], int]
    help: str
    configure: Callable[[argparse.ArgumentParser], None] = field(default=lambda p: None)


def cmd_install(settings: Settings, args: argparse.Namespace) -> int:
    install_all(settings, say)
    say("[install] everything installed")
    return 0


def _ensure_images() -> None:
    try:
        from runtimes.build import ensure_images
    except ModuleNotFoundError:
        # runtimes/ is not (yet) a listed package of the editable install; it lives at the repo root.
        if str(REPO) not in sys.path:
            sys.path.append(str(REPO))
        try:
            from runtimes.build import ensure_images
        except ModuleNotFoundError as e:
            say(f"[images] warning: runtimes.build not available ({e}); skipping runtime images")
            return
    t0 = time.monotonic()
    try:
        ensure_images(lambda msg: say(f"[images] {msg}"))
        from runtimes.build import IMAGES, build_in_background

        later = [r for r, img in IMAGES.items() if not img.at_up]
        if later:
            log = load().home / "logs" / "images.log"
            build_in_background(later, log)
            say(f"[images] building the other runtimes' images in the background ({len(later)}; log: {log})")
    except Exception as e:  # docker/mmdebstrap errors of any kind: report them like other start errors
        raise StartError(f"[images] building runtime images failed: {type(e).__name__}: {e}") from e
    say(f"[images] ready ({time.monotonic() - t0:.1f} s)")


def _guest_key(settings: Settings) -> str:
    try:
        from cli.admin import ensure_guest_subject
    except ImportError:
        say("[guest] cli.admin not available yet; using the default guest key")
        return GUEST_KEY
    t0 = time.monotonic()
    key = ensure_guest_subject(settings)
    say(f"[guest] subject ready ({time.monotonic() - t0:.1f} s)")
    return key if isinstance(key, str) and key else GUEST_KEY


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    with services.locked(settings):
        return _up(settings, args)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    settings.home.mkdir(parents=True, exist_ok=True)
    install_all(settings, say)
    services.supervise(settings)  # every part below runs under supervisord, which restarts it if it crashes
    services.ensure_docker(settings, say)
    services.ensure_action_network(settings, say)
    services.start_kafka(settings, say)
    services.start_couch(settings, say)
    services.start_connect(settings, say)  # Kafka Connect for connector feeds
    if not args.no_images:
        _ensure_images()
    started: list[tuple[str, float]] = []
    api_present = False
    for comp in services.components(settings):
        state = services.start_component(settings, comp.name, comp.module, comp.args, say, wait=False)
        api_present |= comp.name == "api" and state != "absent"
        if state == "started":
            started.append((comp.name, time.monotonic()))
    # Check every component before giving up, so one crash does not hide the others.
    failed: list[str] = []
    for name, at in sorted(started, key=lambda s: s[0] == "api"):  # quick 2 s checks before the API's 60 s
        try:
            services.wait_component(settings, name, say, at)
        except StartError as e:
            say(f"error: {e}")
            failed.append(name)
    services.start_nginx(settings, say, api_available=api_present and "api" not in failed)
    if failed:
        say(f"\nStreamwhisk is NOT fully up: {', '.join(failed)} failed (see logs in {settings.home / 'logs'}).")
        return 1
    key = _guest_key(settings)
    services.wait_catalog(settings, say)
    say(f"\nStreamwhisk is up ({time.monotonic() - t0:.1f} s).\n"
        f"  API host: {settings.api_host}\n"
        f"  wsk property set --apihost {settings.api_host} --auth {key}")
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    with services.locked(settings):
        services.stop_all(settings, say)
    say("Streamwhisk is down.")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    rows = status.status(settings)
    say(f"{'PART':<12} {'RUNNING':<8} {'PID':<8} {'PORT':<6} {'METRICS':<8} {'HEALTH':<8} {'RESTARTS':<8} LAST EXIT")
    for r in rows:
        running = "yes" if r.pid is not None else ("ext" if r.name == "docker" and r.health == "ok" else "no")
        mport = r.metrics.rsplit(":", 1)[1].split("/")[0] if r.metrics else "-"
        say(f"{r.name:<12} {running:<8} {r.pid or '-'!s:<8} {r.port:<6} {mport:<8} {r.health:<8} {r.restarts:<8} "
            f"{r.last_exit or '-'}")
    for r in rows:
        if r.crash_loop:
            say(f"error: {r.name} {r.crash_loop}; see {settings.home / 'logs' / (r.name + '.log')}, then `up`")
    for note in dict.fromkeys(r.note for r in rows if r.note):
        say(f"warning: {note}")
    return 0 if all(r.healthy for r in rows) else 1


def _configure_up(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-images", action="store_true", help="skip building the action runtime images")


def _bench(module: str = "bench.cli") -> Any:
    """bench/ runs from the repo (it is not an installed package), like runtimes/ above."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    return importlib.import_module(module)


COMMANDS: dict[str, Command] = {
    "up": Command(cmd_up, "install what is missing and start the whole stack", _configure_up),
    "down": Command(cmd_down, "stop everything `up` started"),
    "status": Command(cmd_status, "show each part's pid, port and health (exit 1 if any is failing)"),
    "install": Command(cmd_install, "only install missing prerequisites (apt, Kafka jars, pouchdb-server)"),
    "test": Command(testcmd.cmd_test, "run the whole test suite against real services", testcmd.configure),
    "admin": Command(admin.cmd_admin, "manage subjects and keys (create, list, block, unblock, delete)",
                     admin.configure),
    "replay": Command(replay.cmd_replay, "rebuild the CouchDB projections from the Kafka log", replay.configure),
    "audit": Command(audit.cmd_audit, "who did what, when, from the Kafka log", audit.configure),
    "bench": Command(lambda s, a: _bench().cmd_bench(s, a), "run the benchmarks (bench/RESULTS.md)",
                     lambda p: _bench().configure(p)),
    "soak": Command(lambda s, a: _soak(a), "mixed load for an hour with a part killed every few minutes "
                    "(RELIABILITY.md)", lambda p: _bench("bench.soak").configure(p)),
}


def _soak(args: argparse.Namespace) -> int:
    soak = _bench("bench.soak")
    return 0 if soak.run(soak.config(args))["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamwhisk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.configure(sub.add_parser(name, help=command.help, description=command.help))
    argv = sys.argv[1:] if argv is None else argv
    # After `test` the rest is pytest's, verbatim: argparse's REMAINDER refuses a leading option (-k, -m).
    args = (argparse.Namespace(command="test", pytest_args=argv[1:]) if argv[:1] == ["test"]
            else parser.parse_args(argv))
    try:
        return COMMANDS[args.command].run(load(), args)
    except (InstallError, StartError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head & co.
        return 0


if __name__ == "__main__":
    sys.exit(main())
