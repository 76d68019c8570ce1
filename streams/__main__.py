"""python -m streams [--id N]: one Faust worker; several (ids 0, 1, ...) share the partitions."""

import argparse
import asyncio
import sys

import faust
import uvloop

from contracts import bus, readiness
from contracts.settings import load
from contracts.topics import Topics
from streams.app import create_app

uvloop.install()  # the event loop of every component: less CPU per event than asyncio's own

parser = argparse.ArgumentParser(prog="python -m streams")
parser.add_argument("--id", type=int, default=0, help="worker number (names its data folder)")
args = parser.parse_args()
settings = load()
readiness.as_part(settings.home, f"streams{args.id or ''}")
t = Topics(settings.prefix)
names = [t.commands, t.entities, t.subjects, t.invocations, t.completions, t.health, t.progress,
         t.access, t.deadletter, t.fires, t.compositions, *t.assignments()]
# Create the topics up front: a consumer subscribed to a missing topic waits for a metadata refresh.
asyncio.run(bus.ensure_topics(settings.kafka, names, settings.partitions))
# Faust co-partitions topics by partition count: one made with another count would split a namespace's events
# from its tables. Partitions are fixed when the topics are made, so say so rather than run wrong.
odd = {n: c for n, c in asyncio.run(bus.partition_counts(settings.kafka, names)).items() if c != settings.partitions}
if odd:
    sys.exit(f"streams: WSK_PARTITIONS is {settings.partitions} but these topics have other partition counts: {odd}; "
             "partitions are fixed when the topics are made (set WSK_PARTITIONS to match, or use a new WSK_PREFIX)")
faust.Worker(create_app(settings, args.id), loglevel="info").execute_from_commandline()
