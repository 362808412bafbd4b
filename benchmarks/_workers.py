"""
A benchmark's workers: each measured run is a fresh process of its own,
which prints its result as ``RESULT <json>``.

:func:`run_worker` starts one and reads its result (in
:mod:`benchmarks.client_bench` and :mod:`benchmarks.service_bench`);
:func:`react_for_result` and :func:`print_result` are the worker's side (in
:mod:`benchmarks._client_worker` and :mod:`benchmarks._service_worker`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = ["print_result", "react_for_result", "run_worker"]

REPOSITORY = Path(__file__).resolve().parent.parent

_RESULT = "RESULT "


def run_worker(
    module: str,
    config: dict[str, Any],
    *,
    name: str,
    description: str,
    timeout: float,
    py_spy: Path | None,
    txacme_src: Path | None,
) -> dict[str, Any]:
    """
    Run ``python -m module <config as JSON>`` in a fresh process (under
    ``py-spy record`` if ``py_spy`` names a directory: its collapsed stacks
    go to ``<name>.txt`` there), importing txacme from ``txacme_src`` if
    given, this checkout's ``src/`` otherwise; return the result of its last
    ``RESULT`` line.  The worker's standard error is passed on.

    :param description: The run, for the error message (``"the ... run"``).
    :param timeout: How many seconds the worker may take.

    :raises RuntimeError: If the worker failed or printed no result.
    """
    environment = dict(os.environ)
    source = txacme_src.resolve() if txacme_src else REPOSITORY / "src"
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(source), str(REPOSITORY)]
        + [path for path in [environment.get("PYTHONPATH")] if path]
    )
    worker = [sys.executable, "-m", module, json.dumps(config)]
    command = worker
    if py_spy is not None:
        py_spy.mkdir(parents=True, exist_ok=True)
        output = py_spy.resolve() / f"{name}.txt"
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        command = [spy or "py-spy", "record", "--nonblocking", "-r", "500", "-f", "raw"]
        command += ["-o", str(output), "--", *worker]
    process = subprocess.run(
        command,
        cwd=REPOSITORY,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    results = [
        line[len(_RESULT) :]
        for line in process.stdout.splitlines()
        if line.startswith(_RESULT)
    ]
    if process.returncode != 0 or not results:
        raise RuntimeError(
            f"{description} failed (status {process.returncode}):\n"
            f"{process.stdout[-4000:]}\n{process.stderr[-8000:]}"
        )
    if process.stderr.strip():
        sys.stderr.write(process.stderr)
    result: dict[str, Any] = json.loads(results[-1])
    return result


def react_for_result(
    run: Callable[[Any], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """
    In a worker: run ``run(reactor)`` on the global reactor under
    :func:`twisted.internet.task.react`; return what it returned, or an
    empty dict if it returned nothing (a failure is logged by ``react``).

    :raises SystemExit: If ``react`` exits with a non-zero status.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    outcome: dict[str, Any] = {}

    def main(reactor: Any) -> Deferred[None]:
        async def body() -> None:
            outcome.update(await run(reactor))

        return Deferred.fromCoroutine(body())

    try:
        react(main)
    except SystemExit as exit:
        if exit.code:
            raise
    return outcome


def print_result(result: dict[str, Any]) -> None:
    """In a worker: print ``result`` as :func:`run_worker` reads it."""
    print(_RESULT + json.dumps(result), flush=True)
