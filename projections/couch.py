"""CouchDB access for projections (sync, thread-safe: called via asyncio.to_thread).

Database admin goes through ibmcloudant; the hot path (`_all_docs` reads and `_bulk_docs` writes) is plain
HTTP with orjson, one requests session per thread: the SDK's model objects cost more than the write itself
when a replay moves thousands of documents per second.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import orjson
import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import NoAuthAuthenticator
from ibmcloudant.cloudant_v1 import CloudantV1

Doc = dict[str, Any]
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class Conflict(Exception):
    """A document write lost against a concurrent writer (HTTP 409)."""


class Couch:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client = CloudantV1(authenticator=NoAuthAuthenticator())
        self.client.set_service_url(url)
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def _db(self, db: str, path: str = "") -> str:
        return f"{self.url}/{quote(db, safe='')}/{path}"

    def ensure_db(self, db: str, design: Doc | None = None) -> None:
        try:
            self.client.put_database(db=db)
        except ApiException as e:
            if e.code not in (412, 409):  # already exists
                raise
        if design is not None:
            self.put_design(db, design)

    def put_design(self, db: str, design: Doc) -> None:
        cur = self.get_many(db, [design["_id"]]).get(design["_id"])
        if cur is not None and cur.get("views") == design["views"]:
            return
        doc = dict(design)
        if cur is not None:
            doc["_rev"] = cur["_rev"]
        self.bulk(db, [doc])

    def delete_db(self, db: str) -> None:
        try:
            self.client.delete_database(db=db)
        except ApiException as e:
            if e.code != 404:
                raise

    def all_dbs(self) -> list[str]:
        r = self.http.get(f"{self.url}/_all_dbs", headers=JSON, timeout=30)
        r.raise_for_status()
        dbs: list[str] = orjson.loads(r.content)
        return dbs

    def db_exists(self, db: str) -> bool:
        r = self.http.get(self._db(db), headers=JSON, timeout=30)
        return r.status_code == 200

    def get(self, db: str, doc_id: str) -> Doc | None:
        """One doc, or None if it or its database does not exist."""
        r = self.http.get(self._db(db, quote(doc_id, safe="")), headers=JSON, timeout=30)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        doc: Doc = orjson.loads(r.content)
        return doc

    def put(self, db: str, doc: Doc) -> str:
        """Write one doc (its `_rev` must be current); returns the new rev; Conflict if someone was first."""
        r = self.http.put(self._db(db, quote(doc["_id"], safe="")), data=orjson.dumps(doc), headers=JSON, timeout=30)
        if r.status_code == 409:
            raise Conflict(doc["_id"])
        r.raise_for_status()
        rev: str = orjson.loads(r.content)["rev"]
        return rev

    def get_many(self, db: str, ids: list[str]) -> dict[str, Doc]:
        if not ids:
            return {}
        r = self.http.post(self._db(db, "_all_docs?include_docs=true"), data=orjson.dumps({"keys": ids}),
                           headers=JSON, timeout=120)
        r.raise_for_status()
        return {row["id"]: row["doc"] for row in orjson.loads(r.content)["rows"] if row.get("doc")}

    def bulk_write(self, db: str, docs: list[Doc], new_edits: bool = True) -> list[str]:
        """Write docs in one request; returns the ids that conflicted (the caller re-reads and retries them).

        `new_edits=False`: each doc's `_rev` is stored as given (a new leaf, or nothing if the doc has that
        revision already) and never conflicts; the server answers only errors.
        """
        if not docs:
            return []
        body = orjson.dumps({"docs": docs} if new_edits else {"docs": docs, "new_edits": False})
        r = self.http.post(self._db(db, "_bulk_docs"), data=body, headers=JSON, timeout=300)
        r.raise_for_status()
        results = orjson.loads(r.content)
        failed = [x for x in results if x.get("error") and x.get("error") != "conflict"]
        if failed:
            raise RuntimeError(f"bulk write to {db} failed: {failed[:3]}")
        return [x["id"] for x in results if x.get("error") == "conflict"]

    def bulk(self, db: str, docs: list[Doc]) -> None:
        conflicts = self.bulk_write(db, docs)
        if conflicts:
            raise RuntimeError(f"bulk write to {db} failed: conflicts on {conflicts[:3]}")

    def all_docs(self, db: str) -> list[Doc]:
        r = self.http.get(self._db(db, "_all_docs?include_docs=true"), headers=JSON, timeout=300)
        r.raise_for_status()
        return [row["doc"] for row in orjson.loads(r.content)["rows"] if not row["id"].startswith("_design/")]
