import asyncio
import logging

from contracts.settings import load
from feeds.service import FeedService

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
asyncio.run(FeedService(load()).run())
