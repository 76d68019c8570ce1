"""The REST API: authenticate, turn each call into events, read views from CouchDB."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from api import errors
from api.diskguard import DiskGuard
from api.errors import error_response, json_response
from api.kafkagate import KafkaGate, unavailable
from api.tail import Identity, Tail
from api.views import Views
from contracts import bus, events, keys, metrics
from contracts.errors import WhiskError
from contracts.events import ApiCalled
from contracts.settings import Settings
from contracts.topics import Topics
from projections import catalog

log = logging.getLogger("api")

SETTINGS = web.AppKey("settings", Settings)
TAIL = web.AppKey("tail", Tail)
VIEWS = web.AppKey("views", Views)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
GATE = web.AppKey("kafka_gate", KafkaGate)
DISK = web.AppKey("disk_guard", DiskGuard)
TOPICS = web.AppKey("topics", Topics)
PENDING: web.AppKey[set[asyncio.Future[Any]]] = web.AppKey("pending")

DB_UNAVAILABLE = "The database (CouchDB) is not reachable; reads are unavailable. Try again later."
OPEN_PATHS = ("/", "/api/v1", "/api/v1/", "/api/v1/api-docs", "/ping")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def identity(request: web.Request) -> Identity:
    ident: Identity = request["identity"]
    return ident


def resolve_ns(request: web.Request, ns: str) -> str:
    return identity(request).namespace if ns == "_" else ns


@web.middleware
async def whisk_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    tid = request.headers.get("X-Request-ID") or events.new_id()
    request["tid"] = tid
    started = time.perf_counter()
    headers = {"X-Request-ID": tid, **errors.CORS}
    ident: Identity | None = None
    try:
        if request.method == "OPTIONS" and not _open(request.path):
            resp: web.StreamResponse = web.Response(status=200)
        elif request.path in OPEN_PATHS or _open(request.path):
            resp = await handler(request)
        else:
            ident = _authenticate(request)
            request["identity"] = ident
            resp = await handler(request)
    except WhiskError as e:
        extra = {"WWW-Authenticate": 'Basic realm="OpenWhisk secure realm"'} if e.status == 401 else {}
        resp = error_response(e.status, e.message, tid, {**extra, **e.headers})
    except web.HTTPMethodNotAllowed as e:  # aiohttp's own routes (GET only): HEAD is implicit there, as in Pekko
        e405 = errors.method_not_allowed(sorted(e.allowed_methods - {"HEAD"}))
        resp = error_response(405, e405.message, tid, e405.headers)
    except web.HTTPException as e:
        msg = errors.NOT_FOUND if e.status == 404 else (e.reason or "error")
        resp = error_response(e.status, msg, tid)
    except aiohttp.ClientConnectionError as e:  # CouchDB (the views) unreachable: reads cannot be served
        log.warning("couchdb unreachable on %s %s: %r", request.method, request.path, e)
        resp = error_response(503, DB_UNAVAILABLE, tid)
    except KafkaError as e:  # the broker went away under a call the gate let through
        log.warning("kafka error on %s %s: %r", request.method, request.path, e)
        resp = error_response(503, unavailable().message, tid)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        resp = error_response(500, "Internal Server Error", tid)
    if request.get("no_cors"):  # a web action with web-custom-options sets its own
        headers = {"X-Request-ID": tid}
    for k, v in headers.items():
        resp.headers.setdefault(k, v)
    if request.path != "/ping":
        _audit(request, ident or request.get("identity"), resp.status, (time.perf_counter() - started) * 1000)
    return resp


def _open(path: str) -> bool:
    """Web actions and API gateway routes (/api/<tenant>/...): they check their callers themselves; so does the
    console (api/console.py: its pages hold no data, its data calls answer 401 without a browser dialog)."""
    if path == "/console" or path.startswith("/console/"):
        return True
    return path.startswith("/api/") and (path.startswith("/api/v1/web/") or not (
        path.startswith("/api/v1/") or path == "/api/v1"))


def _authenticate(request: web.Request) -> Identity:
    auth = request.headers.get("Authorization")
    if not auth:
        raise WhiskError(401, errors.AUTH_MISSING)
    scheme, _, cred = auth.partition(" ")
    if scheme.lower() != "basic":
        raise WhiskError(401, errors.AUTH_INVALID)
    try:
        authkey = base64.b64decode(cred.strip(), validate=True).decode()
    except ValueError as e:
        raise WhiskError(401, errors.AUTH_INVALID) from e
    ident = request.app[TAIL].authenticate(authkey)
    # OpenWhisk's identities view leaves blocked subjects out, so their keys are simply unknown (401).
    if ident is None or ident.blocked:
        raise WhiskError(401, errors.AUTH_INVALID)
    return ident


def _audit(request: web.Request, ident: Identity | None, status: int, ms: float) -> None:
    """Every call becomes an event; sent without waiting for the ack so reads stay fast."""
    ev = ApiCalled(
        transaction_id=request["tid"], subject=ident.subject if ident else None,
        namespace=ident.namespace if ident else None, method=request.method, path=request.path,
        status=status, duration_ms=round(ms, 3), activation_id=request.get("activation_id"),
    )
    app = request.app
    fut = asyncio.ensure_future(app[PRODUCER].send(app[TOPICS].access, events.encode(ev), key=request["tid"].encode()))
    app[PENDING].add(fut)
    fut.add_done_callback(app[PENDING].discard)


async def read_json_object(request: web.Request, limit: int | None = None, strict: bool = False) -> dict[str, Any]:
    """A JSON object body (empty = {}, except when `strict`), else 413/415/400 as OpenWhisk answers.

    Entity writes are `strict` (application/json only, as OpenWhisk's entity unmarshallers); invoke and fire
    payloads also accept the content types that clients send with JSON bodies.
    """
    raw = await request.read()
    if limit is not None and len(raw) > limit:
        raise WhiskError(413, f"Request larger than allowed: {len(raw)} > {limit} bytes.")
    ctype = request.content_type
    if strict:
        # No type at all passes only with no body (Pekko's NoContentType); a body without a JSON value is
        # malformed, not {}: OpenWhisk's PUT unmarshallers (spray-json) have no empty default.
        if (raw or "Content-Type" in request.headers) and ctype != "application/json":
            raise WhiskError(415, "The request's Content-Type is not supported. Expected:\napplication/json")
        if not raw.strip(b" \t\r\n"):
            raise errors.no_json_value(raw.decode())
    elif not raw.strip():
        return {}
    elif ctype and ctype not in ("application/json", "application/octet-stream", "text/plain"):
        raise WhiskError(415, f"The request's Content-Type is not supported. Expected application/json, got {ctype}.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise errors.malformed(str(e)) from e
    if not isinstance(body, dict):
        raise errors.malformed("Object expected")
    return body


async def ping(request: web.Request) -> web.Response:
    return json_response({"ok": request.app[TAIL].ready.is_set()})


def create_app(settings: Settings) -> web.Application:
    from api import routes

    app = web.Application(middlewares=[metrics.api_middleware, whisk_middleware], client_max_size=64 * 1024 * 1024)
    app[SETTINGS] = settings
    app[TOPICS] = Topics(settings.prefix)
    app[PENDING] = set()
    app.router.add_get("/ping", ping)
    routes.add(app)
    from api import console

    console.add(app)
    app.cleanup_ctx.append(_metrics)  # before _resources: served while the API waits for Kafka
    app.cleanup_ctx.append(_resources)
    return app


async def _metrics(app: web.Application) -> Any:
    """/metrics on WSK_METRICS_PORT too (every part serves one there), and the compositions group's lag."""
    settings = app[SETTINGS]
    ep = await metrics.serve("api", settings.home, settings.kafka)
    ep.lag.group(f"{settings.prefix}-api-compositions", [app[TOPICS].compositions])
    yield
    await ep.stop()


async def _resources(app: web.Application) -> Any:
    settings, t = app[SETTINGS], app[TOPICS]
    await bus.ensure_topics(settings.kafka, [
        t.commands, t.entities, t.subjects, t.invocations, t.completions, t.progress, t.access, t.compositions,
        *t.assignments(),
    ], settings.partitions)
    app[PRODUCER] = bus.producer(settings.kafka)
    await app[PRODUCER].start()
    app[GATE] = KafkaGate(settings.kafka)  # sends answer 503 quickly while Kafka is down
    app[GATE].guard(app[PRODUCER])
    gate_watch = asyncio.create_task(app[GATE].watch())
    app[DISK] = DiskGuard(settings.guarded_dirs, settings.disk_reserve_mb)  # 503 while a data disk is almost full
    app[DISK].poll()
    app[DISK].guard(app[PRODUCER])
    disk_watch = asyncio.create_task(app[DISK].watch())
    app[VIEWS] = Views(settings.couchdb, await catalog.current(settings))
    await app[VIEWS].start()
    follow = asyncio.create_task(catalog.follow(settings, app[VIEWS].dbs))  # a replay may switch databases
    app[TAIL] = Tail(settings.kafka, t)
    app[TAIL].doc_cache = app[VIEWS].cache
    from api.gateway import ROUTES, Routes

    app[ROUTES] = Routes()
    app[TAIL].route_cache = app[ROUTES]
    app[TAIL].activation_secret = keys.activation_secret(settings.home)
    await app[TAIL].start()
    from api.compositions import run_rule_compositions

    rule_compositions = asyncio.create_task(run_rule_compositions(app))
    log.info("api ready")
    yield
    rule_compositions.cancel()
    pending: set[asyncio.Future[Any]] = app[PENDING]
    if pending:
        await asyncio.wait(pending, timeout=5)
    await app[TAIL].stop()
    follow.cancel()
    gate_watch.cancel()
    disk_watch.cancel()
    await app[VIEWS].close()
    await app[PRODUCER].stop()
