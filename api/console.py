"""The web console under /console/: a namespace's live activations, an activation, per-action latency charts,
an entity's audit trail as of any time, and (for the operator) replay progress.

Pages are one static shell (it holds no data, so it needs no key); its script keeps the user's `uuid:key` in
sessionStorage and sends it as HTTP Basic with every data request under /console/api/, which authenticates
exactly as the API does (api.app._authenticate) but answers 401 without `WWW-Authenticate`, so browsers show
the console's own 401 view instead of their password dialog. Data is rendered here into HTML fragments by pure
functions (escaped, no inline script or style: the pages run under a strict CSP).

The live list is read from the completions log, not from CouchDB: one consumer per API process (LiveHub) tails
`<prefix>.completions` from its end while at least one console stream is open, and hands each namespace's
completions to that namespace's streams; `?last=N` first reads the last N from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from api import errors
from api.app import SETTINGS, TAIL, TOPICS, VIEWS, _authenticate
from api.errors import error_response, json_response
from api.tail import Identity
from contracts import bus, entities, events, keys
from contracts.errors import WhiskError
from contracts.events import ActivationCompleted, ProjectionProgress, ReplayProgress, now_ms
from contracts.settings import Settings
from contracts.topics import Topics
from projections import audit, catalog
from projections.couch import Couch
from projections.views import ACTIVATIONS, WHISKS

log = logging.getLogger("api.console")

Doc = dict[str, Any]
PAGES = ("login", "live", "activation", "action", "audit", "replay")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC = {"console.js": "application/javascript", "console.css": "text/css"}
SCAN_BACK = 2000  # completions read back per partition for `?last=N`
READ_BACK_S = 15.0  # at most this long reading back (a slow broker gives what was read by then)
PROGRESS_SCAN = 500  # projector progress reports read back per partition (replay page)
REPLAY_SCAN = 200  # replay progress reports read back per partition of `<prefix>.replays`
REPLAY_RUNS = 10  # latest replay runs shown
REPLAY_SILENT_MS = 15_000  # a running replay reports every second: this long without a report, it may have died
LAST_MAX = 200
HEARTBEAT_S = 10.0  # a comment line this often: proxies keep the stream open, a gone client is noticed
QUEUE_MAX = 1000
SERIES = ("duration", "waitTime", "initTime")
COLORS = {"duration": "#1f77b4", "waitTime": "#ff7f0e", "initTime": "#2ca02c", "cold": "#d62728"}
LIVE: web.AppKey[LiveHub] = web.AppKey("console_live")


def add(app: web.Application) -> None:
    r = app.router
    r.add_get("/console", home)
    r.add_get("/console/", page)
    r.add_get("/console/{page:(" + "|".join(PAGES) + ")}", page)
    r.add_get("/console/static/{name}", static)
    r.add_get("/console/api/whoami", authed(whoami))
    r.add_get("/console/api/stream", authed(stream))
    r.add_get("/console/api/action", authed(action_view))
    r.add_get("/console/api/audit", authed(audit_view))
    r.add_get("/console/api/replay", authed(replay_view))
    app.cleanup_ctx.append(_hub)


async def _hub(app: web.Application) -> Any:
    hub = LiveHub(app[SETTINGS].kafka, Topics(app[SETTINGS].prefix).completions)
    app[LIVE] = hub
    yield
    await hub.close()


# --- pure ------------------------------------------------------------------------------------------------------


def is_operator(ident: Identity) -> bool:
    return ident.subject == keys.SYSTEM_SUBJECT


def may_read(ident: Identity, namespace: str) -> bool:
    """A namespace's audit trail: its own users, and the operator (whisk.system) for any namespace."""
    return namespace == ident.namespace or is_operator(ident)


def annotation(record: Doc, key: str) -> Any:
    return next((a.get("value") for a in record.get("annotations") or [] if a.get("key") == key), None)


def live_row(d: Doc) -> Doc | None:
    """One line of the live list from an encoded ActivationCompleted (no result or logs: the activation page
    reads those)."""
    if d.get("type") != ActivationCompleted.TYPE:
        return None
    rec = d.get("record")
    if not isinstance(rec, dict):
        return {"activationId": d.get("activation_id"), "namespace": d.get("namespace"), "name": None,
                "status": f"rejected ({d.get('rejected_status')})", "success": False, "start": d.get("at"),
                "detail": d.get("rejected")}
    resp = rec.get("response") or {}
    path = annotation(rec, "path") or f"{rec.get('namespace')}/{rec.get('name')}"
    return {"activationId": rec.get("activationId", d.get("activation_id")), "namespace": d.get("namespace"),
            "name": path, "status": resp.get("status", "?"), "success": bool(resp.get("success")),
            "start": rec.get("start"), "duration": rec.get("duration"), "waitTime": annotation(rec, "waitTime"),
            "initTime": annotation(rec, "initTime"), "kind": annotation(rec, "kind"),
            "cold": annotation(rec, "initTime") is not None}


