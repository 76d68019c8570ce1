from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from contracts.settings import Settings
from tests.chaos import faults

LONG = os.environ.get("WSK_LONG_TESTS") == "1"


@pytest.fixture(scope="session")
def private_infra(infra: Settings) -> Iterator[Settings]:
    """Kafka and PouchDB Server of our own, so the broker-restart and DB-outage tests disturb nobody."""
    s = faults.private_infra(infra)
    yield s
    faults.stop_private_infra(s)
