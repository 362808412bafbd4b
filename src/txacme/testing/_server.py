"""
An in-memory RFC 8555 ACME server, for tests.

:class:`MemoryAcmeServer` is a strict server: it checks every JWS signature,
nonce and ``url`` header, enforces the order and authorization state
machines, checks CSRs against orders and signs real certificates with a CA
of its own, so that client bugs show up as failures.  Time comes from an
injected clock.  It is public API through :mod:`txacme.testing`.

This module holds the class: its settings and its public API.  The rest is
in modules of its own: the state its endpoints share and request
authentication (``_server_state``), answering a request
(``_server_dispatch``), the endpoints of accounts (``_server_accounts``),
of orders, authorizations and challenges (``_server_orders``) and of
certificates (``_server_certificates``), and the fault switches
(``_server_faults``).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

from acme import messages
from attrs import define, field
from cryptography import x509
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import IResource

from txacme.testing._faults import FAULT_KINDS, FaultKind, FaultPlan
from txacme.testing._server_dispatch import respond
from txacme.testing._server_faults import (
    ENDPOINTS,
    DropStage,
    Endpoint,
    FaultSwitches,
)
from txacme.testing._server_http import (
    BREAK_KINDS,
    AcmeResource,
    BreakKind,
    normalized_origin,
)
from txacme.testing._server_orders import advance
from txacme.testing._server_records import (
    InjectedFault,
    LoggedRequest,
    MemoryAccount,
    MemoryAuthorization,
    MemoryCertificate,
    MemoryOrder,
)
from txacme.testing._server_state import ServerState

__all__ = [
    "BREAK_KINDS",
    "ENDPOINTS",
    "BreakKind",
    "DropStage",
    "Endpoint",
    "MemoryAcmeServer",
    "Validator",
    "always_valid",
]

# The public aliases are documented where applications find them, in
# txacme.testing.
Validator = Callable[[messages.Identifier, str, str], "bool | Deferred[bool]"]


def always_valid(
    identifier: messages.Identifier, challenge_type: str, key_authorization: str
) -> bool:
    """
    The default validator: every challenge succeeds.

    :returns: ``True``.
    """
    return True


@define(eq=False, kw_only=True)
class MemoryAcmeServer:
    """
    An RFC 8555 ACME server in memory, served as a ``twisted.web`` resource.

    Point a client at :attr:`directory_url` through :meth:`treq_client` (or
    mount :meth:`resource` in a :class:`twisted.web.server.Site`).  Every
    time (expiry, validity, ``Retry-After``, delays) comes from ``clock``;
    delayed work happens on the first request or introspection after the
    clock has passed it, so a :class:`twisted.internet.task.Clock` need only
    be advanced.

    What the server enforces, by RFC 8555 section:

    - §6.2, §6.3: POST bodies are flattened JWS with content type
      ``application/jose+json`` (else 415); ``alg`` RS256, ES256 or ES384
      matching the key; a ``nonce`` this server issued and nobody used;
      ``url`` equal to the request URL; ``jwk`` only on newAccount and
      revokeCert, ``kid`` (a valid account's URL) everywhere else; a valid
      signature.  Orders, authorizations, challenges and certificates are
      read by POST-as-GET only (GET answers 405).
    - §6.5, §6.7: every answer carries a fresh ``Replay-Nonce`` and
      ``Link: <directory>;rel="index"``; errors are problem documents.
    - §7.3: account creation, lookup, update, deactivation, key change,
      terms-of-service agreement and external account binding (§7.3.4).
    - §7.4: orders for ``dns`` and ``ip`` (RFC 8738) identifiers, wildcards,
      order status from its authorizations, finalization with a CSR that
      must name exactly the order's identifiers, certificate download with
      alternate chains; optional pre-authorization (§7.4.1).
    - §7.5: challenge validation through ``validator``, authorization
      deactivation; §7.6: revocation by the issuing account or the
      certificate's key.
    - RFC 9773 (ARI) ``renewalInfo`` and ``replaces``, and certificate
      profiles (``meta.profiles``), when configured.

    :ivar clock: The source of time.
    :ivar base_url: Prefix of every URL; the directory is at
        ``base_url + "/directory"``.  Other URLs carry random parts.
    :ivar nonce_rejection: Fraction (0 to 1) of otherwise good nonces
        rejected with ``badNonce``, as Pebble's ``PEBBLE_WFE_NONCEREJECT``.
    :ivar seed: Seed of the random choice of rejected nonces.
    :ivar terms_of_service: ``meta.termsOfService``, or ``None``.
    :ivar require_terms_agreement: Whether newAccount needs
        ``termsOfServiceAgreed: true`` (when there are terms).
    :ivar eab_required: ``meta.externalAccountRequired``: whether
        newAccount needs an external account binding.
    :ivar eab_keys: External account MAC keys, by key id.
    :ivar offer_new_authz: Whether the directory offers ``newAuthz``.
    :ivar offer_renewal_info: Whether the directory offers ``renewalInfo``
        (and newOrder accepts ``replaces``).
    :ivar profiles: ``meta.profiles``: profile name to description.
    :ivar chain_length: Intermediates between leaf and root.
    :ivar alternate_chains: Alternate chains, each to its own root.
    :ivar authorization_reuse: Whether new orders reuse the account's valid
        authorizations.
    :ivar validator: Decides challenges (see :data:`Validator`).
    :ivar invalid_identifiers: Identifier values (or ``*.`` names) whose
        challenges always fail with ``incorrectResponse``.
    :ivar refuse_repeated_challenge: Whether a challenge POST for a
        challenge that is no longer ``pending`` is refused (``malformed``,
        400), as Pebble does, instead of answered with the challenge's
        current state (RFC 8555 §7.5.1).
    :ivar validation_delay: Seconds a challenge stays ``processing``.
    :ivar processing_delay: Seconds a finalized order stays ``processing``.
    :ivar certificate_lifetime: Validity of issued certificates.
    :ivar order_lifetime: Time until an order (and its new authorizations)
        expires.
    :ivar authorization_lifetime: Validity of a valid authorization.
    :ivar renewal_info_retry_after: ``Retry-After`` of renewalInfo answers,
        in seconds.
    """

    clock: IReactorTime
    base_url: str = "https://acme.example"
    nonce_rejection: float = 0.0
    seed: int | None = None
    terms_of_service: str | None = "https://acme.example/terms"
    require_terms_agreement: bool = True
    eab_required: bool = False
    eab_keys: dict[str, bytes] = field(factory=dict)
    offer_new_authz: bool = False
    offer_renewal_info: bool = False
    profiles: dict[str, str] = field(factory=dict)
    chain_length: int = 1
    alternate_chains: int = 0
    authorization_reuse: bool = True
    validator: Validator = always_valid
    invalid_identifiers: set[str] = field(factory=set)
    refuse_repeated_challenge: bool = False
    validation_delay: float = 0.0
    processing_delay: float = 0.0
    certificate_lifetime: timedelta = timedelta(days=90)
    order_lifetime: timedelta = timedelta(days=7)
    authorization_lifetime: timedelta = timedelta(days=30)
    renewal_info_retry_after: float = 6 * 60 * 60

    _log = Logger()

    _state: ServerState = field(init=False, repr=False)
    _switches: FaultSwitches = field(init=False, repr=False, factory=FaultSwitches)
    _resource: AcmeResource = field(init=False, repr=False)
    _clients: weakref.WeakSet[StubTreq] = field(
        init=False, repr=False, factory=weakref.WeakSet
    )

    def __attrs_post_init__(self) -> None:
        if not 0.0 <= self.nonce_rejection <= 1.0:
            raise ValueError("nonce_rejection must be between 0 and 1")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"base_url must be an http or https URL, not {self.base_url!r}"
            )
        if parts.query or parts.fragment:
            raise ValueError("base_url must not have a query or fragment")
        self._state = ServerState(
            settings=self,
            log=self._log,
            origin=normalized_origin(parts.scheme, parts.netloc),
            base_path=parts.path.rstrip("/"),
        )
        self._resource = AcmeResource(
            partial(respond, self._state, self._switches),
            self.clock,
            self._flush_clients,
        )

    # Public API: wiring.

    @property
    def directory_url(self) -> str:
        """
        The URL of the directory (RFC 8555 §7.1.1).
        """
        return self._state.directory_url

    def resource(self) -> IResource:
        """
        :returns: The ``twisted.web`` resource answering every request.
        """
        return self._resource

    def treq_client(self) -> StubTreq:
        """
        :returns: A :class:`treq.testing.StubTreq` whose requests, to any
            host, are answered by this server in memory.  The server
            flushes it when it delivers a delayed answer
            (:meth:`delay_next`); a ``StubTreq`` made some other way around
            :meth:`resource` sees delayed answers only when its ``flush()``
            is called.
        """
        client = StubTreq(self._resource)  # type: ignore[no-untyped-call]
        self._clients.add(client)
        return client

    def root_certificates(self) -> list[x509.Certificate]:
        """
        :returns: The roots: the primary chain's first, then one per
            alternate chain.
        """
        return self._state.ca.roots

    # Public API: test switches.

    def fail_next(
        self,
        endpoint: Endpoint,
        error_type: str | None = "serverInternal",
        *,
        status: int | None = None,
        detail: str = "injected fault",
        retry_after: float | None = None,
        count: int = 1,
    ) -> None:
        """
        Answer the next ``count`` requests to an endpoint with an error,
        without acting on them (a nonce they carry is used up, though).

        :param endpoint: The endpoint kind, such as ``"newOrder"`` or
            ``"challenge"``.
        :param error_type: An ACME error name (``"rateLimited"``,
            ``"serverInternal"``, ``"badNonce"``, ...) or a full problem type
            URI, answered as an ``application/problem+json`` document; or
            ``None`` for a plain-text body without a problem document, as a
            proxy in front of the server would send.
        :param status: HTTP status; by default from the error type (429 for
            rateLimited, 500 for serverInternal, 503 for ``None``, ...).
        :param detail: The problem's ``detail``.
        :param retry_after: If given, a ``Retry-After`` header in seconds.
        :param count: How many requests fail.
        :raises ValueError: For an unknown endpoint.
        """
        self._switches.fail_next(
            endpoint,
            error_type,
            status=status,
            detail=detail,
            retry_after=retry_after,
            count=count,
        )

    def break_next(self, endpoint: Endpoint, kind: BreakKind, count: int = 1) -> None:
        """
        Spoil the answer to the next ``count`` requests to an endpoint.  The
        request is acted on as usual (an order is created, a certificate
        revoked, ...); only the answer the client sees is broken, as if a
        proxy mangled it.

        :param endpoint: The endpoint kind.
        :param kind: How to spoil it (see :data:`BreakKind`).
        :param count: How many answers to spoil.
        :raises ValueError: For an unknown endpoint or kind.
        """
        self._switches.break_next(endpoint, kind, count)

    def drop_next(
        self, endpoint: Endpoint, stage: DropStage = "before", count: int = 1
    ) -> None:
        """
        Close the connection of the next ``count`` requests to an endpoint
        without an answer, as a network failure does.  The client's request
        fails as treq's does when a connection closes early:
        :class:`twisted.web.client.ResponseNeverReceived` (wrapping
        :class:`twisted.internet.error.ConnectionDone`).

        :param endpoint: The endpoint kind.
        :param stage: ``"before"``: the request never reaches the server;
            nothing is acted on, its nonce stays unused, and it is not in
            :attr:`requests`.  ``"after"``: the server acts on the request
            (an order is created, a challenge answered, ...) and logs it
            with the status it would have answered; only the answer is
            lost.
        :param count: How many requests are dropped.
        :raises ValueError: For an unknown endpoint or stage.
        """
        self._switches.drop_next(endpoint, stage, count)

    def delay_next(self, endpoint: Endpoint, seconds: float, count: int = 1) -> None:
        """
        Answer the next ``count`` requests to an endpoint ``seconds`` later
        on :attr:`clock`.  The server acts on each request at once; only the
        answer waits (a client that gives up meanwhile never sees it).

        :param endpoint: The endpoint kind.
        :param seconds: The delay, more than 0.
        :param count: How many answers are delayed.
        :raises ValueError: For an unknown endpoint or a delay that is not
            positive.
        """
        self._switches.delay_next(endpoint, seconds, count)

    def inject_next(
        self,
        endpoint: Endpoint,
        kind: FaultKind,
        count: int = 1,
        *,
        delay: float = 2.0,
    ) -> None:
        """
        Give the next ``count`` requests to an endpoint a fault of issue 11
        (see :data:`FaultKind`), as
        :class:`~txacme.testing.faultproxy.FaultProxy` gives Pebble's.  A
        queued fault goes before the faults of :meth:`random_faults`, and
        before those of :meth:`fail_next` and :meth:`break_next`, which wait
        for the next request: a request gets one fault at most.

        :param endpoint: The endpoint kind.
        :param kind: The fault.
        :param count: How many requests get it.
        :param delay: Seconds a ``"delay"`` fault holds the answer back.
        :raises ValueError: For an unknown endpoint or kind.
        """
        self._switches.inject_next(endpoint, kind, count, delay=delay)

    def random_faults(
        self,
        rate: float,
        kinds: Iterable[FaultKind] = FAULT_KINDS,
        *,
        endpoints: Iterable[Endpoint] | None = None,
        seed: int | None = None,
        delay: float = 2.0,
        limit: int | None = None,
    ) -> FaultPlan | None:
        """
        Give each request, with probability ``rate``, one fault drawn from
        ``kinds`` (all equally likely) by a random generator seeded with
        ``seed``: the same client run meets the same faults.  Requests with a
        fault queued by :meth:`inject_next`, :meth:`drop_next`,
        :meth:`delay_next`, :meth:`fail_next` or :meth:`break_next` draw
        nothing.  :attr:`fault_counts` shows what was injected.

        :param rate: The probability (0 to 1) that a request gets a fault;
            0 switches random faults off.
        :param kinds: The faults to choose among (see :data:`FaultKind`).
        :param endpoints: The endpoint kinds to fault, or ``None`` for all.
        :param seed: The random generator's seed.
        :param delay: Seconds a ``"delay"`` fault holds the answer back, on
            :attr:`clock`.
        :param limit: The most faults to inject, or ``None`` for no limit.
        :returns: The plan in use (its :attr:`~FaultPlan.injected` counts
            what it chose), or ``None`` when switched off.
        :raises ValueError: For a rate outside [0, 1], or an unknown kind or
            endpoint.
        """
        return self._switches.random_faults(
            rate, kinds, endpoints=endpoints, seed=seed, delay=delay, limit=limit
        )

    def set_renewal_window(
        self,
        serial: int,
        start: datetime,
        end: datetime,
        explanation_url: str | None = None,
    ) -> None:
        """
        Set the suggested renewal window renewalInfo answers for a
        certificate (RFC 9773 §4.2).

        :param serial: The certificate's serial number.
        :param start: Start of the window (an aware datetime).
        :param end: End of the window, after ``start``.
        :param explanation_url: An ``explanationURL`` to include.
        :raises KeyError: For a serial number this server did not issue.
        :raises ValueError: If ``end`` is not after ``start``.
        """
        if end <= start:
            raise ValueError("the window's end must be after its start")
        certificate = self.certificate_by_serial(serial)
        certificate.renewal_window = (start, end)
        certificate.renewal_explanation_url = explanation_url

    # Public API: introspection.

    @property
    def requests(self) -> list[LoggedRequest]:
        """
        Every request the server answered so far, oldest first.  Requests
        that never reached it are not here: those dropped before (the
        ``"drop-before"`` fault) and those a device in between answered
        (``"unavailable"``, ``"captive-portal"``); :attr:`injected_faults`
        has them.
        """
        return list(self._state.requests)

    def request_counts(self) -> Counter[str]:
        """
        :returns: How many requests each endpoint kind answered.
        """
        return Counter(request.endpoint for request in self._state.requests)

    @property
    def injected_faults(self) -> list[InjectedFault]:
        """
        Every fault of :meth:`inject_next`, :meth:`drop_next`,
        :meth:`delay_next` and :meth:`random_faults` injected so far,
        oldest first.
        """
        return list(self._switches.injected)

    @property
    def fault_counts(self) -> Counter[str]:
        """
        How many faults of each :data:`FaultKind` were injected so far.
        """
        return Counter(fault.kind for fault in self._switches.injected)

    @property
    def accounts(self) -> list[MemoryAccount]:
        """
        The accounts, oldest first.
        """
        advance(self._state)
        return list(self._state.accounts)

    @property
    def orders(self) -> list[MemoryOrder]:
        """
        The orders, oldest first, with their status brought up to date.
        """
        advance(self._state)
        return list(self._state.orders)

    @property
    def authorizations(self) -> list[MemoryAuthorization]:
        """
        The authorizations, oldest first, with their status up to date.
        """
        advance(self._state)
        return list(self._state.authorizations)

    @property
    def certificates(self) -> list[MemoryCertificate]:
        """
        The issued certificates, oldest first.
        """
        advance(self._state)
        return list(self._state.certificates)

    def certificate_by_serial(self, serial: int) -> MemoryCertificate:
        """
        :param serial: A certificate serial number.
        :returns: The certificate this server issued with it.
        :raises KeyError: If there is none.
        """
        advance(self._state)
        return self._state.certificates_by_serial[serial]

    # Plumbing.

    def _flush_clients(self) -> None:
        """
        Carry what the server wrote outside a request's exchange (a delayed
        answer) to the clients of :meth:`treq_client`.
        """
        for client in list(self._clients):
            client.flush()  # type: ignore[no-untyped-call]
