"""
When :class:`~txacme.service.AcmeIssuingService` issues an entry: what it
knows of each (:class:`Entry`), the rules that make one due
(:class:`RenewalRules`: missing, expired, inside ``panic_interval``, due
for renewal), and how long it waits after failures (:class:`Backoff`,
public as :class:`txacme.service.Backoff`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from random import Random

from attrs import define, field, frozen, validators

from txacme.store import CertificateSummary

__all__ = ["Backoff", "Entry", "RenewalRules"]

#: Why an entry is issued or renewed, as logged.
NO_CERTIFICATE = "no certificate"
NAMES_CHANGED = "names changed"
EXPIRED = "expired"
RENEWAL_DUE = "renewal due"
PANIC = "expires within panic_interval"
ARI_WINDOW = "in the CA's renewal window"
#: Reasons that the CA's renewal information could postpone.
TIMED = frozenset({RENEWAL_DUE, ARI_WINDOW})
#: txacme 0.9's reissue_interval and panic_interval, the defaults.
DEFAULT_REISSUE = timedelta(days=30).total_seconds()
DEFAULT_PANIC = timedelta(days=15).total_seconds()


@frozen
class Backoff:
    """
    How :class:`~txacme.service.AcmeIssuingService` waits before retrying a failed
    issuance: the n-th consecutive failure (from 1) waits
    ``first_delay * factor ** (n - 1)``, at most ``max_delay``, shortened
    by a random fraction of up to ``jitter`` so that many entries failing
    together do not retry together.  The service never waits longer than
    one ``check_interval``, unless the CA asked for longer (``Retry-After``).

    :ivar first_delay: The wait after the first failure.
    :ivar factor: The growth of each later wait.
    :ivar max_delay: The longest wait.
    :ivar jitter: The largest fraction taken off a wait (0 to 1).
    """

    first_delay: timedelta = field(default=timedelta(minutes=5))
    factor: float = field(default=2.0, validator=validators.ge(1.0))
    max_delay: timedelta = field(default=timedelta(hours=6))
    jitter: float = field(
        default=0.5, validator=[validators.ge(0.0), validators.lt(1.0)]
    )

    def delay(self, failures: int, random: Random) -> float:
        """
        The seconds to wait after ``failures`` consecutive failures.

        :param failures: How many failures in a row (1 or more).
        :param random: The source of the jitter.
        """
        exponent = min(max(failures, 1) - 1, 64)
        base = min(
            self.max_delay.total_seconds(),
            self.first_delay.total_seconds() * self.factor**exponent,
        )
        return base * (1.0 - self.jitter * random.random())


@define(eq=False)
class Entry:
    """What the service knows of one store entry between checks."""

    key: str
    summary: CertificateSummary | None = None
    #: The CA's suggested window (RFC 9773), the moment picked in it, and
    #: when to ask again.
    ari_window: tuple[datetime, datetime] | None = None
    ari_renew_at: float | None = None
    ari_next: float = 0.0
    #: Consecutive failures, and no automatic attempt before retry_at.
    failures: int = 0
    retry_at: float = 0.0
    panicked_at: float | None = None
    #: When the service last stored a certificate for it.
    updated_at: float = -math.inf


@frozen
class RenewalRules:
    """
    The service's intervals, and what they make of an entry.

    :ivar check_interval: The time between two checks of the store.
    :ivar reissue_interval: As the service's argument (``None``: derived).
    :ivar panic_interval: As the service's argument (``None``: derived).
    """

    check_interval: timedelta
    reissue_interval: timedelta | None
    panic_interval: timedelta | None

    def reissue_seconds(self, summary: CertificateSummary) -> float:
        """
        How long before expiry ``summary``'s certificate is renewed (without
        renewal information): ``reissue_interval`` (by default txacme 0.9's
        30 days), or a third of the lifetime when that is not shorter than
        the lifetime.
        """
        lifetime = summary.lifetime
        interval = (
            self.reissue_interval.total_seconds()
            if self.reissue_interval is not None
            else DEFAULT_REISSUE
        )
        if interval < lifetime:
            return interval
        return lifetime / 3

    def _panic_seconds(self, reissue: float) -> float:
        if self.panic_interval is not None:
            return self.panic_interval.total_seconds()
        return min(DEFAULT_PANIC, reissue / 2)

    def panic_seconds(self, summary: CertificateSummary) -> float:
        """
        ``panic_interval`` as given; by default txacme 0.9's 15 days, or
        half the renewal interval if shorter.
        """
        return self._panic_seconds(self.reissue_seconds(summary))

    def panic_at(self, entry: Entry) -> float:
        """When ``entry``'s certificate enters ``panic_interval``."""
        if entry.summary is None:
            return -math.inf
        return entry.summary.expires - self.panic_seconds(entry.summary)

    def panic_due(self, entry: Entry) -> float:
        """
        When ``entry`` is reissued for being inside ``panic_interval``: not
        before the check after the service stored its certificate, for a
        ``panic_interval`` longer than the certificates' lifetime.
        """
        if entry.summary is None:
            return entry.updated_at + self.check_interval.total_seconds()
        return self._times(entry, entry.summary)[0]

    def _times(self, entry: Entry, summary: CertificateSummary) -> tuple[float, float]:
        """
        When ``entry``, whose certificate ``summary`` summarizes, is
        reissued for being inside ``panic_interval``, and when it is
        renewed: each computed once, as a check does for every entry.
        """
        reissue = self.reissue_seconds(summary)
        panic_due = max(
            summary.expires - self._panic_seconds(reissue),
            entry.updated_at + self.check_interval.total_seconds(),
        )
        renew = (
            entry.ari_renew_at
            if entry.ari_renew_at is not None
            else summary.expires - reissue
        )
        return panic_due, min(renew, panic_due)

    def renewal_time(self, entry: Entry) -> float:
        if entry.summary is None:
            return -math.inf
        return self._times(entry, entry.summary)[1]

    def due(
        self, entry: Entry, now: float, wanted: tuple[str, ...] | None
    ) -> str | None:
        """
        Why ``entry`` should be issued now, or ``None``.

        :param wanted: The names the entry is asked for, if any.
        """
        if now < entry.retry_at:
            return None
        summary = entry.summary
        if summary is None:
            return NO_CERTIFICATE
        if wanted is not None and not set(wanted).issubset(summary.names):
            return NAMES_CHANGED
        if now >= summary.expires:
            return EXPIRED
        panic_due, renewal = self._times(entry, summary)
        if now >= panic_due:
            return PANIC
        if now >= renewal:
            return RENEWAL_DUE if entry.ari_renew_at is None else ARI_WINDOW
        return None

    def in_panic(self, entry: Entry, now: float) -> bool:
        """Whether ``entry``'s certificate is inside ``panic_interval``."""
        return now >= self.panic_at(entry)
