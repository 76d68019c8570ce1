"""`streamwhisk test ARGS`: everything after `test` reaches pytest verbatim, a leading option included."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import pytest

from cli import main as cli_main


@pytest.mark.parametrize("rest", [
    ["-k", "skeleton", "-x"], ["-m", "kubernetes", "tests/k8s"], ["tests/k8s", "-m", "kubernetes"], [],
])
def test_test_passes_its_arguments_to_pytest(monkeypatch: pytest.MonkeyPatch, rest: list[str]) -> None:
    seen: dict[str, Any] = {}

    def run(_settings: Any, args: argparse.Namespace) -> int:
        seen["args"] = args.pytest_args
        return 0

    monkeypatch.setitem(cli_main.COMMANDS, "test", dataclasses.replace(cli_main.COMMANDS["test"], run=run))
    assert cli_main.main(["test", *rest]) == 0
    assert seen["args"] == rest
