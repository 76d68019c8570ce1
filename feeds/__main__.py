import asyncio
import logging

import uvloop

from contracts.settings import load
from feeds.service import FeedService

uvloop.install()  # the event loop of every component: less CPU per event than asyncio's own

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
asyncio.run(FeedService(load()).run())
