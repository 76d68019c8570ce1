"""Maps an EntityCommand onto the pure entity decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.errors import WhiskError
from contracts.events import EntityCommand
from streams.entities import apis, logic
from streams.entities.logic import Decision


def decide(cmd: EntityCommand, lookup: Callable[[str], Any], contents: list[str], now_ms: int) -> Decision:
    if cmd.entity_type == "api":
        return apis.decide(cmd.op, cmd.doc_id, cmd.body, lookup, now_ms)
    if cmd.op == "put":
        return slim_put_result(cmd.doc_id, logic.decide_put(
            cmd.entity_type, cmd.doc_id, cmd.body, cmd.overwrite, lookup, now_ms))
    if cmd.op == "delete":
        return logic.decide_delete(cmd.entity_type, cmd.doc_id, lookup, cmd.force, contents)
    if cmd.op == "rule_state":
        return logic.decide_rule_state(cmd.doc_id, str(cmd.body.get("status")), lookup, now_ms)
    return Decision([], None, WhiskError(400, f"unknown operation {cmd.op}"))


def slim_put_result(doc_id: str, d: Decision) -> Decision:
    """A successful PUT's result is the doc it writes: keep only what the write lacks (a rule's `status`).

    Action code may be 48 MB and one Kafka message holds 64 MB, so EntityChanged must not carry it twice;
    the API rebuilds the answer as written doc + result (see api.routes.put_answer).
    """
    if d.error is not None or d.result is None:
        return d
    written = next((doc for wid, doc in d.writes if wid == doc_id), None)
    if written is None:
        return d
    extra = {k: v for k, v in d.result.items() if k not in written or written[k] != v}
    return Decision(d.writes, extra, None)