def sse(data: Doc, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + orjson.dumps(data).decode() + "\n\n").encode()


def latency_points(docs: Iterable[Doc]) -> list[Doc]:
    """Per activation, oldest first: start, duration, waitTime, initTime (ms; 0 when absent) and cold."""
    pts = []
    for d in docs:
        init = annotation(d, "initTime")
        pts.append({"activationId": d.get("activationId"), "start": d.get("start", 0),
                    "duration": d.get("duration") or 0, "waitTime": annotation(d, "waitTime") or 0,
                    "initTime": init or 0, "cold": init is not None,
                    "success": bool((d.get("response") or {}).get("success"))})
    return sorted(pts, key=lambda p: (p["start"], p["activationId"] or ""))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    s = sorted(values)
    return float(s[max(0, math.ceil(q / 100 * len(s)) - 1)])


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(v))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= v))


def latency_svg(points: list[Doc], width: int = 860, height: int = 260) -> str:
    """Duration, waitTime and initTime per activation (one circle per activation and series, joined by a line),
    cold starts marked under the axis; every element has a class the tests and the CSS use."""
    left, right, top, bottom = 56, 12, 12, 40
    w, h = width - left - right, height - top - bottom
    top_v = _nice_max(max([p[s] for p in points for s in SERIES] or [0]))
    n = len(points)

    def x(i: int) -> float:
        return left + (w * (i + 0.5) / n if n else 0)

    def y(v: float) -> float:
        return top + h - h * v / top_v

    out = [f'<svg class="chart latency" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="latency per activation">']
    for k in range(5):  # grid and y labels
        v = top_v * k / 4
        out.append(f'<line class="grid" x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/><text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
                   f'font-size="11">{v:g} ms</text>')
    for s in SERIES:
        if n:
            coords = " ".join(f"{x(i):.1f},{y(p[s]):.1f}" for i, p in enumerate(points))
            out.append(f'<polyline class="line" data-series="{s}" points="{coords}" fill="none" '
                       f'stroke="{COLORS[s]}" stroke-width="1.5"/>')
        for i, p in enumerate(points):
            out.append(f'<circle class="pt" data-series="{s}" cx="{x(i):.1f}" cy="{y(p[s]):.1f}" r="3" '
                       f'fill="{COLORS[s]}"><title>{html.escape(str(p["activationId"]))}: {s} {p[s]} ms'
                       f'</title></circle>')
    for i, p in enumerate(points):
        if p["cold"]:
            out.append(f'<rect class="cold" x="{x(i) - 3:.1f}" y="{top + h + 6}" width="6" height="10" '
                       f'fill="{COLORS["cold"]}"><title>cold start: init {p["initTime"]} ms</title></rect>')
    out.append(f'<line x1="{left}" x2="{left + w}" y1="{top + h}" y2="{top + h}" stroke="#888"/>')
    lx = left
    for s in (*SERIES, "cold"):
        label = "cold start" if s == "cold" else s
        out.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{COLORS[s]}"/>'
                   f'<text x="{lx + 14}" y="{height - 5}" font-size="12">{label}</text>')
        lx += 110
    out.append("</svg>")
    return "".join(out)


def cold_svg(points: list[Doc], width: int = 860, height: int = 90) -> str:
    """Cold starts per activation: a tall red bar for a cold start, a short grey one for a warm start."""
    left, right, top, bottom = 56, 12, 8, 20
    w, h = width - left - right, height - top - bottom
    n = len(points)
    bw = max(1.0, min(18.0, w / max(n, 1) * 0.7))
    out = [f'<svg class="chart coldstarts" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="cold starts per activation">']
    for i, p in enumerate(points):
        cx = left + w * (i + 0.5) / n
        bh = h if p["cold"] else h * 0.25
        cls, fill = ("bar cold", COLORS["cold"]) if p["cold"] else ("bar warm", "#bbb")
        out.append(f'<rect class="{cls}" x="{cx - bw / 2:.1f}" y="{top + h - bh:.1f}" width="{bw:.1f}" '
                   f'height="{bh:.1f}" fill="{fill}"/>')
    out.append(f'<text x="{left - 6}" y="{top + 12}" text-anchor="end" font-size="11">cold</text>'
               f'<text x="{left - 6}" y="{top + h}" text-anchor="end" font-size="11">warm</text></svg>')
    return "".join(out)


