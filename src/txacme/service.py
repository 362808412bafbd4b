"""
:class:`AcmeIssuingService`: a Twisted service that keeps the certificates
of a store issued and renewed, as txacme 0.9's, on the RFC 8555 client.

The service reads its entries from an
:class:`~txacme.interfaces.ICertificateStore` (for example a
:class:`~txacme.store.DirectoryStore`, whose files txsni and Twisted's
``tls:`` endpoint serve).  An entry is keyed by its first name and holds a
private key, a certificate (for one name or several) and the issuer chain.
At start and every ``check_interval`` it issues a certificate for every
entry that lacks one and renews those whose time has come: when the CA
offers ACME Renewal Information (RFC 9773), at a random moment of the
window the CA suggests; otherwise as ``reissue_interval`` says.  Failures
are retried with exponential backoff; a certificate about to expire while
renewal keeps failing makes the service call ``panic``.

It uses only the issuance workflow (:func:`~txacme.client.issue_certificate`)
and the :class:`IssuingClient` interface, so :class:`txacme.testing.FakeClient`
can stand in for a :class:`~txacme.client.Client` in tests.

Its parts: the rules that make an entry due and the backoff are in
``txacme._renewal``, issuing one entry (keys, orders, resuming) in
``txacme._issuer``.  What stays here is the one class that schedules
entries (checks, wake-ups, sweeps, renewal information, failures), longer
than the other modules because its docstring is the reference of
txacme 0.9's arguments and of the new ones.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from random import Random
from typing import Any, TypeVar

from acme import messages
from attrs import evolve
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredSemaphore,
    FirstError,
    fail,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from txacme._issuer import EntryIssuer
from txacme._names import entry_names, parse_server_names
from txacme._renewal import (
    TIMED,
    Backoff,
    Entry,
    RenewalRules,
)
from txacme._shared import Shared as _Shared
from txacme.errors import (
    AccountDoesNotExist,
    NotOffered,
)
from txacme.interfaces import (
    ICertificateStore,
    ICertificateSummaries,
    IResponder,
    IssuingClient,
)
from txacme.store import CertificateSummary, summarize
from txacme.util import KEY_TYPES, PrivateKey, generate_private_key

__all__ = [
    "AcmeIssuingService",
    "Backoff",
    "IssuingClient",
    "parse_server_names",
]

_log = Logger()
_T = TypeVar("_T")

#: Entries a check or a sweep looks at before letting the reactor run
#: other work (some 10 ms of work).
_YIELD_EVERY = 1000
#: The shortest wait between two renewalInfo requests for one certificate.
_MIN_ARI_RETRY = 60.0


def _default_panic(failure: Failure, server_name: str) -> None:
    _log.failure(
        "PANIC! Unable to renew the certificate for {server_name!r}, which "
        "expires soon or has expired",
        failure,
        server_name=server_name,
    )


def _panic_not_obtained(failure: Failure, server_name: str) -> None:
    """The default panic, for an entry that has no certificate yet."""
    _log.failure(
        "PANIC! Unable to obtain a certificate for {server_name!r}, which has none",
        failure,
        server_name=server_name,
    )


class AcmeIssuingService(Service):
    """
    A service for keeping certificates issued and renewed: txacme 0.9's
    ``AcmeIssuingService``, speaking RFC 8555.

    **Entries and names.**  Every entry of ``cert_store`` is kept issued.
    An entry holds one certificate, which may cover several names
    (subjectAltName); the store key is the first.  A renewal keeps the
    names of the current certificate, the key first.  Ask for several names
    with ``issue_cert("example.com,www.example.com")`` or
    ``issue_cert(["example.com", "www.example.com"])``, or with the
    ``names`` argument; an entry whose certificate lacks a name asked for
    that way is reissued at once.  An empty entry (txacme 0.9's empty
    ``<name>.pem`` file) is issued for its key.

    **When.**  At start, and every ``check_interval``, the service reads the
    store and issues what is missing, expired, or due for renewal.  When
    the CA offers ACME Renewal Information (``renewalInfo``, RFC 9773), a
    certificate is renewed at a random moment of the window the CA
    suggests (asking again after the ``Retry-After`` the CA gives, and at
    the latest when ``panic_interval`` begins); otherwise when it expires
    within ``reissue_interval``.  A renewal names the certificate it
    replaces (``replaces``, RFC 9773 §5).

    **Failures.**  A failed issuance is retried after a :class:`Backoff`
    delay (exponential, with jitter, never longer than ``check_interval``
    unless the CA's ``Retry-After`` asks for more); the regular checks go
    on regardless.  When it fails for an entry whose certificate is missing,
    expired or inside ``panic_interval``, ``panic(failure, server_name)`` is
    called, at most once per ``check_interval`` for an entry.

    **Work.**  At most ``max_concurrent`` issuances run at once, and never
    two for one entry: :meth:`issue_cert` shares an issuance in flight.
    New private keys are generated in the reactor's thread pool when
    ``clock`` is a reactor with threads
    (:class:`~twisted.internet.interfaces.IReactorThreads`), and
    synchronously otherwise (a :class:`~twisted.internet.task.Clock` in
    tests), so that tests stay deterministic.

    :param cert_store: The :class:`~txacme.interfaces.ICertificateStore`.
        If it also provides :class:`~txacme.interfaces.ICertificateSummaries`
        (both stores of :mod:`txacme.store` do), checks read only the
        certificates' names and validity.
    :param client_creator: A callable taking no arguments and returning a
        Deferred (or any awaitable) that fires with a
        :class:`~txacme.client.Client` (any :class:`IssuingClient`),
        registered or not.  It is called when the service first needs the
        CA, and again after a failure; the service registers the account
        (``NewRegistration.from_data(email=email,
        terms_of_service_agreed=True)``), and closes the client
        (``close()``) when it stops.
    :param clock: The reactor, or any ``IReactorTime``; it is also passed to
        the client's polling.
    :param responders: :class:`~txacme.interfaces.IResponder` objects, in
        order of preference.
    :param email: The account's contact e-mail address, or ``None``.
    :param check_interval: The time between two checks of the store.
    :param reissue_interval: Without renewal information from the CA,
        renew a certificate when it expires within this interval.  ``None``
        (the default) means txacme 0.9's 30 days, except for a certificate
        whose lifetime is not longer than that (a 6-day certificate, say):
        it is renewed when a third of its lifetime remains.  An explicit
        interval as long as a certificate's lifetime is ignored for it in
        the same way, so that it does not renew on every check.
    :param panic_interval: Reissue a certificate that expires within this
        interval at once, and call ``panic`` when that fails.  ``None`` (the
        default) means txacme 0.9's 15 days, or half the renewal interval
        if that is shorter (1 day for a 6-day certificate).  An explicit
        interval is used as given, also when longer than a certificate's
        lifetime; a certificate the service has just issued is then
        reissued at the next check, not before.
    :param panic: Called with the failure and the entry's key; by default
        it logs the failure at level critical.
    :param generate_key: A callable returning a new private key for each
        certificate: safe to call in a thread.  By default a key of
        ``key_type``.  The key is stored in the traditional OpenSSL
        format of its type (``BEGIN RSA PRIVATE KEY``, ``BEGIN EC PRIVATE
        KEY``), as txacme 0.9 stored it; PKCS#8 for a type that has none.
    :param key_type: The type of the keys generated without
        ``generate_key``, as :func:`txacme.util.generate_private_key`
        takes it: ``"rsa"`` (RSA-2048, txacme 0.9's, the default), or
        ``"p256"`` (ECDSA P-256: faster to generate and to handshake, and
        accepted by every CA and client in use), ``"p384"``,
        ``"rsa3072"``, ``"rsa4096"``.
    :param names: Entries to keep in the store whatever it holds: names, or
        several names for one entry (see :func:`parse_server_names`).
    :param max_concurrent: The most issuances (and renewal information
        requests) in flight at once.
    :param backoff: The retry delays after failures.
    :param random: The source of randomness for jitter and renewal times.
    :param profile: A certificate profile the CA offers, or ``None``.
    :param preferred_chain: The issuer common name of the chain to store
        (see :func:`~txacme.client.select_chain`), or ``None``.

    :ivar cert_store: The store.
    :ivar max_concurrent: As given.
    :ivar ready: Whether the first check since the service started has
        finished (see :meth:`when_certs_valid`).
    """

    def __init__(
        self,
        cert_store: ICertificateStore,
        client_creator: Callable[[], Awaitable[IssuingClient]],
        clock: IReactorTime,
        responders: Sequence[IResponder],
        email: str | None = None,
        check_interval: timedelta = timedelta(days=1),
        reissue_interval: timedelta | None = None,
        panic_interval: timedelta | None = None,
        panic: Callable[[Failure, str], object] | None = None,
        generate_key: Callable[[], PrivateKey] | None = None,
        *,
        key_type: str = "rsa",
        names: Iterable[str | Sequence[str]] = (),
        max_concurrent: int = 4,
        backoff: Backoff | None = None,
        random: Random | None = None,
        profile: str | None = None,
        preferred_chain: str | None = None,
    ) -> None:
        if check_interval <= timedelta(0):
            raise ValueError("check_interval must be positive")
        for name, interval in [
            ("reissue_interval", reissue_interval),
            ("panic_interval", panic_interval),
        ]:
            if interval is not None and interval <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.cert_store = cert_store
        self._client_creator = client_creator
        self._clock = clock
        self._responders = list(responders)
        self._email = email
        self._rules = RenewalRules(check_interval, reissue_interval, panic_interval)
        self._panic = panic if panic is not None else _default_panic
        if key_type.lower() not in KEY_TYPES:
            raise ValueError(
                f"Unknown key_type {key_type!r}; expected one of "
                f"{', '.join(sorted(KEY_TYPES))}"
            )
        self.key_type = key_type
        self._generate_key: Callable[[], PrivateKey] = (
            generate_key
            if generate_key is not None
            else partial(generate_private_key, key_type)
        )
        self.max_concurrent = max_concurrent
        self._backoff = backoff if backoff is not None else Backoff()
        self._random = random if random is not None else Random()
        self._profile = profile
        self._preferred_chain = preferred_chain
        self._issuer = EntryIssuer(
            cert_store,
            clock,
            self._responders,
            self._generate_key,
            profile,
            preferred_chain,
        )

        self.ready = False
        self._waiting: list[Deferred[None]] = []
        self._wanted: dict[str, tuple[str, ...]] = {}
        for wanted in names:
            parsed = entry_names(wanted)
            self._wanted[parsed[0]] = parsed
        self._entries: dict[str, Entry] = {}
        self._issuing: dict[str, _Shared[None]] = {}
        self._semaphore = DeferredSemaphore(max_concurrent)
        self._client: _Shared[IssuingClient] | None = None
        #: Every client made (and registered) since the service started.
        self._clients: list[IssuingClient] = []
        #: The registration resource of the last registration (txacme 0.9's
        #: name).
        self._regr: messages.RegistrationResource | None = None
        self._ari_offered: bool | None = None
        self._loop: LoopingCall | None = None
        self._check: Deferred[None] | None = None
        self._check_retry: IDelayedCall | None = None
        self._next_check = math.inf
        self._tasks: set[Deferred[None]] = set()
        self._heap: list[tuple[float, str]] = []
        self._wakeup: IDelayedCall | None = None
        #: The heap time the wake-up is armed for.
        self._wakeup_at = math.inf

    @property
    def check_interval(self) -> timedelta:
        """The time between two checks of the store."""
        return self._rules.check_interval

    @check_interval.setter
    def check_interval(self, interval: timedelta) -> None:
        self._rules = evolve(self._rules, check_interval=interval)

    @property
    def reissue_interval(self) -> timedelta | None:
        """As given (``None``: derived from lifetimes)."""
        return self._rules.reissue_interval

    @reissue_interval.setter
    def reissue_interval(self, interval: timedelta | None) -> None:
        self._rules = evolve(self._rules, reissue_interval=interval)

    @property
    def panic_interval(self) -> timedelta | None:
        """As given (``None``: derived from lifetimes)."""
        return self._rules.panic_interval

    @panic_interval.setter
    def panic_interval(self, interval: timedelta | None) -> None:
        self._rules = evolve(self._rules, panic_interval=interval)

    # -- the public API --------------------------------------------------------

    def when_certs_valid(self) -> Deferred[None]:
        """
        Wait for the first check after the service started: every entry of
        the store was looked at, and every issuance it needed (missing,
        expired or renamed entries) has finished.  Normally every entry
        then has a valid certificate; an entry whose issuance failed has
        been reported (``panic``) and is being retried, as in txacme 0.9.

        :returns: A Deferred firing with ``None`` then, at once if that
            happened already.  It can be cancelled.
        """
        if self.ready:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._forget_waiter)
        self._waiting.append(waiter)
        return waiter

    def _forget_waiter(self, waiter: Deferred[None]) -> None:
        if waiter in self._waiting:
            self._waiting.remove(waiter)

    def issue_cert(self, server_name: str | Sequence[str]) -> Deferred[None]:
        """
        Issue a certificate for an entry now, whatever the current one's
        expiry, and store it.  If an issuance of that entry is in flight,
        wait for it instead of starting another (unless it lacks one of
        the names asked for: then a new one starts once it has finished).

        The service retries a failed issuance by itself only for the
        entries it keeps (those of the store and of ``names``); for any
        other name, as in txacme 0.9, the failure goes to the caller, who
        decides when to try again.

        :param server_name: The entry's key, or several names: a string
            with commas or a sequence (see :func:`parse_server_names`).  A
            single name reissues the entry with the names it has (just the
            name, for a new entry); several names set the entry's names.
        :returns: A Deferred firing with ``None`` once the certificate is
            stored.  Cancelling it cancels the issuance, as in txacme 0.9:
            every caller waiting for that issuance gets
            :exc:`~twisted.internet.defer.CancelledError`.
        :raises ValueError: (through the Deferred) for an unusable name.
        """
        try:
            names = entry_names(server_name)
        except ValueError:
            return fail()
        key = names[0]
        if len(names) > 1:
            self._wanted[key] = names
        return self._issue(key).subscribe(cancels_operation=True)

    def startService(self) -> None:
        """
        Start the service: check the store now, then every
        ``check_interval``.
        """
        Service.startService(self)  # type: ignore[no-untyped-call]
        self.ready = False
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self.check_interval.total_seconds(), now=True).addErrback(
            self._loop_failed
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop the service: cancel the check, the issuances (which stop their
        responders) and the renewal information requests in flight, then
        close the client.

        :returns: A Deferred firing once all that is done.
        """
        Service.stopService(self)  # type: ignore[no-untyped-call]
        self.ready = False
        for waiter in list(self._waiting):
            waiter.cancel()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for call in (self._wakeup, self._check_retry):
            if call is not None and call.active():
                call.cancel()
        self._wakeup = self._check_retry = None
        self._heap.clear()
        self._next_check = math.inf
        pending: list[Deferred[Any]] = []
        if self._check is not None:
            pending.append(self._check)
        pending.extend(self._tasks)
        pending.extend(shared.operation for shared in self._issuing.values())
        if self._client is not None:
            pending.append(self._client.operation)
        for deferred in pending:
            deferred.cancel()
        return Deferred.fromCoroutine(self._finish_stopping(pending))

    async def _finish_stopping(self, pending: list[Deferred[Any]]) -> None:
        await DeferredList(pending, consumeErrors=True)
        clients, self._clients, self._client = self._clients, [], None
        self._ari_offered = None
        for client in clients:
            try:
                await client.close()
            except Exception:
                _log.failure("Closing the ACME client failed")

    # -- checks ------------------------------------------------------------------

    def _loop_failed(self, failure: Failure) -> None:
        if not isinstance(failure.value, CancelledError):
            _log.failure("The certificate check loop failed", failure)

    def _tick(self) -> Deferred[None]:
        self._next_check = self._clock.seconds() + self.check_interval.total_seconds()
        return self.check()

    def check(self) -> Deferred[None]:
        """
        Check the store now, as the service does at start and every
        ``check_interval``: register unless registered, read the entries,
        issue what is missing, expired or inside ``panic_interval``, and
        schedule the renewals that come before the next check.

        :returns: A Deferred firing once the check and the issuances it
            started at once are done (at once if the service is not
            running).  It does not fail: errors are logged (and reported to
            ``panic``), as in the checks the service makes by itself.
        """
        if not self.running:
            return succeed(None)
        check = self._check if self._check is not None else self._start_check()
        done: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            if not done.called:
                done.callback(None)
            return result

        check.addBoth(fire)
        return done

    #: txacme 0.9's name of :meth:`check`.
    _check_certs = check

    def _start_check(self) -> Deferred[None]:
        check = Deferred.fromCoroutine(self._run_check())
        self._check = check

        def forget(result: object) -> object:
            if self._check is check:
                self._check = None
            return result

        check.addBoth(forget)
        return check

    def _retry_check_later(self) -> None:
        """Check again soon, if no check has succeeded since the start."""
        if self.running and not self.ready and self._check_retry is None:
            delay = min(
                self._backoff.first_delay.total_seconds(),
                self.check_interval.total_seconds(),
            )
            self._check_retry = self._clock.callLater(delay, self._retry_check)

    def _retry_check(self) -> None:
        self._check_retry = None
        if self.running and self._check is None:
            self._start_check()

    async def _summaries(self) -> dict[str, CertificateSummary | None]:
        if ICertificateSummaries.providedBy(self.cert_store):
            return await ICertificateSummaries(self.cert_store).summaries()
        entries = await self.cert_store.as_dict()
        return {key: summarize(objects) for key, objects in entries.items()}

    async def _run_check(self) -> None:
        started = self._clock.seconds()
        try:
            # Register first, as txacme 0.9 did, so that a configuration
            # error shows at once.  Failing, the check goes on: the
            # certificates the store has are served, and what must be
            # issued fails (and is retried) like any other issuance.
            await self._ensure_registered()
        except CancelledError:
            raise
        except Exception:
            _log.failure("Registering with the ACME server failed")
        try:
            summaries = await self._summaries()
        except CancelledError:
            raise
        except Exception:
            _log.failure("Reading the certificate store failed")
            self._retry_check_later()
            return
        await self._sync_entries(summaries, started)
        now = self._clock.seconds()
        self._heap.clear()
        urgent: list[str] = []
        later: list[str] = []
        for index, (key, entry) in enumerate(list(self._entries.items())):
            if index and index % _YIELD_EVERY == 0:
                # Let the reactor serve while a large store is looked at.
                await deferLater(self._clock, 0)
                now = self._clock.seconds()
            reason = self._rules.due(entry, now, self._wanted.get(entry.key))
            stale = self._ari_stale(entry, now)
            if reason is not None and not (
                stale and reason in TIMED and now < self._rules.panic_at(entry)
            ):
                urgent.append(key)
            elif stale or reason is not None:
                later.append(key)
            else:
                self._schedule(entry, now)
        _log.info(
            "Checked {count} certificate entries: {urgent} to issue now, "
            "{later} to look at",
            count=len(self._entries),
            urgent=len(urgent),
            later=len(later),
        )
        if urgent:
            await self._sweep(urgent, ask_ari=False)
        if not self.ready and self.running:
            self.ready = True
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)
        if later:
            self._start_sweep(later)

    async def _sync_entries(
        self, summaries: dict[str, CertificateSummary | None], started: float
    ) -> None:
        """
        Take the store's entries as read by a check that started at
        ``started``; what the service stored since then is newer.
        """
        entries: dict[str, Entry] = {}
        for index, (key, summary) in enumerate(summaries.items()):
            if index and index % _YIELD_EVERY == 0:
                await deferLater(self._clock, 0)
            entry = self._entries.get(key)
            if entry is None:
                entry = Entry(key)
            if entry.summary != summary and entry.updated_at < started:
                self._new_certificate(entry, summary)
            entries[key] = entry
        for key, entry in self._entries.items():
            if key not in entries and (
                key in self._issuing or entry.updated_at >= started
            ):
                entries[key] = entry
        for key in self._wanted:
            if key not in entries:
                entry = self._entries.get(key) or Entry(key)
                self._new_certificate(entry, None)
                entries[key] = entry
        self._entries = entries

    def _new_certificate(
        self, entry: Entry, summary: CertificateSummary | None
    ) -> None:
        entry.summary = summary
        entry.ari_window = None
        entry.ari_renew_at = None
        entry.ari_next = 0.0

    # -- deciding --------------------------------------------------------------

    def _names_for(self, key: str) -> tuple[str, ...]:
        wanted = self._wanted.get(key)
        if wanted is not None:
            return wanted
        entry = self._entries.get(key)
        if entry is not None and entry.summary is not None and entry.summary.names:
            return (key, *[name for name in entry.summary.names if name != key])
        return (key,)

    def _ari_stale(self, entry: Entry, now: float) -> bool:
        """Whether to ask the CA for ``entry``'s renewal information."""
        return (
            self._ari_offered is not False
            and entry.summary is not None
            and now >= entry.ari_next
            and now < entry.summary.expires
        )

    # -- timers between checks -------------------------------------------------

    def _schedule(self, entry: Entry, now: float) -> None:
        """Wake up for ``entry``'s next event, if before the next check."""
        if not self.running:
            return
        if entry.retry_at > now:
            when = entry.retry_at
        elif entry.summary is None:
            return
        else:
            when = self._rules.renewal_time(entry)
            if self._ari_offered is not False:
                when = min(when, entry.ari_next)
        if when >= self._next_check:
            return
        heapq.heappush(self._heap, (max(when, now), entry.key))
        self._arm()

    def _arm(self) -> None:
        """
        Arm the wake-up for the heap's earliest time, unless it is armed
        for that time or before.  The time armed for is remembered rather
        than read back from the delayed call, whose time is the clock's
        present plus the delay: a clock that moved on meanwhile (as it
        does while a check schedules many entries) made it look later than
        the heap's earliest time, and every entry re-armed it.
        """
        if not self._heap:
            return
        when = self._heap[0][0]
        if self._wakeup is not None and self._wakeup.active():
            if self._wakeup_at <= when:
                return
            self._wakeup.cancel()
        self._wakeup_at = when
        self._wakeup = self._clock.callLater(
            max(0.0, when - self._clock.seconds()), self._wake
        )

    def _wake(self) -> None:
        self._wakeup = None
        now = self._clock.seconds()
        # A dict keeps the order and drops repeats in constant time each.
        due: dict[str, None] = {}
        while self._heap and self._heap[0][0] <= now:
            _, key = heapq.heappop(self._heap)
            due[key] = None
        if due:
            self._start_sweep(list(due))
        self._arm()

    # -- working through entries -----------------------------------------------

    def _start_sweep(self, keys: list[str]) -> None:
        task = Deferred.fromCoroutine(self._sweep(keys, ask_ari=True))
        self._tasks.add(task)

        def forget(result: object) -> None:
            self._tasks.discard(task)
            if isinstance(result, Failure) and not isinstance(
                result.value, CancelledError
            ):
                _log.failure("Renewing certificates failed", result)

        task.addBoth(forget)

    async def _sweep(self, keys: list[str], ask_ari: bool) -> None:
        """Look at each entry of ``keys``, ``max_concurrent`` at a time."""
        remaining = iter(keys)
        workers = [
            Deferred.fromCoroutine(self._work(remaining, ask_ari))
            for _ in range(min(self.max_concurrent, len(keys)))
        ]
        try:
            await DeferredList(workers, fireOnOneErrback=True, consumeErrors=True)
        except FirstError as error:
            for worker in workers:
                worker.cancel()
            error.subFailure.raiseException()
        except BaseException:
            for worker in workers:
                worker.cancel()
            raise

    async def _work(self, keys: Iterator[str], ask_ari: bool) -> None:
        quick = 0
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            quick += 1
            if quick >= _YIELD_EVERY:
                # Let the reactor breathe during a sweep of a large store.
                quick = 0
                await deferLater(self._clock, 0)
            if ask_ari and self._ari_stale(entry, self._clock.seconds()):
                await self._ask_ari(entry)
            reason = self._rules.due(
                entry, self._clock.seconds(), self._wanted.get(entry.key)
            )
            if reason is not None:
                _log.info(
                    "Issuing a certificate for {server_name}: {reason}",
                    server_name=key,
                    reason=reason,
                )
                quick = 0
                shared = self._issue(key)
                try:
                    await shared.subscribe()
                except CancelledError:
                    if not shared.cancelled_by_caller:
                        raise
                except Exception:
                    # Recorded (backoff, panic, log) by the issuance itself.
                    pass
            self._schedule(entry, self._clock.seconds())

    # -- renewal information (RFC 9773) ----------------------------------------

    async def _ask_ari(self, entry: Entry) -> None:
        """
        Ask the CA when to renew ``entry`` (RFC 9773), and pick the moment.
        Whatever happens, the next question is not before ``ari_next``.
        """
        now = self._clock.seconds()
        entry.ari_next = now + min(
            self._backoff.max_delay.total_seconds(),
            self.check_interval.total_seconds(),
        )
        await self._semaphore.acquire()
        try:
            certificate = await self._issuer.current_certificate(entry.key)
            if certificate is None:
                return
            client = await self._get_client()
            window = await client.renewal_info(certificate)
        except NotOffered:
            if self._ari_offered is not False:
                _log.info(
                    "The CA offers no renewal information (RFC 9773): renewing "
                    "by reissue_interval"
                )
            self._ari_offered = False
            return
        except ValueError:
            # No Authority Key Identifier: no ARI for this certificate.
            entry.ari_next = math.inf
            return
        except CancelledError:
            raise
        except Exception as error:
            _log.warn(
                "Asking for the renewal information of {server_name} failed: "
                "{error}; timing its renewal as before meanwhile",
                server_name=entry.key,
                error=str(error) or type(error).__name__,
            )
            return
        finally:
            self._semaphore.release()
        self._ari_offered = True
        current = CertificateSummary.from_certificate(certificate)
        if entry.summary != current:
            # The store holds another certificate than the service knew of.
            self._new_certificate(entry, current)
        now = self._clock.seconds()
        span = (window.start, window.end)
        if entry.ari_window != span:
            entry.ari_window = span
            entry.ari_renew_at = window.random_time(self._random).timestamp()
            _log.info(
                "The CA suggests renewing {server_name} between {start} and "
                "{end}; renewing at {renew_at}",
                server_name=entry.key,
                start=window.start.isoformat(),
                end=window.end.isoformat(),
                renew_at=datetime.fromtimestamp(
                    entry.ari_renew_at, window.start.tzinfo
                ).isoformat(),
                explanation_url=window.explanation_url,
            )
        entry.ari_next = now + max(window.retry_after, _MIN_ARI_RETRY)

    # -- issuing ----------------------------------------------------------------

    def _issue(self, key: str) -> _Shared[None]:
        """The issuance of ``key`` in flight, or a new one."""
        names = self._names_for(key)
        current = self._issuing.get(key)
        if current is not None and set(names).issubset(current.names):
            return current
        operation = Deferred.fromCoroutine(self._run_issuance(key, names, current))
        shared = _Shared(operation, names, partial(self._issued, key))
        if not shared.done:
            self._issuing[key] = shared
        return shared

    def _issued(self, key: str, shared: _Shared[None]) -> None:
        if self._issuing.get(key) is shared:
            del self._issuing[key]
        entry = self._entries.get(key)
        if shared.cancelled_by_caller and entry is not None and self.running:
            # A caller cancelled it (issue_cert): not before a backoff delay,
            # rather than at once again.
            now = self._clock.seconds()
            entry.retry_at = now + min(
                self._backoff.delay(max(entry.failures, 1), self._random),
                self.check_interval.total_seconds(),
            )
            self._schedule(entry, now)

    async def _run_issuance(
        self, key: str, names: tuple[str, ...], previous: _Shared[None] | None
    ) -> None:
        if previous is not None:
            try:
                await previous.subscribe()
            except CancelledError:
                raise
            except Exception:
                pass
        await self._semaphore.acquire()
        try:
            summary = await self._issue_now(key, names)
        except CancelledError:
            raise
        except Exception:
            self._failed(key, Failure())  # type: ignore[no-untyped-call]
            raise
        else:
            self._succeeded(key, summary)
        finally:
            self._semaphore.release()

    async def _issue_now(self, key: str, names: tuple[str, ...]) -> CertificateSummary:
        client = await self._get_client()
        try:
            return await self._issuer.issue(client, key, names)
        except AccountDoesNotExist:
            # The CA lost its state (a restarted Pebble), or the account was
            # removed: register again, with the same key, and go on.
            _log.warn(
                "The CA does not know the account any more; registering again",
                server_name=key,
            )
            self._registered = False
            client = await self._get_client()
            return await self._issuer.issue(client, key, names)

    def _entry(self, key: str) -> Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry(key)
        return entry

    def _succeeded(self, key: str, summary: CertificateSummary) -> None:
        entry = self._entry(key)
        self._new_certificate(entry, summary)
        entry.failures = 0
        entry.retry_at = 0.0
        entry.panicked_at = None
        entry.updated_at = self._clock.seconds()
        _log.info(
            "Stored a new certificate for {server_name} ({names}), valid until "
            "{not_after}",
            server_name=key,
            names=", ".join(summary.names),
            not_after=summary.not_after.isoformat(),
        )
        self._schedule(entry, self._clock.seconds())

    def _failed(self, key: str, failure: Failure) -> None:
        error = failure.getErrorMessage() or type(failure.value).__name__
        entry = self._entries.get(key)
        if entry is None and key not in self._wanted:
            # Not an entry the service keeps (issue_cert for a new name):
            # the caller has the failure and decides when to try again, as
            # in txacme 0.9.
            _log.info(
                "Issuing a certificate for {server_name} failed: {error}",
                server_name=key,
                error=error,
            )
            return
        entry = self._entry(key)
        now = self._clock.seconds()
        entry.failures += 1
        delay = min(
            self._backoff.delay(entry.failures, self._random),
            self.check_interval.total_seconds(),
        )
        server_delay = getattr(failure.value, "retry_after", None)
        if isinstance(server_delay, int | float) and server_delay > delay:
            delay = float(server_delay)
        entry.retry_at = now + delay
        if self._rules.in_panic(entry, now):
            # Reported through panic, at most once per check_interval, as
            # txacme 0.9 reported it (and not logged as an error besides).
            if (
                entry.panicked_at is None
                or now - entry.panicked_at >= self.check_interval.total_seconds()
            ):
                entry.panicked_at = now
                self._call_panic(entry, failure)
            _log.warn(
                "Issuing a certificate for {server_name} failed ({failures} in "
                "a row): {error}; retrying in {delay:.0f} s",
                server_name=key,
                failures=entry.failures,
                error=error,
                delay=delay,
            )
        else:
            _log.failure(
                "Issuing a certificate for {server_name} failed ({failures} in "
                "a row); retrying in {delay:.0f} s",
                failure,
                level=LogLevel.error,
                server_name=key,
                failures=entry.failures,
                delay=delay,
            )
        self._schedule(entry, now)

    def _call_panic(self, entry: Entry, failure: Failure) -> None:
        try:
            if self._panic is _default_panic and entry.summary is None:
                _panic_not_obtained(failure, entry.key)
            else:
                self._panic(failure, entry.key)
        except Exception:
            _log.failure(
                "The panic callback failed for {server_name}", server_name=entry.key
            )

    # -- the client ---------------------------------------------------------------

    def _get_client(self) -> Deferred[IssuingClient]:
        if self._client is None or self._client.failed:
            self._client = _Shared(Deferred.fromCoroutine(self._create_client()))
        return self._client.subscribe()

    async def _create_client(self) -> IssuingClient:
        client = await self._client_creator()
        self._clients.append(client)
        try:
            self._regr = await client.register(
                messages.NewRegistration.from_data(
                    email=self._email, terms_of_service_agreed=True
                )
            )
        except BaseException:
            self._clients.remove(client)
            await client.close()
            raise
        _log.info("Registered with the ACME server")
        return client

    def _ensure_registered(self) -> Deferred[None]:
        """
        Register with the ACME server unless registered already (txacme
        0.9's name; applications call it to register at start-up without
        starting the service).

        :returns: A Deferred firing with ``None`` once registered.
        """
        return self._get_client().addCallback(lambda _: None)

    @property
    def _registered(self) -> bool:
        """
        Whether the service has registered (txacme 0.9's name).  Setting it
        to ``False`` makes the service make a new client and register again
        when it next needs the CA.
        """
        client = self._client
        return client is not None and client.done and not client.failed

    @_registered.setter
    def _registered(self, registered: bool) -> None:
        if not registered:
            # The clients made so far are closed when the service stops:
            # issuances in flight may still use them.
            self._client = None
