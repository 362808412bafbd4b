"""
The parts of a benchmark's report that the client and service benchmarks
share: the machine it ran on, plain-text tables, and the targets met or
missed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["describe_machine", "table", "target_lines"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """
    ``header`` and ``rows`` as a plain-text table: the first column
    left-aligned, the others right-aligned, a rule under the header.
    """
    widths = [
        max(len(row[column]) for row in [header, *rows])
        for column in range(len(header))
    ]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [
            cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)
        ]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def target_lines(
    checks: Sequence[tuple[bool, str]], heading: str = "Targets (issue 6):"
) -> list[str]:
    """
    The report's section on targets: each check, met or missed, after a
    blank line and ``heading``; nothing if there are none.
    """
    if not checks:
        return []
    return [
        "",
        heading,
        *(
            f"  [{'met ' if met else 'MISS'}] {description}"
            for met, description in checks
        ),
    ]


def describe_machine() -> str:
    """The number of CPUs (and their model, if known) and Python's version."""
    cpus = os.cpu_count()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = f"{cpus} CPUs" + (f" ({model})" if model else "")
    return f"{described}, Python {sys.version.split()[0]}"
