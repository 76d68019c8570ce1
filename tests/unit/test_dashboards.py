"""The Grafana dashboards in the Helm chart (helm/streamwhisk/files/dashboards): each is a dashboard Grafana can
provision as it is, and every query parses as PromQL and asks only for metrics and labels of the metrics contract
(contracts/metric_names.py), with functions that fit the metric's type."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest

from contracts.metric_names import METRICS, known_series, series_labels
from contracts.settings import REPO

DASHBOARDS = sorted((REPO / "helm" / "streamwhisk" / "files" / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's built-in variables, and the stand-ins that let a query with them parse as PromQL.
BUILTIN_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600",
                "__range_ms": "3600000", "__interval_ms": "60000", "__all": ""}
VAR_REF = re.compile(r"\$(\w+)|\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]")
LEGEND_REF = re.compile(r"\{\{\s*(\w+)\s*\}\}")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\s*\)$")
COUNTER_FUNCS = {"rate", "irate", "increase"}
GAUGE_FUNCS = {"deriv", "delta", "idelta", "predict_linear"}
KEEPS_LABELS = {"topk", "bottomk", "limitk", "limit_ratio"}
Dash = dict[str, Any]


def load(path: Path) -> Dash:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def all_panels(d: Dash) -> list[Dash]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(d: Dash) -> list[tuple[str, Dash, Dash]]:
    """(where, panel, target) for every query target of the dashboard."""
    return [(f"{d['uid']}/{p['title']}/{t.get('refId')}", p, t)
            for p in all_panels(d) if p["type"] != "row" for t in p.get("targets", [])]


def substitute(expr: str) -> str:
    for name, value in sorted(BUILTIN_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def var_refs(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VAR_REF.finditer(text)}


def selectors(expr: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, pp.VectorSelector):
            found.append(node)
        return True

    pp.walk(expr, visit)
    return found


def labels_in(expr: Any) -> frozenset[str]:
    """Labels the series an expression reads may carry."""
    out: frozenset[str] = frozenset()
    for vs in selectors(expr):
        out |= known_labels(vs.name)
    return out


def known_labels(name: str | None) -> frozenset[str]:
    # Unknown names are reported on their own (check_expr); here they just carry no label.
    return series_labels(name) if name and name in known_series() else frozenset()


def output_labels(e: Any) -> frozenset[str]:
    """Labels the result of an expression can carry (a superset where PromQL keeps the input's)."""
    if isinstance(e, pp.VectorSelector):
        return known_labels(e.name)
    if isinstance(e, pp.MatrixSelector):
        return output_labels(e.vector_selector)
    if isinstance(e, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return output_labels(e.expr)
    if isinstance(e, pp.AggregateExpr):
        inner = output_labels(e.expr)
        if str(e.op).lower() in KEEPS_LABELS:
            return inner
        if e.modifier is None:
            return frozenset()
        grouping = frozenset(e.modifier.labels)
        return grouping if e.modifier.type == pp.AggModifierType.By else inner - grouping
    if isinstance(e, pp.Call):
        if e.func.name == "histogram_quantile":
            return output_labels(e.args[1]) - {"le"}
        vectors = [a for a in e.args if not isinstance(a, (pp.NumberLiteral, pp.StringLiteral))]
        return output_labels(vectors[0]) if vectors else frozenset()
    if isinstance(e, pp.BinaryExpr):
        side = e.rhs if isinstance(e.lhs, pp.NumberLiteral) else e.lhs
        return output_labels(side)
    return frozenset()


def check_expr(expr: Any, where: str) -> list[str]:
    """Contract and type errors in a parsed query."""
    errors: list[str] = []
    series = known_series()
    for vs in selectors(expr):
        if not vs.name:
            errors.append(f"{where}: a selector without a metric name")
            continue
        if vs.name not in series:
            errors.append(f"{where}: {vs.name} is not in contracts/metric_names.py")
            continue
        for m in vs.matchers.matchers:
            if m.name != "__name__" and m.name not in series_labels(vs.name):
                errors.append(f"{where}: {vs.name} has no label {m.name}")

    def visit(node: Any) -> bool:
        if isinstance(node, pp.AggregateExpr) and node.modifier is not None:
            missing = set(node.modifier.labels) - labels_in(node.expr)
            if missing:
                errors.append(f"{where}: {node.op} groups by unknown labels {sorted(missing)}")
        if isinstance(node, pp.BinaryExpr) and node.modifier is not None and node.modifier.matching is not None:
            missing = set(node.modifier.matching.labels) - labels_in(node)
            if missing:
                errors.append(f"{where}: vector matching on unknown labels {sorted(missing)}")
        if isinstance(node, pp.Call):
            name = node.func.name
            ranges = [a.vector_selector.name for a in node.args if isinstance(a, pp.MatrixSelector)]
            for r in ranges:
                if r not in series:
                    continue
                kind = series[r].type
                if name in COUNTER_FUNCS and not (kind == "counter" or (kind == "histogram" and r != series[r].name)):
                    errors.append(f"{where}: {name}() over {r}, a {kind}")
                if name in GAUGE_FUNCS and kind != "gauge":
                    errors.append(f"{where}: {name}() over {r}, a {kind}")
            if name == "histogram_quantile":
                if "le" not in output_labels(node.args[1]):
                    errors.append(f"{where}: histogram_quantile over an aggregation without le")
                if not all(vs.name.endswith("_bucket") for vs in selectors(node.args[1])):
                    errors.append(f"{where}: histogram_quantile over a series that is not a _bucket")
        return True

    pp.walk(expr, visit)
    return errors


def parse(expr: str, where: str) -> Any:
    try:
        return pp.parse(substitute(expr))
    except ValueError as e:
        pytest.fail(f"{where}: {e}: {expr}")


# ---------------------------------------------------------------- the checker itself

def test_the_checks_catch_bad_queries() -> None:
    # A wrong name, a missing label, rate over a gauge, a quantile without le, unbalanced brackets.
    assert check_expr(pp.parse("rate(openwhisk_action_activation_total[5m])"), "x")
    assert check_expr(pp.parse('openwhisk_action_coldStarts_total{kind="nodejs:20"}'), "x")
    assert check_expr(pp.parse("rate(streamwhisk_invoker_containers[5m])"), "x")
    assert check_expr(pp.parse("sum by (invoker) (streamwhisk_projection_applied_total)"), "x")
    assert check_expr(pp.parse(
        "histogram_quantile(0.9, sum by (action) (rate(openwhisk_action_duration_seconds_bucket[5m])))"), "x")
    for bad in ("sum(rate(openwhisk_action_activations_total[5m])", "sum by (a (x)", "no_such_function(up)"):
        with pytest.raises(ValueError):
            pp.parse(bad)
    assert not check_expr(pp.parse(
        'histogram_quantile(0.9, sum by (le, action) (rate(openwhisk_action_duration_seconds_bucket{job="x"}[5m])))'),
        "x")
    assert output_labels(pp.parse("topk(3, sum by (a, b) (up))")) == {"a", "b"}
    assert var_refs('x{a=~"$ns", b="${action:regex}"}[$__rate_interval] [[old]]') == \
        {"ns", "action", "__rate_interval", "old"}


# ---------------------------------------------------------------- the dashboards

def test_there_are_dashboards() -> None:
    names = {p.stem for p in DASHBOARDS}
    assert {"activations", "platform"} <= names


def test_dashboards_are_provisionable() -> None:
    uids: dict[str, str] = {}
    titles: set[str] = set()
    for path in DASHBOARDS:
        d = load(path)
        where = path.name
        uid = d.get("uid")
        assert isinstance(uid, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), f"{where}: uid {uid!r}"
        assert uid not in uids, f"{where}: uid {uid} also in {uids.get(uid)}"
        uids[uid] = where
        assert d.get("title") and d["title"] not in titles, f"{where}: title"
        titles.add(d["title"])
        assert isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, where
        assert d.get("id") is None, f"{where}: a fixed id clashes with the Grafana it is provisioned into"
        assert "__inputs" not in d and "${DS_" not in path.read_text(), \
            f"{where}: exported 'for sharing' (import-only); provisioning needs the ${{datasource}} variable"
        assert "streamwhisk" in d.get("tags", []), where
        assert isinstance(d["panels"], list) and d["panels"], where


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_have_unique_ids_and_a_grid_without_overlaps(path: Path) -> None:
    d = load(path)
    panels = all_panels(d)
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), f"panel ids {ids}"
    taken: dict[tuple[int, int], str] = {}
    for p in panels:
        assert p.get("title"), f"panel {p['id']} has no title"
        g = p.get("gridPos", {})
        assert all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")), f"{p['title']}: gridPos {g}"
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = p["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_uses_the_datasource_variable(path: Path) -> None:
    d = load(path)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE, f"variable {v['name']}"
    for p in all_panels(d):
        if p["type"] == "row":
            continue
        assert p.get("datasource") == DATASOURCE, f"{p['title']}: datasource {p.get('datasource')}"
        targets = p.get("targets", [])
        assert targets, f"{p['title']}: no query"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{p['title']}: refIds {refs}"
        for t in targets:
            assert t.get("datasource", DATASOURCE) == DATASOURCE, p["title"]
            assert t.get("expr", "").strip(), f"{p['title']}/{t['refId']}: empty expr"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_variable_used_is_defined(path: Path) -> None:
    d = load(path)
    defined = [v["name"] for v in d["templating"]["list"]]
    assert len(defined) == len(set(defined)), defined
    known = set(defined) | set(BUILTIN_VARS)
    texts = [json.dumps(p) for p in all_panels(d)]
    texts += [json.dumps(v.get("query")) for v in d["templating"]["list"] if v["type"] == "query"]
    used: set[str] = set()
    for text in texts:
        used |= var_refs(text)
    assert used - known == set(), f"undefined variables {sorted(used - known)}"
    # And every variable defined is used somewhere (a stale one still fires its query on every load).
    assert set(defined) <= used, f"unused variables {sorted(set(defined) - used)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_parses_and_follows_the_metric_contract(path: Path) -> None:
    d = load(path)
    errors: list[str] = []
    for where, _panel, target in queries(d):
        expr = parse(target["expr"], where)
        errors += check_expr(expr, where)
        legend = target.get("legendFormat", "")
        missing = set(LEGEND_REF.findall(legend)) - output_labels(expr)
        if missing:
            errors.append(f"{where}: legend {legend!r} names labels the result lacks: {sorted(missing)}")
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = LABEL_VALUES.match(q)
        assert m, f"variable {v['name']}: {q}"
        expr = parse(m.group(1), f"variable {v['name']}")
        errors += check_expr(expr, f"variable {v['name']}")
        if m.group(2) not in labels_in(expr):
            errors.append(f"variable {v['name']}: no label {m.group(2)} on {m.group(1)}")
    assert not errors, "\n".join(errors)


def test_dashboards_show_every_metric_of_the_contract() -> None:
    used: set[str] = set()
    series = known_series()
    for path in DASHBOARDS:
        for where, _panel, target in queries(load(path)):
            used |= {series[vs.name].name for vs in selectors(parse(target["expr"], where)) if vs.name in series}
    assert set(METRICS) - used == set(), f"not on any dashboard: {sorted(set(METRICS) - used)}"


def test_contract_names_are_valid_prometheus_names() -> None:
    for m in METRICS.values():
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", m.name), m.name
        assert all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", lbl) and not lbl.startswith("__") for lbl in m.labels)
        assert "le" not in m.labels and len(set(m.labels)) == len(m.labels), m.name


def test_all_on_a_shared_metric_means_streamwhisk_only() -> None:
    # `up` and process_* come from every target Prometheus has: "All" must still require the Streamwhisk label.
    for path in DASHBOARDS:
        for v in load(path)["templating"]["list"]:
            if v["type"] == "query" and v.get("includeAll") and "label_values(up" in json.dumps(v["query"]):
                assert v.get("allValue") not in (None, "", ".*"), f"{path.name}: variable {v['name']}"
