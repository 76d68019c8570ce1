import asyncio
import logging

from contracts.settings import load
from projections.runner import run

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
asyncio.run(run(load()))
