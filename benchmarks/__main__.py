"""
The benchmark command: ``python -m benchmarks [BENCHMARK] [OPTION ...]``.

``client`` (the default) compares txacme's issuing client with certbot's
``acme`` library against a local Pebble (:mod:`benchmarks.client_bench`);
``service`` runs the issuing service over certificate stores of 10,000 and
100,000 entries (:mod:`benchmarks.service_bench`); ``fault`` issues through
a fault-injecting proxy in front of Pebble (:mod:`benchmarks.fault_bench`,
issue 11); ``all`` runs each of them in turn with its default options (what
``tox -e bench`` does).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from benchmarks import client_bench, fault_bench, service_bench

BENCHMARKS: dict[str, Callable[[Sequence[str]], int]] = {
    "client": client_bench.main,
    "service": service_bench.main,
    "fault": fault_bench.main,
}


def run_all(argv: Sequence[str]) -> int:
    """
    Run every benchmark with its default options, one after the other;
    return the first non-zero status, or 0.
    """
    if argv:
        print("`all` takes no options; name a benchmark to pass some", file=sys.stderr)
        return 2
    status = 0
    for name, benchmark in BENCHMARKS.items():
        print(f"== python -m benchmarks {name}", flush=True)
        result = benchmark([])
        status = status or result
        print(flush=True)
    return status


def main(argv: Sequence[str]) -> int:
    """
    Run the benchmark named first in ``argv`` (``client`` when the first
    argument is an option or absent) with the remaining arguments.
    """
    if argv and argv[0] in ("-l", "--list"):
        print("\n".join([*BENCHMARKS, "all"]))
        return 0
    if argv and not argv[0].startswith("-"):
        name, arguments = argv[0], argv[1:]
    else:
        name, arguments = "client", argv
    if name == "all":
        return run_all(arguments)
    if name not in BENCHMARKS:
        print(
            f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    return BENCHMARKS[name](arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
