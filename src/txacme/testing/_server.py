"""
An in-memory RFC 8555 ACME server, for tests.

:class:`MemoryAcmeServer` is a strict server: it checks every JWS signature,
nonce and ``url`` header, enforces the order and authorization state
machines, checks CSRs against orders and signs real certificates with a CA
of its own, so that client bugs show up as failures.  Time comes from an
injected clock.  It is public API through :mod:`txacme.testing`.
"""

from __future__ import annotations

import json
import random
import secrets
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from acme import challenges, messages
from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.b64 import b64encode
from josepy.jwa import HS256, HS384, HS512, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from txacme.testing._faults import (
    FAULT_KINDS,
    CannedAnswer,
    FaultKind,
    FaultPlan,
    canned_answer,
)
from txacme.testing._server_ca import CertificateAuthority
from txacme.testing._server_http import (
    BREAK_KINDS,
    JOSE_JSON,
    PEM_CHAIN,
    AcmeResource,
    BreakKind,
    Delivery,
    Incoming,
    Outgoing,
    normalized_origin,
    retry_after,
    spoil,
)
from txacme.testing._server_json import (
    account_json,
    authorization_json,
    challenge_json,
    order_json,
)
from txacme.testing._server_protocol import (
    ParsedJWS,
    ProblemError,
    check_account_key,
    csr_common_name,
    csr_identifiers,
    decode_b64url,
    default_status,
    load_jwk,
    parse_identifier,
    parse_identifiers,
    parse_jws,
    signature_algorithm,
    thumbprint,
)
from txacme.testing._server_records import (
    InjectedFault,
    LoggedRequest,
    MemoryAccount,
    MemoryAuthorization,
    MemoryCertificate,
    MemoryChallenge,
    MemoryOrder,
    renewal_info_id,
)

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
Endpoint = Literal[
    "directory",
    "newNonce",
    "newAccount",
    "newOrder",
    "newAuthz",
    "revokeCert",
    "keyChange",
    "renewalInfo",
    "account",
    "orders",
    "order",
    "finalize",
    "authorization",
    "challenge",
    "certificate",
]
Validator = Callable[[messages.Identifier, str, str], "bool | Deferred[bool]"]
DropStage = Literal["before", "after"]

ENDPOINTS: frozenset[str] = frozenset(get_args(Endpoint))

_MAC_ALGORITHMS: dict[str, JWASignature] = {
    "HS256": HS256,
    "HS384": HS384,
    "HS512": HS512,
}
_REVOCATION_REASONS = frozenset({0, 1, 3, 4, 5})
_MAX_NONCES = 10_000
_T = TypeVar("_T")


def always_valid(
    identifier: messages.Identifier, challenge_type: str, key_authorization: str
) -> bool:
    """
    The default validator: every challenge succeeds.

    :returns: ``True``.
    """
    return True


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0)


def _pop_first(queues: dict[str, list[_T]], kind: str) -> _T | None:
    queue = queues.get(kind)
    return queue.pop(0) if queue else None


def _identifier_pair(identifier: messages.Identifier) -> tuple[str, str]:
    return (identifier.typ.name, identifier.value)


def _challenge_types(identifier: messages.Identifier, wildcard: bool) -> list[str]:
    if wildcard:
        return ["dns-01"]
    if identifier.typ == messages.IDENTIFIER_IP:
        return ["http-01", "tls-alpn-01"]
    return ["http-01", "dns-01", "tls-alpn-01"]


