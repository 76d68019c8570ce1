"""Action code for cold starts, by digest: activations carry a reference (entities.action_ref), never the code.

A cache fed by the entity log (every action decided since the invoker started) serves almost every cold start. A
miss first catches that log up (the action may have been decided a moment ago), then reads the live whisks view,
whose doc is taken only if its code has the digest asked for. A warm container never needs the code again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from contracts import entities, events
from contracts.events import EntityChanged
from contracts.logview import LogView
from contracts.settings import Settings
from contracts.topics import Topics
from projections import catalog
from projections.couch import Couch
from projections.views import WHISKS

MAX_BYTES = 512 * 1024 * 1024
CHANGED = "Action could not be found or may have been deleted."  # OpenWhisk's Messages.actionRemovedWhileInvoking


class CodeMissing(Exception):
    pass


class CodeCache:
    """digest -> code, least recently used out first, bounded in bytes."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._codes: OrderedDict[str, str] = OrderedDict()

    def get(self, digest: str) -> str | None:
        code = self._codes.get(digest)
        if code is not None:
            self._codes.move_to_end(digest)
        return code

    def add(self, code: str, digest: str | None = None) -> None:
        digest = digest or entities.code_digest(code)
        if digest in self._codes:
            self._codes.move_to_end(digest)
            return
        self._codes[digest] = code
        self.size += len(code)
        while self.size > self.max_bytes and len(self._codes) > 1:
            _, old = self._codes.popitem(last=False)
            self.size -= len(old)

    def fold(self, _: dict[Any, Any], ev: events.Event) -> None:
        """LogView fold over the entity log: keep the code of every action written."""
        if isinstance(ev, EntityChanged):
            for _doc_id, doc in ev.writes:
                exec_ = doc.get("exec") if isinstance(doc, dict) else None  # poison events hold anything
                if isinstance(exec_, dict) and isinstance(exec_.get("code"), str):
                    self.add(exec_["code"])


class Codes:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = CodeCache()
        self.log = LogView(settings.kafka, Topics(settings.prefix).entities, self.cache.fold, since_ms=0)
        self.couch = Couch(settings.couchdb)

    async def run(self) -> None:
        await self.log.run()

    async def code(self, action: dict[str, Any]) -> str | None:
        """The code to /init the action with; None when it has none (a blackbox image that brings its own)."""
        exec_ = action.get("exec") or {}
        if isinstance(exec_.get("code"), str):  # an activation requested before references
            return str(exec_["code"])
        digest = exec_.get("digest")
        if not isinstance(digest, str):
            return None
        code = self.cache.get(digest)
        if code is None and await self.log.sync():
            code = self.cache.get(digest)
        if code is None:
            code = await asyncio.to_thread(self._from_view, f"{action['namespace']}/{action['name']}", digest)
        if code is None:
            raise CodeMissing(CHANGED)
        return code

    def _from_view(self, doc_id: str, digest: str) -> str | None:
        doc = self.couch.get(catalog.read(self.couch, self.settings).dbs[WHISKS], doc_id)
        exec_ = doc.get("exec") if isinstance(doc, dict) else None
        code = exec_.get("code") if isinstance(exec_, dict) else None
        if not isinstance(code, str) or entities.code_digest(code) != digest:
            return None
        self.cache.add(code, digest)
        return code
