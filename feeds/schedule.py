"""Pure alarm schedules: config validation and the deterministic fire slots of cron, interval and once feeds.

Slots are epoch ms computed from the config alone, so the slot after the last one fired is always known: that is
what lets a restarted feed service fire every missed slot once and never a slot twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

Doc = dict[str, Any]
RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]  # second minute hour dom month dow
MAX_CRON_SCAN_MINUTES = 366 * 24 * 60


class FeedError(ValueError):
    """A bad feed config; the message goes back as the feed action's application error."""


def _field(spec: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for part in spec.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, b_s = rng.split("-", 1)
            a, b = int(a_s), int(b_s)
        else:
            a = int(rng)
            b = hi if step_s else a
        if step < 1 or a < lo or b > hi or a > b:
            raise ValueError(part)
        out.update(range(a, b + 1, step))
    return frozenset(7 % 7 if v == 7 else v for v in out)


def parse_cron(expr: str) -> list[frozenset[int]]:
    """5 fields (minute hour dom month dow) or 6 with seconds first, as OpenWhisk's alarms package accepts."""
    parts = expr.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise FeedError(f"cron pattern '{expr}' is not valid")
    try:
        return [_field(p, lo, hi if i != 5 else 7) for i, (p, (lo, hi)) in enumerate(zip(parts, RANGES, strict=True))]
    except ValueError as e:
        raise FeedError(f"cron pattern '{expr}' is not valid") from e


def next_cron(fields: list[frozenset[int]], after_ms: int) -> int | None:
    """First matching second strictly after `after_ms` (UTC)."""
    secs, mins, hours, doms, months, dows = fields
    t = dt.datetime.fromtimestamp(after_ms // 1000, dt.UTC)
    minute = t.replace(second=0)
    for _ in range(MAX_CRON_SCAN_MINUTES):
        if (minute.minute in mins and minute.hour in hours and minute.day in doms and minute.month in months
                and (minute.weekday() + 1) % 7 in dows):
            for s in sorted(secs):
                slot = int(minute.timestamp()) * 1000 + s * 1000
                if slot > after_ms:
                    return slot
        minute += dt.timedelta(minutes=1)
    return None


def _epoch_ms(v: Any, name: str) -> int:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        try:
            d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as e:
            raise FeedError(f"{name} parameter '{v}' is not a valid date") from e
        return int((d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp() * 1000)
    raise FeedError(f"{name} parameter is not a valid date")


def validate(kind: str, params: Doc, now_ms: int) -> Doc:
    """The stored config of an alarm feed: the user's params plus `anchor` (epoch ms) where slots count from."""
    cfg = dict(params)
    if kind == "alarm":
        if not isinstance(cfg.get("cron"), str):
            raise FeedError("alarms trigger feed is missing the cron parameter")
        parse_cron(cfg["cron"])
        cfg["anchor"] = _epoch_ms(cfg["startDate"], "startDate") if "startDate" in cfg else now_ms
    elif kind == "interval":
        period = period_ms(cfg)
        if period <= 0:
            raise FeedError("interval trigger feed needs a positive 'minutes' (or 'seconds') parameter")
        cfg["anchor"] = _epoch_ms(cfg["startDate"], "startDate") if "startDate" in cfg else now_ms
    elif kind == "once":
        if "date" not in cfg:
            raise FeedError("once trigger feed is missing the date parameter")
        cfg["anchor"] = _epoch_ms(cfg["date"], "date")
    else:
        raise FeedError(f"unknown alarm kind {kind}")
    if "stopDate" in cfg:
        cfg["stop"] = _epoch_ms(cfg["stopDate"], "stopDate")
    return cfg


def period_ms(cfg: Doc) -> int:
    try:
        return int(float(cfg.get("minutes", 0)) * 60000 + float(cfg.get("seconds", 0)) * 1000)
    except (TypeError, ValueError) as e:
        raise FeedError("interval 'minutes' and 'seconds' must be numbers") from e


def next_slot(kind: str, cfg: Doc, last: int | None) -> int | None:
    """The slot after `last` (None: the first slot). None when the schedule has ended."""
    anchor = int(cfg["anchor"])
    slot: int | None
    if kind == "once":
        slot = anchor if last is None else None
    elif kind == "interval":
        period = period_ms(cfg)
        slot = anchor + period if last is None else last + period
    else:
        slot = next_cron(parse_cron(cfg["cron"]), anchor if last is None else last)
    if slot is not None and "stop" in cfg and slot > int(cfg["stop"]):
        return None
    return slot


def due(kind: str, cfg: Doc, last: int | None, now_ms: int, limit: int = 100) -> list[int]:
    """Every slot after `last` up to now (missed ones included, at most `limit`), in order."""
    out: list[int] = []
    slot = next_slot(kind, cfg, last)
    while slot is not None and slot <= now_ms and len(out) < limit:
        out.append(slot)
        slot = next_slot(kind, cfg, slot)
    return out
