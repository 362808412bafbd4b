"""
The thread of a :class:`~txacme.challenges.LibcloudDNSResponder`:
libcloud is synchronous, so every call into a driver runs in a worker of
one daemon thread, its outcome delivered to the reactor thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define
from twisted._threads import IWorker, pool
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["Progress", "daemon_thread", "in_worker", "one_thread"]

_T = TypeVar("_T")


def daemon_thread(*args: Any, **kwargs: Any) -> threading.Thread:
    """
    A :class:`threading.Thread` with ``daemon`` set, so that a thread stuck
    in a provider's API does not keep the process from exiting.
    """
    thread = threading.Thread(*args, **kwargs)
    thread.daemon = True
    return thread


def one_thread() -> IWorker:
    """
    The responder's own worker: at most one daemon thread, made when first
    needed.
    """
    return pool(lambda: 1, threadFactory=daemon_thread)


@define
class Progress:
    """The driver call a job in the thread is making (for a timeout's message)."""

    operation: str


def in_worker(
    call_from_thread: Callable[..., object], worker: IWorker, work: Callable[[], _T]
) -> Deferred[_T]:
    """
    Run ``work`` in ``worker``; the Deferred fires with its outcome in the
    reactor thread.  Once the Deferred was cancelled, the outcome is
    dropped (the work itself goes on: a thread cannot be stopped).
    """
    deferred: Deferred[_T] = Deferred()

    def deliver(outcome: _T | Failure) -> None:
        if deferred.called:
            return
        if isinstance(outcome, Failure):
            deferred.errback(outcome)
        else:
            deferred.callback(outcome)

    def run() -> None:
        outcome: _T | Failure
        try:
            outcome = work()
        except BaseException:
            outcome = Failure()  # type: ignore[no-untyped-call]
        call_from_thread(deliver, outcome)

    worker.do(run)
    return deferred
