import asyncio
import logging

import uvloop

from contracts import readiness
from contracts.settings import load
from feeds.service import FeedService

uvloop.install()  # the event loop of every component: less CPU per event than asyncio's own

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
settings = load()
readiness.as_part(settings.home, "feeds")
asyncio.run(FeedService(settings).run())
