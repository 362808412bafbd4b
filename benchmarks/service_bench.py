"""
The service benchmark: :class:`~txacme.service.AcmeIssuingService` over a
:class:`~txacme.store.DirectoryStore` of many entries.

Usage::

    python -m benchmarks service [-n COUNT,...] [-r REPEAT] [--smoke]
        [--ari] [--cache-dir DIR] [--regenerate] [--jobs J] [--json FILE]
        [--check-targets] [--profile DIR] [--py-spy DIR] [--txacme-src DIR]

For each store size (10,000 then 100,000 entries by default) it makes sure
a store of that many entries exists (:mod:`benchmarks._service_store`:
certificates from a local CA, no network; generated once and kept under
the cache directory, its generation time reported apart), then runs the
service over it in a fresh process (:mod:`benchmarks._service_worker`),
``REPEAT`` times, and reports the median of:

* the time from ``startService()`` to ``when_certs_valid()`` firing, and
  the CPU time it took;
* the peak RSS of the process, and the RSS it grew by over its baseline
  (the interpreter and the imports);
* the CPU time of one more check with nothing due;
* the largest reactor stalls during both, in one more run of their own
  (the probe, a call every 10 ms, slows the reading of the store down).

The report compares the per-entry costs of the largest store with those of
the smallest (growth no worse than linear: a ratio at most 1) and checks
the targets of issue 6 for the store of 10,000 entries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._reporting import describe_machine, table, target_lines
from benchmarks._service_store import GeneratedStore, ensure_store, invalidate
from benchmarks._workers import run_worker

__all__ = ["main"]

REPOSITORY = Path(__file__).resolve().parent.parent

#: The store sizes measured by default, and by ``--smoke`` (two sizes, so
#: that the smoke run compares them too).
DEFAULT_COUNTS = (10_000, 100_000)
SMOKE_COUNTS = (100, 500)

# The targets of issue 6, for a store of TARGET_COUNT entries.
TARGET_COUNT = 10_000
TARGET_READY = 5.0
TARGET_PEAK_RSS = 250.0
TARGET_CHECK_CPU = 0.5
#: Per-entry costs of the largest store over those of the smallest: "no
#: worse than linear" is a ratio of at most 1; single runs vary by some
#: 10 to 15% on a shared machine, hence the margin.
TARGET_GROWTH = 1.0
GROWTH_MARGIN = 0.15

#: The stall probe's interval, seconds.
STALL_INTERVAL = 0.01

# A run of 100,000 entries takes about ten seconds; allow for slow disks.
_WORKER_TIMEOUT = 1800.0

#: The figures the report gives, in order: key, heading, scale, format.
_COLUMNS = (
    ("ready_wall", "ready s", 1.0, ".2f"),
    ("ready_cpu", "ready CPU s", 1.0, ".2f"),
    ("settle_wall", "settle s", 1.0, ".2f"),
    ("check_cpu", "check CPU s", 1.0, ".3f"),
    ("check_wall", "check s", 1.0, ".3f"),
    ("peak_rss", "peak RSS MiB", 1.0, ".1f"),
    ("grown_rss", "RSS growth MiB", 1.0, ".1f"),
    ("ready_stall", "stall ready ms", 1000.0, ".1f"),
    ("check_stall", "stall check ms", 1000.0, ".1f"),
)

#: The per-entry costs the report gives: key, label, unit, and whether its
#: growth from the smallest store to the largest is checked.
_PER_ENTRY = (
    ("ready_wall", "ready (wall)", "us", True),
    ("ready_cpu", "ready (CPU)", "us", True),
    ("ready_cpu_user", "  user", "us", False),
    ("ready_cpu_system", "  system", "us", False),
    ("ready_gc", "  collector", "us", False),
    ("check_wall", "check (wall)", "us", False),
    ("check_cpu", "check (CPU)", "us", True),
    ("check_cpu_user", "  user", "us", False),
    ("check_cpu_system", "  system", "us", False),
    ("check_gc", "  collector", "us", False),
    ("grown_rss", "RSS growth", "KiB", True),
)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("counts must be positive")
    return counts


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks service",
        description="Benchmark AcmeIssuingService over a large DirectoryStore.",
    )
    parser.add_argument(
        "-n",
        "--entries",
        type=_counts,
        default=list(DEFAULT_COUNTS),
        help="comma-separated store sizes, measured in this order "
        "(default: 10000,100000)",
    )
    parser.add_argument(
        "-r",
        "--repeat",
        type=int,
        default=1,
        help="runs per store size, each in a fresh process; the report "
        "gives the median (1)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick run that checks the benchmark works: 100 and 500 entries",
    )
    parser.add_argument(
        "--ari",
        action="store_true",
        help="the fake CA offers renewal information (RFC 9773): after the "
        "first check, the service asks it about every certificate",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "txacme-service-bench",
        help="where generated stores are kept between runs "
        "(default: $TMPDIR/txacme-service-bench)",
    )
    parser.add_argument(
        "--regenerate",
        action="store_true",
        help="generate the stores afresh even if cached ones are usable",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes generating a store (default: the number of CPUs)",
    )
    parser.add_argument("--json", type=Path, help="write all results to this file")
    parser.add_argument(
        "--check-targets",
        action="store_true",
        help="exit with status 1 if a target is missed",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write pyinstrument profiles of the reactor thread (the start "
        "and the check) into this directory",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="run each worker under py-spy (every thread) and write its "
        "collapsed stacks into this directory",
    )
    parser.add_argument(
        "--txacme-src",
        type=Path,
        help="import txacme from this directory instead of this checkout's "
        "src/ (to compare two revisions)",
    )
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.entries = list(SMOKE_COUNTS)
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1")
    if arguments.jobs < 1:
        parser.error("--jobs must be at least 1")
    return arguments


def _median(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of every figure of ``runs``, with each run kept."""
    summary: dict[str, Any] = {"runs": list(runs)}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [float(run[key]) for run in runs]
            summary[key] = statistics.median(values)
            summary[key + "_range"] = [min(values), max(values)]
    return summary


