import argparse
import asyncio
import logging
import os

import uvloop

from contracts import readiness
from contracts.settings import load
from invoker.runner import Invoker

uvloop.install()  # the event loop of every component: less CPU per event than asyncio's own

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
parser = argparse.ArgumentParser(prog="python -m invoker")
parser.add_argument("--id", type=int, default=0)
parser.add_argument("--memory", type=int, default=int(os.environ.get("WSK_INVOKER_MEMORY_MB", "2048")),
                    help="user memory in MB for action containers (default: WSK_INVOKER_MEMORY_MB or 2048)")
args = parser.parse_args()
settings = load()
readiness.as_part(settings.home, f"invoker{args.id}")
asyncio.run(Invoker(settings, args.id, args.memory).run())
