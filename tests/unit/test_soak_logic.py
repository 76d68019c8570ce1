"""The soak's pure parts (bench/soak.py): its kill schedule, the memory fit and what it reads from records."""

from __future__ import annotations

import doctest
import itertools
import random

from bench import soak


def test_doctests() -> None:
    assert doctest.testmod(soak).failed == 0


def test_schedule_is_seeded_and_kills_every_part_before_repeating_one() -> None:
    cfg = soak.Config(minutes=60, every=4)
    plan = soak.schedule(cfg, random.Random(7))
    assert plan == soak.schedule(cfg, random.Random(7))
    assert len(plan) == 14 and all(b - a > 60 for (a, _), (b, _) in itertools.pairwise(plan))
    assert sorted(p for _, p in plan[:len(cfg.parts())]) == sorted(cfg.parts())
    assert plan[-1][0] < 60 * 60


def test_memory_fits_the_longest_incarnation_after_its_warmup() -> None:
    samples = [(t * 30.0, "api", 1, 100_000 + t * 1024) for t in range(20)]  # +1 MiB per 30 s = 120 MiB/h
    samples += [(600 + t * 30.0, "api", 2, 50_000) for t in range(5)]  # a short later incarnation
    m = soak.memory(samples, warmup_s=120)["api"]
    assert m["pid"] == 1 and m["incarnations"] == 2 and m["samples"] == 16
    assert m["slope_mib_per_h"] == 120.0


def test_rule_and_component_activations_are_read_from_records_and_watchdog_closures_known() -> None:
    trigger = {"logs": ['{"statusCode":0,"success":true,"activationId":"' + "a" * 32 + '","rule":"r"}']}
    sequence = {"logs": ["b" * 32, "c" * 32]}
    assert soak.named_in_logs([trigger, sequence]) == {"a" * 32, "b" * 32, "c" * 32}
    closed = {"response": {"result": {"error": "The invoker running this activation (invoker1) stopped responding"}}}
    assert soak.is_watchdog(closed) and not soak.is_watchdog({"response": {"result": {"py": 1}}})
