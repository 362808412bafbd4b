"""
The transport's nonce pool (RFC 8555 §6.5, §7.2): the nonces answers
bring, handed to the requests that need one, and the requests in flight
whose answers will bring more.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

__all__ = ["NoncePool"]


class NoncePool:
    """
    Nonces from the servers' answers, newest used first.

    When the pool is empty while signed requests are in flight, a request
    may wait (:meth:`wait`) for the nonce one of their answers brings rather
    than ask ``newNonce``: any number of requests at once then cost the CA
    no more ``newNonce`` requests than one at a time.

    :ivar in_flight: Signed requests sent and not yet answered.
    """

    #: The most nonces kept; a nonce unused for long may expire anyway.
    MAX_POOLED = 128

    def __init__(self) -> None:
        self._nonces: list[bytes] = []
        self._waiters: list[Deferred[bytes | None]] = []
        self.in_flight = 0

    def take(self) -> bytes | None:
        """The newest nonce of the pool, or ``None`` if it is empty."""
        return self._nonces.pop() if self._nonces else None

    def keep(self, nonce: bytes | None) -> None:
        """
        Hand an answer's nonce to the oldest waiting request, or pool it;
        for an answer without one, make sure no request waits for a nonce
        that cannot come.
        """
        if nonce is None:
            self.lost()
        elif self._waiters:
            self._waiters.pop(0).callback(nonce)
        else:
            self._nonces.append(nonce)
            if len(self._nonces) > self.MAX_POOLED:
                del self._nonces[0]

    def lost(self) -> None:
        """
        An answer came without a nonce (or none came): if no request is in
        flight any more, the oldest waiter stops waiting (and asks
        ``newNonce``).
        """
        if self.in_flight == 0 and self._waiters:
            self._waiters.pop(0).callback(None)

    async def wait(self, clock: IReactorTime, seconds: float) -> bytes | None:
        """
        Wait for the nonce of an answer to a request in flight, at most
        ``seconds``.

        :returns: The nonce, or ``None`` if none came in time.
        """

        def forget(waiter: Deferred[bytes | None]) -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

        waiter: Deferred[bytes | None] = Deferred(forget)
        self._waiters.append(waiter)

        def give_up() -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                waiter.callback(None)

        timer = clock.callLater(seconds, give_up)
        try:
            return await waiter
        finally:
            if timer.active():
                timer.cancel()
