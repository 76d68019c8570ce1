"""Pure helpers: percentiles, wrk output parsing, per-hop splits and the results table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

Row = tuple[str, str, str, str]  # section, metric, value, target/notes


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return float(s[k])


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max/n of a list of milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
        "p99": percentile(values, 99), "mean": sum(values) / len(values), "min": min(values), "max": max(values),
    }


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The WRKJSON line our lua scripts print; latencies turned from us into ms."""
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            d: dict[str, Any] = orjson.loads(line[len("WRKJSON "):])
            for k in ("p50", "p90", "p99", "mean", "max"):
                d[k] = d[k] / 1000.0
            d["rps"] = d["requests"] / (d["duration_us"] / 1e6) if d["duration_us"] else 0.0
            d["codes"] = {int(k): v for k, v in d["codes"].items()}
            return d
    raise ValueError(f"no WRKJSON line in wrk output: {stdout[-500:]!r}")


def hop_split(trace: dict[str, float]) -> dict[str, float]:
    """Per-hop durations (ms) of one traced activation, from wall-clock stamps in ms.

    Keys: sent (client), requested (API produced to invocations), authorized (Faust produced; only where
    admission has two hops: older code), assigned (Faust produced to the invoker topic), start/end (invoker,
    around the container call), completed (invoker produced), received (client got the answer).
    """
    order = [
        ("client→API produce", "sent", "requested"),
        ("invocations→authorize→produce", "requested", "authorized"),
        ("authorized→balance→produce", "authorized", "assigned"),
        ("invocations→admit→invoker topic", "requested", "assigned"),  # one-hop admission (no authorized)
        ("invoker topic→container start", "assigned", "start"),
        ("container run + logs", "start", "end"),
        ("end→completion produced", "end", "completed"),
        ("completions→API→client", "completed", "received"),
    ]
    if "authorized" in trace:  # two-hop admission: the two hops above instead of the one-hop row
        order = [hop for hop in order if hop[1:] != ("requested", "assigned")]
    return {name: trace[b] - trace[a] for name, a, b in order if a in trace and b in trace}


def fmt_ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.1f} ms" if v < 1000 else f"{v / 1000:.2f} s"


def lat(d: dict[str, Any]) -> str:
    """'p50 / p90 / p99' of a summary or wrk result."""
    if not d or d.get("n") == 0 or "p50" not in d:
        return "-"
    return f"{fmt_ms(d['p50'])} / {fmt_ms(d['p90'])} / {fmt_ms(d['p99'])}"


def table(rows: Sequence[Row]) -> str:
    """A markdown table (readable as plain text too)."""
    head: Row = ("section", "metric", "value", "target / note")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def line(r: Row) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])
