"""Replay progress on the log: the event, when the replay reports, the metrics fold and the console's view of it."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from api import console
from contracts import bus, events, metrics
from contracts.events import ReplayProgress
from contracts.topics import Topics
from projections import replay


def ev(**kw: Any) -> ReplayProgress:
    return ReplayProgress(**{"replay_id": "r1", "generation": 3, **kw})


def test_the_event_round_trips_and_is_registered() -> None:
    e = ev(phase="reading", events=40, total=100, docs=12, events_per_s=20.0, topics=["p.entities"])
    assert events.decode(events.encode(e)) == e
    assert events.EVENT_TYPES["replay.progress"] is ReplayProgress
    # a report from a later version with a field this one does not know still decodes
    d = {**events.to_dict(e), "eta_s": 3}
    assert events.from_dict(d) == e


def test_ratio_and_finished() -> None:
    assert ev(events=40, total=100).ratio == 0.4
    assert ev(events=0, total=0).ratio == 0.0
    assert ev(phase="done", events=98, total=100).ratio == 1.0  # offsets with gaps: read all, fewer events
    assert ev(phase="failed", events=50, total=100).ratio == 0.5
    assert ev(phase="done").finished and ev(phase="failed").finished
    assert not ev(phase="started").finished and not ev(phase="switching").finished


def test_topic_is_operational() -> None:
    t = Topics("p")
    assert t.replays == "p.replays"
    cfg = bus.topic_configs(t.replays)
    assert cfg["cleanup.policy"] == "delete" and int(cfg["retention.ms"]) > 0


def test_reports_at_most_every_second_plus_first() -> None:
    assert replay.report_due(None, 100.0)
    assert not replay.report_due(100.0, 100.5)
    assert replay.report_due(100.0, 101.0)


def test_progress_event_from_stats() -> None:
    s = replay.Stats(total=1000, events=250, docs=40, seconds=2.0, generation=7)
    s.poison.append({"offset": 1})
    e = replay.progress_event(s, "reading", in_place=False, switch=False, topics=["p.subjects"])
    assert (e.replay_id, e.generation, e.events, e.total, e.docs, e.poison) == (s.replay_id, 7, 250, 1000, 40, 1)
    assert e.events_per_s == 125.0 and not e.switch and e.topics == ["p.subjects"]
    assert s.summary()["replay_id"] == s.replay_id


class Sent:
    """Stands in for the producer in this unit test: records what would go to Kafka."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key))

    async def flush(self) -> None:
        pass


def test_reporter_batches_reports() -> None:
    async def go() -> list[ReplayProgress]:
        p = Sent()
        s = replay.Stats(total=10, generation=4)
        r = replay.Reporter(p, "p.replays", s, in_place=False, switch=True, sources=["p.subjects"])  # type: ignore[arg-type]
        await r.report("started", force=True)
        for n in range(1, 11):  # many batches within a second: none of them sent
            s.events = n
            await r.report("reading")
        await r.report("done", force=True)
        assert all(t == "p.replays" and k == b"4" for t, _, k in p.sent)
        return [e for _, v, _ in p.sent if isinstance(e := events.decode(v), ReplayProgress)]

    got = asyncio.run(go())
    assert [e.phase for e in got] == ["started", "done"]
    assert got[-1].events == 10 and got[-1].ratio == 1.0


def sample(name: str, gen: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"generation": gen})


def test_metrics_fold_counts_every_run() -> None:
    gen = 990001  # a generation no other test uses (the registry is the process's)
    for e in (ev(generation=gen, events=0, total=100, phase="started"), ev(generation=gen, events=60, total=100),
              ev(generation=gen, events=98, total=100, phase="done")):
        replay.to_metrics(e)
    assert sample("streamwhisk_replay_progress_ratio", str(gen)) == 1.0
    assert sample("streamwhisk_replay_events_total", str(gen)) == 98
    replay.to_metrics(ev(generation=gen, events=98, total=100, phase="done"))  # read again: no double count
    assert sample("streamwhisk_replay_events_total", str(gen)) == 98
    replay.to_metrics(ev(generation=gen, replay_id="r2", events=30, total=100))  # the generation rebuilt again
    assert sample("streamwhisk_replay_progress_ratio", str(gen)) == 0.3
    assert sample("streamwhisk_replay_events_total", str(gen)) == 128
    metrics.replay_progress(gen + 1, 5, 0)
    assert sample("streamwhisk_replay_progress_ratio", str(gen + 1)) == 1.0


def test_console_shows_the_last_report_of_each_run() -> None:
    now = 1_000_000
    reports = [ev(replay_id="a", generation=2, at=now - 60_000, phase="done", events=10, total=10),
               ev(replay_id="b", generation=3, at=now - 3000, phase="started", total=50),
               ev(replay_id="b", generation=3, at=now - 1000, events=20, total=50, events_per_s=1234.0),
               ev(replay_id="c", generation=4, at=now - 30_000, events=5, total=50),
               ev(replay_id="d", generation=5, at=now - 2000, phase="failed", error="ReplayError: <timed out>")]
    runs = console.replay_runs(reports)
    assert [r.replay_id for r in runs] == ["b", "d", "c", "a"]
    assert [console.run_state(r, now) for r in runs] == ["running", "failed", "silent", "done"]
    html = console.runs_html(runs, now)
    assert 'class="run running"' in html and "20/50" in html and "40%" in html and "1,234" in html
    assert "&lt;timed out&gt;" in html and "<timed out>" not in html
    assert "30 s without a report" in html
    assert "No replay has reported" in console.runs_html([], now)
    s = console.ReplayStatus(generation=1, switched_at=None, resume={}, generations={1: {"whisks": 1}},
                             runs=runs, now=now)
    page = console.replay_html(s)
    assert page.index("table class=\"list runs\"") < page.index("live-gen")  # the events first, CouchDB after
    j = s.as_json()["runs"][0]
    assert j["generation"] == 3 and j["state"] == "running" and j["ratio"] == 0.4 and j["finished"] is False
