"""
Waiting for the CA: how often to poll (:class:`PollingPolicy`), one
deadline for everything an issuance waits for (:class:`Deadline`), and the
waits themselves: an authorization until it is valid, an order through
finalization until it is valid.

They are written against :class:`~txacme.interfaces.IssuingClient`, so that
:class:`txacme.client.Client` and :class:`txacme.testing.FakeClient` go
through the same steps.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from acme import messages
from attrs import field, frozen, validators
from cryptography import x509
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from txacme._protocol._common import gather
from txacme._retry import is_transient
from txacme.errors import (
    AuthorizationFailed,
    AuthorizationsNotValid,
    MalformedResponse,
    OrderFailed,
    PollTimeout,
    ServerError,
)

if TYPE_CHECKING:
    from txacme.interfaces import IssuingClient

__all__ = [
    "Deadline",
    "PollTiming",
    "PollingPolicy",
    "finalize_order",
    "poll_authorization",
]

_PENDING_STATES = (messages.STATUS_PENDING, messages.STATUS_PROCESSING)
_T = TypeVar("_T")
_log = Logger()


class PollTiming:
    """
    What a client has seen of how long its CA takes: a moving estimate, in
    seconds, of a validation (from answering a challenge until its
    authorization is valid) and of an issuance (from finalizing until the
    order is valid).  Shared by the issuances of one
    :class:`PollingPolicy` (one per client by default).
    """

    #: The weight of a new observation in the estimate.
    WEIGHT = 0.3
    #: First polls finding the resource valid in a row before the estimate
    #: is halved.
    STREAK = 3

    def __init__(self) -> None:
        self._estimates: dict[str, float] = {}
        self._streaks: dict[str, int] = {}

    def estimate(self, kind: str) -> float | None:
        """
        :param kind: ``"authorization"`` or ``"order"``.
        :returns: The estimate, or ``None`` before the first observation.
        """
        return self._estimates.get(kind)

    def observe(self, kind: str, seconds: float) -> None:
        """Take one more observation into the estimate of ``kind``."""
        seconds = max(0.0, seconds)
        current = self._estimates.get(kind)
        self._estimates[kind] = (
            seconds
            if current is None
            else (1 - self.WEIGHT) * current + self.WEIGHT * seconds
        )

    def learn(self, kind: str, waited: float, last_pending: float | None) -> None:
        """
        Learn from one wait: ``kind`` was seen valid ``waited`` seconds
        after it started, and last seen pending ``last_pending`` seconds
        after (``None``: valid at the first poll).

        Seen pending, then valid, the CA took about the midpoint; but the
        first time, when the polls were far apart, the later end is taken
        (waiting a little long is cheaper than polling in vain, and is soon
        found out).  Valid at the first poll, it may have been ready long
        before: after a few such polls in a row the estimate is halved, so
        that a CA faster than it was thought is found out in a few
        issuances, while one whose speed is known is probed below it only
        now and then.
        """
        if last_pending is not None:
            self._streaks[kind] = 0
            first = self._estimates.get(kind) is None
            self.observe(kind, waited if first else (last_pending + waited) / 2)
            return
        streak = self._streaks.get(kind, 0) + 1
        self._streaks[kind] = streak
        self.observe(kind, waited * (0.5 if streak >= self.STREAK else 0.9))


@frozen
class PollingPolicy:
    """
    How the client waits for a resource to change state: an authorization
    being validated (:func:`~txacme.client.poll_until_valid`), an order being
    processed (:meth:`~txacme.client.Client.finalize`,
    :meth:`~txacme.client.Client.request_issuance`,
    :func:`~txacme.client.issue_certificate`).

    A ``Retry-After`` header from the server says how long to wait.  Without
    one, the n-th wait (from 0) is ``first_delay * factor ** n`` seconds, at
    most ``max_delay``, until the client has seen its CA at work: then, when
    ``adaptive`` (the default), the waits follow what it learnt
    (:class:`~txacme.client.PollTiming`): the first poll comes just after the time a
    validation (or an issuance) took so far, and later ones at a fraction of
    it, never sooner than ``min_delay``.  A fast CA is so polled quickly,
    and a slow one is not polled in vain.
    The wait before the first poll of an authorization, right after its
    challenge was answered, is ``initial_delay`` (``first_delay`` unless
    set; 0 polls at once, for a CA that validates before it answers, such
    as :class:`txacme.testing.FakeClient`).  Polling that lasts longer than
    ``timeout`` seconds in all (an order's finalization; a whole
    :func:`~txacme.client.issue_certificate` unless given its own
    ``timeout``) fails with :class:`~txacme.errors.PollTimeout`;
    :func:`~txacme.client.poll_until_valid` has its ``timeout`` argument
    instead, as in txacme 0.9.

    :ivar first_delay: Seconds before the first poll.
    :ivar factor: Growth of each later delay.
    :ivar max_delay: The ceiling of a computed delay.
    :ivar timeout: The overall limit, in seconds.
    :ivar initial_delay: Seconds between answering a challenge and the
        first poll of its authorization, or ``None`` for ``first_delay``.
    :ivar adaptive: Whether to wait as the CA's past speed suggests.
    :ivar min_delay: The shortest adaptive wait.
    :ivar timing: What was learnt (shared by copies of the policy).
    """

    first_delay: float = field(default=0.1, validator=validators.gt(0))
    factor: float = field(default=2.0, validator=validators.ge(1))
    max_delay: float = field(default=10.0, validator=validators.gt(0))
    timeout: float = field(default=300.0, validator=validators.gt(0))
    initial_delay: float | None = field(
        default=None, validator=validators.optional(validators.ge(0))
    )
    adaptive: bool = True
    min_delay: float = field(default=0.05, validator=validators.ge(0))
    timing: PollTiming = field(factory=PollTiming, eq=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """
        The seconds to wait before poll number ``attempt + 1``.

        :param attempt: How many waits came before this one.
        :param retry_after: The server's ``Retry-After``, which wins if given.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        return float(min(self.max_delay, self.first_delay * self.factor**attempt))

    def authorization_delay(self, attempt: int, retry_after: float | None) -> float:
        """
        The seconds to wait before poll number ``attempt + 1`` of an
        authorization: ``initial_delay`` before the first one (when set
        and the server gave no ``Retry-After``), :meth:`wait` otherwise.
        """
        if attempt == 0 and retry_after is None and self.initial_delay is not None:
            return self.initial_delay
        return self.wait("authorization", attempt, retry_after)

    def wait(self, kind: str, attempt: int, retry_after: float | None) -> float:
        """
        The seconds to wait before poll number ``attempt + 1`` of an
        ``"authorization"`` or an ``"order"``: the server's
        ``Retry-After``; else, adaptive, as the estimate suggests; else
        :meth:`delay`.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        estimate = self.timing.estimate(kind) if self.adaptive else None
        if estimate is None:
            return self.delay(attempt)
        if attempt == 0:
            seconds = estimate * 1.1
        else:
            seconds = estimate * 0.5 * self.factor ** (attempt - 1)
        return min(self.max_delay, max(self.min_delay, seconds))

    def observe(self, kind: str, waited: float, last_pending: float | None) -> None:
        """
        Learn from one wait: ``kind`` became valid ``waited`` seconds after
        it started, having last been seen pending ``last_pending`` seconds
        after (``None``: valid at the first poll, so possibly much sooner).
        """
        if self.adaptive:
            self.timing.learn(kind, waited, last_pending)


class Deadline:
    """
    The moment, on one clock, by which everything an operation waits for
    must be done.

    :param clock: The clock.
    :param seconds: The time from now; ``None`` (or infinity) for none.
    """

    def __init__(self, clock: IReactorTime, seconds: float | None) -> None:
        self.clock = clock
        self.started = clock.seconds()
        self.at = math.inf if seconds is None else self.started + seconds

    def remaining(self) -> float:
        """Seconds left (negative once past)."""
        return self.at - self.clock.seconds()

    async def wait(self, seconds: float, url: str, status: str) -> None:
        """
        Wait ``seconds`` (0: not at all), no later than the deadline.

        :param url: The resource waited for, for the error.
        :param status: Its last status, for the error.
        :raises PollTimeout: If the deadline has passed.
        """
        remaining = self.remaining()
        if remaining <= 0:
            raise PollTimeout(url, status, self.clock.seconds() - self.started)
        seconds = min(seconds, remaining)
        if seconds > 0:
            await deferLater(self.clock, seconds)


#: Seconds between the attempts of :func:`persevere`: the first, the most.
PERSEVERE_FIRST_DELAY = 1.0
PERSEVERE_MAX_DELAY = 10.0


async def persevere(
    deadline: Deadline, attempt: Callable[[], Awaitable[_T]], what: str
) -> _T:
    """
    Run ``attempt`` until it succeeds or fails with an error that is not
    passing (:func:`~txacme.jws.is_transient`), waiting between attempts
    (1 s, doubling, at most 10 s), as long as the deadline leaves time
    for another wait: then its last error is raised.

    The transport has retried each request already; this is for what an
    issuance must not give up lightly: the reads after a finalization and
    the certificate's download (the CA may have issued it: given up, it
    would be issued for nothing, and count against the CA's limits), and
    the polls, which are only reads.

    :param what: What is attempted, for the log.
    """
    delay = PERSEVERE_FIRST_DELAY
    while True:
        try:
            return await attempt()
        except Exception as error:
            if not is_transient(error) or deadline.remaining() <= delay:
                raise
            _log.info(
                "{what} failed ({error}); trying again in {delay} s",
                what=what,
                error=error,
                delay=delay,
            )
            await deferLater(deadline.clock, delay)
            delay = min(delay * 2, PERSEVERE_MAX_DELAY)


async def poll_authorization(
    client: IssuingClient,
    authzr: messages.AuthorizationResource,
    deadline: Deadline,
) -> messages.AuthorizationResource:
    """
    Poll an authorization whose challenge was just answered until it is no
    longer pending or processing.

    :returns: The valid authorization.
    :raises AuthorizationFailed: If it ends in another state.
    :raises PollTimeout: At the deadline.
    """
    if authzr.body.status == messages.STATUS_VALID:
        return authzr
    policy = client.policy
    started = deadline.clock.seconds()
    last_pending: float | None = None
    retry_after: float | None = None
    attempt = 0
    while True:
        status = authzr.body.status
        await deadline.wait(
            policy.authorization_delay(attempt, retry_after),
            authzr.uri,
            status.name if status is not None else "unknown",
        )
        attempt += 1
        authzr, retry_after = await persevere(
            deadline,
            partial(client.refresh_authorization, authzr),
            f"Polling {authzr.uri}",
        )
        status = authzr.body.status
        if status == messages.STATUS_VALID:
            policy.observe(
                "authorization", deadline.clock.seconds() - started, last_pending
            )
            return authzr
        last_pending = deadline.clock.seconds() - started
        if status not in _PENDING_STATES:
            raise AuthorizationFailed(authzr)


def _seen_valid(orderr: messages.OrderResource) -> bool:
    """
    Whether the order resource holds every one of the order's
    authorizations, each last seen valid.
    """
    urls = orderr.body.authorizations or ()
    valid = {
        authzr.uri
        for authzr in orderr.authorizations or ()
        if authzr.body.status == messages.STATUS_VALID
    }
    return bool(urls) and all(url in valid for url in urls)


async def _raise_for_authorizations(
    client: IssuingClient, orderr: messages.OrderResource
) -> None:
    """Fetch an order's authorizations and name those that are not valid."""
    fetched = await gather(
        [
            client.refresh_authorization(
                messages.AuthorizationResource(uri=url, body=messages.Authorization())
            )
            for url in orderr.body.authorizations or ()
        ]
    )
    not_valid = [
        authzr for authzr, _ in fetched if authzr.body.status != messages.STATUS_VALID
    ]
    if not_valid:
        raise AuthorizationsNotValid(not_valid)