def _per_entry(result: dict[str, Any], key: str, unit: str) -> float:
    scale = 1e6 if unit == "us" else 1024.0
    return float(result[key]) * scale / int(result["count"])


def _report(
    results: dict[int, dict[str, Any]],
) -> tuple[str, list[tuple[bool, str]]]:
    """The printed report and the target checks ``(met, description)``."""
    lines: list[str] = []
    rows = []
    for count, result in results.items():
        row = [f"{count:,}"]
        for key, _, scale, form in _COLUMNS:
            row.append(format(result[key] * scale, form))
        rows.append(row)
    lines.append(table(["entries", *(heading for _, heading, _, _ in _COLUMNS)], rows))

    lines.append("")
    lines.append("Per entry:")
    per_entry_rows = []
    for key, label, unit, _ in _PER_ENTRY:
        per_entry_rows.append(
            [
                f"{label}, {unit}",
                *(
                    format(_per_entry(result, key, unit), ".1f")
                    for result in results.values()
                ),
            ]
        )
    lines.append(
        table(
            ["cost", *(f"{count:,}" for count in results)],
            per_entry_rows,
        )
    )

    checks: list[tuple[bool, str]] = []
    target = results.get(TARGET_COUNT)
    if target is not None:
        checks.append(
            (
                target["ready_wall"] < TARGET_READY,
                f"{TARGET_COUNT:,} entries ready in under {TARGET_READY:g} s: "
                f"{target['ready_wall']:.2f} s",
            )
        )
        checks.append(
            (
                target["peak_rss"] < TARGET_PEAK_RSS,
                f"{TARGET_COUNT:,} entries, peak RSS under {TARGET_PEAK_RSS:g} "
                f"MiB: {target['peak_rss']:.1f} MiB",
            )
        )
        checks.append(
            (
                target["check_cpu"] < TARGET_CHECK_CPU,
                f"{TARGET_COUNT:,} entries, a check under {TARGET_CHECK_CPU:g} s "
                f"of CPU: {target['check_cpu']:.3f} s",
            )
        )
    if len(results) > 1:
        smallest, largest = min(results), max(results)
        lines.append("")
        lines.append(
            f"Growth: per-entry cost over {largest:,} entries / over "
            f"{smallest:,} (1.00 is linear):"
        )
        # Below TARGET_COUNT entries the fixed costs weigh: no target then.
        judged = smallest >= TARGET_COUNT
        for key, label, unit, checked in _PER_ENTRY:
            before = _per_entry(results[smallest], key, unit)
            after = _per_entry(results[largest], key, unit)
            if before <= 0:
                lines.append(f"  {label:<18} -")
                continue
            ratio = after / before
            lines.append(f"  {label:<18} {ratio:.2f}")
            if not (checked and judged):
                continue
            checks.append(
                (
                    ratio <= TARGET_GROWTH + GROWTH_MARGIN,
                    f"{largest:,} entries grow no worse than linearly, "
                    f"{label}: {ratio:.2f} (at most {TARGET_GROWTH:.2f}, "
                    f"+{GROWTH_MARGIN:.0%} for noise)",
                )
            )
    lines += target_lines(checks)
    return "\n".join(lines), checks


