"""Read models in CouchDB, through its HTTP API (aiohttp; PouchDB Server needs Accept: application/json)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from projections.views import public

Doc = dict[str, Any]


class Views:
    def __init__(self, url: str, dbs: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self.dbs = dbs
        self.session: aiohttp.ClientSession | None = None

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

    async def get(self, db: str, doc_id: str) -> Doc | None:
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