async def _read_order(
    client: IssuingClient, orderr: messages.OrderResource, deadline: Deadline
) -> tuple[messages.OrderResource, float | None]:
    """Read an order, trying again after passing failures until the deadline."""
    return await persevere(
        deadline,
        lambda: client.refresh_order(orderr),
        f"Reading the order {orderr.uri}",
    )


async def _finalize(
    client: IssuingClient,
    orderr: messages.OrderResource,
    csr: x509.CertificateSigningRequest,
    deadline: Deadline,
    *,
    ready: bool,
) -> tuple[messages.OrderResource, float | None, bool]:
    """
    Send the CSR.  ``orderNotReady`` is answered to a finalize sent again
    after its answer was lost (or to one sent before the server caught up
    with the authorizations); a passing failure may have been the CA's
    answer lost: the order is read then, to see whether the CA has it
    finalized.  If it has not, after a passing failure, that failure is
    raised.

    :param ready: Whether the order was last seen ready, so that
        ``orderNotReady`` can only mean it is finalized already: if it is
        not, the error is raised (after naming the authorizations that are
        not valid, if any).
    :returns: The order, its ``Retry-After``, and whether the CA has it
        finalized (it is processing or valid).
    """
    try:
        result, retry_after = await client.send_csr(orderr, csr)
    except Exception as error:
        if not (
            is_transient(error)
            or (isinstance(error, ServerError) and error.code == "orderNotReady")
        ):
            raise
        # Did the CA act on it?  (If it did, the certificate is on its way,
        # and is not to be given up for a passing failure.)
        current, retry_after = await _read_order(client, orderr, deadline)
        finalized = current.body.status in (
            messages.STATUS_PROCESSING,
            messages.STATUS_VALID,
        )
        if not finalized and (ready or is_transient(error)):
            if current.body.status == messages.STATUS_PENDING:
                await _raise_for_authorizations(client, current)
            raise
        return current, retry_after, finalized
    return result, retry_after, True