def _revision(source: Path) -> str:
    """The commit of ``source``'s checkout, ``+`` if txacme has changes."""

    def git(*arguments: str) -> str:
        try:
            return subprocess.run(
                ["git", *arguments],
                cwd=source,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("+" if git("status", "--porcelain", "--", ".") else "")


def _describe_store(store: GeneratedStore) -> str:
    how = "cached" if store.cached else "generated"
    return (
        f"{store.count:,} entries {how} in {store.path} "
        f"(generation took {store.generation_seconds:.1f} s, "
        f"{store.generation_seconds / store.count * 1e6:.0f} us per entry)"
    )


def main(argv: Sequence[str]) -> int:
    """Run the service benchmark; see the module docstring."""
    arguments = _arguments(argv)
    source = (
        arguments.txacme_src.resolve() if arguments.txacme_src else REPOSITORY / "src"
    )
    revision = _revision(source / "txacme")
    print(
        f"Service benchmark: AcmeIssuingService over a DirectoryStore (file "
        f"I/O in the reactor's thread pool), FakeClient "
        f"{'offering' if arguments.ari else 'without'} renewal information; "
        f"{arguments.repeat} run(s) per size, each in a fresh process; txacme "
        f"{revision}; {describe_machine()}",
        flush=True,
    )
    results: dict[int, dict[str, Any]] = {}
    stores: dict[int, GeneratedStore] = {}
    for count in arguments.entries:
        store = ensure_store(
            count,
            arguments.cache_dir,
            jobs=arguments.jobs,
            reuse=not arguments.regenerate,
        )
        stores[count] = store
        print(f"Store: {_describe_store(store)}", flush=True)
        runs = []
        for run in range(arguments.repeat + 1):
            # The last run probes the reactor's stalls; the others are timed.
            probed = run == arguments.repeat
            config: dict[str, Any] = {
                "path": str(store.path),
                "count": count,
                "run": run,
                "ari": arguments.ari,
                "stall_interval": STALL_INTERVAL if probed else None,
            }
            if arguments.profile is not None and not probed:
                arguments.profile.mkdir(parents=True, exist_ok=True)
                config["profile_prefix"] = str(
                    arguments.profile.resolve() / f"service-{count}-{run}"
                )
            try:
                result = run_worker(
                    "benchmarks._service_worker",
                    config,
                    name=f"service-{count}-{run}",
                    description=f"the run over {count} entries",
                    timeout=_WORKER_TIMEOUT,
                    py_spy=None if probed else arguments.py_spy,
                    txacme_src=arguments.txacme_src,
                )
            except RuntimeError:
                # It may have changed the store: do not reuse it.
                invalidate(store.path)
                raise
            result["grown_rss"] = result["peak_rss"] - result["baseline_rss"]
            if probed:
                stalls = {key: value for key, value in result.items() if "stall" in key}
                print(
                    f"  stalls: {stalls['ready_stall'] * 1000:.1f} ms while "
                    f"starting, {stalls['check_stall'] * 1000:.1f} ms in a check",
                    flush=True,
                )
                continue
            runs.append(result)
            print(
                f"  run {run + 1}: ready in {result['ready_wall']:.2f} s "
                f"({result['ready_cpu']:.2f} s CPU), check "
                f"{result['check_cpu']:.3f} s CPU, peak RSS "
                f"{result['peak_rss']:.1f} MiB",
                flush=True,
            )
        results[count] = _median(runs)
        results[count].update(stalls)

    report, checks = _report(results)
    print()
    print(report)
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "arguments": {
                        "entries": arguments.entries,
                        "repeat": arguments.repeat,
                        "ari": arguments.ari,
                    },
                    "revision": revision,
                    "machine": describe_machine(),
                    "stores": {
                        str(count): {
                            "path": str(store.path),
                            "cached": store.cached,
                            "generation_seconds": store.generation_seconds,
                        }
                        for count, store in stores.items()
                    },
                    "results": {
                        str(count): result for count, result in results.items()
                    },
                },
                indent=2,
            )
        )
    if arguments.check_targets and not all(met for met, _ in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
