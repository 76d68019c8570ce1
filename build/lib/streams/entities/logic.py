"""The entity decider: given current docs (via lookup) and a proposal, decide the writes.

Pure: no I/O, no clock. Docs are OpenWhisk-shaped dicts plus the internal key
``entityType``; doc ids are "<namespace>/<name>" (namespace may be "ns/pkg").
Errors are returned in ``Decision.error`` rather than raised, so a stream processor can
emit them as results.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts.entities import (
    ALREADY_EXISTS,
    CONFORMANCE,
    MALFORMED,
    MAX_SEQUENCE_LENGTH,
    NOT_FOUND,
    NOT_ON_BINDING,
    bump_patch,
    default_limits,
)
from contracts.errors import WhiskError

Doc = dict[str, Any]
Lookup = Callable[[str], Doc | None]


@dataclass(frozen=True)
class Decision:
    writes: list[tuple[str, Doc | None]] = field(default_factory=list)  # (doc id, new doc | None = delete)
    result: Doc | None = None  # entity for the API, without entityType
    error: WhiskError | None = None


def public(doc: Doc) -> Doc:
    """The doc as the API shows it (internal key stripped)."""
    return {k: v for k, v in doc.items() if k != "entityType"}


def _split(doc_id: str) -> tuple[str, str]:
    ns, _, name = doc_id.rpartition("/")
    return ns, name


def _typed(lookup: Lookup, doc_id: str, entity_type: str) -> Doc | None:
    doc = lookup(doc_id)
    return doc if doc is not None and doc.get("entityType") == entity_type else None


# --- parameters ---------------------------------------------------------------------------


def merge_parameters(*lists: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Later lists win by key; a key keeps the position where it first appeared (Scala Map ++)."""
    merged: dict[str, dict[str, Any]] = {}
    for kvs in lists:
        for kv in kvs or []:
            merged[kv["key"]] = kv
    return list(merged.values())


def resolve_action_params(action: Doc, package: Doc | None, binding: Doc | None) -> list[dict[str, Any]]:
    """Spec 4.2: package < binding < action (the invoke payload is merged later by the caller)."""
    return merge_parameters(
        (package or {}).get("parameters"), (binding or {}).get("parameters"), action.get("parameters")
    )


def _del_keys(kvs: list[dict[str, Any]], keys: set[str]) -> list[dict[str, Any]]:
    return [kv for kv in kvs if kv["key"] not in keys]


def _set_key(kvs: list[dict[str, Any]], key: str, value: Any) -> list[dict[str, Any]]:
    # OpenWhisk does `annotations - key ++ (key -> value)`: the key moves to the end.
    return [*_del_keys(kvs, {key}), {"key": key, "value": value}]


# --- helpers shared by put/delete ---------------------------------------------------------


def _resolve_action_id(doc_id: str, lookup: Lookup) -> str:
    """An action addressed through a package binding lives in the bound package."""
    ns, name = _split(doc_id)
    if "/" in ns:
        pkg = _typed(lookup, ns, "package")
        if pkg is not None and pkg.get("binding"):
            b = pkg["binding"]
            return f"{b['namespace']}/{b['name']}/{name}"
    return doc_id


def _rule_key(rule: Doc) -> str:
    return f"{rule['namespace']}/{rule['name']}"


def _ref_id(ref: dict[str, str]) -> str:
    return f"{ref['path']}/{ref['name']}"


def rule_status(rule_doc: Doc, lookup: Lookup) -> str:
    """State lives in the trigger's rules map; a missing trigger or entry means inactive."""
    trigger = _typed(lookup, _ref_id(rule_doc["trigger"]), "trigger")
    entry = ((trigger or {}).get("rules") or {}).get(_rule_key(rule_doc))
    return str(entry["status"]) if entry else "inactive"


def _with_rule(trigger: Doc, key: str, link: Doc | None, now_ms: int) -> Doc:
    new = copy.deepcopy(trigger)
    rules = dict(new.get("rules") or {})
    if link is None:
        rules.pop(key, None)
    else:
        rules[key] = link
    new["rules"] = rules
    new["updated"] = now_ms
    return new


# --- PUT ----------------------------------------------------------------------------------


def decide_put(entity_type: str, doc_id: str, proposed: Doc, overwrite: bool, lookup: Lookup, now_ms: int) -> Decision:
    try:
        existing = lookup(doc_id)
        if existing is not None and existing.get("entityType") != entity_type:
            raise WhiskError(409, CONFORMANCE)
        if existing is not None and not overwrite:
            raise WhiskError(409, ALREADY_EXISTS)
        handler = _PUT[entity_type]
        return handler(doc_id, proposed, existing, lookup, now_ms)
    except WhiskError as e:
        return Decision([], None, e)


def _common_fields(proposed: Doc, old: Doc | None) -> dict[str, Any]:
    """version/publish: given wins; else create defaults or old (patch +1 on update)."""
    if old is None:
        return {"version": proposed.get("version", "0.0.1"), "publish": proposed.get("publish", False)}
    return {
        "version": proposed.get("version", bump_patch(old["version"])),
        "publish": proposed.get("publish", old.get("publish", False)),
    }


