"""
The smoke runs of the benchmarks that need Pebble: the client benchmark's
(``python -m benchmarks client --smoke``: five certificates per run against
its own Pebble) and the fault benchmark's (``python -m benchmarks fault
--smoke``: five certificates without faults, five through the fault proxy
at 25% faults and half the nonces rejected), so that the benchmarks keep
working.  Their figures are not checked, five certificates say little;
the fault benchmark's smoke run must still lose no certificate and hang
nowhere.
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
    "txacme, C=16, default polling",
    "txacme, C=16, fixed 50 ms polling",
]

# The fault benchmark's smoke runs, as it names them.
FAULT_RUNS = ["0/0", "25/50"]


def _environment() -> dict[str, str]:
    """The environment of a benchmark process: this checkout's txacme."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY / "src"), str(REPOSITORY)]
        + [path for path in [environment.get("PYTHONPATH")] if path]
    )
    return environment


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
            output, errors, code = await getProcessOutputAndValue(  # type: ignore[no-untyped-call]
                sys.executable,
                ["-m", "benchmarks", "client", "--smoke", "--json", str(results)],
                env=_environment(),
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
                "Polling (issue 11)",
                "Targets (issue 11, polling):",
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


class FaultBenchmarkSmokeTests(TypedAssertions, TestCase):
    """``python -m benchmarks fault --smoke`` runs and prints its report."""

    timeout = 300

    def setUp(self) -> None:
        require_pebble()

    def test_smoke(self) -> Deferred[None]:
        """
        The smoke run exits 0 after its two runs; it prints the table with
        a row per run, the faults by kind, the requests by endpoint and the
        targets of issue 11; the run without faults issues all five
        certificates, and no run orphans a certificate, hangs, or leaves
        the client unable to issue again.
        """

        results = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        results.parent.mkdir(parents=True, exist_ok=True)

        async def test() -> None:
            output, errors, code = await getProcessOutputAndValue(  # type: ignore[no-untyped-call]
                sys.executable,
                ["-m", "benchmarks", "fault", "--smoke", "--json", str(results)],
                env=_environment(),
                path=str(REPOSITORY),
            )
            report = output.decode() + errors.decode()
            self.assertEqual(code, 0, report)
            lines = report.splitlines()
            header = [line for line in lines if line.startswith("run (faults/nonces")]
            self.assertEqual(len(header), 1, report)
            for label in ("issued", "orphans", "requests/cert", "usable"):
                self.assertIn(label, header[0])
            rows = [
                line.split()[0]
                for line in lines[lines.index(header[0]) + 2 :]
                if line.strip()
            ][: len(FAULT_RUNS)]
            self.assertEqual(rows, FAULT_RUNS, report)
            for section in (
                "Faults injected, by kind",
                "Requests per certificate through the proxy, by endpoint",
                "Targets (issue 11):",
            ):
                self.assertIn(section, report)
            self.check_results(results, report)

        return Deferred.fromCoroutine(test())

    def check_results(self, path: Path, report: str) -> None:
        """
        The JSON output has both runs: five issuances each, succeeded or
        failed, none hung; every certificate returned verified; no order
        Pebble finalized without the client receiving its certificate; the
        client issued once more after each run; the run without faults
        issued all five and saw no fault, the other saw some.
        """
        recorded = json.loads(path.read_text())
        self.assertEqual(list(recorded["results"]), FAULT_RUNS)
        for run in recorded["results"].values():
            self.assertEqual(run["issued"] + run["failed"], 5, report)
            self.assertEqual(run["hangs"], 0, report)
            self.assertEqual(run["orphaned_after_check"], [], report)
            self.assertTrue(run["check"]["ok"], report)
            self.assertEqual(run["verified"], run["issued"] + 1, report)
            self.assertEqual(
                run["finalized_after_check"], run["delivered_after_check"], report
            )
        clean, faulted = (recorded["results"][key] for key in FAULT_RUNS)
        self.assertEqual((clean["issued"], clean["faults"]), (5, 0), report)
        self.assertGreater(faulted["faults"], 0, report)
