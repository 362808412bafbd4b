#!/usr/bin/env python3
"""
Run trial over one part of the test suite, as tox and ``.ci/run`` do.

Usage::

    python tools/run_trial.py unit [TRIAL-OPTION=VALUE ...] [TEST ...]
    python tools/run_trial.py integration [TRIAL-OPTION=VALUE ...] [TEST ...]

``unit`` runs every module and package of ``tests/`` except
``tests/integration``; ``integration`` runs ``tests.integration`` (Pebble).
Naming tests (``tests.test_util``, ``tests.integration.test_seed_flow``)
runs only those.  Arguments starting with ``-`` go to trial and take their
value after ``=`` (``--jobs=2``, ``--temp-directory=DIR``).

When the ``CI`` environment variable is set, a run of integration tests
with any skipped test fails: a skipped Pebble test in CI is a test that did
not run.  A run that executed no test fails too.  The last line printed is
``<part>: N passed, N failed, N skipped``.
"""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
PARTS = ("unit", "integration")

# Trial's closing line: "PASSED (successes=3)" or
# "FAILED (failures=1, errors=1, skips=2, successes=10)".
_SUMMARY = re.compile(r"^(PASSED|FAILED)(?: \((?P<counts>[^)]*)\))?\s*$")


def default_tests(part: str) -> list[str]:
    """
    The test modules and packages of ``part`` when none is named.
    """
    if part == "integration":
        return ["tests.integration"]
    return sorted(
        f"tests.{module.name}"
        for module in pkgutil.iter_modules([str(REPOSITORY / "tests")])
        if module.name != "integration" and not module.name.startswith("_")
    )


def parse_summary(output: str) -> dict[str, int] | None:
    """
    The counts of trial's closing line (``successes``, ``failures``,
    ``errors``, ``skips``, ...), or ``None`` if there is no such line.
    """
    counts: dict[str, int] | None = None
    for line in output.splitlines():
        match = _SUMMARY.match(line.strip())
        if match is None:
            continue
        counts = {}
        for item in (match.group("counts") or "").split(","):
            name, _, value = item.strip().partition("=")
            if name and value.isdigit():
                counts[name] = int(value)
    return counts


def skipped_tests(output: str) -> list[str]:
    """
    The lines of trial's report that mark a test as skipped.
    """
    return [line.strip() for line in output.splitlines() if "[SKIPPED]" in line]


def run(part: str, arguments: Sequence[str]) -> int:
    """
    Run trial for ``part`` with ``arguments``, echoing its output, and
    return the exit status.
    """
    options = [argument for argument in arguments if argument.startswith("-")]
    tests = [argument for argument in arguments if not argument.startswith("-")]
    if not tests:
        tests = default_tests(part)
    if not tests:
        print(f"{part}: no test modules found", file=sys.stderr)
        return 1
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY), *filter(None, [environment.get("PYTHONPATH")])]
    )
    command = [sys.executable, "-m", "twisted.trial", *options, *tests]
    print("$", " ".join(command), flush=True)
    process = subprocess.Popen(
        command,
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None
    captured: list[str] = []
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        captured.append(line)
    status = process.wait()
    output = "".join(captured)

    counts = parse_summary(output) or {}
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = (
        counts.get("failures", 0)
        + counts.get("errors", 0)
        + counts.get("unexpectedSuccesses", 0)
    )
    skipped = counts.get("skips", 0)
    if status == 0 and passed + failed + skipped == 0:
        print(f"{part}: trial ran no test", file=sys.stderr)
        status = 1
    if part == "integration" and os.environ.get("CI") and skipped:
        print(
            f"{part}: {skipped} test(s) skipped with CI set; in CI every "
            "integration test must run:",
            *skipped_tests(output),
            sep="\n  ",
            file=sys.stderr,
        )
        status = status or 1
    if status != 0 and failed == 0:
        # Trial failed without counting a failure (an import error, say).
        failed = 1
    print(f"{part}: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return status


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in PARTS:
        print(__doc__, file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
