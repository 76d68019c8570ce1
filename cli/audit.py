"""`streamwhisk audit`: who did what, when, read from the Kafka log (pure rules in projections/audit.py).

    streamwhisk audit --subject alice --since 2h                  # a table
    streamwhisk audit --entity guest/hello --kind entity --json   # JSON lines
    streamwhisk audit --entity guest/hello --as-of 2024-05-01T12:00:00Z
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from contracts import bus, events
from contracts.events import Event, now_ms
from contracts.settings import Settings
from contracts.topics import Topics
from projections import audit

Positioned = tuple[str, int, int, Event]  # topic, partition, offset, event


def kind_topics(t: Topics) -> dict[str, str]:
    return {"api": t.access, "entity": t.entities, "activation": t.completions, "subject": t.subjects}


async def read_log(settings: Settings, topics: list[str], since_ms: int | None = None,
                   timeout_s: float = 600.0) -> list[Positioned]:
    """Every decodable event of `topics` up to their current end (from `since_ms` if given), in log order."""
    consumer = bus.consumer(settings.kafka, group=None)
    await consumer.start()
    out: list[Positioned] = []
    try:
        await bus.ensure_topics(settings.kafka, topics, settings.partitions)
        tps = [tp for topic in topics for tp in await bus.partitions(consumer, topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        if since_ms is not None:  # skip what is older, by the broker's time index
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            for tp in tps:
                consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])
        left = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(*left, timeout_ms=500, max_records=10_000)).items():
                for m in msgs:
                    if m.offset >= ends[tp]:
                        break
                    try:
                        out.append((tp.topic, m.partition, m.offset, events.decode(m.value)))
                    except events.DecodeError:
                        continue  # poison events are in the dead-letter topic with their reason
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return out


async def query(settings: Settings, f: audit.Filter) -> list[audit.Record]:
    """Audit records matching `f`, oldest first."""
    by_kind = kind_topics(Topics(settings.prefix))
    # Kafka timestamps are the producer's; events carry their own `at`: read a minute early, filter on `at`.
    since = f.since - 60_000 if f.since is not None else None
    logged = await read_log(settings, [by_kind[k] for k in f.kinds], since)
    records = [r for topic, p, o, ev in audit.once(logged)
               if (r := audit.to_record(ev, topic, p, o)) and audit.matches(r, f)]
    return sorted(records, key=lambda r: (r.at, r.topic, r.partition, r.offset))


async def entity_as_of(settings: Settings, doc_id: str, at_ms: int) -> dict[str, object] | None:
    """The entity (as the API shows it) as of `at_ms`, folded from the entity log; None if absent then."""
    logged = await read_log(settings, [Topics(settings.prefix).entities])
    return audit.state_as_of(((p, o, ev) for _, p, o, ev in audit.once(logged)), doc_id, at_ms)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subject", help="who (subject name)")
    p.add_argument("--namespace", help="in which namespace")
    p.add_argument("--entity", help="entity path, e.g. guest/hello or guest/pkg/* (a bare name matches any ns)")
    p.add_argument("--action", help="what: GET/PUT/POST/DELETE (api), put/delete/rule_state (entity), "
                                    "invoke (activation), key_added/blocked/unblocked/deleted (subject)")
    p.add_argument("--kind", action="append", choices=audit.KINDS, help="sources to read (default: all)")
    p.add_argument("--since", help="from this time: ISO 8601, epoch ms, or an age like 2h")
    p.add_argument("--until", help="up to this time (same formats)")
    p.add_argument("--outcome", help="ok, error, or an HTTP status such as 409")
    p.add_argument("--limit", type=int, help="only the last N records")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument("--as-of", metavar="TIME", help="print the state of --entity (full path) as of TIME")


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    now = now_ms()
    try:
        since = audit.parse_time(args.since, now) if args.since else None
        until = audit.parse_time(args.until, now) if args.until else None
        as_of = audit.parse_time(args.as_of, now) if args.as_of else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if as_of is not None:
        if not args.entity or "/" not in args.entity:
            print("error: --as-of needs --entity with a full path, e.g. guest/hello", file=sys.stderr)
            return 2
        doc = asyncio.run(entity_as_of(settings, args.entity, as_of))
        if args.json:
            print(orjson.dumps({"entity": args.entity, "as_of": audit.iso(as_of), "doc": doc}).decode())
        elif doc is None:
            print(f"{args.entity} did not exist at {audit.iso(as_of)}")
        else:
            print(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        return 0 if doc is not None else 1
    f = audit.Filter(subject=args.subject, namespace=args.namespace, entity=args.entity, action=args.action,
                     kinds=tuple(args.kind or audit.KINDS), since=since, until=until, outcome=args.outcome)
    records = asyncio.run(query(settings, f))
    if args.limit is not None:
        records = records[-args.limit:] if args.limit > 0 else []
    if args.json:
        for r in records:
            sys.stdout.write(orjson.dumps(r.as_json()).decode() + "\n")
    else:
        print("\n".join(audit.table(records)))
    return 0
