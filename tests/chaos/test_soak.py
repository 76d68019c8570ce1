"""The soak (bench/soak.py, #19), short: a stack started by `up`, mixed load for about 3 minutes, 2 parts killed
and a replay in the middle; nothing accepted lost, nothing run twice, every acknowledged write readable, `down`
leaves nothing. The one-hour run is `./streamwhisk soak --minutes 60 --seed 7` (or WSK_SOAK_MINUTES=60 here);
its figures, memory slopes included, are in RELIABILITY.md."""

from __future__ import annotations

import os

import pytest

from bench import soak
from contracts.settings import Settings
from tests.chaos import faults

MINUTES = float(os.environ.get("WSK_SOAK_MINUTES", "3"))

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(int(MINUTES * 60) + 1500)]


def test_soak_loses_nothing_and_runs_nothing_twice(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    short = MINUTES < 30  # seed 1: the Faust worker, then an invoker, are killed in 3 minutes
    cfg = soak.Config(minutes=MINUTES, seed=int(os.environ.get("WSK_SOAK_SEED", "1")),
                      every=1.2 if short else 4.0, warmup=0.5 if short else 5.0, settle=240,
                      out=tmp_path_factory.mktemp("soak") / "soak.json")
    r = soak.run(cfg, infra)
    a, w = r["activations"], r["writes"]
    faults.report("soak", {"minutes": MINUTES, "requests": r["requests"]["total"], "accepted": a["accepted"],
                           "named_in_records": a["named_in_records"], "lost": a["lost"], "doubled": a["doubled"],
                           "closed_then_completed": a["closed_then_completed"], "writes": w["acknowledged"],
                           "mismatches": w["mismatches"],
                           "kills": [(k["part"], k.get("serving_s")) for k in r["kills"]]})
    assert a["accepted"] > 50 and a["named_in_records"] > 0 and w["acknowledged"] > 0
    assert r["kills"] and all("error" not in k for k in r["kills"]), r["kills"]
    assert "error" not in r.get("replay", {}), r.get("replay")
    assert a["lost"] == 0, a["lost_ids"]
    assert a["doubled"] == 0, a["doubled_ids"]
    assert not a["wrong_results"], a["wrong_results"]
    assert w["mismatches"] == 0, w["mismatched"]
    assert not r["down"], r["down"]
