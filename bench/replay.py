"""Replay benchmark: write 100k+ realistic events to a fresh prefix's topics, replay them into fresh databases.

    .venv/bin/python -m bench.replay [--activations 100000] [--entities 2000] [--batch 5000] [--keep]
    .venv/bin/python -m bench.replay --ceiling-only [--activations N]   # only the server's _bulk_docs ceiling
    .venv/bin/python -m bench.replay --projector [--activations N]      # live projector CPU per 500 completions

The replay runs as `streamwhisk replay --json` in a child process, so events/s is the command's own figure
and peak RSS is the child's (VmHWM). In the same run the server's raw ceiling is measured: fresh activation
docs exactly as the replay writes them, pre-serialised, posted with `_bulk_docs` into a scratch database;
a short probe of batch sizes, `new_edits` and 1 or 2 concurrent requests picks the fastest setting, which
then writes as many docs as the replay has activations. Ceiling and replay alternate for `--rounds` (2)
rounds and each figure is its best round (the machine's load drifts; both get the same chances).
`ratio` = replay events/s / ceiling docs/s (an activation event is one doc; entity events fold into fewer
docs, which flatters events/s a little, so `docs_ratio` compares the replay's docs/s with the ceiling too).
Results go to bench/out/replay.json. Also `measure(settings, quick)` for `python -m bench` (section 6).
Only Kafka and CouchDB are needed, no Streamwhisk components.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import requests
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from cli.services import settings_env
from contracts import bus, events
from contracts.events import ActivationCompleted, EntityChanged, Event, SubjectKeyAdded
from contracts.settings import REPO, Settings, load
from contracts.topics import Topics
from projections import catalog, views
from projections.couch import JSON, Couch

OUT = Path(__file__).resolve().parent / "out"
BATCH = 5000  # events per replay batch (the `streamwhisk replay --batch` default)
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
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka)
    await admin.start()
    try:  # the source topics, and progress/deadletter if a projector ran on this prefix
        mine = [t for t in await admin.list_topics() if t.startswith(f"{settings.prefix}.")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
    couch = Couch(settings.couchdb)
    for db in couch.all_dbs():
        if db.startswith(f"{settings.prefix}_"):
            couch.delete_db(db)


# ---------------------------------------------------------------- the server's raw _bulk_docs ceiling

def activation_docs(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """n activation docs exactly as the replay writes them (record + `_id` + source position)."""
    rng = random.Random(seed)
    t0 = events.now_ms() - 3_600_000
    out = []
    for i in range(n):
        ns, aid = f"ns{rng.randrange(50)}", f"{rng.getrandbits(128):032x}"
        ev = ActivationCompleted(activation_id=aid, namespace=ns, invoker=0, memory_mb=256,
                                 record=activation_record(ns, f"act{rng.randrange(2000)}", aid, t0 + i, rng))
        doc = views.apply(views.ACTIVATIONS, f"{ns}/{aid}", None, ev, 0, i)
        assert doc is not None
        out.append(doc)
    return out


def _post_bulk(couch: Couch, db: str, docs: list[dict[str, Any]], batch: int, new_edits: bool,
               concurrency: int) -> float:
    """Docs/s of writing `docs` into a fresh `db`: bodies serialised before the clock starts."""
    couch.delete_db(db)
    couch.ensure_db(db, views.DESIGN_DOCS[views.ACTIVATIONS])  # the same (lazily built) views as the replay's
    if not new_edits:  # any valid revision will do (kept apart from views.revision: this module also runs
        # with another checkout's `projections` on PYTHONPATH, to measure it with the same workload)
        docs = [{**d, "_rev": f"{d['wsk_offset'] + 1}-{hashlib.md5(d['_id'].encode()).hexdigest()}"} for d in docs]
    bodies = [orjson.dumps({"docs": docs[i:i + batch], **({} if new_edits else {"new_edits": False})})
              for i in range(0, len(docs), batch)]
    url = f"{couch.url}/{db}/_bulk_docs"
    sessions = [requests.Session() for _ in range(concurrency)]

    def post(worker: int) -> None:
        for body in bodies[worker::concurrency]:
            r = sessions[worker].post(url, data=body, headers=JSON, timeout=600)
            r.raise_for_status()
            bad = [x for x in orjson.loads(r.content) if x.get("error")]
            if bad:
                raise RuntimeError(f"ceiling write failed: {bad[:3]}")

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, range(concurrency)))
        return len(docs) / (time.monotonic() - started)
    finally:
        couch.delete_db(db)


def ceiling(settings: Settings, n: int, quick: bool = False) -> dict[str, Any]:
    """The server's best `_bulk_docs` rate for fresh activation docs: probe, then n docs with the best setting."""
    couch = Couch(settings.couchdb)
    db = settings.db("ceiling")
    docs = activation_docs(n)
    sample = docs[:min(n, 5000 if quick else 10_000)]
    probes = []
    for batch, new_edits, conc in itertools.product((1000, 2500, 5000, 10_000), (True, False), (1, 2)):
        if batch > len(sample) or (conc > 1 and batch * conc > len(sample)):
            continue
        rate = _post_bulk(couch, db, sample, batch, new_edits, conc)
        probes.append({"batch": batch, "new_edits": new_edits, "concurrency": conc, "docs_per_s": round(rate, 1)})
    best = max(probes, key=lambda p: p["docs_per_s"])
    rate = _post_bulk(couch, db, docs, best["batch"], best["new_edits"], best["concurrency"])
    return {"bulk_ceiling_docs_per_s": round(rate, 1), "ceiling_docs": n,
            "ceiling_setting": {k: best[k] for k in ("batch", "new_edits", "concurrency")}, "ceiling_probes": probes}