async def _wait_while(
    client: IssuingClient,
    orderr: messages.OrderResource,
    states: tuple[messages.Status, ...],
    retry_after: float | None,
    deadline: Deadline,
) -> messages.OrderResource:
    """
    Poll an order while its status is one of ``states``, following the
    policy and ``Retry-After``.

    :raises PollTimeout: At the deadline.
    """
    policy = client.policy
    started = deadline.clock.seconds()
    last_pending: float | None = None
    attempt = 0
    while orderr.body.status in states:
        await deadline.wait(
            policy.wait("order", attempt, retry_after),
            orderr.uri,
            orderr.body.status.name,
        )
        attempt += 1
        orderr, retry_after = await _read_order(client, orderr, deadline)
        if orderr.body.status in states:
            last_pending = deadline.clock.seconds() - started
    if attempt and orderr.body.status == messages.STATUS_VALID:
        policy.observe("order", deadline.clock.seconds() - started, last_pending)
    return orderr


async def finalize_order(
    client: IssuingClient,
    orderr: messages.OrderResource,
    csr: x509.CertificateSigningRequest,
    deadline: Deadline,
) -> messages.OrderResource:
    """
    Finalize an order (RFC 8555 §7.4) and wait until it is valid.

    An order whose authorizations were all last seen valid is finalized at
    once rather than read first (it is ready, §7.1.6): one request less
    per certificate.  Otherwise the order is read and, while pending with
    every authorization valid, waited for.  An ``orderNotReady`` answer to
    the finalization of an order the CA is already processing (or has
    issued: a finalize sent again after its answer was lost) is not an
    error: the order is waited for and its certificate fetched.  From the
    finalization on, passing failures are tried again until the deadline
    (:func:`persevere`): the CA may have issued already.

    :returns: The valid order, with its certificate URL.
    :raises AuthorizationsNotValid: If it is not ready for want of
        authorizations.
    :raises OrderFailed: If it is or becomes invalid.
    :raises PollTimeout: At the deadline.
    """
    retry_after: float | None = None
    submitted = False
    if orderr.body.status == messages.STATUS_PENDING and _seen_valid(orderr):
        orderr, retry_after, submitted = await _finalize(
            client, orderr, csr, deadline, ready=False
        )
    elif orderr.body.status == messages.STATUS_PENDING:
        orderr, retry_after = await _read_order(client, orderr, deadline)
    if not submitted and orderr.body.status == messages.STATUS_PENDING:
        # Raises unless every authorization is valid; if they all are,
        # the server has yet to notice: wait for the order to be ready.
        await _raise_for_authorizations(client, orderr)
        orderr = await _wait_while(
            client, orderr, (messages.STATUS_PENDING,), retry_after, deadline
        )
    if not submitted and orderr.body.status == messages.STATUS_READY:
        orderr, retry_after, submitted = await _finalize(
            client, orderr, csr, deadline, ready=True
        )
    if submitted:
        # "ready" again right after finalize: the server has not started.
        orderr = await _wait_while(
            client,
            orderr,
            (messages.STATUS_PROCESSING, messages.STATUS_READY),
            retry_after,
            deadline,
        )
    elif orderr.body.status == messages.STATUS_PROCESSING:
        orderr = await _wait_while(
            client, orderr, (messages.STATUS_PROCESSING,), retry_after, deadline
        )
    if orderr.body.status != messages.STATUS_VALID:
        raise OrderFailed(orderr)
    if not orderr.body.certificate:
        raise MalformedResponse(f"The valid order {orderr.uri} has no certificate URL")
    return orderr
