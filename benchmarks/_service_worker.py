"""
One run of the service benchmark, in a process of its own:
``python -m benchmarks._service_worker CONFIG-JSON``.

:mod:`benchmarks.service_bench` starts one such process per store size and
repetition, so that the peak RSS (``ru_maxrss``) is this run's alone and
the reactor is fresh.  The worker runs an
:class:`~txacme.service.AcmeIssuingService` over a
:class:`~txacme.store.DirectoryStore` of the configured directory, on the
real reactor with the store's file I/O in its thread pool (as
``txacme.endpoint`` sets it up), with a :class:`~txacme.testing.FakeClient`
as the CA.  It measures, and prints as one line ``RESULT <json>``:

*ready*
    from ``startService()`` to ``when_certs_valid()`` firing: wall time and
    CPU time (``time.process_time()``: every thread of the process);
*settle*
    from then until the work the first check left for later (asking the CA
    for renewal information, RFC 9773, entry by entry) is done;
*check*
    one more check with nothing due (what the service's ``LoopingCall``
    runs every ``check_interval``), until it and any work it started are
    done;
*memory*
    the peak RSS of the process, its RSS after the imports and before the
    service started (the baseline), and its RSS at the end;
*the collector*
    the time the cyclic garbage collector took during each phase;
*stalls*
    if ``stall_interval`` is configured, the largest reactor stall (a call
    every ``stall_interval`` seconds) during each phase.  The probe's
    calls take the GIL from the thread that reads the store (a thread
    switch every 10 ms), which slows it down: the benchmark measures
    stalls in a run of their own.

No certificate may be ordered: the run fails if the fake CA saw an order.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._metering import StallProbe
from benchmarks._workers import print_result, react_for_result

__all__ = ["main"]


def _peak_rss() -> float:
    """The process's peak RSS so far, in MiB (``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss() -> float:
    """The process's RSS now, in MiB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class _CollectorTime:
    """The wall time the cyclic garbage collector takes (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


_collector = _CollectorTime()


class _Phase:
    """
    Wall and CPU time of a phase, resource usage, the collector's time, the
    largest reactor stall (if probed), and the profile if one was asked for.
    """

    def __init__(
        self, reactor: Any, profile: str | None, stall_interval: float | None
    ) -> None:
        self._profile = profile
        self._profiler: Any = None
        self._probe = StallProbe(reactor, stall_interval) if stall_interval else None
        self.figures: dict[str, float | None] = {}
        self._wall_started = 0.0
        self._cpu_started = 0.0
        self._gc_started = (0.0, 0)
        self._usage_started: resource.struct_rusage | None = None

    def start(self) -> None:
        if self._profile:
            from pyinstrument import Profiler

            self._profiler = Profiler(interval=0.0005, async_mode="disabled")
            self._profiler.start()
        if self._probe is not None:
            self._probe.start()
        self._gc_started = (_collector.seconds, _collector.collections)
        self._usage_started = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu_started = time.process_time()
        self._wall_started = time.perf_counter()

    def stop(self) -> dict[str, float | None]:
        """Stop measuring; return the figures."""
        wall = time.perf_counter() - self._wall_started
        cpu = time.process_time() - self._cpu_started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = self._usage_started
        assert started is not None
        if self._probe is not None:
            self._probe.stop()
        self.figures = {
            "wall": wall,
            "cpu": cpu,
            "cpu_user": usage.ru_utime - started.ru_utime,
            "cpu_system": usage.ru_stime - started.ru_stime,
            "gc": _collector.seconds - self._gc_started[0],
            "gc_collections": _collector.collections - self._gc_started[1],
            "minor_faults": usage.ru_minflt - started.ru_minflt,
            "major_faults": usage.ru_majflt - started.ru_majflt,
            "blocks_read": usage.ru_inblock - started.ru_inblock,
            "voluntary_switches": usage.ru_nvcsw - started.ru_nvcsw,
            "involuntary_switches": usage.ru_nivcsw - started.ru_nivcsw,
            "stall": None if self._probe is None else self._probe.largest,
        }
        if self._profiler is not None:
            from pyinstrument.renderers import ConsoleRenderer

            self._profiler.stop()
            session = self._profiler.last_session
            tree = ConsoleRenderer(unicode=True, color=False, show_all=False)
            flat = ConsoleRenderer(unicode=True, color=False, flat=True)
            assert self._profile is not None
            Path(self._profile).write_text(
                flat.render(session) + "\n\n" + tree.render(session)
            )
            print(f"profile written to {self._profile}", file=sys.stderr)
        return self.figures


async def _idle(reactor: Any, busy: Callable[[], bool]) -> None:
    """
    Wait until ``busy()`` is false, looking every millisecond (for at most
    an hour).
    """
    from twisted.internet.task import deferLater

    # Let what fired the caller's Deferred finish first (the service starts
    # its background work after firing when_certs_valid's waiters).
    await deferLater(reactor, 0)
    deadline = time.monotonic() + 3600
    while busy():
        if time.monotonic() > deadline:
            raise RuntimeError("the service's work did not finish within an hour")
        await deferLater(reactor, 0.001)


def _prefixed(prefix: str, figures: dict[str, float | None]) -> dict[str, Any]:
    return {f"{prefix}_{key}": value for key, value in figures.items()}


async def _run(reactor: Any, config: dict[str, Any]) -> dict[str, Any]:
    from josepy.jwk import JWKEC
    from twisted.internet.defer import succeed

    from txacme.service import AcmeIssuingService
    from txacme.store import DirectoryStore
    from txacme.testing import FakeClient, NullResponder
    from txacme.util import generate_private_key

    client = FakeClient(
        JWKEC(key=generate_private_key("p256")),
        reactor,
        offer_renewal_info=bool(config.get("ari")),
    )

    def create_client() -> Awaitable[FakeClient]:
        return succeed(client)

    service = AcmeIssuingService(
        cert_store=DirectoryStore(config["path"], reactor=reactor),
        client_creator=create_client,
        clock=reactor,
        responders=[NullResponder("http-01")],
    )

    def busy() -> bool:
        # The service's background tasks and its check in flight: private,
        # but what "the work is done" means.
        return bool(service._tasks) or service._check is not None

    profiles = config.get("profile_prefix")
    stall_interval = config.get("stall_interval")
    ready = _Phase(
        reactor, f"{profiles}-ready.txt" if profiles else None, stall_interval
    )
    settle = _Phase(reactor, None, stall_interval)
    check = _Phase(
        reactor, f"{profiles}-check.txt" if profiles else None, stall_interval
    )
    gc.callbacks.append(_collector)
    baseline_rss = _peak_rss()

    ready.start()
    service.startService()
    await service.when_certs_valid()
    ready.stop()
    ready_rss = _peak_rss()

    settle.start()
    await _idle(reactor, busy)
    settle.stop()

    check.start()
    # What the service's LoopingCall calls every check_interval.
    await service.check()
    await _idle(reactor, busy)
    check.stop()

    orders = len(client.orders)
    await service.stopService()
    gc.callbacks.remove(_collector)
    if orders or client.controller.issued:
        raise RuntimeError(
            f"the service ordered {orders} certificates over a store where "
            f"nothing was due"
        )
    entries = len(service._entries)
    if entries != config["count"]:
        raise RuntimeError(f"the service saw {entries} entries, not {config['count']}")
    return {
        "count": config["count"],
        **_prefixed("ready", ready.figures),
        **_prefixed("settle", settle.figures),
        **_prefixed("check", check.figures),
        "baseline_rss": baseline_rss,
        "ready_peak_rss": ready_rss,
        "peak_rss": _peak_rss(),
        "final_rss": _current_rss(),
        "orders": orders,
        "registrations": len(client.registrations),
        "entries": entries,
    }


def main(argv: list[str]) -> int:
    """Run the configured run and print ``RESULT <json>``."""
    config: dict[str, Any] = json.loads(argv[0])
    outcome = react_for_result(lambda reactor: _run(reactor, config))
    if not outcome:
        return 1
    print_result(outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
