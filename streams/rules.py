"""Trigger fire -> rules: the rule-matching agent and its pure decision.

For each TriggerFired the agent checks the fires-per-minute throttle, then admits one non-blocking activation per
active rule (as the trigger owner, with the action throttles, exactly as `admit` would) and sends it straight to
an invoker, and answers on completions with the trigger's activation record (its logs hold one JSON line per
rule), or a rejection: 204 no active rule, 404 no such trigger, 429 throttled. The trigger doc comes from the
entity state the decider keeps in this same worker, so a rule disabled a moment ago is already seen.
Sequences and conductors run in the API: a rule on one goes on the compositions topic, which one API process runs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from contracts import entities, events
from contracts.events import ActivationCompleted, ActivationRequested, TriggerFired
from streams import clock, throttle
from streams.admission import Admission, Partition
from streams.entities.logic import merge_parameters
from streams.views import EntityState, Views

log = logging.getLogger("streams.rules")
Doc = dict[str, Any]
Lookup = Callable[[str], Doc | None]
NOT_FOUND = "The requested resource does not exist."


# --- pure -----------------------------------------------------------------------------------------------------


def admit_fire(state: Doc | None, limits: Doc, now_ms: int) -> tuple[Doc, str | None]:
    """Fixed wall-clock minute window on fires per namespace; the fire that goes over the limit is refused."""
    st = dict(state or {"minute": 0, "count": 0})
    minute = now_ms // 60000
    if st["minute"] != minute:
        st["minute"], st["count"] = minute, 0
    allowed = throttle.limit(limits, "firesPerMinute")
    if st["count"] + 1 > allowed:
        return st, f"Too many requests in the last minute (count: {st['count'] + 1}, allowed: {allowed})."
    st["count"] += 1
    return st, None


@dataclass
class FireOutcome:
    completion: ActivationCompleted
    fire_state: Doc | None = None  # new fires-throttle state (None: unchanged)
    throttle_state: Doc | None = None  # new action-throttle state (None: unchanged)
    admitted: list[ActivationRequested] = field(default_factory=list)
    compositions: list[ActivationRequested] = field(default_factory=list)  # for the API to run


def _typed(lookup: Lookup, doc_id: str, etype: str) -> Doc | None:
    doc = lookup(doc_id)
    return doc if doc is not None and doc.get("entityType") == etype else None


def resolve_rule_action(ref: Doc, owner_ns: str, lookup: Lookup) -> tuple[Doc | None, str | None]:
    """(action doc with package params merged in, None) or (None, error message)."""
    path, name = ref["path"], ref["name"]
    pkg = binding = None
    if "/" in path:
        pkg = _typed(lookup, path, "package")
        if pkg is not None and pkg.get("binding"):
            binding, b = pkg, pkg["binding"]
            path = f"{b['namespace']}/{b['name']}"
            pkg = _typed(lookup, path, "package")
    action = _typed(lookup, f"{path}/{name}", "action")
    if action is None:
        return None, NOT_FOUND
    if path.split("/")[0] != owner_ns and not (pkg or {}).get("publish"):
        return None, f"The supplied authentication is not authorized to access '{path}/{name}'."
    params = merge_parameters((pkg or {}).get("parameters"), (binding or {}).get("parameters"),
                              action.get("parameters"))
    return {**action, "parameters": params}, None


def _log_line(rule: str, action: str, aid: str | None, error: str | None, code: int) -> str:
    d: Doc = ({"statusCode": 0, "success": True, "activationId": aid} if error is None
              else {"statusCode": code, "success": False, "error": error})
    return orjson.dumps({**d, "rule": rule, "action": action}).decode()


def rule_activation_id(fire_id: str, rule: str) -> str:
    """The id of the activation a fire starts through a rule: derived, so a fire re-read after a worker crash
    names the same activation again, and the balancer, which remembers what it assigned, runs it once."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"streamwhisk:{fire_id}/{rule}").hex


