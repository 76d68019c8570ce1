"""Property-based fuzzing of every operation in our own /api/v1/api-docs (spec S8): no 5xx, and every error
is OpenWhisk's {"error", "code"}. OpenWhisk's apiv1swagger.json is not reachable here, so only our spec is used."""

from __future__ import annotations

import os
import zlib
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from contracts import keys
from tests.stack import Stack

pytestmark = [pytest.mark.security, pytest.mark.integration]

EXAMPLES = int(os.environ.get("WSK_FUZZ_EXAMPLES", "12"))


def _check(case: Any, stack: Stack, problems: list[str], seen: Counter[int]) -> None:
    # Half the cases use the caller's own namespace, so fuzzing reaches past the 403 of a random one.
    if "namespace" in (case.path_parameters or {}) and zlib.crc32(repr(case.path_parameters).encode()) % 2:
        case.path_parameters["namespace"] = "_"
    if case.method.upper() == "POST" and "/actions/" in case.path:
        case.query = {**(case.query or {}), "timeout": 5000}  # a blocking invoke of a fuzzed action is short
    uid, key = keys.split(keys.GUEST_KEY)
    r = case.call(base_url=f"{stack.url}/api/v1", auth=(uid, key), timeout=60)
    seen[r.status_code] += 1
    where = f"{case.method} {case.formatted_path} {case.query} -> {r.status_code}"
    if r.status_code >= 500 and r.status_code != 502:  # 502: an action's own error, as in OpenWhisk
        problems.append(f"{where}: {r.text[:200]}")
    elif r.status_code >= 400:
        try:
            body = r.json()
        except ValueError:
            body = None
        if not (isinstance(body, dict) and {"error", "code"} <= set(body)):
            problems.append(f"{where}: not an {{error, code}} body: {r.text[:200]}")


def test_fuzz_our_openapi(stack: Stack) -> None:
    """Every operation of the served spec, EXAMPLES valid and invalid cases each (schemathesis 4 driven directly:
    its pytest plugin does not run under pytest 9)."""
    spec = schemathesis.openapi.from_url(f"{stack.url}/api/v1/api-docs")
    problems: list[str] = []
    seen: Counter[int] = Counter()
    ops = 0
    for result in spec.get_all_operations():
        op = result.ok()
        ops += 1

        @given(case=op.as_strategy(GenerationMode.POSITIVE) | op.as_strategy(GenerationMode.NEGATIVE))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate])
        def run(case: Any) -> None:
            _check(case, stack, problems, seen)

        run()
    assert ops >= 20
    print(f"\n[figures] schemathesis: {ops} operations x {EXAMPLES} examples, {sum(seen.values())} requests, "
          f"statuses {dict(sorted(seen.items()))}, {len(problems)} problems")
    assert not problems, "\n".join(problems[:20])
