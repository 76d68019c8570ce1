"""wskadmin-like subject management. Every change is an event on the subjects topic; keys are stored hashed."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from contracts import bus, events, keys
from contracts.events import SubjectBlocked, SubjectDeleted, SubjectKeyAdded
from contracts.settings import Settings
from contracts.topics import Topics


async def read_subjects(settings: Settings) -> dict[str, dict[str, Any]]:
    """Current subjects folded from the whole subjects topic."""
    t = Topics(settings.prefix)
    await bus.ensure_topics(settings.kafka, [t.subjects], settings.partitions)
    c = bus.consumer(settings.kafka, group=None)
    await c.start()
    try:
        tps = await bus.partitions(c, t.subjects)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        state: dict[str, dict[str, Any]] = {}
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            for msgs in (await c.getmany(timeout_ms=500)).values():
                for m in msgs:
                    try:
                        _fold(state, events.decode(m.value))
                    except events.DecodeError:
                        continue
        return state
    finally:
        await c.stop()


def _fold(state: dict[str, dict[str, Any]], ev: events.Event) -> None:
    if isinstance(ev, SubjectKeyAdded):
        s = state.setdefault(ev.subject, {"subject": ev.subject, "namespaces": {}, "blocked": False})
        s["namespaces"][ev.namespace] = {"uuid": ev.uuid, "key_salt": ev.key_salt, "key_hash": ev.key_hash}
        s["limits"] = ev.limits
    elif isinstance(ev, SubjectBlocked) and ev.subject in state:
        state[ev.subject]["blocked"] = ev.blocked
    elif isinstance(ev, SubjectDeleted):
        state.pop(ev.subject, None)


async def publish(settings: Settings, ev: events.Event, key: str) -> None:
    p = bus.producer(settings.kafka)
    await p.start()
    try:
        await bus.send(p, Topics(settings.prefix).subjects, key, ev)
    finally:
        await p.stop()


def key_added(subject: str, namespace: str, authkey: str, limits: dict[str, Any] | None = None) -> SubjectKeyAdded:
    uid, secret = keys.split(authkey)
    salt = keys.new_salt()
    return SubjectKeyAdded(subject=subject, namespace=namespace, uuid=uid, key_salt=salt,
                           key_hash=keys.hash_key(secret, salt), limits=limits or {})


async def create_subject(
    settings: Settings, subject: str, namespace: str | None = None, authkey: str | None = None,
    limits: dict[str, Any] | None = None,
) -> str:
    """Create (or keep) a subject's key for a namespace; returns the key (shown once, never stored in clear)."""
    ns = namespace or subject
    current = (await read_subjects(settings)).get(subject)
    if current and ns in current["namespaces"] and authkey:
        entry = current["namespaces"][ns]
        uid, secret = keys.split(authkey)
        if entry["uuid"] == uid and keys.verify(secret, entry["key_salt"], entry["key_hash"]) \
                and current.get("limits", {}) == (limits or {}):
            return authkey
    authkey = authkey or keys.generate()
    await publish(settings, key_added(subject, ns, authkey, limits), subject)
    return authkey


def ensure_guest_subject(settings: Settings) -> str:
    """The guest and whisk.system subjects with OpenWhisk's published dev keys (as its standalone mode has)."""
    async def both() -> str:
        await create_subject(settings, keys.SYSTEM_SUBJECT, keys.SYSTEM_SUBJECT, keys.SYSTEM_KEY)
        return await create_subject(settings, keys.GUEST_SUBJECT, keys.GUEST_SUBJECT, keys.GUEST_KEY)
    return asyncio.run(both())


def cmd_admin(settings: Settings, args: argparse.Namespace) -> int:
    """wskadmin-style `user` commands; the key is printed once (only its hash is kept)."""
    op = args.op
    if op != "list" and not args.subject:
        print(f"error: '{op}' needs a subject", file=sys.stderr)
        return 2
    current = asyncio.run(read_subjects(settings))
    if op == "create":
        ns = args.namespace or args.subject
        if args.subject in current and ns in current[args.subject]["namespaces"] and not args.auth:
            print(f"error: namespace '{ns}' already exists for subject '{args.subject}'", file=sys.stderr)
            return 1
        limits = orjson.loads(args.limits) if args.limits else None
        print(asyncio.run(create_subject(settings, args.subject, ns, args.auth, limits)))
    elif op == "list":
        for name, s in sorted(current.items()):
            if args.json:
                print(orjson.dumps({"subject": name, "namespaces": sorted(s["namespaces"]),
                                    "blocked": s["blocked"]}).decode())
            else:
                print(f"{name}\t{','.join(sorted(s['namespaces']))}{' (blocked)' if s['blocked'] else ''}")
    elif args.subject not in current:
        print(f"error: subject '{args.subject}' does not exist", file=sys.stderr)
        return 1
    elif op in ("block", "unblock"):
        asyncio.run(publish(settings, SubjectBlocked(subject=args.subject, blocked=op == "block"), args.subject))
        print(f"{args.subject} {op}ed")
    elif op == "delete":
        asyncio.run(publish(settings, SubjectDeleted(subject=args.subject), args.subject))
        print(f"{args.subject} deleted")
    return 0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("op", choices=["create", "list", "block", "unblock", "delete"])
    p.add_argument("subject", nargs="?", default="")
    p.add_argument("--namespace", help="namespace (default: the subject)")
    p.add_argument("--auth", help="uuid:key to use instead of a generated one")
    p.add_argument("--limits", help='JSON, e.g. {"invocationsPerMinute": 1000}')
    p.add_argument("--json", action="store_true", help="list: one JSON object per subject")
