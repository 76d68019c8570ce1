"""Validation and normalisation of entity PUT bodies (spec 2.0, 2.3-2.6, 3.1-3.4).

Every normalize_*_put returns a *proposal*: a JSON-serialisable dict holding
``entityType``, ``namespace``, ``name`` and ONLY the fields the request gave, already
validated and in stored shape (``delAnnotations`` too for actions). Whether a key is
present is how the decider (streams.entities.logic) tells "given" from "keep old";
defaults are filled there because they depend on create vs update.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from contracts.errors import WhiskError

ENTITY_NAME_RE = re.compile(r"\A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\Z", re.ASCII)

NOT_FOUND = "The requested resource does not exist."
CONFORMANCE = "Resource by this name exists but is not in this collection."
ALREADY_EXISTS = "resource already exists"
NOT_ON_BINDING = "Operation not permitted on package binding."
MALFORMED = "The request content was malformed:\n"


def malformed(detail: str) -> WhiskError:
    return WhiskError(400, MALFORMED + detail)


# --- names -------------------------------------------------------------------------------


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not ENTITY_NAME_RE.match(name):
        raise WhiskError(400, "The name of the entity contains illegal characters.")
    return name


def validate_namespace(ns: str) -> str:
    """`ns` or `ns/pkg` (packaged actions): every segment follows the entity-name rule."""
    if not isinstance(ns, str) or not all(ENTITY_NAME_RE.match(s) for s in ns.split("/")) or ns.count("/") > 1:
        raise WhiskError(400, "The namespace contains illegal characters.")
    return ns


def parse_fqn(path: str, default_ns: str) -> tuple[str, str | None, str]:
    """(namespace, package, name) of "/ns/pkg/a", "/ns/a", "pkg/a" or "a"; "_" means default_ns."""
    if not isinstance(path, str) or not path.strip():
        raise malformed("A fully qualified name must contain at least the namespace and the name of the entity.")
    parts = path.strip().split("/")
    if path.startswith("/"):
        parts = parts[1:]
        if len(parts) < 2:
            raise malformed("A fully qualified name must contain at least the namespace and the name of the entity.")
        ns, rest = parts[0], parts[1:]
    else:
        ns, rest = default_ns, parts
    if len(rest) > 2:
        raise malformed(f"'{path}' has too many path segments.")
    if ns == "_":
        ns = default_ns
    validate_namespace(ns)
    for seg in rest:
        validate_name(seg)
    return (ns, rest[0], rest[1]) if len(rest) == 2 else (ns, None, rest[0])


def fqn_doc_id(path: str, default_ns: str) -> str:
    ns, pkg, name = parse_fqn(path, default_ns)
    return f"{ns}/{pkg}/{name}" if pkg else f"{ns}/{name}"


# --- runtimes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    kind: str
    family: str
    image: str
    default: bool
    require_main: bool = False  # OpenWhisk's requireMain: `exec.main` must be given (java)


# Each kind is named after the version its image really runs (runtimes/build.py builds them from packages).
RUNTIMES: dict[str, Runtime] = {
    "python:3": Runtime("python:3", "python", "streamwhisk/action-python", True),
    "python:3.11": Runtime("python:3.11", "python", "streamwhisk/action-python", False),  # Debian bookworm: 3.11
    "python:3.13": Runtime("python:3.13", "python", "streamwhisk/action-python313", False),  # Debian trixie
    "nodejs:18": Runtime("nodejs:18", "nodejs", "streamwhisk/action-nodejs", False),  # Debian bookworm: node 18
    "nodejs:20": Runtime("nodejs:20", "nodejs", "streamwhisk/action-nodejs20", True),  # Debian trixie: node 20
    "nodejs:22": Runtime("nodejs:22", "nodejs", "streamwhisk/action-nodejs22", False),  # PyPI's Node.js wheel
    "java:21": Runtime("java:21", "java", "streamwhisk/action-java21", True, require_main=True),  # trixie: openjdk 21
    "java:17": Runtime("java:17", "java", "streamwhisk/action-java17", False, require_main=True),  # bookworm: 17
    "php:8.4": Runtime("php:8.4", "php", "streamwhisk/action-php84", True),  # Debian trixie: php 8.4
    "ruby:3.3": Runtime("ruby:3.3", "ruby", "streamwhisk/action-ruby33", True),  # Debian trixie: ruby 3.3
    "go:1.24": Runtime("go:1.24", "go", "streamwhisk/action-go124", True),  # Debian trixie: go 1.24.4
    "rust:1.85": Runtime("rust:1.85", "rust", "streamwhisk/action-rust185", True),  # Debian trixie: rustc 1.85.1
}
# Bare family names are a Streamwhisk convenience (OpenWhisk knows only exact kinds and `<family>:default`).
KIND_ALIASES: dict[str, str] = {"python": "python:default", "nodejs": "nodejs:default"}
BLACKBOX = "blackbox"
SEQUENCE = "sequence"
VALID_KINDS = sorted([*RUNTIMES, BLACKBOX, SEQUENCE])


def resolve_kind(kind: str) -> str:
    """The kind as stored: as given, except that `<family>:default` becomes the family's default kind
    (OpenWhisk's ExecManifest.resolveDefaultRuntime)."""
    k = kind.strip().lower() if isinstance(kind, str) else kind
    k = KIND_ALIASES.get(k, k)
    if k in RUNTIMES or k in (BLACKBOX, SEQUENCE):
        return str(k)
    family, _, version = str(k).partition(":")
    default = next((rt.kind for rt in RUNTIMES.values() if rt.family == family and rt.default), None)
    if version == "default" and default is not None:
        return default
    valid = ", ".join(f"'{v}'" for v in VALID_KINDS)
    raise malformed(f"The specified runtime '{kind}' is not supported by this platform. Valid values are: {valid}.")


def image_kind(kind: str) -> str:
    """The kind invokers key images and stem cells by: the default kind of the image that runs `kind`
    (python:3.11 -> python:3); other kinds (blackbox, unknown) unchanged.

    >>> image_kind("python:3.11"), image_kind("python:3"), image_kind("nodejs:18"), image_kind("blackbox")
    ('python:3', 'python:3', 'nodejs:18', 'blackbox')
    """
    rt = RUNTIMES.get(kind)
    if rt is None:
        return kind
    return next((r.kind for r in RUNTIMES.values() if r.image == rt.image and r.default), kind)


def runtimes_info() -> dict[str, list[dict[str, Any]]]:
    """`runtimes` of GET / : family -> [{kind, image, default, deprecated, attached, requireMain}]."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rt in RUNTIMES.values():
        out.setdefault(rt.family, []).append(
            {
                "kind": rt.kind,
                "image": rt.image,
                "default": rt.default,
                "deprecated": False,
                "attached": False,
                "requireMain": rt.require_main,
            }
        )
    return out


# --- limits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    min: int
    max: int
    default: int


LIMITS: dict[str, Limit] = {
    "timeout": Limit(100, 300000, 60000),  # ms
    "memory": Limit(128, 512, 256),  # MB
    "logs": Limit(0, 10, 10),  # MB
    "concurrency": Limit(1, 1, 1),
}
MAX_PARAMETER_SIZE = 1048576
MAX_ANNOTATION_SIZE = 1048576
MAX_CODE_SIZE = 50331648
MAX_PAYLOAD_SIZE = 1048576
MAX_SEQUENCE_LENGTH = 50


def default_limits() -> dict[str, int]:
    return {k: v.default for k, v in LIMITS.items()}


# OpenWhisk's words for each field in its limit texts (TimeLimit, MemoryLimit, LogLimit, IntraConcurrencyLimit,
# InstanceConcurrencyLimit): when the JSON is not a number, and when it is not whole.
_MALFORMED_NAMES = {"timeout": "time", "memory": "memory", "logs": "log", "concurrency": "concurrency",
                    "instances": "instance concurrency"}
_WHOLE_NAMES = {**_MALFORMED_NAMES, "concurrency": "intra concurrency"}


def _limit_message(field: str, value: int, bound: int, word: str) -> str:
    # Messages.durationXAllowedThreshold("duration", ...), sizeXAllowedThreshold("memory"/"log", ...), concurrencyX.
    if field == "timeout":
        return f"duration {value} milliseconds {word} allowed threshold of {bound} milliseconds"
    if field in ("memory", "logs"):
        return f"{_MALFORMED_NAMES[field]} size {value} MB {word} allowed threshold of {bound} MB"
    return f"concurrency {value} {word} allowed threshold of {bound}"


def validate_limits(limits: Any) -> dict[str, int]:
    """Only the given fields; `instances` is passed through (namespace-dependent).

    As OpenWhisk: every field is parsed first (ActionLimitsOption's order; null = not given), then the ranges are
    checked in checkActionLimits' order (memory, timeout, logs, concurrency; the maximum before the minimum).
    """
    if not isinstance(limits, dict):
        raise malformed("'limits' must be an object")
    out: dict[str, int] = {}
    for field in ("timeout", "memory", "logs", "concurrency", "instances"):
        value = limits.get(field)  # OpenWhisk ignores unknown limit fields
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise malformed(f"{_MALFORMED_NAMES[field]} limit malformed")
        if isinstance(value, float) and not value.is_integer():
            raise malformed(f"{_WHOLE_NAMES[field]} limit must be whole number")
        out[field] = int(value)
    for field in ("memory", "timeout", "logs", "concurrency"):
        if field in out:
            v, lim = out[field], LIMITS[field]
            if v > lim.max:
                raise WhiskError(400, _limit_message(field, v, lim.max, "exceeds"))
            if v < lim.min:
                raise WhiskError(400, _limit_message(field, v, lim.min, "below"))
    if out.get("instances", 1) < 1:
        raise malformed("instances limit must be at least 1")
    return out


# --- generic fields ----------------------------------------------------------------------

_BASE64_RE = re.compile(r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$")


def is_binary_code(code: str) -> bool:
    t = code.strip()
    return len(t) > 0 and len(t) % 4 == 0 and bool(_BASE64_RE.match(t))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def key_values_size(kvs: list[dict[str, Any]]) -> int:
    """OpenWhisk Parameters.size: bytes of each key plus its compact JSON value."""
    return sum(len(kv["key"].encode()) + len(_compact(kv.get("value")).encode()) for kv in kvs)


def validate_key_values(field: str, value: Any, max_size: int) -> list[dict[str, Any]]:
    """A [{key, value, init?, encryption?}] list; duplicate keys collapse later-wins (it is a Map upstream)."""
    if not isinstance(value, list):
        raise malformed(f"'{field}' must be an array of key/value objects")
    merged: dict[str, dict[str, Any]] = {}
    for kv in value:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise malformed(f"'{field}' must be an array of key/value objects")
        entry: dict[str, Any] = {"key": kv["key"], "value": kv.get("value")}
        if "init" in kv:
            if not isinstance(kv["init"], bool):
                raise malformed(f"'init' in '{field}' must be a boolean")
            if kv["init"]:
                entry["init"] = True
        if kv.get("encryption") is not None:
            entry["encryption"] = kv["encryption"]
        merged[kv["key"]] = entry
    out = list(merged.values())
    size = key_values_size(out)
    if size > max_size:
        raise WhiskError(413, f"{field} larger than allowed: {size} > {max_size} bytes.")
    return out


def validate_version(version: Any) -> str:
    """SemVer "x.y.z"; shorter forms pad with zeros as OpenWhisk's SemVer does."""
    if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+){0,2}", version):
        raise malformed(f"'{version}' is not a valid semantic version")
    parts = [int(p) for p in version.split(".")] + [0, 0]
    return f"{parts[0]}.{parts[1]}.{parts[2]}"


def bump_patch(version: str) -> str:
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def _common(body: Any, proposal: dict[str, Any]) -> dict[str, Any]:
    """Fields shared by every collection: parameters, annotations, version, publish."""
    if not isinstance(body, dict):
        raise malformed("the request body must be a JSON object")
    if body.get("parameters") is not None:
        proposal["parameters"] = validate_key_values("parameters", body["parameters"], MAX_PARAMETER_SIZE)
    if body.get("annotations") is not None:
        proposal["annotations"] = validate_key_values("annotations", body["annotations"], MAX_ANNOTATION_SIZE)
    if body.get("version") is not None:
        proposal["version"] = validate_version(body["version"])
    if body.get("publish") is not None:
        if not isinstance(body["publish"], bool):
            raise malformed("'publish' must be a boolean")
        proposal["publish"] = body["publish"]
    return proposal


def _base(entity_type: str, namespace: str, name: str) -> dict[str, Any]:
    return {"entityType": entity_type, "namespace": validate_namespace(namespace), "name": validate_name(name)}


# --- actions -----------------------------------------------------------------------------


def _root_ns(namespace: str) -> str:
    return namespace.split("/")[0]


def normalize_exec(exec_: Any, namespace: str) -> dict[str, Any]:
    if not isinstance(exec_, dict):
        raise malformed("'exec' must be an object")
    if not isinstance(exec_.get("kind"), str):
        raise malformed("'kind' must be a string defined in 'exec'")
    kind = resolve_kind(exec_["kind"])
    main = exec_.get("main")
    if main is not None and not isinstance(main, str):
        raise malformed(f"if defined, 'main' be a string in 'exec' for '{kind}' actions")
    out: dict[str, Any] = {"kind": kind}
    if kind == SEQUENCE:
        comps = exec_.get("components")
        if comps is None:
            raise malformed("'components' must be defined for sequence kind")
        if not isinstance(comps, list):
            raise malformed("'components' must be an array")
        if not comps:
            raise WhiskError(400, "No component specified for the sequence.")
        if len(comps) > MAX_SEQUENCE_LENGTH:
            raise WhiskError(400, "Too many actions in the sequence.")
        # Stored fully qualified with a leading slash; `_` resolves to the caller's root namespace.
        out["components"] = ["/" + fqn_doc_id(c, _root_ns(namespace)) for c in comps]
        return out
    code = exec_.get("code")
    if kind == BLACKBOX:
        if not isinstance(exec_.get("image"), str) or not exec_["image"].strip():
            raise malformed("'image' must be a string defined in 'exec' for 'blackbox' actions")
        out["image"] = exec_["image"].strip()
        if code is not None and not isinstance(code, str):
            raise malformed("'code' must be a string defined in 'exec' for 'blackbox' actions")
        if code is not None and code.strip():
            out["code"] = code
        out["binary"] = isinstance(code, str) and is_binary_code(code)
    else:
        if not isinstance(code, str):
            raise malformed(f"'code' must be a string defined in 'exec' for '{kind}' actions")
        out["code"] = code
        out["binary"] = is_binary_code(code)
        if main is None and RUNTIMES[kind].require_main:  # ExecManifest requireMain, as Exec.scala's text
            raise malformed(f"'main' must be a string defined in 'exec' for '{kind}' actions")
    if main is not None:
        out["main"] = main
    size = len(out.get("code", "").encode())
    if size > MAX_CODE_SIZE:
        raise WhiskError(413, f"exec larger than allowed: {size} > {MAX_CODE_SIZE} bytes.")
    return out


def normalize_action_put(namespace: str, name: str, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Proposal for PUT .../actions/[pkg/]name; `namespace` is `ns` or `ns/pkg`.

    now_ms is unused: `updated` is stamped by the decider when it writes.
    """
    proposal = _common(body, _base("action", namespace, name))
    if body.get("exec") is not None:
        proposal["exec"] = normalize_exec(body["exec"], namespace)
        if proposal["exec"]["kind"] == SEQUENCE:
            # A sequence keeps its components as parameter `_actions`; user parameters are ignored.
            proposal["parameters"] = [{"key": "_actions", "value": proposal["exec"]["components"]}]
    if body.get("limits") is not None:
        proposal["limits"] = validate_limits(body["limits"])
    if body.get("delAnnotations") is not None:
        dels = body["delAnnotations"]
        if not isinstance(dels, list) or not all(isinstance(d, str) for d in dels):
            raise malformed("'delAnnotations' must be an array of strings")
        proposal["delAnnotations"] = list(dels)
    return proposal


# --- triggers, rules, packages -----------------------------------------------------------


def normalize_trigger_put(namespace: str, name: str, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    proposal = _common(body, _base("trigger", namespace, name))
    if body.get("limits") is not None:
        if not isinstance(body["limits"], dict):
            raise malformed("'limits' must be an object")
        proposal["limits"] = {}  # triggers have no limits; OpenWhisk stores an empty object
    for kv in proposal.get("annotations", []):
        if kv["key"] == "feed":
            try:
                ok = isinstance(kv["value"], str) and parse_fqn(kv["value"], namespace)[2] != ""
            except WhiskError:
                ok = False
            if not ok:
                raise WhiskError(400, "Feed name is not valid")
    return proposal


def _entity_ref(value: Any, namespace: str) -> dict[str, str]:
    """A rule's trigger/action as stored: {path: "ns[/pkg]", name}. Accepts "/ns/x", "_/x"-style paths or objects."""
    if isinstance(value, dict) and isinstance(value.get("path"), str) and isinstance(value.get("name"), str):
        value = f"/{value['path']}/{value['name']}"
    if not isinstance(value, str):
        raise malformed("rule trigger and action must be entity names")
    if value.startswith("_/"):
        value = "/" + value
    ns, pkg, nm = parse_fqn(value, namespace)
    return {"path": f"{ns}/{pkg}" if pkg else ns, "name": nm}


def normalize_rule_put(namespace: str, name: str, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """`trigger`/`action` become {path, name}; their absence on create is the decider's concern."""
    proposal = _common(body, _base("rule", namespace, name))
    for field in ("trigger", "action"):
        if body.get(field) is not None:
            proposal[field] = _entity_ref(body[field], namespace)
    if "trigger" in proposal and "/" in proposal["trigger"]["path"]:
        raise malformed("a trigger cannot be inside a package")
    return proposal


def normalize_package_put(namespace: str, name: str, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """`binding` {namespace, name} with `_` resolved; `{}` counts as not given (as in OpenWhisk)."""
    if name == "default":
        raise WhiskError(400, "Package name 'default' is reserved.")
    if "/" in namespace:
        raise WhiskError(400, "The namespace contains illegal characters.")  # packages do not nest
    proposal = _common(body, _base("package", namespace, name))
    binding = body.get("binding")
    if binding is not None:
        if not isinstance(binding, dict):
            raise malformed("'binding' must be an object")
        if binding:
            bns, bname = binding.get("namespace"), binding.get("name")
            if not isinstance(bns, str) or not isinstance(bname, str):
                raise malformed("'binding' must define 'namespace' and 'name'")
            bns = namespace if bns in ("_", "") else bns
            proposal["binding"] = {"namespace": validate_namespace(bns), "name": validate_name(bname)}
    return proposal


# --- references: what an activation carries instead of the action's code -------------------------------------

def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def action_ref(doc: dict[str, Any]) -> dict[str, Any]:
    """The action as an activation carries it: the doc with `exec.code` replaced by its digest (`exec.digest`),
    as OpenWhisk's activation messages name the action's revision, not its code. Invokers get the code from
    their cache (fed by the entity log) or the whisks view, and only for a cold start.

    >>> ref = action_ref({"namespace": "n", "name": "a", "exec": {"kind": "python:3", "code": "x"}})
    >>> ref["exec"] == {"kind": "python:3", "digest": code_digest("x")}
    True
    """
    exec_ = doc.get("exec")
    if not isinstance(exec_, dict) or not isinstance(exec_.get("code"), str):
        return doc
    code = exec_["code"]
    return {**doc, "exec": {**{k: v for k, v in exec_.items() if k != "code"}, "digest": code_digest(code)}}
