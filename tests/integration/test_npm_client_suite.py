"""The `openwhisk` npm client's own integration tests (test/integration/*.test.js) against the local API, unchanged.

The files come from the npm registry: openwhisk@3.9.0 is the last release whose tarball ships test/integration
(later ones leave the tests out, and GitHub is not reachable here). tests/clients/openwhisk-suite pins it with the
runner and module its package.json names for them (ava ^0.15.2, jszip ^3.1.3); `npm ci` installs them on first use.

They run as the repository runs them: from the package's root, by its own `npm run test-integration` script (ava
with the package's `ava` and `babel` settings), with the four variables its test/integration/README.md asks for,
a fresh subject's key and namespace. The package is copied out of node_modules to a fresh directory beside it
for each run, because babel-core/register, which its `ava` setting loads, leaves alone only files under a
`node_modules` directory relative to the working directory: run from inside node_modules/openwhisk it would
compile the dependencies too, and fails on the first whose own babel settings name a preset that is not installed.
`__OW_API_HOST` carries the scheme (the client takes `http://...` as given; https only without one).

Every test the files declare runs, none skipped (feeds.test.js skips its test in the suite's "insecure" mode, which
`npm_config_argv` turns on; it is not set), and each passes but the five in KNOWN: they assert what OpenWhisk
answered in 2017 and answers differently now (the repository changed those tests since; see each reason).

The repository's current tests (test/integration of apache/openwhisk-client-js) are not in any published package.
With a checkout of that repository at WSK_CLIENT_JS_CHECKOUT, the second test runs them as its package.json does
(`npm ci`, then ava) against the stack; without one it is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from contracts import keys
from tests.stack import CLIENTS, Stack

pytestmark = pytest.mark.integration

SUITE = CLIENTS / "openwhisk-suite"
VERSION = "3.9.0"
# The suite's README asks for an API gateway token too (routes.test.js); the gateway authenticates with the key.
APIGW_TOKEN = "DUMMY TOKEN"

# Tests of 3.9.0 that assert 2017 behaviour, by title: what current OpenWhisk answers, as we do.
KNOWN = {
    f"namespaces{' ' + chr(0x203A) + ' '}retrieve individual namespaces":
        "GET /api/v1/namespaces/{ns} is not routed in OpenWhisk's Namespaces.scala (404); the client stopped "
        "calling it in 2018 (namespaces.get lists the four collections)",
    f"triggers{' ' + chr(0x203A) + ' '}fire a trigger":
        "a trigger without rules answers 204 with no body in OpenWhisk (Triggers.scala); the test reads a body "
        "(the repository's test now adds a rule first)",
    **{f"actions{' ' + chr(0x203A) + ' '}{title}":
       "expects exec.kind 'nodejs:6' for a default nodejs action; the default kind stores as the real version "
       "(README), and the repository's test now checks startsWith('nodejs')"
       for title in ("create and update an action", "create, get and delete an action",
                     "create, get and delete with parameters an action")},
}
DECLARED = re.compile(r"^(?:test(?:\.serial)?|tempTest)\('([^']+)'", re.MULTILINE)
AVA_SEP = " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} "
TAP_TEST = re.compile(r"^(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO))?$", re.MULTILINE)
TAP_COUNT = re.compile(r"^# (tests|pass|fail|skip) (\d+)$", re.MULTILINE)


def suite_package(dest: Path) -> Path:
    """A fresh copy of the installed openwhisk@3.9.0 package at dest (npm ci in tests/clients/openwhisk-suite
    on first use), beside that directory's node_modules, where node finds ava, jszip and the client's modules."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed for the real-client tests (Debian: apt-get install nodejs npm)")
    installed = SUITE / "node_modules" / "openwhisk"
    if not ((installed / "test" / "integration").is_dir() and (SUITE / "node_modules" / "ava").is_dir()):
        # install scripts are not needed (the only one, core-js's, prints a banner)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=SUITE, check=True,
                       capture_output=True, timeout=900)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(installed, dest)
    return dest


