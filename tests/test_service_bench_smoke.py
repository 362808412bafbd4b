"""
The service benchmark (``python -m benchmarks service``): its smoke run,
over stores of 100 and 500 entries, so that the benchmark keeps working;
the stores it generates; and its report.  No Pebble is needed: the service
runs over a local store with a fake CA.  The smoke run's figures are not
checked, only that they are there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import __main__ as benchmarks_main
from benchmarks import service_bench
from benchmarks._service_store import MANIFEST, ensure_store, entry_name, invalidate

from tests.support import TestCase
from txacme.store import DirectoryStore

REPOSITORY = Path(__file__).resolve().parent.parent

#: The row headings of the report's table, in order.
COLUMNS = ["entries", "ready s", "ready CPU s", "check CPU s", "peak RSS MiB"]


def _summaries(path: Path) -> dict[str, Any]:
    store = DirectoryStore(path)
    summaries: list[dict[str, Any]] = []
    store.summaries().addCallback(summaries.append)
    return summaries[0]


class SmokeRunTests(TestCase):
    """``python -m benchmarks service --smoke`` runs and prints its report."""

    def test_smoke(self) -> None:
        """
        The smoke run exits 0 after running the service over a store of 100
        entries and one of 500, each in a process of its own with no order
        placed; it prints the table, the per-entry costs and their growth,
        and writes every figure as JSON.
        """
        work = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        work.mkdir(parents=True)
        output = work / "results.json"
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(REPOSITORY / "src"), str(REPOSITORY)]
            + [path for path in [environment.get("PYTHONPATH")] if path]
        )
        command = [sys.executable, "-m", "benchmarks", "service", "--smoke"]
        command += ["--cache-dir", str(work / "cache"), "--json", str(output)]
        process = subprocess.run(
            command,
            cwd=REPOSITORY,
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        report = process.stdout + process.stderr
        self.assertEqual(process.returncode, 0, report)
        lines = report.splitlines()
        header = [line for line in lines if line.startswith("entries ")]
        self.assertEqual(len(header), 1, report)
        for column in COLUMNS:
            self.assertIn(column, header[0])
        rows = lines[lines.index(header[0]) + 2 :][:2]
        self.assertEqual([row.split()[0] for row in rows], ["100", "500"], report)
        for section in ("Per entry:", "Growth: per-entry cost over 500 entries"):
            self.assertIn(section, report)
        self.assertIn("entries generated in", report)

        recorded = json.loads(output.read_text())
        self.assertEqual(sorted(recorded["results"]), ["100", "500"])
        for count, result in recorded["results"].items():
            self.assertEqual(result["entries"], int(count))
            self.assertEqual(result["orders"], 0)
            self.assertEqual(len(result["runs"]), 1)
            for figure in ("ready_wall", "ready_cpu", "check_cpu", "peak_rss"):
                self.assertTrue(result[figure] > 0, (figure, result))
            for figure in ("ready_stall", "check_stall"):
                self.assertTrue(result[figure] >= 0, (figure, result))
            self.assertFalse(recorded["stores"][count]["cached"])


class StoreTests(TestCase):
    """The stores the benchmark generates and keeps."""

    def test_generated(self) -> None:
        """
        A generated store holds the entries asked for, each with a
        certificate for its name that is not due for renewal for weeks; the
        directory holds nothing else but the manifest.
        """
        cache = Path(self.mktemp())  # type: ignore[no-untyped-call]
        store = ensure_store(12, cache, jobs=1)
        self.assertFalse(store.cached)
        self.assertEqual(store.count, 12)
        files = sorted(os.listdir(store.path))
        self.assertEqual(
            files, sorted([MANIFEST] + [entry_name(i) + ".pem" for i in range(12)])
        )
        summaries = _summaries(store.path)
        self.assertEqual(len(summaries), 12)
        for index in range(12):
            summary = summaries[entry_name(index)]
            self.assertEqual(summary.names, (entry_name(index),))
            self.assertEqual(summary.lifetime, 90 * 86400)

    def test_reused(self) -> None:
        """
        A store is reused while usable; once invalidated, or asked for with
        ``reuse=False``, it is generated afresh; a store of another size is
        another directory.
        """
        cache = Path(self.mktemp())  # type: ignore[no-untyped-call]
        first = ensure_store(3, cache, jobs=1)
        again = ensure_store(3, cache, jobs=1)
        self.assertTrue(again.cached)
        self.assertEqual(
            (again.path, again.generated_at), (first.path, first.generated_at)
        )
        invalidate(first.path)
        self.assertFalse(ensure_store(3, cache, jobs=1).cached)
        self.assertFalse(ensure_store(3, cache, jobs=1, reuse=False).cached)
        other = ensure_store(4, cache, jobs=1)
        self.assertNotEqual(other.path, first.path)
        self.assertEqual(len(_summaries(first.path)), 3)

    def test_processes(self) -> None:
        """
        Generated in several processes, the store is the same: every entry,
        one CA certificate.
        """
        cache = Path(self.mktemp())  # type: ignore[no-untyped-call]
        store = ensure_store(4500, cache, jobs=2)
        self.assertEqual(len(_summaries(store.path)), 4500)
        chains = {
            (store.path / (entry_name(index) + ".pem"))
            .read_bytes()
            .split(b"-----END CERTIFICATE-----")[1]
            for index in (0, 2500, 4499)
        }
        self.assertEqual(len(chains), 1)


def _result(count: int, per_entry: float, rss_per_entry: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"count": count}
    for phase in ("ready", "check"):
        figures[f"{phase}_wall"] = figures[f"{phase}_cpu"] = count * per_entry
        figures[f"{phase}_cpu_user"] = count * per_entry * 0.8
        figures[f"{phase}_cpu_system"] = count * per_entry * 0.2
        figures[f"{phase}_gc"] = 0.0
        figures[f"{phase}_stall"] = 0.001
    figures["settle_wall"] = 0.0
    figures["baseline_rss"] = 60.0
    figures["grown_rss"] = count * rss_per_entry
    figures["peak_rss"] = 60.0 + figures["grown_rss"]
    return figures


class ReportTests(TestCase):
    """The report and its targets."""

    def test_targets(self) -> None:
        """
        The absolute targets apply to the store of 10,000 entries; growth
        is judged between the smallest and the largest store, 15% over
        linear allowed.
        """
        report, checks = service_bench._report(
            {
                10_000: _result(10_000, 25e-6, 1.0 / 1024),
                100_000: _result(100_000, 28e-6, 1.3 / 1024),
            }
        )
        self.assertIn("10,000 entries ready in under 5 s: 0.25 s", report)
        self.assertIn("check (CPU)" + " " * 8 + "1.12", report)
        missed = [description for met, description in checks if not met]
        self.assertEqual(
            missed,
            [
                "100,000 entries grow no worse than linearly, RSS growth: 1.30 "
                "(at most 1.00, +15% for noise)"
            ],
        )
        self.assertEqual(len(checks), 7)

    def test_missed(self) -> None:
        """Each absolute target missed is reported."""
        _, checks = service_bench._report({10_000: _result(10_000, 600e-6, 0.03)})
        self.assertEqual([met for met, _ in checks], [False, False, False])

    def test_small_stores(self) -> None:
        """Stores smaller than 10,000 entries are compared without targets."""
        report, checks = service_bench._report(
            {100: _result(100, 30e-6, 0.002), 500: _result(500, 30e-6, 0.001)}
        )
        self.assertEqual(checks, [])
        self.assertIn("Growth: per-entry cost over 500 entries / over 100", report)
        self.assertNotIn("Targets", report)


class CommandTests(TestCase):
    """``python -m benchmarks`` knows the service benchmark."""

    def test_listed(self) -> None:
        """``--list`` names it, and ``all``."""
        self.assertIn("service", benchmarks_main.BENCHMARKS)
        self.assertIs(benchmarks_main.BENCHMARKS["service"], service_bench.main)

    def test_all_takes_no_options(self) -> None:
        """``all`` refuses options (they would be meant for one benchmark)."""
        self.assertEqual(benchmarks_main.main(["all", "-n", "5"]), 2)
