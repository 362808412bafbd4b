"""
The fault benchmark (issue 11, "Issuance that survives the network"):
txacme issuing from a local Pebble through an HTTPS proxy that injects
network faults.

Usage::

    python -m benchmarks fault [-n N] [-c C] [--runs FAULTS/NONCES,...]
        [--seed S] [--kinds KIND,...] [--endpoints ENDPOINT,...]
        [--delay SECONDS] [--issuance-timeout SECONDS] [--smoke]
        [--json FILE] [--check-targets] [--keep-logs] [--txacme-src DIR]

Each run starts its own Pebble and pebble-challtestsrv
(``PEBBLE_VA_NOSLEEP=1``, ``PEBBLE_AUTHZREUSE=0``, and
``PEBBLE_WFE_NONCEREJECT`` as the run says), then a worker process
(:mod:`benchmarks._fault_worker`) that puts a
:class:`~txacme.testing.faultproxy.FaultProxy` in front of it with a seeded
``FaultPlan.mixed(rate)`` over all seven fault kinds and every endpoint
(the directory and newNonce included), registers one txacme client through
the proxy and issues ``N`` certificates, ``C`` at once, each with
``issue_certificate``, validated over http-01.  The runs (``--runs``, as
``FAULT%/NONCE%``):

``0/0``
    no faults, no nonce rejected: the baseline of requests per certificate;
``0/50``
    no faults, half the nonces rejected: the baseline of the runs below;
``10/0``
    10% of the requests faulted, no nonce rejected;
``10/50``
    10% faulted, half the nonces rejected: the first target of issue 11;
``25/50``
    25% faulted, half the nonces rejected: the second.

The report gives, per run, the certificates issued and failed (and why),
hangs, orphaned orders (finalized by Pebble, certificate never received),
faults by kind, requests per certificate through the proxy (set-up apart)
and their ratio to the baseline, and whether the client issued once more
after the run with the faults off; then the targets of issue 11.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import ssl
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from benchmarks._reporting import describe_machine, table, target_lines
from benchmarks._workers import run_worker
from txacme.testing import FAULT_KINDS
from txacme.testing.pebble import (
    PebbleOptions,
    PebbleServer,
    pebble_unavailable_reason,
)

__all__ = ["DEFAULT_RUNS", "FaultRun", "main"]

# A run of 100 certificates takes under a minute; the worker may take this
# long before it is killed (and the run reported as failed).
_WORKER_TIMEOUT = 900.0

# The targets of issue 11.
TARGET_ALL_AT = (10, 50)
TARGET_MOST_AT = (25, 50)
TARGET_MOST_SHARE = 0.99
TARGET_REQUEST_RATIO = 1.5
TARGET_REQUEST_RATE = 10


@frozen
class FaultRun:
    """
    One run: the share of requests faulted and of nonces Pebble rejects.

    :ivar faults: Percent of the requests the proxy faults (0 to 100).
    :ivar nonces: ``PEBBLE_WFE_NONCEREJECT``: percent of good nonces
        rejected.
    """

    faults: int
    nonces: int

    @property
    def key(self) -> str:
        """Its name in the table and the JSON output, ``FAULTS/NONCES``."""
        return f"{self.faults}/{self.nonces}"

    @property
    def label(self) -> str:
        """Its description."""
        faults = f"{self.faults}% faults" if self.faults else "no faults"
        nonces = (
            f"{self.nonces}% nonces rejected" if self.nonces else "no nonce rejected"
        )
        return f"{faults}, {nonces}"


DEFAULT_RUNS = (
    FaultRun(0, 0),
    FaultRun(0, 50),
    FaultRun(10, 0),
    FaultRun(10, 50),
    FaultRun(25, 50),
)
SMOKE_RUNS = (FaultRun(0, 0), FaultRun(25, 50))


def _parse_runs(text: str) -> list[FaultRun]:
    runs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        faults, _, nonces = part.partition("/")
        try:
            run = FaultRun(int(faults), int(nonces or "0"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"a run is FAULT%/NONCE%, such as 10/50: {part!r}"
            ) from None
        if not (0 <= run.faults <= 100 and 0 <= run.nonces <= 100):
            raise argparse.ArgumentTypeError(f"percentages from 0 to 100: {part!r}")
        if run in runs:
            raise argparse.ArgumentTypeError(f"run {part!r} given twice")
        runs.append(run)
    if not runs:
        raise argparse.ArgumentTypeError("no runs")
    return runs


def _parse_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks fault",
        description="Issue certificates from Pebble through a fault-injecting "
        "proxy (issue 11).",
    )
    parser.add_argument(
        "-n", "--count", type=int, default=100, help="certificates per run (100)"
    )
    parser.add_argument(
        "-c", "--concurrency", type=int, default=16, help="issuances in flight (16)"
    )
    parser.add_argument(
        "--runs",
        type=_parse_runs,
        help="the runs, as FAULT%%/NONCE%% pairs: percent of requests faulted "
        "and of nonces Pebble rejects (default: "
        + ",".join(run.key for run in DEFAULT_RUNS)
        + ")",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=11,
        help="the seed of every run's fault plan (11)",
    )
    parser.add_argument(
        "--kinds",
        type=_parse_names,
        default=list(FAULT_KINDS),
        help="the fault kinds, sharing the rate equally (default: all seven: "
        + ", ".join(FAULT_KINDS)
        + ")",
    )
    parser.add_argument(
        "--endpoints",
        type=_parse_names,
        help="fault only requests to these endpoint kinds (default: every "
        "request, the directory and newNonce included)",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=2.0,
        help="seconds a 'delay' fault holds the answer back (2)",
    )
    parser.add_argument(
        "--issuance-timeout",
        type=float,
        default=180.0,
        help="an issuance still running after this many seconds is a hang: "
        "cancelled and counted (180)",
    )
    parser.add_argument(
        "--keygen-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="certificate keys generated at once (the number of CPUs)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick run that checks the benchmark works: -n 5, runs "
        + ",".join(run.key for run in SMOKE_RUNS),
    )
    parser.add_argument("--json", type=Path, help="write all results to this file")
    parser.add_argument(
        "--check-targets",
        action="store_true",
        help="exit with status 1 if a target is missed",
    )
    parser.add_argument(
        "--txacme-src",
        type=Path,
        help="import txacme from this directory instead of this checkout's src/",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep each run's Pebble directory and logs, and print their paths",
    )
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.count = 5
        if arguments.runs is None:
            arguments.runs = list(SMOKE_RUNS)
    if arguments.runs is None:
        arguments.runs = list(DEFAULT_RUNS)
    for name in ("count", "concurrency", "keygen_threads"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    unknown = [kind for kind in arguments.kinds if kind not in FAULT_KINDS]
    if unknown or not arguments.kinds:
        parser.error(f"--kinds: one or more of {', '.join(FAULT_KINDS)}")
    if arguments.delay < 0 or arguments.issuance_timeout <= 0:
        parser.error("--delay must not be negative, --issuance-timeout positive")
    return arguments


def _fetch(url: str, context: ssl.SSLContext) -> bytes:
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        body: bytes = response.read()
        return body


def _one_run(
    run: FaultRun, number: int, arguments: argparse.Namespace
) -> dict[str, Any]:
    """Start Pebble for ``run``, run its worker, stop Pebble."""
    workdir = Path(tempfile.mkdtemp(prefix="txacme-fault-bench-"))
    options = PebbleOptions(nonce_reject=run.nonces, authz_reuse=0, va_nosleep=True)
    pebble = PebbleServer.start(options, workdir=workdir)
    try:
        context = ssl.create_default_context(cadata=pebble.ca_pem.decode("ascii"))
        root_path = workdir / "root.pem"
        root_path.write_bytes(_fetch(pebble.management_url + "/roots/0", context))
        config = {
            "n": arguments.count,
            "concurrency": arguments.concurrency,
            "rate": run.faults / 100,
            "kinds": list(arguments.kinds),
            "endpoints": arguments.endpoints,
            "seed": arguments.seed,
            "delay": arguments.delay,
            "issuance_timeout": arguments.issuance_timeout,
            "keygen_threads": arguments.keygen_threads,
            "acme_port": pebble.ports.acme,
            "ca_pem": pebble.ca_pem.decode("ascii"),
            "root_path": str(root_path),
            "http_port": pebble.http_port,
            "name_prefix": f"f{number}-{run.faults}-{run.nonces}",
        }
        result = run_worker(
            "benchmarks._fault_worker",
            config,
            name=f"fault-{run.faults}-{run.nonces}",
            description=f"the {run.key} run",
            timeout=_WORKER_TIMEOUT,
            py_spy=None,
            txacme_src=arguments.txacme_src,
        )
    finally:
        pebble.stop()
        if arguments.keep_logs:
            print(f"    Pebble's logs are in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result.update(
        key=run.key, label=run.label, fault_rate=run.faults, nonce_reject=run.nonces
    )
    return result


# -- the report ---------------------------------------------------------------


def _per_cert(result: dict[str, Any]) -> float:
    return float(result["requests"]) / max(1, int(result["issued"]))


def _endpoint_per_cert(result: dict[str, Any], endpoint: str) -> str:
    requests = result["requests_by_endpoint"].get(endpoint, 0)
    return f"{requests / max(1, int(result['issued'])):.2f}"


def _baseline(
    results: dict[str, dict[str, Any]], result: dict[str, Any]
) -> dict[str, Any] | None:
    """The fault-free run with the same nonce rejection as ``result``."""
    return results.get(FaultRun(0, int(result["nonce_reject"])).key)


def _ratio(results: dict[str, dict[str, Any]], result: dict[str, Any]) -> float | None:
    baseline = _baseline(results, result)
    if baseline is None or not baseline["issued"] or not result["issued"]:
        return None
    return _per_cert(result) / _per_cert(baseline)


def _usable(result: dict[str, Any]) -> bool:
    """
    Whether the client issued after every failure (an issuance started
    after it, or the one after the run) and after the run.
    """
    return bool(result["check"]["ok"]) and all(
        failure["later_success"] or failure["check_after"]
        for failure in result["failures"]
    )


def _after(failure: dict[str, Any], result: dict[str, Any]) -> str:
    """What the client did after a failure, in words."""
    if failure["later_success"]:
        return "a later issuance succeeded"
    if result["check"]["ok"]:
        return "the issuance after the run succeeded"
    return "no issuance succeeded"


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _report(
    results: dict[str, dict[str, Any]], arguments: argparse.Namespace
) -> tuple[str, list[tuple[bool, str]]]:
    """The printed report and the target checks ``(met, description)``."""
    lines: list[str] = []
    rows = []
    for key, result in results.items():
        ratio = _ratio(results, result)
        seconds = result["issuance_seconds"]
        rows.append(
            [
                key,
                f"{result['issued']}/{result['n']}",
                str(result["failed"]),
                str(result["hangs"]),
                str(len(result["orphaned_after_check"])),
                str(result["faults"]),
                f"{_per_cert(result):.2f}",
                "-" if ratio is None else f"{ratio:.2f}",
                str(result["retries"]),
                str(result["bad_nonce_retries"]),
                f"{result['wall']:.1f}",
                f"{_percentile(seconds, 0.5):.2f}/{max(seconds, default=0):.1f}",
                "yes" if _usable(result) else "NO",
            ]
        )
    lines.append(
        table(
            [
                "run (faults/nonces %)",
                "issued",
                "failed",
                "hangs",
                "orphans",
                "faults",
                "requests/cert",
                "x baseline",
                "retries",
                "badNonce",
                "wall s",
                "issuance s p50/max",
                "usable",
            ],
            rows,
        )
    )

    keys = list(results)
    lines.append("")
    lines.append("Faults injected, by kind (set-up included):")
    lines.append(
        table(
            ["kind", *keys],
            [
                [
                    kind,
                    *(str(results[key]["fault_counts"].get(kind, 0)) for key in keys),
                ]
                for kind in FAULT_KINDS
            ],
        )
    )

    endpoints: list[str] = []
    for result in results.values():
        for endpoint in result["requests_by_endpoint"]:
            if endpoint not in endpoints:
                endpoints.append(endpoint)
    lines.append("")
    lines.append(
        "Requests per certificate through the proxy, by endpoint (set-up apart; "
        "faulted and rejected requests included):"
    )
    lines.append(
        table(
            ["endpoint", *keys],
            [
                [
                    endpoint,
                    *(_endpoint_per_cert(results[key], endpoint) for key in keys),
                ]
                for endpoint in endpoints
            ]
            + [
                [
                    "set-up (total)",
                    *(str(results[key]["setup_requests"]) for key in keys),
                ]
            ],
        )
    )

    failures = [
        (key, failure)
        for key, result in results.items()
        for failure in result["failures"]
    ]
    lines.append("")
    if failures:
        lines.append("Failed issuances (what defeated the retries):")
        for key, failure in failures:
            lines.append(
                f"  {key} #{failure['index']}: {failure['error']} on "
                f"{failure['method'] or '?'} {failure['endpoint'] or '?'} "
                f"({failure['attempts'] or '?'} attempts) after "
                f"{failure['ended'] - failure['started']:.1f} s; then "
                + _after(failure, results[key])
            )
            if failure["order"] is not None:
                lines.append(
                    "      its order was ready (on_order had it: an order journal "
                    "could resume it)"
                    + (
                        "; Pebble issued its certificate: ORPHANED"
                        if failure["orphaned"]
                        else ""
                    )
                )
            message = " ".join(failure["message"].split())
            lines.append(f"      {message[:300]}")
            lines.append(
                "      its last requests: " + ", ".join(failure["last_requests"])
            )
    else:
        lines.append("No issuance failed.")
    for key, result in results.items():
        if not result["check"]["ok"]:
            lines.append(
                f"  {key}: the issuance after the run failed: "
                f"{result['check']['error']}"
            )
        orphans = result["orphaned_after_check"]
        if orphans:
            lines.append(f"  {key}: orphaned orders: {', '.join(orphans)}")

    checks = _targets(results, arguments)
    lines += target_lines(checks, heading="Targets (issue 11):")
    return "\n".join(lines), checks


def _targets(
    results: dict[str, dict[str, Any]], arguments: argparse.Namespace
) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []
    all_at = results.get(FaultRun(*TARGET_ALL_AT).key)
    if all_at is not None:
        checks.append(
            (
                all_at["issued"] == all_at["n"],
                f"{all_at['key']}: every issuance succeeds: "
                f"{all_at['issued']} of {all_at['n']}",
            )
        )
    most_at = results.get(FaultRun(*TARGET_MOST_AT).key)
    if most_at is not None:
        wanted = math.ceil(TARGET_MOST_SHARE * most_at["n"])
        checks.append(
            (
                most_at["issued"] >= wanted,
                f"{most_at['key']}: at least {wanted} of {most_at['n']} succeed: "
                f"{most_at['issued']}",
            )
        )
    for key, result in results.items():
        if result["fault_rate"] == 0 and result["nonce_reject"] == 0:
            continue
        checks.append(
            (
                result["hangs"] == 0,
                f"{key}: no hang (an issuance over {arguments.issuance_timeout:g} "
                f"s): {result['hangs']}, longest "
                f"{max(result['issuance_seconds'], default=0):.1f} s",
            )
        )
        checks.append(
            (
                not result["orphaned_after_check"],
                f"{key}: no orphaned certificate: "
                f"{len(result['orphaned_after_check'])} of "
                f"{result['finalized_after_check']} finalized orders",
            )
        )
        checks.append(
            (
                _usable(result),
                f"{key}: the client issues after every failure and after the run: "
                f"{'yes' if _usable(result) else 'no'}",
            )
        )
    for key, result in results.items():
        ratio = _ratio(results, result)
        if result["fault_rate"] != TARGET_REQUEST_RATE or ratio is None:
            continue
        baseline = _baseline(results, result)
        assert baseline is not None
        checks.append(
            (
                ratio <= TARGET_REQUEST_RATIO,
                f"{key}: requests per certificate at most {TARGET_REQUEST_RATIO}x "
                f"those of {baseline['key']}: {_per_cert(result):.2f} / "
                f"{_per_cert(baseline):.2f} = {ratio:.2f}x",
            )
        )
    return checks


def main(argv: Sequence[str]) -> int:
    """Run the fault benchmark; see the module docstring."""
    arguments = _arguments(argv)
    reason = pebble_unavailable_reason()
    if reason is not None:
        print(f"cannot run the benchmark: {reason}", file=sys.stderr)
        return 1
    print(
        f"Fault benchmark: {arguments.count} single-name certificates per run, "
        f"{arguments.concurrency} in flight, through a fault proxy in front of "
        f"Pebble (PEBBLE_VA_NOSLEEP=1, PEBBLE_AUTHZREUSE=0); faults over "
        f"{', '.join(arguments.endpoints) if arguments.endpoints else 'every endpoint'}"
        f", kinds {', '.join(arguments.kinds)}, seed {arguments.seed}; "
        f"{describe_machine()}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for number, run in enumerate(arguments.runs):
        print(f"  {run.key} ({run.label}) ...", end="", flush=True)
        result = _one_run(run, number, arguments)
        results[run.key] = result
        print(
            f" {result['wall']:.1f} s, {result['issued']}/{result['n']} issued, "
            f"{result['faults']} faults, {result['verified']} chains verified",
            flush=True,
        )
    total = time.perf_counter() - started

    report, checks = _report(results, arguments)
    print()
    print(report)
    print()
    print(f"All runs took {total:.0f} s.")
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "arguments": {
                        "count": arguments.count,
                        "concurrency": arguments.concurrency,
                        "runs": [run.key for run in arguments.runs],
                        "seed": arguments.seed,
                        "kinds": list(arguments.kinds),
                        "endpoints": arguments.endpoints,
                        "delay": arguments.delay,
                        "issuance_timeout": arguments.issuance_timeout,
                    },
                    "machine": describe_machine(),
                    "results": results,
                },
                indent=2,
            )
        )
    if arguments.check_targets and not all(met for met, _ in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