def esc(v: Any) -> str:
    return "-" if v is None else html.escape(str(v))


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:,.0f} ms" if isinstance(v, int | float) else esc(v)


def activation_link(aid: Any) -> str:
    return f'<a href="/console/activation?id={quote(str(aid))}">{esc(aid)}</a>'


def action_html(name: str, points: list[Doc], actions: list[str]) -> str:
    if not name:
        items = "".join(f'<li><a href="/console/action?{urlencode({"name": a})}">{esc(a)}</a></li>'
                        for a in actions)
        return f'<h2>Actions</h2><ul class="actions">{items or "<li>no actions yet</li>"}</ul>'
    durations = [float(p["duration"]) for p in points]
    colds = sum(1 for p in points if p["cold"])
    stats = (f'<table class="stats"><tr><th>activations</th><td id="n-points">{len(points)}</td>'
             f'<th>cold starts</th><td id="n-cold">{colds}</td>'
             f'<th>duration p50</th><td>{percentile(durations, 50):,.0f} ms</td>'
             f'<th>p95</th><td>{percentile(durations, 95):,.0f} ms</td>'
             f'<th>max</th><td>{max(durations, default=0):,.0f} ms</td></tr></table>')
    rows = "".join(f'<tr class="{"ok" if p["success"] else "err"}"><td>{activation_link(p["activationId"])}</td>'
                   f'<td>{esc(audit.iso(p["start"]))}</td><td>{_ms(p["duration"])}</td><td>{_ms(p["waitTime"])}</td>'
                   f'<td>{_ms(p["initTime"]) if p["cold"] else "warm"}</td></tr>' for p in reversed(points))
    return (f'<h2>Action <code>{esc(name)}</code>: latest {len(points)} activations</h2>{stats}'
            f'<h3>Latency</h3>{latency_svg(points)}<h3>Cold starts</h3>{cold_svg(points)}'
            f'<table class="list"><thead><tr><th>activation</th><th>start</th><th>duration</th><th>waitTime</th>'
            f'<th>initTime</th></tr></thead><tbody>{rows}</tbody></table>')


def _pretty(doc: Any) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def audit_html(entity: str, as_of: int, doc: Doc | None, records: list[audit.Record]) -> str:
    state = (f'<pre class="state" id="state">{esc(_pretty(doc))}</pre>' if doc is not None else
             f'<p class="state absent" id="state">{esc(entity)} did not exist at {esc(audit.iso(as_of))}</p>')
    rows = "".join(
        f'<tr class="{esc(r.outcome)}" data-at="{r.at}"><td>{esc(r.as_json()["time"])}</td><td>{esc(r.kind)}</td>'
        f'<td>{esc(r.subject)}</td><td>{esc(r.action)}</td><td>{esc(r.outcome)}</td><td>{esc(r.status)}</td>'
        f'<td>{activation_link(r.ref) if r.kind == "activation" else esc(r.detail)}</td></tr>'
        for r in records)
    return (f'<h2>State of <code>{esc(entity)}</code> as of <time id="as-of">{esc(audit.iso(as_of))}</time></h2>'
            f'{state}<h2>Trail ({len(records)} records)</h2><table class="list trail"><thead><tr><th>time</th>'
            f'<th>kind</th><th>subject</th><th>action</th><th>outcome</th><th>status</th><th>detail</th></tr>'
            f'</thead><tbody>{rows}</tbody></table>')


def replay_runs(evs: Iterable[ReplayProgress], limit: int = REPLAY_RUNS) -> list[ReplayProgress]:
    """The last report of each replay run (log order; a run's reports share a partition), newest run first."""
    last: dict[str, ReplayProgress] = {}
    for ev in evs:
        last[ev.replay_id] = ev
    return sorted(last.values(), key=lambda e: e.at, reverse=True)[:limit]


def run_state(ev: ReplayProgress, now: int) -> str:
    """done | failed | running | switching | silent (no report for a while: killed, or its host went away)."""
    if ev.finished:
        return ev.phase
    if now - ev.at > REPLAY_SILENT_MS:
        return "silent"
    return "switching" if ev.phase == "switching" else "running"