def decide_fire(
    ev: TriggerFired, lookup: Lookup, subject: Doc | None, fire_state: Doc | None, throttle_state: Doc | None,
    now_ms: int, assigned: Callable[[str], bool] = lambda _: False,
) -> FireOutcome:
    """The trigger's record and the activations to start. For a fire seen again after a crash, `assigned` tells
    which ids were decided already (logged as before, not sent again)."""
    def reject(status: int, msg: str, **kw: Any) -> FireOutcome:
        return FireOutcome(ActivationCompleted(activation_id=ev.activation_id, namespace=ev.namespace, at=now_ms,
                                               rejected_status=status, rejected=msg, fire=True), **kw)

    if subject is None or subject.get("blocked") or ev.namespace not in subject.get("namespaces", []):
        return reject(403, "The supplied authentication is not authorized to access this resource.")
    trigger = _typed(lookup, ev.trigger, "trigger")
    if trigger is None:
        return reject(404, NOT_FOUND)
    limits = subject.get("limits") or {}
    fire_state, refusal = admit_fire(fire_state, limits, now_ms)
    if refusal:
        return reject(429, refusal, fire_state=fire_state)
    active = [(k, v) for k, v in sorted((trigger.get("rules") or {}).items()) if v.get("status") == "active"]
    if not active:
        return reject(204, "no active rules", fire_state=fire_state)
    trig_params = {p["key"]: p["value"] for p in trigger.get("parameters", [])}
    lines: list[str] = []
    admitted: list[ActivationRequested] = []
    compositions: list[ActivationRequested] = []
    st = throttle_state
    for rule_key, link in active:
        ref = link["action"]
        action_name = f"{ref['path']}/{ref['name']}"
        action, err = resolve_rule_action(ref, ev.namespace, lookup)
        if action is None:
            lines.append(_log_line(rule_key, action_name, None, err, 1))
            continue
        aid = rule_activation_id(ev.activation_id, rule_key)
        if assigned(aid):
            lines.append(_log_line(rule_key, action_name, aid, None, 0))
            continue
        composition = action.get("exec", {}).get("kind") == "sequence" or _truthy(_annotation(action, "conductor"))
        # A composition's components are throttled one by one when the API runs them (as for a direct invoke).
        st, refusal = (st, None) if composition else throttle.admit(st, limits, now_ms)
        if refusal:
            lines.append(_log_line(rule_key, action_name, None, refusal, 1))
            continue
        params = {p["key"]: p["value"] for p in action["parameters"] if not p.get("init")}
        params.update(trig_params)
        params.update(ev.payload)
        if ev.headers:
            params["__ow_headers"] = ev.headers
        req = ActivationRequested(
            activation_id=aid, namespace=ev.namespace, subject=ev.subject, action=entities.action_ref(action),
            params=params,
            transaction_id=ev.transaction_id, at=now_ms,
        )
        (compositions if composition else admitted).append(req)
        lines.append(_log_line(rule_key, action_name, aid, None, 0))
    name = ev.trigger.rsplit("/", 1)[1]
    record: Doc = {
        "namespace": ev.namespace, "name": name, "subject": ev.subject, "activationId": ev.activation_id,
        "start": now_ms, "response": {"status": "success", "statusCode": 0, "success": True, "result": ev.payload},
        "logs": lines, "version": trigger.get("version", "0.0.1"), "publish": False, "annotations": [],
    }
    done = ActivationCompleted(activation_id=ev.activation_id, namespace=ev.namespace, record=record, at=now_ms,
                               fire=True)
    return FireOutcome(done, fire_state, st, admitted, compositions)


def _annotation(doc: Doc, key: str) -> Any:
    return next((a.get("value") for a in doc.get("annotations", []) if a.get("key") == key), None)


def _truthy(v: Any) -> bool:
    return v not in (None, False, 0, "")


# --- agent --------------------------------------------------------------------------------------------------


def register(app: Any, entity_state: EntityState, views: Views, states: Admission,
             start: Callable[[ActivationRequested, Partition, Doc], Awaitable[None]],
             entity_log_read: Callable[[int], Awaitable[None]], topics: dict[str, Any]) -> None:
    """Add the rule-matching agent to the streams app. Fires are keyed by the trigger's namespace, so its trigger,
    throttles and fire counts are this worker's; a rule's action in another namespace (a shared package) comes
    from the entity view. `start` places an admitted activation and sends it to its invoker.

    A fire is answered once: its record marks its id decided (admission rebuilds those ids from the completions
    after a takeover), so a fire re-read after a crash, or sent twice, gives no second trigger record; its rule
    activations have derived ids and start once (`decide_fire`'s `assigned`). The fire counts per minute are
    rebuilt from the same answers (`admission.counts_fire`), so the answer is the only write and a fire counts once."""
    completions = topics["completions"]

    @app.agent(topics["fires"], concurrency=1)
    async def match_rules(stream: Any) -> None:
        await views.ready()
        async for event in stream.events():
            try:
                ev = events.decode(event.value)
            except events.DecodeError as e:
                log.warning("skipping undecodable fire: %s", e)
                continue
            if not isinstance(ev, TriggerFired):
                continue
            part = await states.partition(event.message.partition)
            if part.seen(ev.activation_id):
                log.info("fire %s was answered already", ev.activation_id)
                continue
            await entity_log_read(event.message.partition)
            subject = await views.subject(ev.subject, ev.namespace)
            limits = (subject or {}).get("limits") or {}
            await states.settle(part, ev.namespace, limits)
            decide = partial(decide_fire, ev, subject=subject, fire_state=part.fire_state(ev.namespace),
                             throttle_state=part.throttle_state(ev.namespace), now_ms=events.now_ms(),
                             assigned=part.seen)
            out = await views.decided(ev.namespace, entity_state.get, decide)
            if states.parts.get(part.number) is not part:  # revoked meanwhile: the new owner answers it
                continue
            if out.fire_state is not None:
                part.count_fire(ev.namespace, out.fire_state)
            if out.throttle_state is not None:
                part.count(ev.namespace, out.throttle_state)
            for req in out.admitted:
                await start(req, part, limits)
            if states.parts.get(part.number) is not part:
                continue
            for req in out.compositions:
                await topics["compositions"].send(key=req.namespace.encode(), value=events.encode(req))
            part.answered(ev.activation_id, clock.mono_ms())
            await completions.send(key=ev.namespace.encode(), value=events.encode(out.completion))