# ---------------------------------------------------------------- the live projector's cost per batch

def projector_cpu(base: Settings, completions: int = 20_000, batch: int = 500,
                  server_pid: int | None = None) -> dict[str, Any]:
    """CPU (this process and the CouchDB server) of projections.runner.project_batch over batches of `batch`
    decoded completions into a fresh activations database, as the live projector calls it; then the same
    batches again (redelivery: must change nothing). Runs against whatever `projections` is importable, so
    PYTHONPATH=<other checkout> measures another version with the same workload."""
    from bench.probe import cpu_seconds, stack_pids
    from projections.runner import project_batch

    settings = dataclasses.replace(base, prefix=f"rp{uuid.uuid4().hex[:8]}")
    couch = Couch(settings.couchdb)
    dbs = catalog.names(settings, 0)
    server = server_pid or stack_pids(base).get("couchdb")
    evs = []
    for off, doc in enumerate(activation_docs(completions)):
        rec = {k: v for k, v in doc.items() if k not in views.INTERNAL_KEYS}
        evs.append((0, off, ActivationCompleted(activation_id=rec["activationId"], namespace=rec["namespace"],
                                                invoker=0, record=rec, memory_mb=256)))
    batches = [evs[i:i + batch] for i in range(0, len(evs), batch)]

    def timed() -> dict[str, float]:
        srv0 = cpu_seconds(server) if server else None
        cpu0, wall0 = time.process_time(), time.monotonic()
        for b in batches:
            project_batch(couch, dbs, b)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        srv = (cpu_seconds(server) or 0.0) - srv0 if server and srv0 is not None else float("nan")
        n = len(batches)
        return {"python_cpu_ms_per_batch": round(cpu * 1000 / n, 2),
                "server_cpu_ms_per_batch": round(srv * 1000 / n, 2),
                "total_cpu_us_per_completion": round((cpu + srv) * 1e6 / len(evs), 1),
                "wall_ms_per_batch": round(wall * 1000 / n, 2), "completions_per_s": round(len(evs) / wall, 1)}

    def state() -> dict[str, Any]:
        return {d["_id"]: d for d in couch.all_docs(dbs[views.ACTIVATIONS])}

    try:
        catalog.ensure_databases(couch, dbs)
        first = timed()
        before = state()
        again = timed()
        unchanged = state() == before  # `_rev` included
    finally:
        for db in dbs.values():
            couch.delete_db(db)
    return {"completions": len(evs), "batch": batch, "first_write": first, "redelivered": again,
            "redelivery_changed_nothing": unchanged, "docs": len(before),
            "projections_from": os.path.dirname(os.path.dirname(sys.modules[project_batch.__module__].__file__ or ""))}


# ---------------------------------------------------------------- the replay

def _run_child(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str, int]:
    """Run a command; returns (exit code, stdout, stderr, peak RSS in KB: VmHWM sampled until it exits).

    Not getrusage(RUSAGE_CHILDREN): its maxrss keeps the high-water mark of the forked copy of this process
    from before exec, and this process holds the whole history and the ceiling's docs."""
    child = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, str] = {}

    def drain() -> None:
        out["stdout"], out["stderr"] = child.communicate(timeout=1800)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    peak = 0
    while reader.is_alive():
        try:
            for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        reader.join(0.2)
    return child.wait(), out.get("stdout", ""), out.get("stderr", ""), peak


