"""Read models in CouchDB, through its HTTP API (aiohttp; PouchDB Server needs Accept: application/json)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from contracts import entities
from projections.views import public

Doc = dict[str, Any]
WHISKS = "whisks"
_MISSING = object()


class DocCache:
    """Whisk docs as the entity log last decided them (None: deleted), fed by the API's tail of that log.

    Saves a CouchDB read per invoke. A miss reads CouchDB; the result is kept only if no decision for that doc
    arrived meanwhile (the generation check), so a slower projection can never overwrite a newer decision.
    Docs are kept as JSON bytes so every reader gets its own copy; an action also as its reference (code
    replaced by its digest: entities.action_ref), made once per revision, which is all an invoke reads.
    """

    def __init__(self, size: int = 5000) -> None:
        self.size = size
        self._docs: OrderedDict[str, tuple[bytes, bytes] | None] = OrderedDict()
        self._gen: dict[str, int] = {}

    def lookup(self, doc_id: str, code: bool = True) -> Any:
        raw = self._docs.get(doc_id, _MISSING)
        if raw is _MISSING:
            return _MISSING
        self._docs.move_to_end(doc_id)
        return None if raw is None else orjson.loads(raw[0 if code else 1])  # type: ignore[index]

    def generation(self, doc_id: str) -> int:
        return self._gen.get(doc_id, 0)

    def decided(self, doc_id: str, doc: Doc | None) -> None:
        self._gen[doc_id] = self._gen.get(doc_id, 0) + 1
        self._store(doc_id, doc)

    def fill(self, doc_id: str, doc: Doc | None, generation: int) -> None:
        if self._gen.get(doc_id, 0) == generation:
            self._store(doc_id, doc)

    def _store(self, doc_id: str, doc: Doc | None) -> None:
        if doc is None:
            self._docs[doc_id] = None
        else:  # (a doc that is not an object, from a poison event, is kept as it is: no reference to make)
            ref = entities.action_ref(doc) if isinstance(doc, dict) else doc
            self._docs[doc_id] = (orjson.dumps(doc), orjson.dumps(ref))
        self._docs.move_to_end(doc_id)
        while len(self._docs) > self.size:
            self._docs.popitem(last=False)


class Views:
    def __init__(self, url: str, dbs: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self.dbs = dbs
        self.session: aiohttp.ClientSession | None = None
        self.cache = DocCache()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            headers={"Accept": "application/json"},
            json_serialize=lambda o: orjson.dumps(o).decode(),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        if self.session:
            await self.session.close()

    def _url(self, db: str, path: str, query: dict[str, str] | None = None) -> URL:
        u = URL(f"{self.url}/{self.dbs[db]}/{path}", encoded=True)
        return u.with_query(query) if query else u

    async def get(self, db: str, doc_id: str, code: bool = True) -> Doc | None:
        """A doc; `code=False`: an action as a reference (entities.action_ref), for invokes."""
        if db != WHISKS:
            return await self._fetch(db, doc_id)
        hit = self.cache.lookup(doc_id, code)
        if hit is not _MISSING:
            return hit  # type: ignore[no-any-return]
        gen = self.cache.generation(doc_id)
        doc = await self._fetch(db, doc_id)
        self.cache.fill(doc_id, doc, gen)
        return doc if doc is None or code else entities.action_ref(doc)

    async def _fetch(self, db: str, doc_id: str) -> Doc | None:
        assert self.session
        async with self.session.get(self._url(db, quote(doc_id, safe=""))) as r:
            if r.status == 404:
                return None
            r.raise_for_status()
            return public(orjson.loads(await r.read()))

    async def view(
        self, db: str, design: str, view: str, *, start: list[Any], end: list[Any],
        limit: int | None = None, skip: int = 0, count: bool = False,
    ) -> tuple[int, list[Doc]]:
        """Descending range query: `start` is the high end. Returns (count, docs)."""
        assert self.session
        q = {
            "startkey": orjson.dumps(start).decode(), "endkey": orjson.dumps(end).decode(),
            "descending": "true", "reduce": "true" if count else "false",
        }
        if not count:
            q["include_docs"] = "true"
            q["skip"] = str(skip)
            if limit is not None:
                q["limit"] = str(limit)
        async with self.session.get(self._url(db, f"_design/{design}/_view/{view}", q)) as r:
            r.raise_for_status()
            body = orjson.loads(await r.read())
        rows = body.get("rows", [])
        if count:
            return (rows[0]["value"] if rows else 0), []
        return len(rows), [public(row["doc"]) for row in rows if row.get("doc")]
