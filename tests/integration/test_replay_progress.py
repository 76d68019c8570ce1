"""A real `replay --no-switch` reports its progress on the log: the projections process serves it as
streamwhisk_replay_* metrics, and a fresh follower reads the last runs back from the topic."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from cli.services import settings_env
from contracts import events
from contracts.events import ReplayProgress
from contracts.settings import REPO, Settings
from contracts.topics import Topics
from projections import catalog, replay
from projections.couch import Couch
from tests import kafkalog
from tests.integration.test_metrics import endpoint, follows_contract, scrape, total, wait_for
from tests.stack import Stack

pytestmark = pytest.mark.integration


def reports(settings: Settings, replay_id: str | None) -> list[ReplayProgress]:
    """Every report of one run (None: of every run), in log order, read back from the replays topic."""
    evs = (events.decode(v) for _, v in kafkalog.messages(settings, [Topics(settings.prefix).replays]))
    return [e for e in evs if isinstance(e, ReplayProgress) and replay_id in (None, e.replay_id)]


@pytest.fixture(scope="module")
def run(stack: Stack) -> Any:
    p = subprocess.run([sys.executable, "-m", "cli.main", "replay", "--no-switch", "--json"],
                       env=settings_env(stack.settings), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    out: dict[str, Any] = orjson.loads(p.stdout.strip().splitlines()[-1])
    yield out
    couch = Couch(stack.settings.couchdb)  # other tests count generations: leave none behind
    for db in catalog.names(stack.settings, out["generation"]).values():
        couch.delete_db(db)


def test_replay_reports_in_batches(stack: Stack, run: dict[str, Any]) -> None:
    got = reports(stack.settings, run["replay_id"])
    assert got[0].phase == "started" and got[0].events == 0 and got[0].total == run["total"]
    last = got[-1]
    assert last.phase == "done" and last.finished and not last.switch and not last.switched
    assert (last.generation, last.events, last.total, last.docs) == (
        run["generation"], run["events"], run["total"], run["docs"])
    assert last.topics == [f"{stack.settings.prefix}.{k}" for k in replay.SOURCE_KINDS]
    assert all(e.phase == "reading" for e in got[1:-1])
    assert len(got) <= run["seconds"] / replay.REPORT_EVERY_S + 3  # batched: ~1 a second, plus first and last
    assert run["events"] > len(got)  # never one per event


def events_into(settings: Settings, generation: int) -> int:
    """Events read by every run into `generation` (earlier tests may have replayed into that number too; the
    counter adds up every run): the last report of each run, from the log."""
    last = {e.replay_id: e.events for e in reports(settings, None) if e.generation == generation}
    return sum(last.values())


def test_projections_serve_the_replay_progress(stack: Stack, run: dict[str, Any]) -> None:
    gen = str(run["generation"])
    want = events_into(stack.settings, run["generation"])
    assert want >= run["events"]

    def reached() -> bool:
        got = scrape(endpoint(stack, "projections"))
        assert total(got, "streamwhisk_replay_progress_ratio", generation=gen) == 1.0
        assert total(got, "streamwhisk_replay_events_total", generation=gen) == want
        return True

    wait_for("replay progress on the projections' /metrics", reached, timeout=30)
    served = follows_contract(endpoint(stack, "projections"))
    assert {"streamwhisk_replay_progress_ratio", "streamwhisk_replay_events_total"} <= served


async def test_a_fresh_follower_reads_the_last_runs_back(stack: Stack, run: dict[str, Any]) -> None:
    """What a restarted projections process does first: the same figures, from the topic alone."""
    gen = str(run["generation"])
    want = await asyncio.to_thread(events_into, stack.settings, run["generation"])
    stop = asyncio.Event()
    task = asyncio.create_task(replay.follow(stack.settings, stop))
    try:
        for _ in range(100):
            if REGISTRY.get_sample_value("streamwhisk_replay_events_total", {"generation": gen}) == want:
                break
            await asyncio.sleep(0.1)
        assert REGISTRY.get_sample_value("streamwhisk_replay_progress_ratio", {"generation": gen}) == 1.0
        assert REGISTRY.get_sample_value("streamwhisk_replay_events_total", {"generation": gen}) == want
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_failed_replay_says_so_last(stack: Stack) -> None:
    """A replay that stops early (here: its time is up at once) ends its reports with `failed` and the reason."""
    gen = 900 + len(catalog.existing_generations(Couch(stack.settings.couchdb).all_dbs(), stack.settings))
    try:
        with pytest.raises(replay.ReplayError, match="timed out"):
            await replay.replay(stack.settings, switch=False, generation=gen, timeout_s=0.0)
        runs = [e for e in await asyncio.to_thread(reports, stack.settings, None) if e.generation == gen]
        assert [e.phase for e in runs] == ["started", "failed"], runs
        assert runs[-1].finished and runs[-1].ratio < 1.0 and runs[-1].events < runs[-1].total
        assert "ReplayError: replay timed out" in (runs[-1].error or "")
    finally:
        couch = Couch(stack.settings.couchdb)
        for db in catalog.names(stack.settings, gen).values():
            couch.delete_db(db)
