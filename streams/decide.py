"""Maps an EntityCommand onto the pure entity decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.errors import WhiskError
from contracts.events import EntityCommand
from streams.entities import logic
from streams.entities.logic import Decision


def decide(cmd: EntityCommand, lookup: Callable[[str], Any], contents: list[str], now_ms: int) -> Decision:
    if cmd.op == "put":
        return logic.decide_put(cmd.entity_type, cmd.doc_id, cmd.body, cmd.overwrite, lookup, now_ms)
    if cmd.op == "delete":
        return logic.decide_delete(cmd.entity_type, cmd.doc_id, lookup, cmd.force, contents)
    if cmd.op == "rule_state":
        return logic.decide_rule_state(cmd.doc_id, str(cmd.body.get("status")), lookup, now_ms)
    return Decision([], None, WhiskError(400, f"unknown operation {cmd.op}"))