def _public_jwk(public_key: object) -> JWK | None:
    if isinstance(public_key, rsa.RSAPublicKey):
        return JWKRSA(key=public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return JWKEC(key=public_key)
    return None


@frozen
class _Route:
    """
    What a path leads to: an endpoint kind and the record it concerns.
    """

    kind: str
    record: object = None
    chain_index: int = 0


@frozen
class _Signed:
    """
    A verified JWS request: who signed it and what it says.
    """

    jws: ParsedJWS
    key: JWK
    account: MemoryAccount | None


@frozen
class _Fault:
    error_type: str | None
    status: int
    detail: str
    retry_after: float | None


@frozen
class _Injection:
    """
    A fault of issue 11's kinds, queued or drawn for one request.
    """

    kind: FaultKind
    delay: float = 0.0


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

    _random: random.Random = field(init=False, repr=False)
    _ca: CertificateAuthority = field(init=False, repr=False)
    _resource: AcmeResource = field(init=False, repr=False)
    _origin: str = field(init=False, repr=False)
    _base_path: str = field(init=False, repr=False)
    _prefix: str = field(init=False, repr=False)
    _routes: dict[str, _Route] = field(init=False, repr=False, factory=dict)
    _nonces: dict[str, None] = field(init=False, repr=False, factory=dict)
    _faults: dict[str, list[_Fault]] = field(init=False, repr=False, factory=dict)
    _breaks: dict[str, list[str]] = field(init=False, repr=False, factory=dict)
    _injections: dict[str, list[_Injection]] = field(
        init=False, repr=False, factory=dict
    )
    _fault_plan: FaultPlan | None = field(init=False, repr=False, default=None)
    _injected: list[InjectedFault] = field(init=False, repr=False, factory=list)
    _clients: weakref.WeakSet[StubTreq] = field(
        init=False, repr=False, factory=weakref.WeakSet
    )
    _accounts: list[MemoryAccount] = field(init=False, repr=False, factory=list)
    _accounts_by_key: dict[bytes, MemoryAccount] = field(
        init=False, repr=False, factory=dict
    )
    _accounts_by_url: dict[str, MemoryAccount] = field(
        init=False, repr=False, factory=dict
    )
    _orders: list[MemoryOrder] = field(init=False, repr=False, factory=list)
    _authorizations: list[MemoryAuthorization] = field(
        init=False, repr=False, factory=list
    )
    _authorizations_by_url: dict[str, MemoryAuthorization] = field(
        init=False, repr=False, factory=dict
    )
    _certificates: list[MemoryCertificate] = field(init=False, repr=False, factory=list)
    _certificates_by_serial: dict[int, MemoryCertificate] = field(
        init=False, repr=False, factory=dict
    )
    _requests: list[LoggedRequest] = field(init=False, repr=False, factory=list)

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
        self._origin = normalized_origin(parts.scheme, parts.netloc)
        self._base_path = parts.path.rstrip("/")
        self._prefix = f"{self._base_path}/acme-{secrets.token_hex(4)}"
        self._random = random.Random(self.seed)
        self._ca = CertificateAuthority(
            _datetime(self.clock.seconds()), self.chain_length, self.alternate_chains
        )
        self._resource = AcmeResource(self._respond, self.clock, self._flush_clients)
        self._routes[f"{self._base_path}/directory"] = _Route("directory")
        for kind, offered in [
            ("newNonce", True),
            ("newAccount", True),
            ("newOrder", True),
            ("newAuthz", self.offer_new_authz),
            ("revokeCert", True),
            ("keyChange", True),
        ]:
            if offered:
                self._routes[self._path_of(kind)] = _Route(kind)

    # Public API: wiring.

    @property
    def directory_url(self) -> str:
        """
        The URL of the directory (RFC 8555 §7.1.1).
        """
        return self._url(f"{self._base_path}/directory")

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
        return self._ca.roots

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
        self._check_endpoint(endpoint)
        if status is None:
            status = 503 if error_type is None else default_status(error_type)
        fault = _Fault(error_type, status, detail, retry_after)
        self._faults.setdefault(endpoint, []).extend([fault] * count)

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
        self._check_endpoint(endpoint)
        if kind not in BREAK_KINDS:
            raise ValueError(
                f"unknown break kind {kind!r}; one of {sorted(BREAK_KINDS)}"
            )
        self._breaks.setdefault(endpoint, []).extend([kind] * count)

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
        if stage not in ("before", "after"):
            raise ValueError(f"stage must be 'before' or 'after', not {stage!r}")
        self.inject_next(
            endpoint, "drop-before" if stage == "before" else "drop-after", count
        )

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
        if not seconds > 0:
            raise ValueError("seconds must be more than 0")
        self.inject_next(endpoint, "delay", count, delay=seconds)

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
        self._check_endpoint(endpoint)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {list(FAULT_KINDS)}")
        injection = _Injection(kind, delay if kind == "delay" else 0.0)
        self._injections.setdefault(endpoint, []).extend([injection] * count)

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
        if endpoints is not None:
            endpoints = list(endpoints)
            for endpoint in endpoints:
                self._check_endpoint(endpoint)
        plan = FaultPlan.mixed(
            rate, kinds, endpoints=endpoints, seed=seed, delay=delay, limit=limit
        )
        self._fault_plan = plan if rate else None
        return self._fault_plan

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
        return list(self._requests)

    def request_counts(self) -> Counter[str]:
        """
        :returns: How many requests each endpoint kind answered.
        """
        return Counter(request.endpoint for request in self._requests)

    @property
    def injected_faults(self) -> list[InjectedFault]:
        """
        Every fault of :meth:`inject_next`, :meth:`drop_next`,
        :meth:`delay_next` and :meth:`random_faults` injected so far,
        oldest first.
        """
        return list(self._injected)

    @property
    def fault_counts(self) -> Counter[str]:
        """
        How many faults of each :data:`FaultKind` were injected so far.
        """
        return Counter(fault.kind for fault in self._injected)

    @property
    def accounts(self) -> list[MemoryAccount]:
        """
        The accounts, oldest first.
        """
        self._advance()
        return list(self._accounts)

    @property
    def orders(self) -> list[MemoryOrder]:
        """
        The orders, oldest first, with their status brought up to date.
        """
        self._advance()
        return list(self._orders)

    @property
    def authorizations(self) -> list[MemoryAuthorization]:
        """
        The authorizations, oldest first, with their status up to date.
        """
        self._advance()
        return list(self._authorizations)

    @property
    def certificates(self) -> list[MemoryCertificate]:
        """
        The issued certificates, oldest first.
        """
        self._advance()
        return list(self._certificates)

    def certificate_by_serial(self, serial: int) -> MemoryCertificate:
        """
        :param serial: A certificate serial number.
        :returns: The certificate this server issued with it.
        :raises KeyError: If there is none.
        """
        self._advance()
        return self._certificates_by_serial[serial]

    # Plumbing.

    def _check_endpoint(self, endpoint: str) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {endpoint!r}; one of {sorted(ENDPOINTS)}"
            )

    def _path_of(self, kind: str) -> str:
        names = {
            "newNonce": "new-nonce",
            "newAccount": "new-account",
            "newOrder": "new-order",
            "newAuthz": "new-authz",
            "revokeCert": "revoke-cert",
            "keyChange": "key-change",
            "renewalInfo": "renewal-info",
        }
        return f"{self._prefix}/{names[kind]}"

    def _url(self, path: str) -> str:
        return self._origin + path

    def _new_path(self, kind: str) -> str:
        return f"{self._prefix}/{kind}/{secrets.token_urlsafe(12)}"

    def _now(self) -> datetime:
        return _datetime(self.clock.seconds())

    def _new_nonce(self) -> str:
        nonce = b64encode(secrets.token_bytes(16)).decode("ascii")
        self._nonces[nonce] = None
        if len(self._nonces) > _MAX_NONCES:
            del self._nonces[next(iter(self._nonces))]
        return nonce

    def _respond(self, request: Incoming) -> Delivery:
        """
        Answer one request: route it, apply injected faults, run the
        endpoint's handler, add the headers every answer carries (RFC 8555
        §6.5, §7.1), spoil the answer if asked, and log it.
        """
        self._advance()
        kind = "unknown"
        injection: _Injection | None = None
        canned: CannedAnswer | None = None
        try:
            route = self._route(request)
            kind = route.kind
            injection = self._next_injection(kind)
            if injection is not None:
                self._injected.append(
                    InjectedFault(request.method, kind, request.url, injection.kind)
                )
                if injection.kind == "drop-before":
                    return Delivery(None)
                canned = canned_answer(injection.kind)
            if canned is not None:
                if not canned.from_ca:
                    # A device in between answered: the server saw nothing.
                    return Delivery(
                        Outgoing(canned.status, list(canned.headers), canned.body)
                    )
                self._use_nonce_quietly(request)
                response = Outgoing(canned.status, list(canned.headers), canned.body)
            else:
                # A request with a fault of its own leaves those of
                # fail_next and break_next to the next request.
                fault = _pop_first(self._faults, kind) if injection is None else None
                if fault is not None:
                    response = self._fault_response(request, fault)
                else:
                    response = self._dispatch(request, route)
        except ProblemError as problem:
            self._log.info(
                "{method} {endpoint}: {problem_type}: {detail}",
                method=request.method,
                endpoint=kind,
                problem_type=problem.error_type,
                detail=problem.detail,
            )
            response = Outgoing.problem(problem)
        except Exception:
            self._log.failure(
                "{method} {endpoint} failed", method=request.method, endpoint=kind
            )
            response = Outgoing.problem(
                ProblemError("serverInternal", "the in-memory ACME server failed")
            )
        response.headers.append(("Replay-Nonce", self._new_nonce()))
        response.headers.append(("Link", f'<{self.directory_url}>;rel="index"'))
        if injection is None:
            kind_of_spoil = _pop_first(self._breaks, kind)
            if kind_of_spoil is not None:
                spoil(response, kind_of_spoil)
        self._requests.append(
            LoggedRequest(request.method, kind, request.url, response.status)
        )
        self._log.debug(
            "{method} {url} ({endpoint}) -> {status}",
            method=request.method,
            url=request.url,
            endpoint=kind,
            status=response.status,
        )
        if injection is not None and injection.kind == "drop-after":
            return Delivery(None)
        if injection is not None and injection.kind == "delay":
            return Delivery(response, injection.delay)
        return Delivery(response)

    def _next_injection(self, kind: str) -> _Injection | None:
        """
        The fault of issue 11 for the next request to ``kind``: a queued
        one, or one drawn by the random plan for a request with no queued
        fault of any switch.
        """
        queued = _pop_first(self._injections, kind)
        if queued is not None:
            return queued
        plan = self._fault_plan
        if plan is None or self._faults.get(kind) or self._breaks.get(kind):
            return None
        chosen = plan.choose(kind)
        if chosen is None:
            return None
        return _Injection(chosen, plan.delay if chosen == "delay" else 0.0)

    def _flush_clients(self) -> None:
        """
        Carry what the server wrote outside a request's exchange (a delayed
        answer) to the clients of :meth:`treq_client`.
        """
        for client in list(self._clients):
            client.flush()  # type: ignore[no-untyped-call]

    def _route(self, request: Incoming) -> _Route:
        if not request.url.startswith(self._origin + "/"):
            raise ProblemError("malformed", "no such host on this server", 404)
        route = self._routes.get(request.path)
        if route is None and self.offer_renewal_info:
            prefix = self._path_of("renewalInfo") + "/"
            if request.path.startswith(prefix):
                route = _Route("renewalInfo", request.path[len(prefix) :])
        if route is None:
            raise ProblemError("malformed", f"no resource at {request.path}", 404)
        return route

    def _dispatch(self, request: Incoming, route: _Route) -> Outgoing:
        handlers: dict[
            str, tuple[tuple[str, ...], Callable[[Incoming, _Route], Outgoing]]
        ] = {
            "directory": (("GET",), self._directory),
            "newNonce": (("HEAD", "GET"), self._new_nonce_endpoint),
            "renewalInfo": (("GET",), self._renewal_info),
            "newAccount": (("POST",), self._new_account),
            "account": (("POST",), self._account),
            "orders": (("POST",), self._orders_list),
            "keyChange": (("POST",), self._key_change),
            "newOrder": (("POST",), self._new_order),
            "newAuthz": (("POST",), self._new_authz),
            "order": (("POST",), self._order),
            "finalize": (("POST",), self._finalize),
            "authorization": (("POST",), self._authorization),
            "challenge": (("POST",), self._challenge),
            "certificate": (("POST",), self._certificate),
            "revokeCert": (("POST",), self._revoke_certificate),
        }
        methods, handler = handlers[route.kind]
        if request.method not in methods:
            detail = f"{request.method} is not allowed here; use {' or '.join(methods)}"
            if methods == ("POST",) and request.method == "GET":
                detail = "this resource is read with POST-as-GET (RFC 8555 §6.3)"
            raise ProblemError(
                "malformed", detail, 405, headers={"Allow": ", ".join(methods)}
            )
        if request.method == "POST":
            media_type = (request.content_type or "").split(";")[0].strip().lower()
            if media_type != JOSE_JSON:
                raise ProblemError(
                    "malformed",
                    f"Content-Type must be {JOSE_JSON} (RFC 8555 §6.2)",
                    415,
                )
        return handler(request, route)

    def _fault_response(self, request: Incoming, fault: _Fault) -> Outgoing:
        self._use_nonce_quietly(request)
        if fault.error_type is None:
            response = Outgoing.plain(fault.status, f"{fault.status} {fault.detail}\n")
        else:
            response = Outgoing.problem(
                ProblemError(fault.error_type, fault.detail, fault.status)
            )
        if fault.retry_after is not None:
            response.headers.append(("Retry-After", retry_after(fault.retry_after)))
        return response

    def _use_nonce_quietly(self, request: Incoming) -> None:
        """
        A request refused by an injected fault still uses up its nonce, as
        on a real server that processed it.
        """
        if request.method != "POST":
            return
        try:
            nonce = parse_jws(request.body).protected.get("nonce")
        except ProblemError:
            return
        if isinstance(nonce, str):
            self._nonces.pop(nonce, None)

    # Request authentication (RFC 8555 §6.2 to §6.5).

    def _verified(
        self, request: Incoming, signer: Literal["kid", "jwk", "either"]
    ) -> _Signed:
        """
        Check a POST's JWS: shape, key, algorithm, signature, nonce, URL.

        :param signer: Which key reference the endpoint accepts.
        :returns: The verified request.
        :raises ProblemError: For any failed check.
        """
        jws = parse_jws(request.body)
        header = jws.protected
        if "crit" in header:
            raise ProblemError("malformed", "no 'crit' header parameters are supported")
        has_jwk, has_kid = "jwk" in header, "kid" in header
        if has_jwk == has_kid:
            raise ProblemError(
                "malformed", "the protected header needs exactly one of jwk and kid"
            )
        if has_jwk and signer == "kid":
            raise ProblemError(
                "malformed",
                "this request must be signed with an account key (kid), not jwk",
            )
        if has_kid and signer == "jwk":
            raise ProblemError("malformed", "newAccount requests carry jwk, not kid")
        account: MemoryAccount | None = None
        if has_kid:
            kid = header["kid"]
            account = self._accounts_by_url.get(kid) if isinstance(kid, str) else None
            if account is None:
                raise ProblemError("accountDoesNotExist", f"no account at {kid!r}")
            key = account.key
        else:
            key = load_jwk(header["jwk"])
        algorithm = signature_algorithm(jws, key)
        if account is None:
            check_account_key(key)
        if not jws.verify(key, algorithm):
            raise ProblemError("malformed", "JWS signature is invalid")
        self._check_nonce(header.get("nonce"))
        url = header.get("url")
        if not isinstance(url, str):
            raise ProblemError("malformed", "the protected header lacks a 'url' string")
        if url != request.url:
            raise ProblemError(
                "unauthorized",
                f"the JWS url {url!r} is not the request URL {request.url!r}",
            )
        if account is not None and account.status != "valid":
            raise ProblemError("unauthorized", f"account is {account.status}")
        return _Signed(jws=jws, key=key, account=account)

    def _check_nonce(self, nonce: object) -> None:
        if not isinstance(nonce, str):
            raise ProblemError(
                "badNonce", "the protected header lacks a 'nonce' string"
            )
        if nonce not in self._nonces:
            raise ProblemError(
                "badNonce", "the nonce was not issued by this server or was used"
            )
        del self._nonces[nonce]
        if self.nonce_rejection and self._random.random() < self.nonce_rejection:
            raise ProblemError("badNonce", "nonce rejected (simulated)")

    def _signed_by_account(self, request: Incoming) -> tuple[_Signed, MemoryAccount]:
        signed = self._verified(request, "kid")
        assert signed.account is not None
        return signed, signed.account

    def _post_as_get(self, signed: _Signed) -> None:
        if signed.jws.payload_b64 != "":
            raise ProblemError(
                "malformed",
                "this resource is read with POST-as-GET: the payload must be empty",
            )

    def _check_owner(self, account: MemoryAccount, owner_url: str) -> None:
        if account.url != owner_url:
            raise ProblemError(
                "unauthorized", "this resource belongs to another account"
            )

    # Time: apply what the clock has made due (RFC 8555 §7.1.6).

    def _advance(self) -> None:
        seconds = self.clock.seconds()
        now = _datetime(seconds)
        for authorization in self._authorizations:
            for challenge in authorization.challenges:
                if (
                    challenge.status == "processing"
                    and challenge._outcome_known
                    and seconds >= challenge._ready_at
                ):
                    self._finish_validation(authorization, challenge)
            if (
                authorization.status in ("pending", "valid")
                and now >= authorization.expires
            ):
                authorization.status = "expired"
        for order in self._orders:
            if order.status == "processing" and seconds >= order._issue_at:
                self._issue(order)
            elif order.status in ("pending", "ready"):
                self._update_order(order, now)

    def _update_order(self, order: MemoryOrder, now: datetime) -> None:
        statuses = {authorization.status for authorization in order.authorizations}
        if now >= order.expires:
            order.status = "invalid"
            order.error = messages.Error.with_code(
                "malformed", detail="the order expired"
            )
        elif statuses & {"invalid", "deactivated", "expired", "revoked"}:
            order.status = "invalid"
            order.error = messages.Error.with_code(
                "unauthorized", detail="an authorization of this order is not valid"
            )
        elif statuses == {"valid"}:
            order.status = "ready"
        else:
            order.status = "pending"

    def _finish_validation(
        self, authorization: MemoryAuthorization, challenge: MemoryChallenge
    ) -> None:
        ready = _datetime(challenge._ready_at)
        if challenge._outcome is None:
            challenge.status = "valid"
            challenge.validated = ready
            if authorization.status == "pending":
                authorization.status = "valid"
                authorization.expires = ready + self.authorization_lifetime
        else:
            challenge.status = "invalid"
            challenge.error = challenge._outcome
            if authorization.status == "pending":
                authorization.status = "invalid"

    def _order_response(self, status: int, order: MemoryOrder) -> Outgoing:
        response = Outgoing.with_json(status, order_json(order))
        response.headers.append(("Location", order.url))
        if order.status == "processing":
            remaining = order._issue_at - self.clock.seconds()
            response.headers.append(("Retry-After", retry_after(remaining)))
        return response

    # Endpoints.

    def _directory(self, request: Incoming, route: _Route) -> Outgoing:
        """
        The directory (RFC 8555 §7.1.1).
        """
        directory: dict[str, Any] = {
            kind: self._url(self._path_of(kind))
            for kind in (
                "newNonce",
                "newAccount",
                "newOrder",
                "revokeCert",
                "keyChange",
            )
        }
        if self.offer_new_authz:
            directory["newAuthz"] = self._url(self._path_of("newAuthz"))
        if self.offer_renewal_info:
            directory["renewalInfo"] = self._url(self._path_of("renewalInfo"))
        meta: dict[str, Any] = {}
        if self.terms_of_service is not None:
            meta["termsOfService"] = self.terms_of_service
        if self.eab_required:
            meta["externalAccountRequired"] = True
        if self.profiles:
            meta["profiles"] = dict(self.profiles)
        if meta:
            directory["meta"] = meta
        return Outgoing.with_json(200, directory)

    def _new_nonce_endpoint(self, request: Incoming, route: _Route) -> Outgoing:
        """
        newNonce (RFC 8555 §7.2): 200 to HEAD, 204 to GET.
        """
        status = 200 if request.method == "HEAD" else 204
        return Outgoing(status=status, headers=[("Cache-Control", "no-store")])

    def _new_account(self, request: Incoming, route: _Route) -> Outgoing:
        """
        newAccount (RFC 8555 §7.3, §7.3.1, §7.3.4).
        """
        signed = self._verified(request, "jwk")
        payload = signed.jws.payload_object()
        existing = self._accounts_by_key.get(thumbprint(signed.key))
        if existing is not None:
            if existing.status != "valid":
                raise ProblemError("unauthorized", f"account is {existing.status}")
            response = Outgoing.with_json(200, account_json(existing))
            response.headers.append(("Location", existing.url))
            return response
        if payload.get("onlyReturnExisting") is True:
            raise ProblemError("accountDoesNotExist", "no account exists with this key")
        contact = self._checked_contact(payload.get("contact", []))
        agreed = payload.get("termsOfServiceAgreed") is True
        if (
            self.terms_of_service is not None
            and self.require_terms_agreement
            and not agreed
        ):
            raise ProblemError("malformed", "must agree to terms of service")
        binding = payload.get("externalAccountBinding")
        key_id = None
        if binding is not None:
            key_id = self._checked_binding(binding, signed.key, request.url)
        elif self.eab_required:
            raise ProblemError(
                "externalAccountRequired", "an external account binding is required"
            )
        path = self._new_path("account")
        account = MemoryAccount(
            url=self._url(path),
            key=signed.key,
            contact=contact,
            orders_url=self._url(path + "/orders"),
            terms_of_service_agreed=agreed,
            external_account_key_id=key_id,
        )
        self._accounts.append(account)
        self._accounts_by_key[thumbprint(account.key)] = account
        self._accounts_by_url[account.url] = account
        self._routes[path] = _Route("account", account)
        self._routes[path + "/orders"] = _Route("orders", account)
        self._log.info("new account {url}", url=account.url)
        response = Outgoing.with_json(201, account_json(account))
        response.headers.append(("Location", account.url))
        return response

    def _checked_contact(self, contact: object) -> tuple[str, ...]:
        if not isinstance(contact, list) or not all(
            isinstance(item, str) for item in contact
        ):
            raise ProblemError("malformed", "contact must be a list of strings")
        for item in contact:
            scheme, _, address = item.partition(":")
            if scheme.lower() != "mailto":
                raise ProblemError(
                    "unsupportedContact", f"only mailto: contacts, not {item!r}"
                )
            local, _, domain = address.partition("@")
            if not local or "." not in domain or set("?,; ") & set(address):
                raise ProblemError(
                    "invalidContact", f"{item!r} is not a single email address"
                )
        return tuple(contact)

    def _checked_binding(self, binding: object, account_key: JWK, url: str) -> str:
        """
        Verify an external account binding (RFC 8555 §7.3.4).

        :returns: The external account key id.
        """
        if not isinstance(binding, dict):
            raise ProblemError(
                "malformed", "externalAccountBinding must be a JWS object"
            )
        jws = parse_jws(binding, "externalAccountBinding")
        header = jws.protected
        algorithm_name = header.get("alg")
        if not isinstance(algorithm_name, str) or algorithm_name not in _MAC_ALGORITHMS:
            raise ProblemError(
                "badSignatureAlgorithm",
                "externalAccountBinding must use HS256, HS384 or HS512",
            )
        if "nonce" in header or "jwk" in header:
            raise ProblemError(
                "malformed", "externalAccountBinding must not have nonce or jwk"
            )
        if header.get("url") != url:
            raise ProblemError(
                "unauthorized", "externalAccountBinding url is not newAccount's"
            )
        key_id = header.get("kid")
        if not isinstance(key_id, str) or key_id not in self.eab_keys:
            raise ProblemError(
                "unauthorized", f"unknown external account key id {key_id!r}"
            )
        try:
            bound_key = load_jwk(json.loads(jws.payload))
        except ValueError:
            raise ProblemError(
                "malformed", "externalAccountBinding payload is not a JWK"
            ) from None
        if thumbprint(bound_key) != thumbprint(account_key):
            raise ProblemError(
                "unauthorized", "externalAccountBinding binds a different key"
            )
        algorithm = _MAC_ALGORITHMS[algorithm_name]
        if not algorithm.verify(
            self.eab_keys[key_id], jws.signing_input, jws.signature
        ):
            raise ProblemError("unauthorized", "externalAccountBinding MAC is invalid")
        return key_id

    def _account(self, request: Incoming, route: _Route) -> Outgoing:
        """
        Account read, update and deactivation (RFC 8555 §7.3.2, §7.3.6).
        """
        account = route.record
        assert isinstance(account, MemoryAccount)
        signed, signer = self._signed_by_account(request)
        self._check_owner(signer, account.url)
        if signed.jws.payload_b64 != "":
            payload = signed.jws.payload_object()
            status = payload.get("status", account.status)
            if status not in (account.status, "deactivated"):
                raise ProblemError(
                    "malformed", "the only status a client sets is deactivated"
                )
            if "contact" in payload:
                account.contact = self._checked_contact(payload["contact"])
            if payload.get("termsOfServiceAgreed") is True:
                account.terms_of_service_agreed = True
            if status != account.status:
                account.status = status
                self._log.info("account {url} deactivated", url=account.url)
        return Outgoing.with_json(200, account_json(account))

    def _orders_list(self, request: Incoming, route: _Route) -> Outgoing:
        """
        An account's orders list (RFC 8555 §7.1.2.1), without paging.
        """
        account = route.record
        assert isinstance(account, MemoryAccount)
        signed, signer = self._signed_by_account(request)
        self._check_owner(signer, account.url)
        self._post_as_get(signed)
        urls = [
            order.url
            for order in self._orders
            if order.account_url == account.url and order.status != "invalid"
        ]
        return Outgoing.with_json(200, {"orders": urls})

    def _key_change(self, request: Incoming, route: _Route) -> Outgoing:
        """
        Account key rollover (RFC 8555 §7.3.5).
        """
        signed, account = self._signed_by_account(request)
        inner = parse_jws(signed.jws.payload_object("keyChange payload"), "inner JWS")
        header = inner.protected
        if "jwk" not in header or "kid" in header:
            raise ProblemError("malformed", "the inner JWS must carry jwk and no kid")
        if "nonce" in header:
            raise ProblemError("malformed", "the inner JWS must not have a nonce")
        if header.get("url") != request.url:
            raise ProblemError(
                "malformed", "the inner JWS url must equal the outer one"
            )
        new_key = load_jwk(header["jwk"])
        check_account_key(new_key)
        if not inner.verify(new_key, signature_algorithm(inner, new_key)):
            raise ProblemError("malformed", "the inner JWS signature is invalid")
        payload = inner.payload_object("inner JWS payload")
        if payload.get("account") != account.url:
            raise ProblemError(
                "unauthorized", "the inner payload names another account"
            )
        try:
            old_key = load_jwk(payload.get("oldKey"))
        except ProblemError:
            raise ProblemError(
                "malformed", "the inner payload's oldKey is not a JWK"
            ) from None
        if thumbprint(old_key) != thumbprint(account.key):
            raise ProblemError(
                "unauthorized", "oldKey is not the account's current key"
            )
        holder = self._accounts_by_key.get(thumbprint(new_key))
        if holder is not None:
            raise ProblemError(
                "malformed",
                "the new key is already in use by an account",
                409,
                headers={"Location": holder.url},
            )
        del self._accounts_by_key[thumbprint(account.key)]
        account.key = new_key
        self._accounts_by_key[thumbprint(new_key)] = account
        self._log.info("account {url} changed its key", url=account.url)
        return Outgoing.with_json(200, account_json(account))

    def _new_order(self, request: Incoming, route: _Route) -> Outgoing:
        """
        newOrder (RFC 8555 §7.4; RFC 8738; RFC 9773 ``replaces``; profiles).
        """
        signed, account = self._signed_by_account(request)
        payload = signed.jws.payload_object()
        identifiers = parse_identifiers(payload.get("identifiers"))
        profile = payload.get("profile")
        if profile is not None and (
            not isinstance(profile, str) or profile not in self.profiles
        ):
            raise ProblemError(
                "invalidProfile", f"no certificate profile {profile!r} here"
            )
        replaces = payload.get("replaces")
        if replaces is not None:
            self._check_replaces(replaces, account, identifiers)
        now = self._now()
        expires = now + self.order_lifetime
        path = self._new_path("order")
        order = MemoryOrder(
            url=self._url(path),
            account_url=account.url,
            identifiers=identifiers,
            authorizations=[
                self._authorization_for(account, identifier, expires, now)
                for identifier in identifiers
            ],
            expires=expires,
            finalize_url=self._url(path + "/finalize"),
            profile=profile,
            replaces=replaces,
        )
        self._update_order(order, now)
        self._orders.append(order)
        self._routes[path] = _Route("order", order)
        self._routes[path + "/finalize"] = _Route("finalize", order)
        return self._order_response(201, order)

    def _check_replaces(
        self,
        replaces: object,
        account: MemoryAccount,
        identifiers: list[messages.Identifier],
    ) -> None:
        if not self.offer_renewal_info:
            raise ProblemError(
                "malformed", "this server does not offer renewalInfo (RFC 9773)"
            )
        if not isinstance(replaces, str):
            raise ProblemError("malformed", "replaces must be a string")
        certificate = self._certificate_by_renewal_id(replaces)
        if certificate is None:
            raise ProblemError(
                "malformed", f"replaces names no certificate: {replaces!r}"
            )
        if certificate.account_url != account.url:
            raise ProblemError(
                "malformed", "replaces names a certificate of another account"
            )
        if certificate.replaced_by is not None:
            raise ProblemError(
                "alreadyReplaced", f"already replaced by {certificate.replaced_by}"
            )
        names = {_identifier_pair(identifier) for identifier in identifiers}
        if not names & set(self._certificate_identifiers(certificate.certificate)):
            raise ProblemError(
                "malformed", "the order shares no identifier with replaces"
            )

    def _authorization_for(
        self,
        account: MemoryAccount,
        requested: messages.Identifier,
        expires: datetime,
        now: datetime,
    ) -> MemoryAuthorization:
        wildcard = requested.value.startswith("*.")
        identifier = messages.Identifier(
            typ=requested.typ,
            value=requested.value[2:] if wildcard else requested.value,
        )
        if self.authorization_reuse:
            for authorization in self._authorizations:
                if (
                    authorization.account_url == account.url
                    and authorization.status == "valid"
                    and authorization.identifier == identifier
                    and authorization.wildcard == wildcard
                    and authorization.expires > now
                ):
                    return authorization
        return self._new_authorization(account, identifier, wildcard, expires)

    def _new_authorization(
        self,
        account: MemoryAccount,
        identifier: messages.Identifier,
        wildcard: bool,
        expires: datetime,
    ) -> MemoryAuthorization:
        path = self._new_path("authz")
        authorization = MemoryAuthorization(
            url=self._url(path),
            identifier=identifier,
            wildcard=wildcard,
            account_url=account.url,
            expires=expires,
            challenges=[],
        )
        for challenge_type in _challenge_types(identifier, wildcard):
            challenge_path = self._new_path("challenge")
            challenge = MemoryChallenge(
                url=self._url(challenge_path),
                type=challenge_type,
                token=b64encode(secrets.token_bytes(32)).decode("ascii"),
                authorization_url=authorization.url,
            )
            authorization.challenges.append(challenge)
            self._routes[challenge_path] = _Route("challenge", challenge)
        self._authorizations.append(authorization)
        self._authorizations_by_url[authorization.url] = authorization
        self._routes[path] = _Route("authorization", authorization)
        return authorization

    def _new_authz(self, request: Incoming, route: _Route) -> Outgoing:
        """
        newAuthz: pre-authorization (RFC 8555 §7.4.1).
        """
        signed, account = self._signed_by_account(request)
        payload = signed.jws.payload_object()
        identifier = parse_identifier(payload.get("identifier"), allow_wildcard=False)
        authorization = self._new_authorization(
            account, identifier, False, self._now() + self.order_lifetime
        )
        response = Outgoing.with_json(201, authorization_json(authorization))
        response.headers.append(("Location", authorization.url))
        return response

    def _order(self, request: Incoming, route: _Route) -> Outgoing:
        """
        Order read (RFC 8555 §7.4), POST-as-GET.
        """
        order = route.record
        assert isinstance(order, MemoryOrder)
        signed, account = self._signed_by_account(request)
        self._check_owner(account, order.account_url)
        self._post_as_get(signed)
        return self._order_response(200, order)

    def _finalize(self, request: Incoming, route: _Route) -> Outgoing:
        """
        Order finalization (RFC 8555 §7.4).
        """
        order = route.record
        assert isinstance(order, MemoryOrder)
        signed, account = self._signed_by_account(request)
        self._check_owner(account, order.account_url)
        payload = signed.jws.payload_object()
        if order.status != "ready":
            raise ProblemError(
                "orderNotReady", f"the order is {order.status}, not ready"
            )
        csr_der = decode_b64url(payload.get("csr"), "csr")
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError as error:
            raise ProblemError("badCSR", f"csr is not a DER CSR: {error}") from error
        if not csr.is_signature_valid:
            raise ProblemError("badCSR", "the CSR's signature is invalid")
        csr_key = _public_jwk(csr.public_key())
        if csr_key is None:
            raise ProblemError("badCSR", "the CSR key must be RSA or EC")
        try:
            check_account_key(csr_key)
        except ProblemError as problem:
            raise ProblemError("badCSR", problem.detail) from None
        if thumbprint(csr_key) == thumbprint(account.key):
            raise ProblemError("badCSR", "the CSR key must not be the account key")
        wanted = {_identifier_pair(identifier) for identifier in order.identifiers}
        asked = csr_identifiers(csr)
        if asked != wanted:
            missing = sorted(value for _, value in wanted - asked)
            extra = sorted(value for _, value in asked - wanted)
            raise ProblemError(
                "badCSR",
                f"the CSR's names differ from the order's: "
                f"missing {missing}, extra {extra}",
            )
        order.csr = csr
        order.status = "processing"
        order._issue_at = self.clock.seconds() + self.processing_delay
        self._advance()
        return self._order_response(200, order)

    def _issue(self, order: MemoryOrder) -> None:
        assert order.csr is not None
        public_key = order.csr.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        not_before = _datetime(order._issue_at)
        leaf = self._ca.issue(
            public_key,
            [_identifier_pair(identifier) for identifier in order.identifiers],
            csr_common_name(order.csr),
            not_before,
            self.certificate_lifetime,
        )
        path = self._new_path("certificate")
        primary, *alternates = self._ca.chains
        lifetime = self.certificate_lifetime
        certificate = MemoryCertificate(
            url=self._url(path),
            certificate=leaf,
            chain=list(primary.certificates),
            alternate_chains=[list(chain.certificates) for chain in alternates],
            alternate_urls=[
                self._url(f"{path}/{index}") for index in range(1, len(alternates) + 1)
            ],
            account_url=order.account_url,
            order_url=order.url,
            renewal_window=(
                not_before + lifetime * 2 / 3,
                not_before + lifetime * 5 / 6,
            ),
        )
        self._routes[path] = _Route("certificate", certificate, 0)
        for index in range(1, len(alternates) + 1):
            self._routes[f"{path}/{index}"] = _Route("certificate", certificate, index)
        self._certificates.append(certificate)
        self._certificates_by_serial[certificate.serial] = certificate
        order.certificate = certificate
        order.status = "valid"
        if order.replaces is not None:
            replaced = self._certificate_by_renewal_id(order.replaces)
            if replaced is not None and replaced.replaced_by is None:
                replaced.replaced_by = order.url
        self._log.info(
            "issued certificate {serial} for {order}",
            serial=leaf.serial_number,
            order=order.url,
        )

    def _authorization(self, request: Incoming, route: _Route) -> Outgoing:
        """
        Authorization read and deactivation (RFC 8555 §7.5, §7.5.2).
        """
        authorization = route.record
        assert isinstance(authorization, MemoryAuthorization)
        signed, account = self._signed_by_account(request)
        self._check_owner(account, authorization.account_url)
        if signed.jws.payload_b64 != "":
            payload = signed.jws.payload_object()
            if payload.get("status") != "deactivated":
                raise ProblemError(
                    "malformed", "the only update is status: deactivated"
                )
            if authorization.status not in ("pending", "valid"):
                raise ProblemError(
                    "malformed",
                    f"cannot deactivate a {authorization.status} authorization",
                )
            authorization.status = "deactivated"
            self._advance()
        response = Outgoing.with_json(200, authorization_json(authorization))
        processing = [c for c in authorization.challenges if c.status == "processing"]
        if processing:
            remaining = processing[0]._ready_at - self.clock.seconds()
            response.headers.append(("Retry-After", retry_after(remaining)))
        return response

    def _challenge(self, request: Incoming, route: _Route) -> Outgoing:
        """
        Challenge read, and response to a challenge (RFC 8555 §7.5.1).
        """
        challenge = route.record
        assert isinstance(challenge, MemoryChallenge)
        authorization = self._authorizations_by_url[challenge.authorization_url]
        signed, account = self._signed_by_account(request)
        self._check_owner(account, authorization.account_url)
        if signed.jws.payload_b64 != "":
            signed.jws.payload_object()
            if challenge.status != "pending" and self.refuse_repeated_challenge:
                raise ProblemError(
                    "malformed",
                    f"Cannot update challenge with status {challenge.status}, "
                    "only status pending",
                )
            if challenge.status == "pending":
                if authorization.status != "pending":
                    raise ProblemError(
                        "malformed",
                        f"the authorization is {authorization.status}, not pending",
                    )
                self._start_validation(account, authorization, challenge)
        response = Outgoing.with_json(200, challenge_json(challenge))
        response.headers.append(("Link", f'<{authorization.url}>;rel="up"'))
        if challenge.status == "processing":
            remaining = challenge._ready_at - self.clock.seconds()
            response.headers.append(("Retry-After", retry_after(remaining)))
        return response

    def _start_validation(
        self,
        account: MemoryAccount,
        authorization: MemoryAuthorization,
        challenge: MemoryChallenge,
    ) -> None:
        key_authorization = challenges.HTTP01(
            token=decode_b64url(challenge.token, "token")
        ).key_authorization(account.key)
        challenge.status = "processing"
        challenge.key_authorization = key_authorization
        challenge._ready_at = self.clock.seconds() + self.validation_delay
        names = {authorization.identifier.value}
        if authorization.wildcard:
            names.add("*." + authorization.identifier.value)
        if names & self.invalid_identifiers:
            self._validated(challenge, False)
            return
        try:
            result = self.validator(
                authorization.identifier, challenge.type, key_authorization
            )
        except Exception:
            self._validation_failed(challenge, None)
            return
        if isinstance(result, Deferred):
            result.addCallbacks(
                lambda valid: self._validated(challenge, bool(valid)),
                lambda failure: self._validation_failed(challenge, failure),
            )
        else:
            self._validated(challenge, bool(result))

    def _validated(self, challenge: MemoryChallenge, valid: bool) -> None:
        challenge._outcome_known = True
        challenge._outcome = (
            None
            if valid
            else messages.Error.with_code(
                "incorrectResponse",
                detail=f"{challenge.type} validation failed: wrong response",
            )
        )
        self._advance()

    def _validation_failed(
        self, challenge: MemoryChallenge, failure: Failure | None
    ) -> None:
        self._log.failure("validator failed for {url}", failure, url=challenge.url)
        challenge._outcome_known = True
        challenge._outcome = messages.Error.with_code(
            "serverInternal", detail="the validator raised an exception"
        )
        self._advance()

    def _certificate(self, request: Incoming, route: _Route) -> Outgoing:
        """
        Certificate download (RFC 8555 §7.4.2), POST-as-GET.
        """
        certificate = route.record
        assert isinstance(certificate, MemoryCertificate)
        signed, account = self._signed_by_account(request)
        self._check_owner(account, certificate.account_url)
        self._post_as_get(signed)
        response = Outgoing(
            status=200,
            headers=[("Content-Type", PEM_CHAIN)],
            body=certificate.pem_chain(route.chain_index).encode("ascii"),
        )
        for index, url in enumerate([certificate.url, *certificate.alternate_urls]):
            if index != route.chain_index:
                response.headers.append(("Link", f'<{url}>;rel="alternate"'))
        return response

    def _revoke_certificate(self, request: Incoming, route: _Route) -> Outgoing:
        """
        revokeCert (RFC 8555 §7.6), signed by an account or by the
        certificate's key.
        """
        signed = self._verified(request, "either")
        payload = signed.jws.payload_object()
        der = decode_b64url(payload.get("certificate"), "certificate")
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError as error:
            raise ProblemError(
                "malformed", f"certificate is not DER: {error}"
            ) from error
        reason = payload.get("reason", 0)
        if isinstance(reason, bool) or not isinstance(reason, int):
            raise ProblemError("malformed", "reason must be an integer")
        if reason not in _REVOCATION_REASONS:
            raise ProblemError(
                "badRevocationReason", f"reason code {reason} is not accepted"
            )
        certificate = self._certificates_by_serial.get(leaf.serial_number)
        if certificate is None or certificate.certificate != leaf:
            raise ProblemError(
                "malformed", "this certificate was not issued by this server"
            )
        if signed.account is not None:
            if not self._may_revoke(signed.account, certificate):
                raise ProblemError(
                    "unauthorized", "this account may not revoke this certificate"
                )
        else:
            certificate_key = _public_jwk(leaf.public_key())
            if certificate_key is None or thumbprint(certificate_key) != thumbprint(
                signed.key
            ):
                raise ProblemError(
                    "unauthorized", "the JWS key is not the certificate's key"
                )
        if certificate.revoked:
            raise ProblemError("alreadyRevoked", "the certificate is already revoked")
        now = self._now()
        certificate.revoked = True
        certificate.revocation_reason = reason
        certificate.revoked_at = now
        certificate.renewal_window = (
            now - timedelta(hours=2),
            now - timedelta(hours=1),
        )
        self._log.info("revoked certificate {serial}", serial=certificate.serial)
        return Outgoing(status=200)

    def _may_revoke(
        self, account: MemoryAccount, certificate: MemoryCertificate
    ) -> bool:
        if certificate.account_url == account.url:
            return True
        now = self._now()
        authorized = {
            (authorization.identifier.typ.name, authorization.identifier.value)
            for authorization in self._authorizations
            if authorization.account_url == account.url
            and authorization.status == "valid"
            and authorization.expires > now
            and not authorization.wildcard
        }
        return set(self._certificate_identifiers(certificate.certificate)) <= authorized

    def _certificate_identifiers(
        self, certificate: x509.Certificate
    ) -> list[tuple[str, str]]:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        pairs = [("dns", name) for name in san.get_values_for_type(x509.DNSName)]
        pairs.extend(
            ("ip", str(address)) for address in san.get_values_for_type(x509.IPAddress)
        )
        return pairs

    def _certificate_by_renewal_id(
        self, certificate_id: str
    ) -> MemoryCertificate | None:
        key_part, dot, serial_part = certificate_id.partition(".")
        if not dot:
            return None
        try:
            decode_b64url(key_part, "key identifier")
            serial = int.from_bytes(decode_b64url(serial_part, "serial"), "big")
        except ProblemError:
            return None
        certificate = self._certificates_by_serial.get(serial)
        if (
            certificate is None
            or renewal_info_id(certificate.certificate) != certificate_id
        ):
            return None
        return certificate

    def _renewal_info(self, request: Incoming, route: _Route) -> Outgoing:
        """
        renewalInfo (RFC 9773 §4): the suggested renewal window.
        """
        certificate_id = route.record
        assert isinstance(certificate_id, str)
        certificate = self._certificate_by_renewal_id(certificate_id)
        if certificate is None:
            raise ProblemError(
                "malformed", f"no certificate with identifier {certificate_id!r}", 404
            )
        start, end = certificate.renewal_window
        document: dict[str, Any] = messages.RenewalInfo(
            suggested_window=messages.RenewalInfo.SuggestedWindow(start=start, end=end)
        ).to_json()
        if certificate.renewal_explanation_url is not None:
            document["explanationURL"] = certificate.renewal_explanation_url
        response = Outgoing.with_json(200, document)
        response.headers.append(
            ("Retry-After", retry_after(self.renewal_info_retry_after))
        )
        return response
