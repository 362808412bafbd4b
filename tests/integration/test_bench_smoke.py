"""
The client benchmark's smoke run (``python -m benchmarks client --smoke``):
five certificates per run against its own Pebble, so that the benchmark
keeps working.  Its figures are not checked: five certificates say little.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.integration.pebble import TypedAssertions, require_pebble

REPOSITORY = Path(__file__).resolve().parents[2]

# The labels of the benchmark's runs, in the order it prints them.
RUN_LABELS = [
    "txacme, C=16, EC P-256",
    "txacme, C=16, RSA-2048",
    "txacme, C=8, EC P-256",
    "acme, 8 threads, EC P-256",
    "acme, 1 thread, EC P-256",
    "acme, 8 threads, default polling",
]


class ClientBenchmarkSmokeTests(TypedAssertions, TestCase):
    """``python -m benchmarks client --smoke`` runs and prints its table."""

    timeout = 300

    def setUp(self) -> None:
        require_pebble()

    def test_smoke(self) -> Deferred[None]:
        """
        The smoke run exits 0 after issuing and verifying five certificates
        in each of its runs; it prints the table with a row per run, the
        requests by endpoint, txacme's ratios to certbot's ``acme`` and the
        targets, and finds Pebble's log in agreement with its own counts.
        """

        results = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        results.parent.mkdir(parents=True, exist_ok=True)

        async def test() -> None:
            environment = dict(os.environ)
            environment["PYTHONPATH"] = os.pathsep.join(
                [str(REPOSITORY / "src"), str(REPOSITORY)]
                + [path for path in [environment.get("PYTHONPATH")] if path]
            )
            output, errors, code = await getProcessOutputAndValue(  # type: ignore[no-untyped-call]
                sys.executable,
                ["-m", "benchmarks", "client", "--smoke", "--json", str(results)],
                env=environment,
                path=str(REPOSITORY),
            )
            report = output.decode() + errors.decode()
            self.assertEqual(code, 0, report)
            lines = report.splitlines()
            header = [line for line in lines if line.startswith("run ")]
            self.assertEqual(len(header), 1, report)
            for label in ("wall ms/cert", "client CPU ms/cert", "requests/cert"):
                self.assertIn(label, header[0])
            rows = [
                line.split("  ")[0].strip()
                for line in lines[lines.index(header[0]) + 2 :]
                if line.strip()
            ][: len(RUN_LABELS)]
            self.assertEqual(rows, RUN_LABELS, report)
            for section in (
                "Requests per certificate by endpoint",
                "client CPU per certificate",
                "Targets (issue 6):",
                "Pebble's log agrees with the client-side counts",
            ):
                self.assertIn(section, report)

            self.check_results(results)

        return Deferred.fromCoroutine(test())

    def check_results(self, path: Path) -> None:
        """
        The JSON output has every run, each with five certificates issued
        and verified, after a set-up of three requests.
        """
        recorded = json.loads(path.read_text())
        self.assertEqual(len(recorded["results"]), len(RUN_LABELS))
        for run in recorded["results"].values():
            self.assertEqual((run["issued"], run["verified"]), (5, 5), run)
            self.assertEqual(sum(run["setup"].values()), 3, run)
