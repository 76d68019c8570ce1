"""`streamwhisk bench`: arguments here, the heavy imports only when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from contracts.settings import Settings

OUT = Path(__file__).resolve().parent / "out"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="short runs (about 2-3 minutes in all)")
    p.add_argument("--only", default="",
                   help="comma-separated sections: cold,kinds,warm,throughput,triggers,crud,replay")
    p.add_argument("--profile", action="store_true", help="py-spy record the stack's processes in sections 1-2")
    p.add_argument("--out", type=Path, default=OUT, help="where results.json (and profiles) go")
    p.add_argument("--keep", action="store_true", help="leave the private stack running (saved to out/stack.json)")
    p.add_argument("--reuse", action="store_true", help="run against the stack a --keep run left")


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """The bench starts its own private stack; the settings of `up` only locate Kafka/CouchDB (same defaults)."""
    from bench.run import run

    return run(args)
