import logging

import uvloop
from aiohttp import web

from api.app import create_app
from contracts import readiness
from contracts.settings import load

uvloop.install()  # the event loop of every component: less CPU per event than asyncio's own

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
settings = load()
readiness.as_part(settings.home, "api")
web.run_app(create_app(settings), host="127.0.0.1", port=settings.api_port, access_log=None)