def run_json(ev: ReplayProgress, now: int) -> Doc:
    return {**events.to_dict(ev), "ratio": round(ev.ratio, 4), "finished": ev.finished, "state": run_state(ev, now)}


@dataclass
class ReplayStatus:
    """Replay runs as they report themselves (their ReplayProgress events, the primary source), then what a replay
    leaves behind: the pointer doc (live generation, when it switched, where it resumed), the generations present
    in CouchDB with their doc counts, and how far the live projector is in each topic."""

    generation: int
    switched_at: int | None
    resume: dict[str, dict[str, int]]
    generations: dict[int, dict[str, int]]  # generation -> view -> doc count
    projected: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> partition -> next offset
    ends: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> partition -> end offset
    runs: list[ReplayProgress] = field(default_factory=list)  # last report per run, newest first
    now: int = field(default_factory=now_ms)

    def building(self) -> list[int]:
        """Generations newer than the live one: being built by a replay (or built with --no-switch)."""
        return sorted(g for g in self.generations if g > self.generation)

    def estimate(self, gen: int) -> float:
        """Share of the live generation's docs that generation `gen` holds (a replay rebuilds the same docs)."""
        live = sum(self.generations.get(self.generation, {}).values())
        have = sum(self.generations.get(gen, {}).values())
        return min(1.0, have / live) if live else 1.0

    def lag(self) -> dict[str, int]:
        """Events of each topic the live projector has not applied yet."""
        out: dict[str, int] = {}
        for topic, parts in self.ends.items():
            done = self.projected.get(topic, {})
            out[topic] = sum(max(0, end - done.get(p, 0)) for p, end in parts.items())
        return out

    def as_json(self) -> Doc:
        return {"generation": self.generation, "switched_at": self.switched_at, "resume": self.resume,
                "generations": {str(g): c for g, c in sorted(self.generations.items())},
                "building": [{"generation": g, "estimate": round(self.estimate(g), 4)} for g in self.building()],
                "projected": self.projected, "ends": self.ends, "lag": self.lag(),
                "runs": [run_json(r, self.now) for r in self.runs]}


def _bar(frac: float) -> str:
    pct = max(0.0, min(1.0, frac)) * 100
    return (f'<svg class="bar" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 14" width="300" height="14">'
            f'<rect width="300" height="14" fill="#eee"/><rect width="{pct * 3:.1f}" height="14" fill="#2ca02c"/>'
            f'</svg> {pct:.0f}%')


def _mode(ev: ReplayProgress) -> str:
    return "in place" if ev.in_place else "fresh, switches" if ev.switch else "fresh, --no-switch"


def runs_html(runs: list[ReplayProgress], now: int) -> str:
    if not runs:
        return ('<p id="no-runs">No replay has reported progress recently (a replay publishes it on the replays '
                'topic while it runs).</p>')
    rows = "".join(
        f'<tr class="run {run_state(r, now)}"><td>{r.generation}</td><td class="state">{run_state(r, now)}'
        f'{f" ({(now - r.at) // 1000:,} s without a report)" if run_state(r, now) == "silent" else ""}</td>'
        f'<td>{_bar(r.ratio)}</td><td class="events">{r.events:,}/{r.total:,}</td>'
        f'<td class="rate">{r.events_per_s:,.0f}</td><td>{r.docs:,}</td><td>{r.poison:,}</td>'
        f'<td>{r.seconds:,.1f}</td><td>{esc(_mode(r))}{" (switched)" if r.switched else ""}</td>'
        f'<td>{esc(audit.iso(r.at))}</td><td>{esc(r.error or "")}</td></tr>' for r in runs)
    return ('<table class="list runs"><thead><tr><th>generation</th><th>state</th><th>progress</th><th>events</th>'
            '<th>events/s</th><th>docs</th><th>poison</th><th>seconds</th><th>mode</th><th>last report</th>'
            f'<th>error</th></tr></thead><tbody>{rows}</tbody></table>')


