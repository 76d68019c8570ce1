"""The Helm chart's files: the nginx template is the local one, rendered the same way; the init helper's pure parts."""

from __future__ import annotations

import importlib.util
import subprocess
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from cli.services import render
from contracts.settings import REPO
from contracts.topics import Topics

FILES = REPO / "helm" / "streamwhisk" / "files"


def _k8s_init() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_init", FILES / "k8s_init.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_chart_nginx_template_is_the_local_one() -> None:
    # helm reads only files inside the chart: files/nginx.conf.tmpl is a symlink to the local template (helm
    # follows it and packages the content); this guards against it being replaced by a copy that drifts.
    local = (REPO / "deploy" / "nginx" / "nginx.conf.tmpl").read_bytes()
    assert (FILES / "nginx.conf.tmpl").read_bytes() == local, (
        "ln -sf ../../../deploy/nginx/nginx.conf.tmpl helm/streamwhisk/files/nginx.conf.tmpl")


def test_chart_start_script_renders_like_cli_services(tmp_path: Path) -> None:
    # The pod's sed rendering and cli/services.render give the same config for the same values.
    prefix = tmp_path / "p"
    script = (FILES / "nginx-start.sh").read_text().replace("exec nginx", "exit 0; nginx")
    subprocess.run(["sh", "-c", script], check=True, env={
        "PATH": "/usr/bin:/bin", "LISTEN": "0.0.0.0:8080", "UPSTREAM": "127.0.0.1:23233",
        "NGINX_PREFIX": str(prefix), "NGINX_TEMPLATE": str(FILES / "nginx.conf.tmpl")})
    expected = tmp_path / "expected.conf"
    render(REPO / "deploy" / "nginx" / "nginx.conf.tmpl", expected, {
        "user_directive": "", "prefix": str(prefix), "listen": "0.0.0.0:8080", "listen_actions": "",
        "upstream": "127.0.0.1:23233"})
    assert (prefix / "nginx.conf").read_text() == expected.read_text()
    assert "{{" not in expected.read_text()
    assert (prefix / "logs" / "access.log").is_symlink()


def test_invoker_id_from_map_or_stable_hash() -> None:
    k = _k8s_init()
    assert k.invoker_id("node-a", {"node-a": 3}) == 3
    assert k.invoker_id("node-b", {"node-a": 3}) == zlib.crc32(b"node-b") % 16
    assert k.invoker_id("node-b", {}) == k.invoker_id("node-b", {})
    assert all(0 <= k.invoker_id(f"n{i}", {}) < 16 for i in range(100))
    with pytest.raises(ValueError, match="outside"):
        k.invoker_id("node-a", {"node-a": 16})


def test_init_topics_cover_every_topic() -> None:
    from contracts.topics import MAX_INVOKERS

    k = _k8s_init()
    assert k.MAX_INVOKERS == MAX_INVOKERS
    names = k.topic_names("p")
    t = Topics("p")
    for name in (t.commands, t.entities, t.subjects, t.access, t.invocations, t.completions,
                 t.health, t.progress, t.deadletter, t.invoker(0), t.invoker(MAX_INVOKERS - 1)):
        assert name in names
    assert t.feed_state not in names  # compacted: the feed service creates it with its configs
    assert all(n.startswith("p.") for n in names)
    assert len(names) == len(set(names))


def test_feeds_reach_connect_at_the_configured_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # The chart sets WSK_CONNECT_HOST to the Connect Service (locally Connect is on 127.0.0.1).
    import feeds.connect

    monkeypatch.setenv("WSK_CONNECT_HOST", "sw-streamwhisk-connect.sw.svc")
    mod = importlib.reload(feeds.connect)
    try:
        assert mod.HOST == "sw-streamwhisk-connect.sw.svc"
    finally:
        monkeypatch.delenv("WSK_CONNECT_HOST")
        importlib.reload(feeds.connect)
