"""
When the transport sends a request again: the policy
(:class:`~txacme.jws.RetryPolicy`) and the budget of retries one issuance
shares (:class:`~txacme.jws.RetryBudget`).  Public through
:mod:`txacme.jws`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from random import Random

from attrs import field, frozen, validators

from txacme.errors import MalformedResponse, NetworkError, ServerError

__all__ = [
    "RetryBudget",
    "RetryPolicy",
    "current_budget",
    "is_transient",
    "retry_budget",
]


@frozen
class RetryPolicy:
    """
    When the transport sends a request again.  Every ACME request is
    retried, re-signed with a fresh nonce, after a passing fault:

    * no answer: the connection was refused, reset or closed before or
      during the answer, the TLS handshake failed, or nothing came within
      the timeout (but not a server certificate that is not trusted, nor
      a URL that cannot be requested: see
      :attr:`~txacme.errors.NetworkError.transient`);
    * an error a CA sends when busy: ``rateLimited`` or ``serverInternal``,
      or an HTTP 429, 500, 502, 503 or 504 without an ACME problem type;
    * a success answer no RFC 8555 server sends (§6.5): a signed request's
      answer without a ``Replay-Nonce``, of another content type (an HTML
      page), or with a cut JSON body: what a middlebox or captive portal
      sends.

    (``badNonce`` is retried at once, and counted apart: see
    :class:`JWSClient`.)  Repeating is safe in ACME: a repeated
    ``newAccount`` finds the account, a repeated ``newOrder`` makes a
    harmless twin, a challenge POST answers its current state (or, from a
    CA that refuses it, as Pebble does, the client reads the challenge),
    and the client knows what a repeated ``finalize`` means (the order is
    already processing or valid).

    The server's ``Retry-After`` wins; without one the n-th retry (from 0)
    waits ``first_delay * factor ** n`` seconds (at most ``max_delay``),
    spread by ``jitter`` (a fraction) so that many clients do not retry in
    step.  A ``Retry-After`` longer than ``max_retry_after`` is not waited
    for: the error is raised at once, carrying it.  After ``max_retries``
    retries of one request, or ``max_issuance_retries`` retries within one
    issuance (:func:`~txacme.client.issue_certificate`, and so every
    issuance of :class:`~txacme.service.AcmeIssuingService`), the last
    error is raised; its ``retry_after`` says when a retry makes sense.

    :ivar max_retries: Retries of one request; 0 disables retrying.
    :ivar max_issuance_retries: Retries of all the requests of one
        issuance together.
    :ivar first_delay: Seconds before the first retry.
    :ivar factor: Growth of each later delay.
    :ivar max_delay: The ceiling of a computed delay.
    :ivar max_retry_after: The longest ``Retry-After`` waited for.
    :ivar jitter: The fraction by which a computed delay varies.
    :ivar random: The source of the jitter.
    """

    max_retries: int = field(default=10, validator=validators.ge(0))
    max_issuance_retries: int = field(default=40, validator=validators.ge(0))
    first_delay: float = field(default=0.5, validator=validators.ge(0))
    factor: float = field(default=2.0, validator=validators.ge(1))
    max_delay: float = field(default=10.0, validator=validators.ge(0))
    max_retry_after: float = field(default=60.0, validator=validators.ge(0))
    jitter: float = field(default=0.25, validator=[validators.ge(0), validators.le(1)])
    random: Random = field(factory=Random, eq=False, repr=False)

    def is_transient(self, error: BaseException) -> bool:
        """
        Whether ``error`` is worth retrying: a passing error of the CA, a
        request without answer, or a middlebox's answer (see
        :func:`is_transient`).
        """
        return is_transient(error)

    def backoff(self, retries: int) -> float:
        """The delay before retry number ``retries + 1``, with jitter."""
        base = min(self.max_delay, self.first_delay * self.factor**retries)
        spread = base * self.jitter
        return max(0.0, base + self.random.uniform(-spread, spread))


def is_transient(error: BaseException) -> bool:
    """
    Whether ``error`` is a passing one, worth trying again: an error a CA
    sends when busy, a request without answer, or a middlebox's answer.
    """
    if isinstance(error, ServerError):
        return error.code in _TRANSIENT_CODES or (
            error.code is None and error.status in _TRANSIENT_STATUSES
        )
    if isinstance(error, NetworkError):
        return error.transient
    return isinstance(error, MalformedResponse) and error.transient


_TRANSIENT_CODES = frozenset({"rateLimited", "serverInternal"})
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryBudget:
    """
    The retries left to the requests of one operation (an issuance),
    shared by them whatever client or transport sends them.  Made by
    :func:`retry_budget`; the transport takes its size from its
    :attr:`RetryPolicy.max_issuance_retries` at the first retry.

    :ivar used: Retries taken so far.
    :ivar limit: The most retries, once known.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.used = 0
        self.limit = limit

    def take(self, policy: RetryPolicy) -> bool:
        """
        Take one retry, if any is left.

        :returns: Whether one was.
        """
        if self.limit is None:
            self.limit = policy.max_issuance_retries
        if self.used >= self.limit:
            return False
        self.used += 1
        return True


_BUDGET: ContextVar[RetryBudget | None] = ContextVar(
    "txacme_retry_budget", default=None
)


def current_budget() -> RetryBudget | None:
    """The budget of the context, if any (see :func:`retry_budget`)."""
    return _BUDGET.get()


@contextmanager
def retry_budget(limit: int | None = None) -> Iterator[RetryBudget]:
    """
    Share one :class:`RetryBudget` between every request made, in this
    context, by coroutines started from it (Twisted's coroutines carry
    their context along), such as one issuance's.

    :param limit: The most retries; by default the
        :attr:`RetryPolicy.max_issuance_retries` of the transport that
        retries first.
    :returns: A context manager giving the budget.
    """
    budget = RetryBudget(limit)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)
