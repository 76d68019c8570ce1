import asyncio
import logging
import signal

import uvloop

from contracts import metrics, readiness
from contracts.settings import Settings, load
from projections import replay
from projections.runner import run
from projections.usermetrics import UserMetrics

uvloop.install()  # the event loop of every component: less CPU per event than asyncio's own

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
log = logging.getLogger("projections")
settings = load()
readiness.as_part(settings.home, "projections")


async def user_metrics(settings: Settings) -> None:
    """The user-events metrics fold beside the projector; its failure must not stop the views."""
    while True:
        try:
            await UserMetrics(settings).run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("user metrics stopped; starting again in 5 s")
            await asyncio.sleep(5)


async def replay_metrics(settings: Settings, stop: asyncio.Event) -> None:
    """streamwhisk_replay_* from the replays topic; like the user metrics, never the views' problem."""
    while not stop.is_set():
        try:
            await replay.follow(settings, stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replay metrics stopped; starting again in 5 s")
            await asyncio.sleep(5)


async def main() -> None:
    stop = asyncio.Event()  # SIGTERM: finish the batch, checkpoint the user metrics, then exit
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ep = await metrics.serve("projections", settings.home, settings.kafka)
    um = asyncio.create_task(user_metrics(settings))
    rm = asyncio.create_task(replay_metrics(settings, stop))
    try:
        await run(settings, stop=stop)
    finally:
        um.cancel()
        rm.cancel()
        await asyncio.gather(um, rm, return_exceptions=True)
        await ep.stop()


asyncio.run(main())
