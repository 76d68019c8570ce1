from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.settings import Settings


@pytest.fixture(scope="session")
def infra() -> Settings:
    from tests.stack import start_infra

    return start_infra()


@pytest.fixture(scope="session")
def stack(infra: Settings) -> Iterator[object]:
    from tests.stack import start_stack

    s = start_stack(infra)
    yield s
    s.stop()
