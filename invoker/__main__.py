import argparse
import asyncio
import logging
import os
import signal

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


async def main() -> None:
    # SIGTERM (supervisord's stop, a pod's deletion) drains: running activations finish and send their records,
    # containers are removed; what is assigned after that is closed by the watchdog, as after a crash.
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await Invoker(settings, args.id, args.memory).run(stop)


asyncio.run(main())