def declared_tests(package: Path) -> set[str]:
    """Every test the files declare, titled as ava reports them: `<file without .test.js> > <title>` (with ava's
    separator, U+203A)."""
    titles = set()
    for f in sorted((package / "test" / "integration").glob("*.test.js")):
        found = DECLARED.findall(f.read_text())
        assert found, f"no tests found in {f.name}"
        titles |= {f"{f.name.removesuffix('.test.js')}{AVA_SEP}{t}" for t in found}
    return titles


def test_openwhisk_npm_client_integration_suite(stack: Stack, tmp_path: Path) -> None:
    package = suite_package(SUITE / f"openwhisk-{VERSION}")
    assert '"version": "3.9.0"' in (package / "package.json").read_text()
    expected = declared_tests(package)

    ns = "owsuite"
    key = stack.subject(ns)
    node = shutil.which("node") or "node"
    env = {
        "PATH": os.pathsep.join(dict.fromkeys([str(Path(node).parent), "/usr/bin", "/bin"])),
        "HOME": str(tmp_path), "__OW_API_KEY": key, "__OW_API_HOST": stack.url, "__OW_NAMESPACE": ns,
        "__OW_APIGW_TOKEN": APIGW_TOKEN,
    }
    run = subprocess.run(["npm", "run", "--no-update-notifier", "test-integration", "--", "--tap"], cwd=package,
                         env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    out = run.stdout
    report = f"ava exited {run.returncode}\n{out[-6000:]}\n--- stderr ---\n{run.stderr[-6000:]}"
    assert keys.split(key)[1] not in out + run.stderr, "the suite printed the auth key's secret"

    results = {title: (status, directive) for status, title, directive in TAP_TEST.findall(out)}
    failed = sorted(t for t, (status, _) in results.items() if status != "ok")
    skipped = sorted(t for t, (_, directive) in results.items() if directive)
    passed = {t for t, (status, directive) in results.items() if status == "ok" and not directive}
    counts = {k: int(v) for k, v in TAP_COUNT.findall(out)}

    assert set(failed) == set(KNOWN) & expected, f"failed: {failed}\n{report}"
    assert not skipped, f"skipped: {skipped}\n{report}"
    want = expected - set(KNOWN)
    assert passed == want, f"not passed: {sorted(want - passed)}; unknown: {sorted(passed - want)}\n{report}"
    assert counts == {"tests": len(expected), "pass": len(want), "fail": len(failed)}, f"{counts}\n{report}"


@pytest.mark.skipif(not os.environ.get("WSK_CLIENT_JS_CHECKOUT"),
                    reason="WSK_CLIENT_JS_CHECKOUT (a checkout of apache/openwhisk-client-js) is not set")
def test_openwhisk_npm_client_repository_suite(stack: Stack, tmp_path: Path) -> None:
    """The repository's current test/integration, all of it, unchanged, with the runner its lock file pins."""
    package = tmp_path / "openwhisk-client-js"
    shutil.copytree(Path(os.environ["WSK_CLIENT_JS_CHECKOUT"]), package,
                    ignore=shutil.ignore_patterns("node_modules", ".git"))
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=package, check=True,
                   capture_output=True, timeout=900)
    expected = declared_tests(package)
    ns = "owrepo"
    key = stack.subject(ns)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "__OW_API_KEY": key, "__OW_API_HOST": stack.url,
           "__OW_NAMESPACE": ns, "__OW_APIGW_TOKEN": APIGW_TOKEN}
    run = subprocess.run(["npx", "ava", "--tap", "--serial", *sorted(
        str(p.relative_to(package)) for p in (package / "test" / "integration").glob("*.test.js"))],
        cwd=package, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    report = f"ava exited {run.returncode}\n{run.stdout[-6000:]}\n--- stderr ---\n{run.stderr[-4000:]}"
    results = {title: status for status, title, _ in TAP_TEST.findall(run.stdout)}
    assert results and all(s == "ok" for s in results.values()), report
    assert len(results) >= len(expected), report
    assert run.returncode == 0, report