def run(base: Settings, activations: int, entities: int, batch: int, keep: bool = False,
        quick: bool = False, rounds: int = 2) -> dict[str, Any]:
    """Write the log, then `rounds` times: the raw ceiling, then a replay into a fresh generation (switched).

    The machine's load drifts (Kafka, other processes): ceiling and replay are each the best of their rounds,
    interleaved so that both see the same conditions; every sample is in the result."""
    settings = dataclasses.replace(base, prefix=f"rb{uuid.uuid4().hex[:8]}")
    hist = history(activations, entities)
    couch = Couch(settings.couchdb)
    replays: list[dict[str, Any]] = []
    try:
        write_s = asyncio.run(write_log(settings, hist))
        ceil = ceiling(settings, activations, quick)  # picks the setting; its full run is round 1's ceiling
        ceilings = [ceil["bulk_ceiling_docs_per_s"]]
        for i in range(rounds):
            if i:
                ceilings.append(round(_post_bulk(couch, settings.db("ceiling"), activation_docs(activations),
                                                 **ceil["ceiling_setting"]), 1))
            cmd = [sys.executable, "-m", "cli.main", "replay", "--json", "--batch", str(batch)]
            wall = time.monotonic()
            code, stdout, stderr, peak_kb = _run_child(cmd, settings_env(settings))
            if code != 0:
                raise RuntimeError(f"replay failed: {stderr[-2000:]}")
            summary = orjson.loads(stdout.strip().splitlines()[-1])
            summary.update(wall_s=time.monotonic() - wall, peak_kb=peak_kb)
            replays.append(summary)
        dbs = catalog.read(couch, settings).dbs
        counts = {view: len(couch.all_docs(db)) for view, db in dbs.items()}
    finally:
        if not keep:
            asyncio.run(drop(settings))
    kinds = {k: sum(1 for h in hist if h[0] == k) for k in ("subjects", "entities", "completions")}
    best = max(replays, key=lambda r: r["events_per_s"])
    top = ceil["bulk_ceiling_docs_per_s"] = max(ceilings)
    docs_per_s = best["docs"] / best["seconds"] if best["seconds"] else 0.0
    return {
        "prefix": settings.prefix, "events": best["events"], "events_by_topic": kinds,
        "docs_written": best["docs"], "docs_in_dbs": counts, "replay_s": best["seconds"],
        "events_per_s": best["events_per_s"], "docs_per_s": round(docs_per_s, 1),
        "ratio": round(best["events_per_s"] / top, 3) if top else None,
        "docs_ratio": round(docs_per_s / top, 3) if top else None,
        **ceil, "ceiling_rounds": ceilings, "replay_rounds": [r["events_per_s"] for r in replays],
        "wall_s_with_startup": round(best["wall_s"], 2),
        "peak_rss_mb": round(max(r["peak_kb"] for r in replays) / 1024, 1),
        "write_s": round(write_s, 2), "write_events_per_s": round(len(hist) / write_s, 1), "batch": batch,
    }


def measure(settings: Settings, quick: bool = False) -> dict[str, Any]:
    """For `python -m bench`: 100k activations (20k with quick) against the stack's Kafka and CouchDB."""
    return run(settings, 20_000 if quick else 100_000, 500 if quick else 2000, BATCH, quick=quick)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activations", type=int, default=100_000)
    p.add_argument("--entities", type=int, default=2000, help="distinct actions (about 5 changes each)")
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--keep", action="store_true", help="keep the bench topics and databases")
    p.add_argument("--rounds", type=int, default=2, help="ceiling + replay rounds (each figure: best round)")
    p.add_argument("--ceiling-only", action="store_true", help="only the server's _bulk_docs ceiling")
    p.add_argument("--projector", action="store_true",
                   help="only the live projector's CPU per batch of 500 completions (not written to replay.json)")
    p.add_argument("--server-pid", type=int, help="--projector: the CouchDB server's pid (default: its pid file)")
    args = p.parse_args(argv)
    if args.projector:
        out = projector_cpu(load(), args.activations, server_pid=args.server_pid)
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.ceiling_only:
        s = dataclasses.replace(load(), prefix=f"rb{uuid.uuid4().hex[:8]}")
        print(orjson.dumps(ceiling(s, args.activations), option=orjson.OPT_INDENT_2).decode())
        return 0
    out = run(load(), args.activations, args.entities, args.batch, args.keep, rounds=max(1, args.rounds))
    rows = [("events replayed", f"{out['events']:,}"), ("replay time", f"{out['replay_s']:.1f} s"),
            ("replay speed", f"{out['events_per_s']:,.0f} events/s (target > 20,000)"),
            ("replay docs/s", f"{out['docs_per_s']:,.0f} docs/s"),
            ("_bulk_docs ceiling", f"{out['bulk_ceiling_docs_per_s']:,.0f} docs/s ({out['ceiling_setting']})"),
            ("rounds (replay; ceiling)", f"{out['replay_rounds']}; {out['ceiling_rounds']}"),
            ("ratio (events/s, docs/s)", f"{out['ratio']:.2f}, {out['docs_ratio']:.2f} (target >= 0.80)"),
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