def replay_html(s: ReplayStatus) -> str:
    when = audit.iso(s.switched_at) if s.switched_at else "never (no replay has switched yet)"
    gens = "".join(
        f'<tr{" class=live" if g == s.generation else ""}><td>{g}{" (live)" if g == s.generation else ""}</td>'
        + "".join(f"<td>{c.get(v, 0):,}</td>" for v in catalog.VIEWS) + "</tr>"
        for g, c in sorted(s.generations.items()))
    building = "".join(f'<li class="building">generation {g} (not live: being built, or built with --no-switch): '
                       f'{_bar(s.estimate(g))} of the live generation\'s docs</li>' for g in s.building()
                       ) or "<li>no generation newer than the live one (no replay is building one)</li>"
    lag = s.lag()
    topics = "".join(
        f'<tr><td>{esc(t)}</td><td>{sum(s.ends[t].values()):,}</td>'
        f'<td>{sum(s.projected.get(t, {}).values()):,}</td><td>{lag[t]:,}</td>'
        f'<td>{_bar(1 - lag[t] / sum(s.ends[t].values()) if sum(s.ends[t].values()) else 1.0)}</td>'
        f'<td>{esc(",".join(f"{p}@{o}" for p, o in sorted(s.resume.get(t, {}).items())) or "-")}</td></tr>'
        for t in sorted(s.ends))
    return (f'<h3>Replay runs (their progress events)</h3>{runs_html(s.runs, s.now)}'
            f'<p>Live generation <strong id="live-gen">{s.generation}</strong>, switched '
            f'{esc(when)}.</p><ul>{building}</ul><h3>Generations in CouchDB (docs)</h3><table class="list gens">'
            f'<thead><tr><th>generation</th>' + "".join(f"<th>{v}</th>" for v in catalog.VIEWS)
            + f'</tr></thead><tbody>{gens}</tbody></table><h3>Live projector</h3><table class="list topics"><thead>'
            f'<tr><th>topic</th><th>end offsets</th><th>projected up to</th><th>behind</th><th>progress</th>'
            f'<th>resumed at (partition@offset)</th></tr></thead><tbody>{topics}</tbody></table>')


# --- pages -----------------------------------------------------------------------------------------------------

NAV = (("live", "Live"), ("action", "Actions"), ("audit", "Audit"), ("replay", "Replay"))


def shell(name: str) -> str:
    links = "".join(f'<a href="/console/{p}"{" class=current" if p == name else ""}>{label}</a>' for p, label in NAV)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Streamwhisk console</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/console/static/console.css">'
        '<script src="/console/static/console.js" defer></script></head>'
        f'<body data-page="{name}"><header><strong>Streamwhisk</strong><nav>{links}</nav>'
        '<span id="who"></span><a href="/console/login" id="logout">log out</a></header>'
        f'<main id="main">{FORMS.get(name, "")}<div id="view" aria-live="polite"></div></main></body></html>')


FORMS = {
    "login": (
        '<h1>Log in</h1><form id="login"><label for="key">Your key (<code>uuid:key</code>)</label>'
        '<input id="key" name="key" type="password" autocomplete="off" size="70" placeholder="uuid:key" required>'
        '<button type="submit">Log in</button></form>'
        '<details id="help"><summary>?</summary><p>The key is the <code>--auth</code> value that '
        '<code>./streamwhisk up</code> prints (<code>wsk property set --apihost ... --auth uuid:key</code>), or the '
        'line that <code>./streamwhisk admin create NAME</code> prints for a new namespace. The operator key is '
        "whisk.system's. The key stays in this tab's sessionStorage and goes with each request as HTTP Basic; "
        'closing the tab forgets it.</p></details>'),
    "live": '<h1>Live activations</h1><p id="live-state">connecting...</p>'
            '<table class="list" id="live"><thead><tr><th>start</th><th>activation</th><th>action</th><th>status</th>'
            '<th>duration</th><th>waitTime</th><th>initTime</th><th>kind</th></tr></thead><tbody></tbody></table>',
    "activation": '<h1>Activation</h1><form class="q" method="get" action="/console/activation">'
                  '<input name="id" size="36" placeholder="activation id"><button>Show</button></form>',
    "action": '<h1>Action</h1><form class="q" method="get" action="/console/action">'
              '<input name="name" placeholder="action or package/action"><input name="limit" type="number" '
              'min="1" max="200" value="50"><button>Chart</button></form>',
    "audit": '<h1>Audit trail</h1><form class="q" method="get" action="/console/audit">'
             '<input name="entity" size="30" placeholder="namespace/name" required>'
             '<label>as of <input name="as_of" size="26" placeholder="now, 10m, or 2024-05-01T12:00:00Z"></label>'
             '<button>Show</button></form>',
    "replay": "<h1>Replay progress</h1>",
}


