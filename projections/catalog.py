"""Which CouchDB databases are the live projection: a pointer doc, flipped in one write.

CouchDB cannot rename a database, so a replay into fresh databases builds generation n+1 beside the live one
and then rewrites the doc `views` in `<prefix>_meta`. Generation 0 is `<prefix>_<view>` (what a stack uses
before any replay, and when there is no pointer doc); generation n > 0 is `<prefix>_<view>_g<n>`.
The pointer also says up to where the replay projected each partition (`resume`): a live projector that
follows the pointer seeks back there, so what it wrote to the old generation meanwhile reaches the new one.
The API and the projector re-read the pointer about once a second (see docs/event-log.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from contracts import readiness
from contracts.events import now_ms
from contracts.settings import Settings
from projections import views
from projections.couch import Couch

log = logging.getLogger("projections.catalog")
VIEWS = (views.SUBJECTS, views.WHISKS, views.ACTIVATIONS)
POINTER_ID = "views"
FOLLOW_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Pointer:
    generation: int
    dbs: dict[str, str]
    resume: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> partition -> next offset
    rev: str | None = None

    def resume_at(self, topic: str, partition: int) -> int | None:
        return self.resume.get(topic, {}).get(str(partition))


def meta_db(settings: Settings) -> str:
    return settings.db("meta")


def names(settings: Settings, generation: int) -> dict[str, str]:
    suffix = f"_g{generation}" if generation else ""
    return {v: settings.db(v) + suffix for v in VIEWS}


def parse(settings: Settings, doc: dict[str, Any] | None) -> Pointer:
    """The pointer from its doc; no doc means generation 0."""
    if not doc:
        return Pointer(0, names(settings, 0))
    gen = int(doc.get("generation", 0))
    return Pointer(gen, {**names(settings, gen), **doc.get("dbs", {})}, doc.get("resume", {}), doc.get("_rev"))


def pointer_doc(p: Pointer) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": POINTER_ID, "generation": p.generation, "dbs": p.dbs, "resume": p.resume,
                           "switched_at": now_ms()}
    if p.rev:
        doc["_rev"] = p.rev
    return doc


def read(couch: Couch, settings: Settings) -> Pointer:
    return parse(settings, couch.get(meta_db(settings), POINTER_ID))


def switch(couch: Couch, settings: Settings, old: Pointer, generation: int,
           resume: dict[str, dict[str, int]]) -> Pointer:
    """Make `generation` live in one doc write; raises Conflict if the pointer moved since `old` was read."""
    couch.ensure_db(meta_db(settings))
    new = Pointer(generation, names(settings, generation), resume, old.rev)
    rev = couch.put(meta_db(settings), pointer_doc(new))
    return Pointer(new.generation, new.dbs, new.resume, rev)


def ensure_databases(couch: Couch, dbs: dict[str, str]) -> None:
    for view, db in dbs.items():
        couch.ensure_db(db, views.DESIGN_DOCS.get(view))


def existing_generations(all_dbs: Iterable[str], settings: Settings) -> set[int]:
    """Generations with at least one database present (from `_all_dbs`)."""
    gens: set[int] = set()
    for db in all_dbs:
        for v in VIEWS:
            base = settings.db(v)
            if db == base:
                gens.add(0)
            elif db.startswith(base + "_g") and db[len(base) + 2:].isdigit():
                gens.add(int(db[len(base) + 2:]))
    return gens


async def follow(settings: Settings, dbs: dict[str, str], interval_s: float = FOLLOW_INTERVAL_S) -> None:
    """Keep `dbs` (a dict others read) equal to the live generation's names, updating it in place.

    For the API: one small GET a second. Errors are logged and retried; the last known names stay in use.
    """
    url = f"{settings.couchdb.rstrip('/')}/{meta_db(settings)}/{POINTER_ID}"
    async with aiohttp.ClientSession(headers={"Accept": "application/json"},
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with session.get(url) as r:
                    doc = orjson.loads(await r.read()) if r.status == 200 else None
                    if r.status in (200, 404):
                        new = parse(settings, doc).dbs
                        if new != dbs:
                            log.info("views switched to %s", new)
                            dbs.update(new)
            await asyncio.sleep(interval_s)


async def current(settings: Settings) -> dict[str, str]:
    """The live generation's database names, read once (API start), waiting while CouchDB is unreachable."""
    return (await live(settings)).dbs


async def live(settings: Settings, say_every_s: float = 10.0) -> Pointer:
    """The live generation, waiting (and saying so) while CouchDB is unreachable: parts start in any order."""
    couch = Couch(settings.couchdb)
    waited = 0.0
    while True:
        try:
            ptr = await asyncio.to_thread(read, couch, settings)
            readiness.ready()
            return ptr
        except OSError as e:  # connection refused or reset: CouchDB is down or restarting
            readiness.waiting(f"CouchDB at {settings.couchdb}")
            if waited % say_every_s == 0:
                log.warning("waiting for CouchDB at %s (%r)", settings.couchdb, e)
        await asyncio.sleep(1.0)
        waited += 1.0
