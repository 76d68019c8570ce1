"""`streamwhisk replay`: rebuild the CouchDB projections from the Kafka log (projections/replay.py).

Progress shows here (stderr) and goes to the log as ReplayProgress events on `<prefix>.replays`: the projections
process serves it as streamwhisk_replay_* metrics, the console's Replay page lists the runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from contracts.events import now_ms
from contracts.settings import Settings
from projections.audit import parse_time
from projections.couch import Conflict
from projections.replay import ReplayError, Stats, replay


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--in-place", action="store_true",
                   help="re-apply onto the live databases (recreated if deleted) instead of a fresh generation")
    p.add_argument("--no-switch", action="store_true",
                   help="build the fresh generation but leave the live one in use (to compare or inspect)")
    p.add_argument("--generation", type=int, help="fresh generation number to build (default: highest + 1)")
    p.add_argument("--from-offset", action="append", default=[], metavar="[TOPIC[:PARTITION]=]N",
                   help="start at an offset: N for every partition, or e.g. entities=120, completions:0=5000")
    p.add_argument("--from-time", metavar="TIME", help="start at a time: ISO 8601, epoch ms, or an age like 2h")
    p.add_argument("--drop-old", action="store_true", help="delete the previous generation's databases after a switch")
    p.add_argument("--batch", type=int, default=5000, help="events per CouchDB bulk write (default 5000)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def bar(s: Stats, width: int = 30) -> str:
    """`[#####.....]  52%  51,200/98,000 events  24,310 ev/s  ETA 2s`"""
    frac = min(1.0, s.events / s.total) if s.total else 1.0
    eta = (s.total - s.events) / s.rate if s.rate > 0 else 0.0
    filled = int(frac * width)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {frac * 100:3.0f}%  {s.events:,}/{s.total:,} events  "
            f"{s.rate:,.0f} ev/s  ETA {eta:,.0f}s")


class Progress:
    """Redraws one line on a terminal; elsewhere prints a line every few seconds."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.tty, self.last = quiet, sys.stderr.isatty(), 0.0

    def __call__(self, s: Stats) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < (0.2 if self.tty else 5.0) and s.events < s.total):
            return
        self.last = now
        print(("\r" if self.tty else "") + "[replay] " + bar(s), end="" if self.tty else "\n", file=sys.stderr,
              flush=True)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from_time = parse_time(args.from_time, now_ms()) if args.from_time else None
        stats = asyncio.run(replay(
            settings, in_place=args.in_place, switch=not args.no_switch, generation=args.generation,
            from_offsets=args.from_offset, from_time_ms=from_time, drop_old=args.drop_old,
            batch_size=max(1, args.batch), on_progress=Progress(args.json),
        ))
    except (ReplayError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Conflict:
        print("error: the view pointer changed during the replay (another replay?): not switched", file=sys.stderr)
        return 1
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    if args.json:
        print(orjson.dumps(stats.summary()).decode())
        return 0
    where = "in place" if args.in_place else f"into generation {stats.generation}"
    print(f"replayed {stats.events:,} events {where} in {stats.seconds:.1f} s ({stats.rate:,.0f} events/s), "
          f"{stats.docs:,} docs written")
    for view, db in stats.dbs.items():
        print(f"  {view:<12} {db}")
    if stats.switched:
        print(f"switched: generation {stats.generation} is live")
    if stats.dropped:
        print(f"dropped: {', '.join(stats.dropped)}")
    for p in stats.poison[:10]:
        print(f"  skipped poison event {p['topic']}[{p['partition']}]@{p['offset']}: {p['reason']}")
    return 0
