"""CouchDB writes through ibmcloudant (sync, thread-safe: called via asyncio.to_thread)."""

from __future__ import annotations

from typing import Any

from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import NoAuthAuthenticator
from ibmcloudant.cloudant_v1 import BulkDocs, CloudantV1, Document

Doc = dict[str, Any]


class Couch:
    def __init__(self, url: str) -> None:
        self.client = CloudantV1(authenticator=NoAuthAuthenticator())
        self.client.set_service_url(url)

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
        self.client.post_bulk_docs(db=db, bulk_docs=BulkDocs(docs=[Document.from_dict(doc)]))

    def delete_db(self, db: str) -> None:
        try:
            self.client.delete_database(db=db)
        except ApiException as e:
            if e.code != 404:
                raise

    def get_many(self, db: str, ids: list[str]) -> dict[str, Doc]:
        res = self.client.post_all_docs(db=db, keys=ids, include_docs=True).get_result()
        return {r["id"]: r["doc"] for r in res["rows"] if r.get("doc")}

    def bulk(self, db: str, docs: list[Doc]) -> None:
        if not docs:
            return
        res = self.client.post_bulk_docs(db=db, bulk_docs=BulkDocs(docs=[Document.from_dict(d) for d in docs]))
        failed = [r for r in res.get_result() if r.get("error")]
        if failed:
            raise RuntimeError(f"bulk write to {db} failed: {failed[:3]}")

    def all_docs(self, db: str) -> list[Doc]:
        res = self.client.post_all_docs(db=db, include_docs=True).get_result()
        return [r["doc"] for r in res["rows"] if not r["id"].startswith("_design/")]
