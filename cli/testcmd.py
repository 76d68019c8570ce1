"""`streamwhisk test`: install what is missing, start the shared services, run the whole pytest suite."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from contracts.settings import REPO, Settings


def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    # The session fixture (tests/stack.py) installs and starts Kafka, PouchDB Server, dockerd and the images
    # when they are not running, and a private set of Streamwhisk processes; so pytest alone is the whole run.
    # It is done here first as well: on a fresh machine building every runtime image takes longer than a test's
    # timeout, which the fixture's setup would count against the first integration test.
    # The chart tests' helm and schema validator likewise (built from the Go module proxy and PyPI on first use).
    from cli import helmtools
    from tests.stack import start_infra

    start_infra()
    try:
        helmtools.ensure_helm()
        helmtools.ensure_validator()
    except helmtools.ToolError as e:  # the chart tests report it themselves
        print(f"[helm] warning: {e}", file=sys.stderr)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-ra", *args.pytest_args]
    code = subprocess.call(argv, cwd=REPO, env=dict(os.environ))
    if code == 5:
        print("error: pytest collected no tests", file=sys.stderr)
    return code


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments for pytest (e.g. -k skeleton)")
