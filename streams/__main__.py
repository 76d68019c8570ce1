import asyncio

import faust

from contracts import bus
from contracts.settings import load
from contracts.topics import Topics
from streams.app import MAX_INVOKERS, create_app

settings = load()
t = Topics(settings.prefix)
# Create the topics up front: a consumer subscribed to a missing topic waits for a metadata refresh.
asyncio.run(bus.ensure_topics(
    settings.kafka,
    [t.commands, t.entities, t.subjects, t.invocations, t.authorized, t.completions, t.health, t.progress,
     t.access, t.deadletter, t.fires, t.compositions, *(t.invoker(i) for i in range(MAX_INVOKERS))],
))
faust.Worker(create_app(settings), loglevel="info").execute_from_commandline()
