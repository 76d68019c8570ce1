"""streams.decide: a PUT's EntityChanged carries the written doc once (code can be 48 MB)."""

from __future__ import annotations

from typing import Any

from contracts.events import EntityCommand
from streams.decide import decide

CODE = "def main(a):\n    return a\n"


def cmd(op: str, etype: str, doc_id: str, body: dict[str, Any], overwrite: bool = False) -> EntityCommand:
    return EntityCommand(request_id="r", op=op, entity_type=etype, doc_id=doc_id, subject="s", body=body,
                         overwrite=overwrite)


def test_put_result_holds_only_what_the_write_lacks() -> None:
    table: dict[str, Any] = {}
    d = decide(cmd("put", "action", "ns/a", {"entityType": "action", "namespace": "ns", "name": "a",
                                             "exec": {"kind": "python:3", "code": CODE, "binary": False}}),
               table.get, [], 1000)
    assert d.error is None and d.result == {}
    assert d.writes[0][0] == "ns/a" and d.writes[0][1] is not None and d.writes[0][1]["exec"]["code"] == CODE
    table.update({k: v for k, v in d.writes if v is not None})
    table["ns/t"] = {"entityType": "trigger", "namespace": "ns", "name": "t", "version": "0.0.1", "updated": 1}
    rule = {"entityType": "rule", "namespace": "ns", "name": "r", "trigger": {"path": "ns", "name": "t"},
            "action": {"path": "ns", "name": "a"}}
    d = decide(cmd("put", "rule", "ns/r", rule), table.get, [], 1001)
    assert d.result == {"status": "active"}


def test_errors_and_deletes_keep_their_result() -> None:
    d = decide(cmd("put", "action", "ns/a", {"entityType": "action", "namespace": "ns", "name": "a"}), {}.get, [], 1)
    assert d.error is not None and d.error.message == "exec undefined"
    doc = {"entityType": "trigger", "namespace": "ns", "name": "t", "version": "0.0.1"}
    d = decide(cmd("delete", "trigger", "ns/t", {}), {"ns/t": doc}.get, [], 1)
    assert d.result == {"namespace": "ns", "name": "t", "version": "0.0.1"} and d.writes == [("ns/t", None)]
