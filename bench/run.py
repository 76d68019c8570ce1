"""`python -m bench` / `./streamwhisk bench`: start a private stack, run the sections, print and save the table."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import orjson

from bench import probe, sections
from bench.cli import configure
from bench.stats import Row, table
from contracts.settings import Settings

SECTIONS: dict[str, Callable[[sections.Ctx], sections.Result]] = {
    # cold first: later sections fill the invokers' pools, and a full pool has no prewarmed stem cell
    "cold": sections.cold_start,
    "kinds": sections.cold_kinds,
    "warm": sections.warm_latency,
    "throughput": sections.throughput,
    "triggers": sections.triggers,
    "crud": sections.crud,
    "replay": sections.replay,
}
LIMITS = {"invocationsPerMinute": 1_000_000, "concurrentInvocations": 1000, "firesPerMinute": 1_000_000}


def _settings_from(d: dict[str, str]) -> Settings:
    """Settings saved as strings by --keep, cast back by the type of each field's default."""
    default = Settings()
    return Settings(**{k: type(getattr(default, k))(v) for k, v in d.items() if hasattr(default, k)})


def _stack(args: argparse.Namespace) -> tuple[Any, Settings, str]:
    from tests.stack import Stack, start_infra, start_stack

    saved = args.out / "stack.json"
    if args.reuse and not saved.exists():  # else a fresh stack would run, and be left running
        raise SystemExit(f"--reuse: no {saved} (run with --keep and the same --out first)")
    if args.reuse:
        d = json.loads(saved.read_text())
        base = start_infra()
        stack = Stack(_settings_from(d["settings"]), base)
        return stack, base, str(d["key"])
    base = start_infra()
    stack = start_stack(base, invokers=2)
    key = stack.subject("bench", limits=LIMITS)
    if args.keep:
        args.out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"settings": {k: str(v) for k, v in dataclasses.asdict(stack.settings).items()},
                                     "key": key}))
    return stack, base, key


def run(args: argparse.Namespace) -> int:
    wanted = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        print(f"unknown sections: {unknown}; known: {list(SECTIONS)}", file=sys.stderr)
        return 2
    sections.ensure_wrk()
    started = time.monotonic()
    info = probe.machine()
    stack, base, key = _stack(args)
    ctx = sections.Ctx(stack=stack, base=base, key=key, out=args.out, quick=args.quick, profile=args.profile)
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "machine": info,
        "command": " ".join(sys.argv), "quick": args.quick, "prefix": stack.settings.prefix,
    }
    rows: list[Row] = []
    failed = False
    try:
        for name in wanted:
            t0 = time.monotonic()
            print(f"[bench] {name} ...", flush=True)
            try:
                res, r = SECTIONS[name](ctx)
            except Exception as e:  # one broken section must not hide the others
                traceback.print_exc()
                res, r = {"error": f"{type(e).__name__}: {e}"}, [(name, "error", type(e).__name__, str(e)[:100])]
                failed = True
            res["seconds"] = round(time.monotonic() - t0, 1)
            res["loadavg_after"] = os.getloadavg()  # other work on the machine skews every figure
            results[name] = res
            rows += r
            print(f"[bench] {name} done in {res['seconds']} s", flush=True)
    finally:
        if not args.keep and not args.reuse:
            stack.stop()
    results["profiles"] = ctx.profiles
    results["total_seconds"] = round(time.monotonic() - started, 1)
    results["table"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    m = info
    print(f"\nStreamwhisk bench, {results['date']}, {m['nproc']} cpu {m['cpu']}, {m['ram_gb']} GB, "
          f"kernel {m['kernel']}, {results['total_seconds']} s{' (quick)' if args.quick else ''}\n")
    print(table(rows))
    print(f"\nwritten {args.out / 'results.json'}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    configure(p)
    return run(p.parse_args(argv))