def _check_sequence(doc_id: str, components: list[str], lookup: Lookup) -> None:
    """Reject self reference, missing components and >50 atomic actions (nested sequences expanded)."""
    if len(components) > MAX_SEQUENCE_LENGTH:
        raise WhiskError(400, "Too many actions in the sequence.")

    def count(comps: list[str], seen: tuple[str, ...]) -> int:
        total = 0
        for c in comps:
            cid = _resolve_action_id(c.lstrip("/"), lookup)
            if cid == doc_id or c.lstrip("/") == doc_id or cid in seen:
                raise WhiskError(400, "Sequence may not refer to itself.")
            action = _typed(lookup, cid, "action")
            if action is None:
                raise WhiskError(400, "Sequence component does not exist.")
            exec_ = action.get("exec") or {}
            if exec_.get("kind") == "sequence":
                total += count(list(exec_.get("components") or []), (*seen, cid))
            else:
                total += 1
            if total > MAX_SEQUENCE_LENGTH:
                raise WhiskError(400, "Too many actions in the sequence.")
        return total

    count(components, ())


def _put_action(doc_id: str, proposed: Doc, old: Doc | None, lookup: Lookup, now_ms: int) -> Decision:
    ns, name = _split(doc_id)
    if "/" in ns:
        pkg = lookup(ns)
        if pkg is None:
            raise WhiskError(404, NOT_FOUND)
        if pkg.get("entityType") != "package":
            raise WhiskError(409, CONFORMANCE)
        if pkg.get("binding"):
            raise WhiskError(400, NOT_ON_BINDING)
    exec_ = proposed.get("exec")
    if old is None and exec_ is None:
        raise WhiskError(400, "exec undefined")
    if exec_ is not None and exec_["kind"] == "sequence":
        _check_sequence(doc_id, exec_["components"], lookup)

    dels = set(proposed.get("delAnnotations") or [])
    if old is None:
        exec_doc = exec_
        params = proposed.get("parameters", [])
        limits = {**default_limits(), **proposed.get("limits", {})}
        annotations = merge_parameters(proposed.get("annotations"))
    else:
        exec_doc = exec_ if exec_ is not None else old["exec"]
        params = proposed.get("parameters", old.get("parameters", []))
        limits = {**default_limits(), **old.get("limits", {}), **proposed.get("limits", {})}
        annotations = merge_parameters(_del_keys(old.get("annotations", []), dels), proposed.get("annotations"))
    assert exec_doc is not None
    annotations = _set_key(annotations, "exec", exec_doc["kind"])
    if old is None and not any(kv["key"] == "provide-api-key" for kv in annotations):
        annotations.append({"key": "provide-api-key", "value": False})
    doc: Doc = {
        "namespace": ns,
        "name": name,
        "exec": exec_doc,
        "parameters": params,
        "limits": limits,
        **_common_fields(proposed, old),
        "annotations": annotations,
        "updated": now_ms,
        "entityType": "action",
    }
    return Decision([(doc_id, doc)], public(doc))


def _put_trigger(doc_id: str, proposed: Doc, old: Doc | None, lookup: Lookup, now_ms: int) -> Decision:
    ns, name = _split(doc_id)
    base = old or {}
    doc: Doc = {
        "namespace": ns,
        "name": name,
        "parameters": proposed.get("parameters", base.get("parameters", [])),
        "limits": {},
        **_common_fields(proposed, old),
        "annotations": proposed.get("annotations", base.get("annotations", [])),
        "updated": now_ms,
        "entityType": "trigger",
    }
    if base.get("rules") is not None:
        doc["rules"] = base["rules"]  # an update never touches the rules map
    return Decision([(doc_id, doc)], public(doc))


def _check_rule_refs(trigger: dict[str, str], action: dict[str, str], lookup: Lookup) -> Doc:
    trig = _typed(lookup, _ref_id(trigger), "trigger")
    if trig is None:
        raise WhiskError(400, f"trigger /{_ref_id(trigger)} does not exist")
    if _typed(lookup, _resolve_action_id(_ref_id(action), lookup), "action") is None:
        raise WhiskError(400, f"action /{_ref_id(action)} does not exist")
    return trig


def _put_rule(doc_id: str, proposed: Doc, old: Doc | None, lookup: Lookup, now_ms: int) -> Decision:
    ns, name = _split(doc_id)
    key = f"{ns}/{name}"
    if old is None:
        if "trigger" not in proposed or "action" not in proposed:
            raise WhiskError(400, "rule requires a valid trigger and a valid action")
        trigger_ref, action_ref, status = proposed["trigger"], proposed["action"], "active"
    else:
        trigger_ref = proposed.get("trigger", old["trigger"])
        action_ref = proposed.get("action", old["action"])
        status = rule_status(old, lookup)  # an update keeps the rule's state
    trig = _check_rule_refs(trigger_ref, action_ref, lookup)
    doc: Doc = {
        "namespace": ns,
        "name": name,
        "trigger": trigger_ref,
        "action": action_ref,
        **_common_fields(proposed, old),
        "annotations": proposed.get("annotations", (old or {}).get("annotations", [])),
        "updated": now_ms,
        "entityType": "rule",
    }
    writes: list[tuple[str, Doc | None]] = [(doc_id, doc)]
    if old is not None and _ref_id(old["trigger"]) != _ref_id(trigger_ref):
        old_trig = _typed(lookup, _ref_id(old["trigger"]), "trigger")
        if old_trig is not None:
            writes.append((_ref_id(old["trigger"]), _with_rule(old_trig, key, None, now_ms)))
    link = {"action": dict(action_ref), "status": status}
    writes.append((_ref_id(trigger_ref), _with_rule(trig, key, link, now_ms)))
    return Decision(writes, {**public(doc), "status": status})


