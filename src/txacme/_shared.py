"""
One operation that any number of callers wait for, each with a Deferred of
its own: the issuance of an entry and the creation of the client in
:mod:`txacme.service`, the stop of the endpoint's port in
:mod:`txacme.endpoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

_T = TypeVar("_T")


class Shared(Generic[_T]):
    """
    One operation that any number of callers wait for: each subscriber gets
    its own Deferred, firing with the operation's result (the same result
    for every subscriber, also for one that subscribes after it is done).
    Cancelling a subscriber's Deferred detaches that caller only, and the
    operation is cancelled when its last subscriber is (unless
    ``cancel_when_abandoned`` is false); or, for a subscriber that asked
    for it (txacme 0.9's ``issue_cert``), cancels the operation for every
    subscriber.

    The operation's result is consumed: a failure nobody subscribed to is
    not logged as unhandled.

    :param operation: The operation.
    :param names: What the operation is for, for its owner (the service:
        the names an issuance asks for).
    :param on_done: Called with this object once the operation is done,
        before the subscribers get its result.
    :param cancel_when_abandoned: Whether the operation is cancelled once
        every subscriber has cancelled its Deferred: ``False`` for an
        operation that must run to its end regardless, such as stopping a
        port.

    :ivar done: Whether the operation is done.
    :ivar failed: Whether it failed.
    :ivar cancelled_by_caller: Whether a subscriber cancelled the operation.
    """

    def __init__(
        self,
        operation: Deferred[_T],
        names: tuple[str, ...] = (),
        on_done: Callable[[Shared[_T]], object] | None = None,
        *,
        cancel_when_abandoned: bool = True,
    ) -> None:
        self.names = names
        self.operation = operation
        self.done = False
        self.failed = False
        self.cancelled_by_caller = False
        self._result: _T | Failure | None = None
        self._subscribers: list[Deferred[_T]] = []
        self._on_done = on_done
        self._cancel_when_abandoned = cancel_when_abandoned
        operation.addBoth(self._finished)

    def _finished(self, result: _T | Failure) -> None:
        self.done = True
        self.failed = isinstance(result, Failure)
        self._result = result
        if self._on_done is not None:
            self._on_done(self)
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            if isinstance(result, Failure):
                subscriber.errback(result)
            else:
                subscriber.callback(result)

    def subscribe(self, cancels_operation: bool = False) -> Deferred[_T]:
        """
        :param cancels_operation: Whether cancelling the Deferred returned
            cancels the operation for every subscriber.
        :returns: A Deferred firing with the operation's result.
        """
        if self.done:
            if isinstance(self._result, Failure):
                return fail(self._result)
            return succeed(cast(_T, self._result))
        subscriber: Deferred[_T] = Deferred(
            self._cancel_for_all if cancels_operation else self._detach
        )
        self._subscribers.append(subscriber)
        return subscriber

    def _cancel_for_all(self, subscriber: Deferred[_T]) -> None:
        if not self.done:
            self.cancelled_by_caller = True
            self.operation.cancel()

    def _detach(self, subscriber: Deferred[_T]) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
        if not self._subscribers and not self.done and self._cancel_when_abandoned:
            self.operation.cancel()

    def cancel(self) -> None:
        """Cancel the operation, for every subscriber."""
        self.operation.cancel()
