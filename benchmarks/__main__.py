"""
The benchmark command: ``python -m benchmarks [BENCHMARK] [OPTION ...]``.

``client`` (the default) compares txacme's issuing client with certbot's
``acme`` library against a local Pebble (:mod:`benchmarks.client_bench`).
Further benchmarks (the issuing service over a large certificate store) get
their own name here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from benchmarks import client_bench

BENCHMARKS: dict[str, Callable[[Sequence[str]], int]] = {
    "client": client_bench.main,
}


def main(argv: Sequence[str]) -> int:
    """
    Run the benchmark named first in ``argv`` (``client`` when the first
    argument is an option or absent) with the remaining arguments.
    """
    if argv and argv[0] in ("-l", "--list"):
        print("\n".join(BENCHMARKS))
        return 0
    if argv and not argv[0].startswith("-"):
        name, arguments = argv[0], argv[1:]
    else:
        name, arguments = "client", argv
    if name not in BENCHMARKS:
        print(
            f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    return BENCHMARKS[name](arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