def _check_binding(binding: dict[str, str], lookup: Lookup) -> None:
    target = lookup(f"{binding['namespace']}/{binding['name']}")
    if target is None:
        raise WhiskError(400, "Binding references a package that does not exist.")
    if target.get("entityType") != "package":
        raise WhiskError(409, "Cannot bind to a resource that is not a package.")
    if target.get("binding"):
        raise WhiskError(400, "Cannot bind to another package binding.")


def _put_package(doc_id: str, proposed: Doc, old: Doc | None, lookup: Lookup, now_ms: int) -> Decision:
    ns, name = _split(doc_id)
    binding = proposed.get("binding")
    if binding:
        if old is not None and not old.get("binding"):
            raise WhiskError(409, "Resource is a package and cannot be converted into a binding.")
        _check_binding(binding, lookup)
    else:
        binding = (old or {}).get("binding") or {}
    # The controller owns the `binding` annotation: drop the user's, add it for bindings.
    given = proposed.get("annotations")
    annotations = _del_keys(given if given is not None else (old or {}).get("annotations", []), {"binding"})
    if binding:
        annotations.append({"key": "binding", "value": dict(binding)})
    doc: Doc = {
        "namespace": ns,
        "name": name,
        "binding": dict(binding),
        "parameters": proposed.get("parameters", (old or {}).get("parameters", [])),
        **_common_fields(proposed, old),
        "annotations": annotations,
        "updated": now_ms,
        "entityType": "package",
    }
    return Decision([(doc_id, doc)], public(doc))


_PUT: dict[str, Callable[[str, Doc, Doc | None, Lookup, int], Decision]] = {
    "action": _put_action,
    "trigger": _put_trigger,
    "rule": _put_rule,
    "package": _put_package,
}


# --- DELETE -------------------------------------------------------------------------------


def decide_delete(entity_type: str, doc_id: str, lookup: Lookup, force: bool, contents: list[str]) -> Decision:
    """`contents`: doc ids of the actions inside the package (only used for packages)."""
    doc = lookup(doc_id)
    if doc is None:
        return Decision([], None, WhiskError(404, NOT_FOUND))
    if doc.get("entityType") != entity_type:
        return Decision([], None, WhiskError(409, CONFORMANCE))
    writes: list[tuple[str, Doc | None]] = []
    result = public(doc)
    if entity_type == "package" and not doc.get("binding") and contents:
        if not force:
            n = len(contents)
            noun = "entity" if n == 1 else "entities"
            msg = f"Package not empty (contains {n} {noun}). Set force param or delete package contents."
            return Decision([], None, WhiskError(409, msg))
        writes.extend((c, None) for c in contents)
    if entity_type == "rule":
        trig = _typed(lookup, _ref_id(doc["trigger"]), "trigger")
        if trig is not None:
            writes.append((_ref_id(doc["trigger"]), _with_rule(trig, _rule_key(doc), None, _updated(trig))))
        result["status"] = "inactive"
    writes.append((doc_id, None))
    return Decision(writes, result)


def _updated(doc: Doc) -> int:
    # decide_delete has no clock; keep the trigger's own timestamp.
    return int(doc.get("updated", 0))


# --- POST rule state ----------------------------------------------------------------------


def decide_rule_state(doc_id: str, status: str, lookup: Lookup, now_ms: int) -> Decision:
    """Enable/disable a rule. OpenWhisk answers a bare 200, so `result` is None on success."""
    if status not in ("active", "inactive"):
        detail = f"requirement failed: {status} is not a recognized rule state"
        return Decision([], None, WhiskError(400, MALFORMED + detail))
    rule = lookup(doc_id)
    if rule is None:
        return Decision([], None, WhiskError(404, NOT_FOUND))
    if rule.get("entityType") != "rule":
        return Decision([], None, WhiskError(409, CONFORMANCE))
    if rule_status(rule, lookup) == status:
        return Decision([], None)  # unchanged state is still a 200
    trig = _typed(lookup, _ref_id(rule["trigger"]), "trigger")
    if trig is None:
        return Decision([], None, WhiskError(404, "Only rules with existing triggers can be activated"))
    link = {"action": dict(rule["action"]), "status": status}
    return Decision([(_ref_id(rule["trigger"]), _with_rule(trig, _rule_key(rule), link, now_ms))], None)
