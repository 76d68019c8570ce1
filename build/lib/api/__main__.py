import logging

from aiohttp import web

from api.app import create_app
from contracts.settings import load

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
settings = load()
web.run_app(create_app(settings), host="127.0.0.1", port=settings.api_port, access_log=None)