async def home(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/console/live"})  # the middleware turns raised ones into JSON


async def page(request: web.Request) -> web.Response:
    name = request.match_info.get("page", "live")
    return web.Response(text=shell(name), content_type="text/html", headers=_page_headers())


def _page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("api").joinpath("console_static", name).read_bytes()
    return web.Response(body=body, content_type=STATIC[name], headers=_page_headers())


# --- data --------------------------------------------------------------------------------------------------------

Handler = Any


def authed(handler: Handler) -> Handler:
    """The API's authentication, but a 401 without `WWW-Authenticate` (no browser password dialog)."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            ident = _authenticate(request)
        except WhiskError as e:
            return error_response(e.status, e.message, request["tid"])
        request["identity"] = ident
        resp: web.StreamResponse = await handler(request, ident)
        if not resp.prepared:
            resp.headers.update({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
        return resp

    return run


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


async def whoami(request: web.Request, ident: Identity) -> web.Response:
    return json_response({"subject": ident.subject, "namespace": ident.namespace, "operator": is_operator(ident)})


def _int(request: web.Request, name: str, default: int, hi: int) -> int:
    v = request.query.get(name, "")
    try:
        return max(0, min(hi, int(v))) if v else default
    except ValueError as e:
        raise WhiskError(400, f"The parameter '{name}' is not an integer: {v}") from e


async def action_view(request: web.Request, ident: Identity) -> web.Response:
    """?name=ACTION[&limit=N]: the latest N activations of the action (JSON points, or ?view=html the charts);
    without a name, the namespace's actions."""
    ns, views = ident.namespace, request.app[VIEWS]
    name = (request.query.get("name") or "").strip().strip("/")
    if not name:
        _, docs = await views.view(WHISKS, "whisks", "by_collection", start=[ns, "action", {}],
                                   end=[ns, "action"], limit=200)
        actions = sorted({(f"{d['namespace'].split('/', 1)[1]}/" if "/" in d["namespace"] else "") + d["name"]
                          for d in docs if "name" in d and "namespace" in d})
        if request.query.get("view") == "html":
            return _html(action_html("", [], actions))
        return json_response({"actions": actions})
    parts = name.split("/")
    if len(parts) > 2 or not all(entities.ENTITY_NAME_RE.match(p) for p in parts):
        raise WhiskError(400, f"Parameter may be a 'simple' name or 'package-name/simple' name: {name}")
    limit = _int(request, "limit", 50, LAST_MAX) or 50
    _, docs = await views.view(ACTIVATIONS, "activations", "by_name", start=[ns, name, {}], end=[ns, name, 0],
                               limit=limit)
    points = latency_points(docs)
    if request.query.get("view") == "html":
        return _html(action_html(name, points, []))
    return json_response({"name": name, "points": points})


async def audit_view(request: web.Request, ident: Identity) -> web.Response:
    """?entity=NS/NAME[&as_of=TIME][&since=TIME]: what `streamwhisk audit --entity X [--as-of T]` prints, for the
    entity's own namespace (or the operator)."""
    entity = (request.query.get("entity") or "").strip().strip("/")
    if "/" not in entity:
        raise WhiskError(400, "The parameter 'entity' needs a full path, e.g. guest/hello.")
    ns = entity.split("/")[0]
    if not may_read(ident, ns):
        raise errors.not_authorized(ns)
    now = now_ms()
    try:
        as_of = audit.parse_time(request.query.get("as_of") or "now", now)
        since = audit.parse_time(request.query["since"], now) if request.query.get("since") else None
    except ValueError as e:
        raise WhiskError(400, str(e)) from e
    from cli.audit import entity_as_of, query  # the CLI's log readers: one consumer per request, closed after

    settings: Settings = request.app[SETTINGS]
    doc = await entity_as_of(settings, entity, as_of)
    records = await query(settings, audit.Filter(entity=entity, since=since, kinds=("entity", "activation", "api")))
    if request.query.get("view") == "html":
        return _html(audit_html(entity, as_of, doc, records))
    return json_response({"entity": entity, "as_of": audit.iso(as_of), "doc": doc,
                          "records": [r.as_json() for r in records]})


async def replay_view(request: web.Request, ident: Identity) -> web.Response:
    """Replay progress, for the operator only: the replays' own progress events (the `replays` topic), then the
    pointer doc, the generations in CouchDB and the live projector's position in each source topic (its
    ProjectionProgress events, which the API already tails)."""
    if not is_operator(ident):
        raise WhiskError(403, "Replay progress is shown to the operator (whisk.system) only.")
    settings: Settings = request.app[SETTINGS]
    status = await replay_status(settings, request.app[TAIL].progress, request.app[TOPICS])
    if request.query.get("view") == "html":
        return _html(replay_html(status))
    return json_response(status.as_json())


async def replay_status(settings: Settings, progress: dict[tuple[str, int], int], t: Topics) -> ReplayStatus:
    couch = Couch(settings.couchdb)

    def read_couch() -> tuple[Doc | None, dict[int, dict[str, int]]]:
        doc = couch.get(catalog.meta_db(settings), catalog.POINTER_ID)
        gens: dict[int, dict[str, int]] = {}
        for g in sorted(catalog.existing_generations(couch.all_dbs(), settings)):
            for view, db in catalog.names(settings, g).items():
                info = _db_info(couch, db)
                gens.setdefault(g, {})[view] = int(info.get("doc_count", 0)) if info else 0
        return doc, gens

    doc, gens = await asyncio.to_thread(read_couch)
    ptr = catalog.parse(settings, doc)
    sources = [t.subjects, t.entities, t.completions]
    ends: dict[str, dict[str, int]] = {}
    seen = dict(progress)  # what the API's tail saw since it started, plus the last reports before that
    c = bus.consumer(settings.kafka, group=None)
    await c.start()
    try:
        tps = [tp for topic in sources for tp in await bus.partitions(c, topic)]
        for tp, end in (await c.end_offsets(tps)).items():
            ends.setdefault(tp.topic, {})[str(tp.partition)] = end
        for raw in await _tail_of(c, t.progress, PROGRESS_SCAN):
            with contextlib.suppress(events.DecodeError):
                ev = events.decode(raw)
                if isinstance(ev, ProjectionProgress):
                    key = (ev.topic, ev.partition)
                    seen[key] = max(seen.get(key, 0), ev.offset)
        reports: list[ReplayProgress] = []
        if await _exists(c, t.replays):  # made by the first replay (or the projections process)
            for raw in await _tail_of(c, t.replays, REPLAY_SCAN):
                with contextlib.suppress(events.DecodeError):
                    ev = events.decode(raw)
                    if isinstance(ev, ReplayProgress):
                        reports.append(ev)
    finally:
        await c.stop()
    projected: dict[str, dict[str, int]] = {}
    for (topic, part), off in seen.items():
        if topic in sources:  # the progress event names the next offset to apply
            projected.setdefault(topic, {})[str(part)] = off
    return ReplayStatus(ptr.generation, (doc or {}).get("switched_at"), ptr.resume, gens, projected, ends,
                        replay_runs(reports))


async def _exists(c: AIOKafkaConsumer, topic: str) -> bool:
    return bool(await bus.existing_partitions(c, [topic]))


async def _tail_of(c: AIOKafkaConsumer, topic: str, n: int) -> list[bytes]:
    """The values of the last `n` records of each partition of `topic`."""
    tps = await bus.partitions(c, topic)
    c.assign(tps)
    begins, ends = await c.beginning_offsets(tps), await c.end_offsets(tps)
    for tp in tps:
        c.seek(tp, max(begins[tp], ends[tp] - n))
    out: list[bytes] = []
    left = {tp for tp in tps if await c.position(tp) < ends[tp]}
    deadline = time.monotonic() + READ_BACK_S
    while left and time.monotonic() < deadline:
        for tp, msgs in (await c.getmany(*left, timeout_ms=500)).items():
            out += [m.value for m in msgs if m.offset < ends[tp] and m.value]
        left = {tp for tp in left if await c.position(tp) < ends[tp]}
    return out


def _db_info(couch: Couch, db: str) -> Doc | None:
    """A database's info (doc_count); None when it is gone."""
    try:
        info: Doc | None = couch.get(db, "")
    except Exception:  # deleted between _all_dbs and here
        return None
    return info


# --- the live list ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Subscriber:
    namespace: str
    queue: asyncio.Queue[tuple[int, int, Doc]] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: int = 0


class LiveHub:
    """Tails the completions topic from its end while someone watches, one consumer for the whole process.

    Records are keyed by namespace, so a message whose key nobody watches is skipped without decoding it.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.subs: dict[str, set[Subscriber]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def subscribe(self, namespace: str) -> Subscriber:
        """Once this returns, every completion past the consumer's pinned end reaches the subscriber."""
        sub = Subscriber(namespace)
        async with self._lock:
            if self._consumer is None:
                c = bus.consumer(self.bootstrap, group=None)
                await c.start()
                try:
                    tps = await bus.partitions(c, self.topic)
                    c.assign(tps)
                    await c.seek_to_end(*tps)
                    for tp in tps:
                        await c.position(tp)  # pin "now"
                except BaseException:
                    await c.stop()
                    raise
                self._consumer = c
                self._task = asyncio.create_task(self._loop(c))
            self.subs.setdefault(namespace, set()).add(sub)
        return sub

    async def unsubscribe(self, sub: Subscriber) -> None:
        async with self._lock:
            subs = self.subs.get(sub.namespace, set())
            subs.discard(sub)
            if not subs:
                self.subs.pop(sub.namespace, None)
            if not self.subs:
                await self._stop()

    async def _stop(self) -> None:
        task, c = self._task, self._consumer
        self._task = self._consumer = None
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if c:
            await c.stop()

    async def close(self) -> None:
        async with self._lock:
            self.subs.clear()
            await self._stop()

    async def _loop(self, c: AIOKafkaConsumer) -> None:
        while True:
            try:
                batch = await c.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a broker restart must not end the streams
                log.warning("console tail fetch failed, retrying: %r", e)
                await asyncio.sleep(0.5)
                continue
            for msgs in batch.values():
                for m in msgs:
                    self.deliver(m.key, m.value, m.partition, m.offset)

    def deliver(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        ns = key.decode(errors="replace") if key else None
        subs = self.subs.get(ns or "")
        if not subs:
            return
        try:
            d = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return
        if not isinstance(d, dict) or d.get("namespace") != ns:
            return
        for sub in subs:
            if sub.queue.full():  # a stalled reader loses the oldest, not the process's memory
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait((partition, offset, d))


async def recent(settings: Settings, topic: str, namespace: str, n: int) -> tuple[list[Doc], dict[int, int]]:
    """The namespace's last `n` completions among the last SCAN_BACK records of each partition, oldest first,
    and the end offsets read up to (the live tail skips what is before them)."""
    c = bus.consumer(settings.kafka, group=None)
    await c.start()
    found: list[tuple[int, int, int, Doc]] = []
    try:
        tps = await bus.partitions(c, topic)
        c.assign(tps)
        begins, ends = await c.beginning_offsets(tps), await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, max(begins[tp], ends[tp] - SCAN_BACK))
        left: set[TopicPartition] = {tp for tp in tps if await c.position(tp) < ends[tp]}
        key = namespace.encode()
        deadline = time.monotonic() + READ_BACK_S
        while left and time.monotonic() < deadline:
            for tp, msgs in (await c.getmany(*left, timeout_ms=500)).items():
                for m in msgs:
                    if m.offset < ends[tp] and m.key == key:
                        with contextlib.suppress(orjson.JSONDecodeError):
                            d = orjson.loads(m.value or b"")
                            if isinstance(d, dict) and d.get("namespace") == namespace:
                                found.append((int(d.get("at", 0)), tp.partition, m.offset, d))
            left = {tp for tp in left if await c.position(tp) < ends[tp]}
    finally:
        await c.stop()
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    return [f[3] for f in found[-n:]] if n else [], {tp.partition: end for tp, end in ends.items()}


async def stream(request: web.Request, ident: Identity) -> web.StreamResponse:
    """Server-Sent Events (read with fetch, which can send the key): one `activation` event per completion of
    the caller's namespace, from now (after `?last=N` from the log)."""
    last = _int(request, "last", 0, LAST_MAX)
    hub: LiveHub = request.app[LIVE]
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no",
        "X-Content-Type-Options": "nosniff"})
    sub = await hub.subscribe(ident.namespace)
    try:
        settings: Settings = request.app[SETTINGS]
        backlog, ends = await recent(settings, hub.topic, ident.namespace, last)
        await resp.prepare(request)
        await resp.write(sse({"namespace": ident.namespace, "backlog": len(backlog)}, "ready"))
        for d in backlog:
            if (row := live_row(d)) is not None:
                await resp.write(sse(row, "activation"))
        while True:
            try:
                part, off, d = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await resp.write(b": ping\n\n")
                continue
            if off < ends.get(part, 0):
                continue  # already sent from the backlog
            if (row := live_row(d)) is not None:
                await resp.write(sse(row, "activation"))
    except ConnectionResetError:
        pass  # the browser went away (noticed at the next write, a heartbeat at the latest)
    finally:
        await hub.unsubscribe(sub)
    return resp

