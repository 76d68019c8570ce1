import asyncio
import logging

import uvloop

from contracts import metrics, readiness
from contracts.settings import load
from contracts.topics import Topics
from feeds.service import FeedService

uvloop.install()  # the event loop of every component: less CPU per event than asyncio's own

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
settings = load()
readiness.as_part(settings.home, "feeds")


async def main() -> None:
    ep = await metrics.serve("feeds", settings.home, settings.kafka)
    ep.lag.group(f"{settings.prefix}-feeds", [Topics(settings.prefix).feed_requests])
    await FeedService(settings).run()


asyncio.run(main())
