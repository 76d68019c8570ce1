"""Replay benchmark: write 100k+ realistic events to a fresh prefix's topics, replay them into fresh databases.

    .venv/bin/python -m bench.replay [--activations 100000] [--entities 2000] [--batch 5000] [--keep]

The replay runs as `streamwhisk replay --json` in a child process, so events/s is the command's own figure
and peak RSS is the child's (getrusage). Results go to bench/out/replay.json. Also `measure(settings, quick)`
for `python -m bench` (section 6). Only Kafka and CouchDB are needed, no Streamwhisk components.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from cli.services import settings_env
from contracts import bus, events
from contracts.events import ActivationCompleted, EntityChanged, Event, SubjectKeyAdded
from contracts.settings import REPO, Settings, load
from contracts.topics import Topics
from projections import catalog
from projections.couch import Couch

OUT = Path(__file__).resolve().parent / "out"
CODE = "def main(args):\n    name = args.get('name', 'stranger')\n    return {'greeting': 'Hello ' + name}\n"


def action_doc(ns: str, name: str, version: int, t: int) -> dict[str, Any]:
    return {"namespace": ns, "name": name, "entityType": "action", "version": f"0.0.{version}", "publish": False,
            "exec": {"kind": "python:3", "code": CODE + f"# v{version}\n", "binary": False},
            "annotations": [{"key": "provide-api-key", "value": False}, {"key": "exec", "value": "python:3"}],
            "parameters": [{"key": "name", "value": f"user{version}"}],
            "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}, "updated": t}


def activation_record(ns: str, name: str, aid: str, t: int, rng: random.Random) -> dict[str, Any]:
    ok = rng.random() > 0.05
    dur = rng.randint(2, 300)
    return {"namespace": ns, "name": name, "subject": ns, "activationId": aid, "version": "0.0.1",
            "publish": False, "start": t, "end": t + dur, "duration": dur, "statusCode": 0 if ok else 1,
            "response": {"status": "success" if ok else "application error", "success": ok, "size": 28,
                         "result": {"greeting": "Hello world"} if ok else {"error": "boom"}},
            "logs": [f"2024-05-01T12:00:00.{i:03d}Z stdout: line {i}" for i in range(rng.randint(0, 3))],
            "annotations": [{"key": "path", "value": f"{ns}/{name}"}, {"key": "kind", "value": "python:3"},
                            {"key": "limits", "value": {"timeout": 60000, "memory": 256, "logs": 10}},
                            {"key": "waitTime", "value": rng.randint(1, 40)},
                            {"key": "initTime", "value": rng.randint(0, 200)}]}


def history(activations: int, entities: int, subjects: int = 50, seed: int = 7) -> list[tuple[str, str, Event]]:
    """(topic kind, key, event): subjects, then entity puts/updates/deletes, then completions."""
    rng = random.Random(seed)
    t0 = events.now_ms() - 3_600_000
    out: list[tuple[str, str, Event]] = []
    names = [f"ns{i}" for i in range(subjects)]
    for ns in names:
        out.append(("subjects", ns, SubjectKeyAdded(subject=ns, namespace=ns, uuid=uuid.uuid4().hex,
                                                    key_salt="s" * 16, key_hash="h" * 64, at=t0)))
    live: dict[str, int] = {}
    for i in range(entities * 5):  # five changes per entity on average: creates, updates, some deletes
        ns, name = rng.choice(names), f"act{rng.randrange(entities)}"
        doc_id = f"{ns}/{name}"
        t = t0 + i
        if doc_id in live and rng.random() < 0.1:
            del live[doc_id]
            ev = EntityChanged(request_id=uuid.uuid4().hex, subject=ns, op="delete", entity_type="action",
                               doc_id=doc_id, writes=[(doc_id, None)], at=t)
        else:
            live[doc_id] = live.get(doc_id, 0) + 1
            ev = EntityChanged(request_id=uuid.uuid4().hex, subject=ns, op="put", entity_type="action",
                               doc_id=doc_id, writes=[(doc_id, action_doc(ns, name, live[doc_id], t))], at=t)
        out.append(("entities", ns, ev))
    for i in range(activations):
        ns, name = rng.choice(names), f"act{rng.randrange(entities)}"
        aid = uuid.uuid4().hex
        rec = activation_record(ns, name, aid, t0 + i, rng)
        out.append(("completions", aid, ActivationCompleted(activation_id=aid, namespace=ns, invoker=0, record=rec,
                                                            memory_mb=256, at=t0 + i)))
    return out


async def write_log(settings: Settings, hist: list[tuple[str, str, Event]]) -> float:
    """Produce the history (batched, idempotent, acks=all); returns seconds taken."""
    t = Topics(settings.prefix)
    await bus.ensure_topics(settings.kafka, [t.subjects, t.entities, t.completions], settings.partitions)
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all", enable_idempotence=True, linger_ms=20,
                         max_batch_size=1 << 20, max_request_size=bus.MAX_MESSAGE)
    await p.start()
    started = time.monotonic()
    try:
        for i in range(0, len(hist), 5000):
            futs = [await p.send(getattr(t, kind), events.encode(ev), key=key.encode())
                    for kind, key, ev in hist[i:i + 5000]]
            await asyncio.gather(*futs)
    finally:
        await p.stop()
    return time.monotonic() - started


async def drop(settings: Settings) -> None:
    t = Topics(settings.prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka)
    await admin.start()
    try:
        await admin.delete_topics([t.subjects, t.entities, t.completions], settings.partitions)
    finally:
        await admin.close()
    couch = Couch(settings.couchdb)
    for db in couch.all_dbs():
        if db.startswith(f"{settings.prefix}_"):
            couch.delete_db(db)


def run(base: Settings, activations: int, entities: int, batch: int, keep: bool = False) -> dict[str, Any]:
    settings = dataclasses.replace(base, prefix=f"rb{uuid.uuid4().hex[:8]}")
    hist = history(activations, entities)
    try:
        write_s = asyncio.run(write_log(settings, hist))
        cmd = [sys.executable, "-m", "cli.main", "replay", "--json", "--batch", str(batch)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        wall = time.monotonic()
        proc = subprocess.run(cmd, env=settings_env(settings), cwd=REPO, capture_output=True, text=True,
                              timeout=1800, check=False)
        wall = time.monotonic() - wall
        if proc.returncode != 0:
            raise RuntimeError(f"replay failed: {proc.stderr[-2000:]}")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = orjson.loads(proc.stdout.strip().splitlines()[-1])
        couch = Couch(settings.couchdb)
        dbs = catalog.read(couch, settings).dbs
        counts = {view: len(couch.all_docs(db)) for view, db in dbs.items()}
    finally:
        if not keep:
            asyncio.run(drop(settings))
    kinds = {k: sum(1 for h in hist if h[0] == k) for k in ("subjects", "entities", "completions")}
    return {
        "prefix": settings.prefix, "events": summary["events"], "events_by_topic": kinds,
        "docs_written": summary["docs"], "docs_in_dbs": counts, "replay_s": summary["seconds"],
        "events_per_s": summary["events_per_s"], "wall_s_with_startup": round(wall, 2),
        # getrusage covers every child waited for so far; a standalone run has only the replay.
        "peak_rss_mb": round(peak_kb / 1024, 1), "peak_rss_exact": before < peak_kb,
        "write_s": round(write_s, 2), "write_events_per_s": round(len(hist) / write_s, 1), "batch": batch,
    }


def measure(settings: Settings, quick: bool = False) -> dict[str, Any]:
    """For `python -m bench`: 100k activations (20k with quick) against the stack's Kafka and CouchDB."""
    return run(settings, 20_000 if quick else 100_000, 500 if quick else 2000, 5000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activations", type=int, default=100_000)
    p.add_argument("--entities", type=int, default=2000, help="distinct actions (about 5 changes each)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--keep", action="store_true", help="keep the bench topics and databases")
    args = p.parse_args(argv)
    out = run(load(), args.activations, args.entities, args.batch, args.keep)
    rows = [("events replayed", f"{out['events']:,}"), ("replay time", f"{out['replay_s']:.1f} s"),
            ("replay speed", f"{out['events_per_s']:,.0f} events/s (target > 20,000)"),
            ("peak RSS (replay process)", f"{out['peak_rss_mb']:.0f} MB"),
            ("wall incl. process start", f"{out['wall_s_with_startup']:.1f} s"),
            ("docs written", f"{out['docs_written']:,}"), ("docs in databases", str(out["docs_in_dbs"])),
            ("log write", f"{out['write_events_per_s']:,.0f} events/s")]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "replay.json").write_text(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {OUT / 'replay.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
