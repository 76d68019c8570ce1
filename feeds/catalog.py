"""The /whisk.system catalog: the feed packages (alarms, kafka) and OpenWhisk's `utils` and `samples` packages.

The feed service installs it when it starts, through the entity log like any write (EntityCommand -> decider ->
EntityChanged), and only what differs from the log's current state: a second start sends nothing, a changed
entry is updated. Packages are shared (publish: true), so every namespace can invoke and bind them.

`utils` and `samples` follow apache/openwhisk-catalog (packages/utils/manifest.yaml, packages/samples/manifest.yaml
and the older packages/installSystem.sh, which installed utils and samples' helloWorld, greeting, wordCount and
curl): same names, parameters, results and annotations; the action code in feeds/actions/ is our own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts import entities, events
from contracts.events import EntityChanged, EntityCommand
from streams.entities import logic

Doc = dict[str, Any]
SYSTEM = "whisk.system"
SOURCES = Path(__file__).resolve().parent / "actions"
KIND = "nodejs:default"  # what `wsk action update x.js` stores: the default nodejs kind
# Kept by the decider, never given by the catalog: not stale annotations to delete.
SYSTEM_ANNOTATIONS = ("exec", "provide-api-key")


def _annotations(description: str, **more: Any) -> list[Doc]:
    return [{"key": "description", "value": description}, *({"key": k, "value": v} for k, v in more.items())]


def _param(name: str, description: str | None = None, required: bool | None = None,
           type_: str | None = None) -> Doc:
    p: Doc = {"name": name}
    if required is not None:
        p["required"] = required
    if type_ is not None:
        p["type"] = type_
    if description is not None:
        p["description"] = description
    return p


LINES = _param("lines", "An array of strings", True, "array")
FEED = {"feed": True}

# package -> (package annotations, {action: (source file, annotations)})
PACKAGES: dict[str, tuple[list[Doc], dict[str, tuple[str, list[Doc]]]]] = {
    # apache/openwhisk-package-alarms installCatalog.sh (its package parameters are not copied: an empty
    # `trigger_payload` would reach every feed call as a real payload)
    "alarms": (_annotations("Alarms and periodic utility", parameters=[_param("trigger_payload", required=False)]), {
        "alarm": ("feed.js", _annotations("Fire trigger when alarm occurs", parameters=[
            _param("cron", required=True), _param("timezone", required=False), _param("startDate", required=False),
            _param("stopDate", required=False), _param("strict", required=False)], **FEED)),
        "once": ("feed.js", _annotations("Fire trigger once when alarm occurs", parameters=[
            _param("date", required=True), _param("deleteAfterFire", required=False)], **FEED)),
        "interval": ("feed.js", _annotations("Fire trigger at specified interval", parameters=[
            _param("minutes", required=True), _param("startDate", required=False),
            _param("stopDate", required=False)], **FEED)),
    }),
    "kafka": (_annotations("Kafka topics and Kafka Connect source connectors as trigger feeds"), {
        "topic": ("feed.js", _annotations("Fire trigger for each record of a Kafka topic", parameters=[
            _param("topic", required=True)], **FEED)),
        "connector": ("feed.js", _annotations(
            "Fire trigger for each record of a Kafka Connect source connector made for the trigger", **FEED)),
    }),
    "utils": (_annotations("Building blocks that format and assemble data"), {
        "echo": ("utils/echo.js", _annotations(
            "Returns the input", parameters=[_param("payload", "Any JSON entity", False)],
            sampleInput={"payload": "Five fuzzy felines"}, sampleOutput={"payload": "Five fuzzy felines"})),
        "cat": ("utils/cat.js", _annotations(
            "Concatenates input into a string",
            parameters=[_param("lines", "An array of strings or numbers", True, "array")],
            sampleInput={"lines": [4, 2, 3]}, sampleOutput={"lines": [4, 2, 3]})),
        "smash": ("utils/smash.js", _annotations(
            "Nests all properties under given property",
            parameters=[_param("$fieldName", "Name of property to nest object under", True, "string")],
            sampleInput={"a": 1, "b": {"c": 2, "d": 3}, "$fieldName": "p"},
            sampleOutput={"p": {"a": 1, "b": {"c": 2, "d": 3}}})),
        "split": ("utils/split.js", _annotations(
            "Split a string into an array",
            parameters=[_param("payload", "A string", True), _param(
                "separator", "The character, or the regular expression, to use for splitting the string", False)],
            sampleInput={"payload": "one,two,three", "separator": ","},
            sampleOutput={"lines": ["one", "two", "three"], "payload": "one,two,three"})),
        "sort": ("utils/sort.js", _annotations(
            "Sorts an array", parameters=[LINES],
            sampleInput={"lines": [4, 2, 3]}, sampleOutput={"lines": [2, 3, 4], "length": 3})),
        "head": ("utils/head.js", _annotations(
            "Extract prefix of an array",
            parameters=[LINES, _param("num", "The length of the prefix", False, "integer")],
            sampleInput={"lines": [4, 2, 3], "num": 2}, sampleOutput={"lines": [4, 2], "num": 2})),
        "date": ("utils/date.js", _annotations(
            "Current date and time", sampleOutput={"date": "2016-03-22T00:59:55.961Z"})),
        "namespace": ("utils/namespace.js", _annotations(
            "Returns namespace for the authorization key used to invoke this action",
            sampleOutput={"namespace": "guest"})),
        "hosturl": ("utils/hosturl.js", _annotations(
            "Returns the URL to activate an action or trigger", parameters=[
                _param("web", "True for web actions", type_="boolean"),
                _param("ext", "Extension for web action, one of .html, .http, .json, .text", type_="string"),
                _param("trigger", "True to construct path for trigger instead of action.", type_="boolean"),
                _param("path", "The action name as just <action name> or <package name>/<action name>.",
                       type_="string")],
            sampleInput={"web": True, "path": "utils/echo"},
            sampleOutput={"url": "https://openwhisk.ng.bluemix.net/api/v1/experimental/web/guest/utils/echo.json"})),
    }),
    "samples": (_annotations("A suite of simple actions to help you get started with OpenWhisk"), {
        "helloWorld": ("samples/hello.js", _annotations(
            "Demonstrates logging facilities",
            parameters=[_param("payload", "The string to be included in the log record", False)],
            sampleInput={"payload": "Cat"}, sampleOutput={},
            sampleLogOutput="2016-03-22T01:02:26.387624916Z stdout: hello Cat!")),
        "greeting": ("samples/greeting.js", _annotations(
            "Returns a friendly greeting",
            parameters=[_param("name", required=False),
                        _param("place", "The string to be included in the return value", False)],
            sampleInput={"payload": "Cat", "place": "Narrowsburg"},
            sampleOutput={"payload": "Hello, Cat from Narrowsburg!"},
            sampleLogOutput="2016-03-22T01:07:08.384982272Z stdout: params: { place: 'Narrowsburg', payload: 'Cat' }")),
        "wordCount": ("samples/wordcount.js", _annotations(
            "Count words in a string", parameters=[_param("payload", "A string", True)],
            sampleInput={"payload": "Five fuzzy felines"}, sampleOutput={"count": 3},
            sampleLogOutput="2016-03-22T01:10:07.361649586Z stdout: The message 'Five fuzzy felines' has 3 words")),
        "curl": ("samples/curl.js", _annotations(
            "Curl a host url", parameters=[_param("payload", "A host url", True)],
            sampleInput={"payload": "google.com"}, sampleOutput={"msg": "content returned from google.com"})),
    }),
}


def entries(sources: Path = SOURCES) -> list[tuple[str, str, Doc]]:
    """(entity type, doc id, PUT body) of every catalog entity, each package before its actions."""
    out: list[tuple[str, str, Doc]] = []
    for pkg, (pkg_annotations, actions) in PACKAGES.items():
        out.append(("package", f"{SYSTEM}/{pkg}", {"publish": True, "annotations": pkg_annotations, "parameters": []}))
        for name, (source, action_annotations) in actions.items():
            code = (sources / source).read_text()
            out.append(("action", f"{SYSTEM}/{pkg}/{name}", {
                "exec": {"kind": KIND, "code": code}, "annotations": action_annotations, "parameters": []}))
    return out


def proposal(entity_type: str, doc_id: str, body: Doc, current: Doc | None) -> Doc:
    """The normalized PUT; an update also deletes annotations the catalog no longer gives (the decider merges
    an action's annotations with the old ones)."""
    ns, _, name = doc_id.rpartition("/")
    if entity_type == "package":
        return entities.normalize_package_put(ns, name, body, 0)
    given = {a["key"] for a in body["annotations"]}
    stale = [a["key"] for a in (current or {}).get("annotations", [])
             if a["key"] not in given and a["key"] not in SYSTEM_ANNOTATIONS]
    return entities.normalize_action_put(ns, name, {**body, **({"delAnnotations": stale} if stale else {})}, 0)


def _comparable(doc: Doc) -> Doc:
    """A doc without what every write changes (version, updated) and with key/value lists as maps (the decider
    may reorder annotations on an update)."""
    out = {k: v for k, v in doc.items() if k not in ("version", "updated")}
    for k in ("annotations", "parameters"):
        out[k] = {kv["key"]: kv for kv in doc.get(k) or []}
    return out


def changes(lookup: logic.Lookup, now_ms: int, sources: Path = SOURCES) -> list[EntityCommand]:
    """The puts that bring the log to the catalog: entries missing or different from what the decider would
    write for them now (found by running the decider's own rules on the current docs)."""
    out: list[EntityCommand] = []
    for entity_type, doc_id, body in entries(sources):
        current = lookup(doc_id)
        put = proposal(entity_type, doc_id, body, current)
        if current is not None:
            d = logic.decide_put(entity_type, doc_id, put, True, lookup, now_ms)
            if d.error is None and _comparable(d.writes[0][1] or {}) == _comparable(current):
                continue
        out.append(EntityCommand(request_id=events.new_id(), op="put", entity_type=entity_type, doc_id=doc_id,
                                 subject=SYSTEM, overwrite=True, body=put))
    return out


def fold(state: dict[str, Doc], ev: events.Event) -> None:
    """The feed service's view of the entity log: whisk.system's docs (what the catalog is compared with) and
    every trigger (a feed whose trigger is gone stops); nothing else, so it stays small."""
    if not isinstance(ev, EntityChanged):
        return
    for doc_id, doc in ev.writes:
        if doc is None:
            state.pop(doc_id, None)
        elif doc_id.startswith(f"{SYSTEM}/") or doc.get("entityType") == "trigger":
            state[doc_id] = doc
