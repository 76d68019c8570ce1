"""Schema versions: events written by an older version still decode and project the same way."""

from __future__ import annotations

import orjson
import pytest

from contracts import events
from contracts.events import ActivationCompleted, ApiCalled, DecodeError, EntityChanged
from projections import views

ACTION = {"namespace": "guest", "name": "hello", "entityType": "action", "version": "0.0.1", "updated": 1}
RECORD = {"namespace": "guest", "name": "hello", "activationId": "a1", "start": 1, "end": 2,
          "response": {"status": "success", "success": True, "result": {}}}


def test_every_encoded_event_has_type_and_version() -> None:
    d = orjson.loads(events.encode(ApiCalled(transaction_id="t", subject="s", namespace="ns", method="GET",
                                             path="/", status=200, duration_ms=1.0)))
    assert d["type"] == "api.called" and d["v"] == events.SCHEMA_VERSION


def test_v0_entity_changed_without_newer_fields_replays_like_current() -> None:
    # The shape a v0 writer produced: no `v`, none of the fields added later (result, error_status, error).
    v0 = {"type": "entity.changed", "event_id": "e1", "at": 5, "request_id": "r1", "subject": "guest",
          "op": "put", "entity_type": "action", "doc_id": "guest/hello", "writes": [["guest/hello", ACTION]]}
    old = events.decode(orjson.dumps(v0))
    assert isinstance(old, EntityChanged) and old.result is None and old.error is None
    current = events.decode(events.encode(EntityChanged(
        event_id="e1", at=5, request_id="r1", subject="guest", op="put", entity_type="action",
        doc_id="guest/hello", writes=[("guest/hello", ACTION)])))
    assert old == current
    assert views.apply(views.WHISKS, "guest/hello", None, old, 0, 7) == {
        **ACTION, "_id": "guest/hello", "wsk_partition": 0, "wsk_offset": 7}


def test_v0_activation_completed_without_memory_field() -> None:
    v0 = {"type": "activation.completed", "v": 0, "activation_id": "a1", "namespace": "guest", "record": RECORD}
    ev = events.decode(orjson.dumps(v0))
    assert isinstance(ev, ActivationCompleted) and ev.memory_mb == 0 and ev.invoker is None
    assert views.targets(ev) == [(views.ACTIVATIONS, "guest/a1")]


def test_fields_from_a_newer_writer_are_ignored() -> None:
    d = {"type": "activation.completed", "v": 99, "activation_id": "a1", "namespace": "guest", "record": RECORD,
         "carbon_grams": 0.1}
    assert isinstance(events.decode(orjson.dumps(d)), ActivationCompleted)


def test_an_upcaster_reshapes_the_previous_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 2 of api.called renames `duration` to `duration_ms`: v1 events in the log still decode."""
    monkeypatch.setattr(events, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(events, "UPCASTERS", {})

    @events.upcaster("api.called", 1)
    def _rename(d: events.Json) -> events.Json:
        d["duration_ms"] = float(d.pop("duration"))
        return d

    v1 = {"type": "api.called", "v": 1, "transaction_id": "t", "subject": "s", "namespace": "ns",
          "method": "PUT", "path": "/api/v1/namespaces/ns/actions/x", "status": 200, "duration": 12}
    ev = events.decode(orjson.dumps(v1))
    assert isinstance(ev, ApiCalled) and ev.duration_ms == 12.0
    assert orjson.loads(events.encode(ev))["v"] == 2
    # v0 (before `v` existed) passes through both steps; a broken old event is a DecodeError, not a crash.
    assert isinstance(events.decode(orjson.dumps({**v1, "v": 0})), ApiCalled)
    with pytest.raises(DecodeError, match="cannot upcast"):
        events.decode(orjson.dumps({k: v for k, v in v1.items() if k != "duration"}))


def test_bad_version_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        events.decode(orjson.dumps({"type": "subject.deleted", "v": "one", "subject": "x"}))
