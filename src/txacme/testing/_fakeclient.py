"""
Test doubles for code built on :class:`txacme.service.AcmeIssuingService`:
a fake ACME client with its own certificate authority, its controller, and
a responder that does nothing.  Public through :mod:`txacme.testing`.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from acme import challenges as acme_challenges
from acme import messages
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from josepy.b64 import b64encode
from josepy.jwk import JWK
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from txacme._deferred import deferred_async
from txacme._polling import Deadline, PollingPolicy, finalize_order
from txacme._protocol._common import as_csr, to_identifier
from txacme.client import renewal_certificate_id
from txacme.errors import MalformedResponse, NotOffered, ServerError
from txacme.interfaces import IResponder
from txacme.messages import RenewalWindow
from txacme.util import (
    PrivateKey,
    general_name,
    generate_private_key,
    identifiers_from_csr,
)

__all__ = ["FakeClient", "FakeClientController", "FakeOrder", "NullResponder"]

_BASE = "https://fake-acme.test"
_CA_VALIDITY = timedelta(days=3650)


@implementer(IResponder)
@frozen
class NullResponder:
    """
    A responder that does nothing: for a CA that validates every challenge
    anyway (:class:`~txacme.testing.FakeClient`, or
    :class:`~txacme.testing.MemoryAcmeServer` with its default validator).

    :ivar challenge_type: The challenge type it claims to answer, such as
        ``"http-01"``.
    """

    challenge_type: str

    def start_responding(self, server_name: str, challenge: Any, response: Any) -> None:
        """Do nothing."""

    def stop_responding(self, server_name: str, challenge: Any, response: Any) -> None:
        """Do nothing."""


class FakeClientController:
    """
    Controls the issuances of the :class:`FakeClient` objects it is given
    to: holds them back until released, makes them fail, and counts them.

    An issuance passes the controller when the order is finalized, after
    its challenges were answered.
    """

    def __init__(self) -> None:
        #: Whether issuances are held back.
        self.paused = False
        #: How many certificates were issued.
        self.issued = 0
        self._waiting: list[Deferred[None]] = []
        self._failures: list[BaseException] = []

    def pause(self) -> None:
        """Hold back every issuance from now on, until :meth:`resume`."""
        self.paused = True

    def resume(self, value: object = None) -> None:
        """
        Release the issuances held back, and stop holding them back.

        :param value: As in txacme 0.9: a
            :class:`~twisted.python.failure.Failure` (or an exception) makes
            the issuances held back fail with it; any other value lets them
            go on.
        """
        self.paused = False
        self.release(len(self._waiting), value)

    def release(self, count: int = 1, value: object = None) -> int:
        """
        Release the ``count`` oldest issuances held back (staying paused).

        :param value: As for :meth:`resume`.
        :returns: How many were released.
        """
        released, self._waiting = self._waiting[:count], self._waiting[count:]
        for waiter in released:
            if isinstance(value, Failure | BaseException):
                waiter.errback(value)
            else:
                waiter.callback(None)
        return len(released)

    def count(self) -> int:
        """
        :returns: How many issuances are being held back.
        """
        return len(self._waiting)

    def fail_next(self, error: BaseException | None = None, count: int = 1) -> None:
        """
        Make the next ``count`` issuances fail.

        :param error: The exception to fail with; by default a
            :class:`~txacme.errors.ServerError` ``serverInternal``.
        :param count: How many issuances fail.
        """
        for _ in range(count):
            self._failures.append(
                error
                if error is not None
                else ServerError(
                    messages.Error.with_code(
                        "serverInternal", detail="FakeClientController.fail_next"
                    ),
                    None,
                )
            )

    def _issue(self) -> Deferred[None]:
        """Wait for this issuance's turn; fail it if asked to."""
        if self._failures:
            error = self._failures.pop(0)
            failed: Deferred[None] = Deferred()
            failed.errback(error)
            return failed
        waiter: Deferred[None] = Deferred(self._forget)
        if self.paused:
            self._waiting.append(waiter)
        else:
            waiter.callback(None)
        return waiter

    def _forget(self, waiter: Deferred[None]) -> None:
        if waiter in self._waiting:
            self._waiting.remove(waiter)


@frozen
class FakeOrder:
    """
    An order a :class:`FakeClient` received.

    :ivar url: Its URL.
    :ivar names: The identifiers' values, in order.
    :ivar profile: The profile asked for, or ``None``.
    :ivar replaces: The ARI certificate identifier of the certificate it
        replaces (RFC 9773), or ``None``.
    """

    url: str
    names: tuple[str, ...]
    profile: str | None
    replaces: str | None


def _problem(code: str, detail: str) -> ServerError:
    """The error a CA's problem document of ``code`` makes."""
    return ServerError(messages.Error.with_code(code, detail=detail), None)


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


class FakeClient:
    """
    A fake of the :class:`txacme.client.Client` methods that
    :class:`~txacme.service.AcmeIssuingService` uses (see
    :class:`~txacme.service.IssuingClient`), with an in-process
    certificate authority: no network, no server.

    Every order's authorizations are pending, with http-01, dns-01 and
    tls-alpn-01 challenges (dns-01 alone for a wildcard); answering any
    challenge makes its authorization valid at once.  Finalizing checks
    that the CSR names exactly the order's identifiers and passes through
    the :class:`FakeClientController`, which may hold it back or fail it;
    then the CA signs a certificate valid from the clock's present for
    ``certificate_lifetime``.  As its CA validates at once, its ``policy``
    polls an authorization at once after its challenge is answered
    (``initial_delay=0``), so that an issuance completes without the
    clock moving, as with txacme 0.9's ``FakeClient``.

    :param key: The account key (responses to challenges are computed
        with it).
    :param clock: The clock: certificates start at its present.
    :param ca_key: The CA's private key; a new ECDSA P-256 key by default.
    :param controller: The controller; a new one by default.
    :param certificate_lifetime: The validity of issued certificates.
    :param offer_renewal_info: Whether :meth:`renewal_info` answers (RFC
        9773); if not, it raises :exc:`~txacme.errors.NotOffered`, as the
        real client does for a CA without ``renewalInfo``.

    :ivar key: The account key.
    :ivar policy: The polling policy.
    :ivar controller: The controller.
    :ivar ca_certificate: The CA's self-signed certificate, the issuer of
        every certificate.
    :ivar registrations: The registration messages received, in order.
    :ivar orders: The :class:`FakeOrder` objects received, in order.
    :ivar certificates: The certificates issued, in order.
    :ivar finalizations: The URLs of the orders whose CSR was sent, one per
        :meth:`send_csr` to a ready order, in order (also those the
        controller failed): each an attempt at issuing.
    :ivar renewal_windows: ARI windows by serial number, as
        :meth:`renewal_info` answers them (by default the last third of the
        certificate's first five sixths of validity, as
        :class:`~txacme.testing.MemoryAcmeServer` answers).
    :ivar closed: How many times :meth:`close` was called.
    """

    def __init__(
        self,
        key: JWK,
        clock: IReactorTime,
        ca_key: PrivateKey | None = None,
        controller: FakeClientController | None = None,
        *,
        certificate_lifetime: timedelta = timedelta(days=90),
        offer_renewal_info: bool = False,
    ) -> None:
        self.key = key
        self._clock = clock
        self.controller = (
            controller if controller is not None else FakeClientController()
        )
        self.policy = PollingPolicy(initial_delay=0.0)
        self.certificate_lifetime = certificate_lifetime
        self.offer_renewal_info = offer_renewal_info
        self.ca_key: PrivateKey = (
            ca_key if ca_key is not None else generate_private_key("p256")
        )
        self.ca_certificate = self._ca_certificate()
        self.registrations: list[messages.NewRegistration] = []
        self.orders: list[FakeOrder] = []
        self.certificates: list[x509.Certificate] = []
        self.finalizations: list[str] = []
        self.renewal_windows: dict[int, tuple[datetime, datetime]] = {}
        self.closed = 0
        self._ids = itertools.count(1)
        self._authorizations: dict[str, messages.AuthorizationResource] = {}
        self._orders_by_url: dict[str, messages.OrderResource] = {}
        self._chains: dict[str, str] = {}
        self._challenge_owner: dict[str, str] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def _ca_certificate(self) -> x509.Certificate:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "txacme testing"),
                x509.NameAttribute(NameOID.COMMON_NAME, "FakeClient CA"),
            ]
        )
        now = self._now()
        public_key = self.ca_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + _CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .sign(self.ca_key, hashes.SHA256())
        )

    def _url(self, kind: str) -> str:
        return f"{_BASE}/{kind}/{next(self._ids)}"

    # -- accounts ----------------------------------------------------------------

    @deferred_async
    async def register(
        self, new_reg: messages.NewRegistration | None = None, eab: Any = None
    ) -> messages.RegistrationResource:
        """
        Record the registration; return an account for it.
        """
        if new_reg is None:
            new_reg = messages.NewRegistration()
        self.registrations.append(new_reg)
        return messages.RegistrationResource(
            body=messages.Registration(
                contact=new_reg.contact,
                terms_of_service_agreed=new_reg.terms_of_service_agreed,
                status=messages.STATUS_VALID,
            ),
            uri=f"{_BASE}/account/1",
        )

    # -- orders -------------------------------------------------------------------

    @deferred_async
    async def new_order(
        self,
        identifiers: Iterable[messages.Identifier | str],
        profile: str | None = None,
        replaces: str | x509.Certificate | None = None,
    ) -> messages.OrderResource:
        """
        Create an order with a pending authorization per identifier.
        """
        wanted = [to_identifier(identifier) for identifier in identifiers]
        if not wanted:
            raise ValueError("An order needs at least one identifier")
        if isinstance(replaces, x509.Certificate):
            replaces = renewal_certificate_id(replaces)
        order_url = self._url("order")
        authorizations = tuple(
            self._new_authorization(identifier) for identifier in wanted
        )
        self.orders.append(
            FakeOrder(
                url=order_url,
                names=tuple(identifier.value for identifier in wanted),
                profile=profile,
                replaces=replaces,
            )
        )
        body = messages.Order.from_json(
            {
                "status": "pending",
                "identifiers": [
                    {"type": identifier.typ.name, "value": identifier.value}
                    for identifier in wanted
                ],
                "authorizations": [authzr.uri for authzr in authorizations],
                "finalize": order_url + "/finalize",
            }
        )
        orderr = messages.OrderResource(
            body=body, uri=order_url, authorizations=authorizations
        )
        self._orders_by_url[order_url] = orderr
        return orderr

    def _new_authorization(
        self, identifier: messages.Identifier
    ) -> messages.AuthorizationResource:
        url = self._url("authz")
        wildcard = identifier.value.startswith("*.")
        if wildcard:
            types = ["dns-01"]
        elif identifier.typ == messages.IDENTIFIER_IP:
            types = ["http-01", "tls-alpn-01"]
        else:
            types = ["http-01", "dns-01", "tls-alpn-01"]
        challenges = []
        for typ in types:
            challenge_url = f"{url}/{typ}"
            self._challenge_owner[challenge_url] = url
            challenges.append(
                {
                    "type": typ,
                    "url": challenge_url,
                    "status": "pending",
                    "token": b64encode(secrets.token_bytes(16)).decode("ascii"),
                }
            )
        value = identifier.value[2:] if wildcard else identifier.value
        jobj: dict[str, Any] = {
            "identifier": {"type": identifier.typ.name, "value": value},
            "status": "pending",
            "challenges": challenges,
        }
        if wildcard:
            jobj["wildcard"] = True
        authzr = messages.AuthorizationResource(
            body=messages.Authorization.from_json(jobj), uri=url
        )
        self._authorizations[url] = authzr
        return authzr

    @deferred_async
    async def answer_challenge(
        self,
        challenge_body: messages.ChallengeBody,
        response: acme_challenges.ChallengeResponse | None,
    ) -> messages.ChallengeResource:
        """
        Validate the challenge at once: its authorization becomes valid.
        """
        authorization_url = self._challenge_owner[challenge_body.uri]
        authzr = self._authorizations[authorization_url]
        valid = authzr.body.update(
            status=messages.STATUS_VALID,
            challenges=tuple(
                challb.update(status=messages.STATUS_VALID)
                if challb.uri == challenge_body.uri
                else challb
                for challb in authzr.body.challenges
            ),
        )
        self._authorizations[authorization_url] = authzr.update(body=valid)
        return messages.ChallengeResource(
            body=challenge_body.update(status=messages.STATUS_VALID),
            authzr_uri=authorization_url,
        )

    @deferred_async
    async def poll(
        self, authzr: messages.AuthorizationResource
    ) -> tuple[messages.AuthorizationResource, float]:
        """
        :returns: The authorization as it is now, and the policy's delay.
        """
        return self._authorizations[authzr.uri], self.policy.first_delay

    @deferred_async
    async def refresh_authorization(
        self, authzr: messages.AuthorizationResource
    ) -> tuple[messages.AuthorizationResource, float | None]:
        """
        :returns: The authorization as it is now, and no ``Retry-After``.
        """
        return self._authorizations[authzr.uri], None

    def _order_now(self, orderr: messages.OrderResource) -> messages.OrderResource:
        """An order as the fake CA has it: ready once all its authorizations are."""
        current = self._orders_by_url[orderr.uri]
        if current.body.status == messages.STATUS_PENDING and all(
            self._authorizations[url].body.status == messages.STATUS_VALID
            for url in current.body.authorizations
        ):
            current = current.update(
                body=current.body.update(status=messages.STATUS_READY)
            )
            self._orders_by_url[orderr.uri] = current
        updated: messages.OrderResource = orderr.update(body=current.body)
        return updated

    @deferred_async
    async def refresh_order(
        self, orderr: messages.OrderResource
    ) -> tuple[messages.OrderResource, float | None]:
        """
        :returns: The order as it is now (``ready`` once every
            authorization is valid), and no ``Retry-After``.
        """
        return self._order_now(orderr), None

    @deferred_async
    async def send_csr(
        self,
        orderr: messages.OrderResource,
        csr: x509.CertificateSigningRequest,
    ) -> tuple[messages.OrderResource, float | None]:
        """
        Issue the certificate, once the controller lets it through.

        :returns: The ``valid`` order, with its certificate URL.
        :raises ServerError: ``orderNotReady`` if a challenge was not
            answered; ``badCSR`` if the CSR does not name exactly the
            order's identifiers (as a CA answers).
        """
        current = self._order_now(orderr)
        if current.body.status != messages.STATUS_READY:
            raise _problem("orderNotReady", f"the order is {current.body.status.name}")
        self.finalizations.append(orderr.uri)
        ordered = [identifier.value for identifier in current.body.identifiers]
        requested = [value for _, value in identifiers_from_csr(csr)]
        if sorted(ordered) != sorted(requested):
            raise _problem("badCSR", f"the CSR names {requested}, the order {ordered}")
        await self.controller._issue()
        certificate = self._sign(csr, ordered)
        self.certificates.append(certificate)
        self.controller.issued += 1
        certificate_url = self._url("certificate")
        self._chains[certificate_url] = _pem(certificate) + _pem(self.ca_certificate)
        valid = current.update(
            body=current.body.update(
                status=messages.STATUS_VALID, certificate=certificate_url
            )
        )
        self._orders_by_url[orderr.uri] = valid
        return valid, None

    @deferred_async
    async def fetch_certificate(
        self,
        orderr: messages.OrderResource,
        csr: x509.CertificateSigningRequest,
    ) -> messages.OrderResource:
        """
        The chain of a valid order: the certificate, then the fake CA's.

        :raises MalformedResponse: If the certificate is not for the CSR's
            key.
        """
        url = orderr.body.certificate
        if url is None or url not in self._chains:
            raise MalformedResponse(f"The order {orderr.uri} has no certificate")
        chain = self._chains[url]
        leaf = x509.load_pem_x509_certificate(chain.encode("ascii"))
        if leaf.public_key() != csr.public_key():
            raise MalformedResponse("The certificate's public key is not the CSR's")
        fetched: messages.OrderResource = orderr.update(
            csr_pem=csr.public_bytes(serialization.Encoding.PEM),
            fullchain_pem=chain,
            alternative_fullchains_pem=[],
        )
        return fetched

    @deferred_async
    async def finalize(
        self,
        orderr: messages.OrderResource,
        csr: x509.CertificateSigningRequest | messages.CertificateRequest | bytes | Any,
    ) -> messages.OrderResource:
        """
        Finalize the order and fetch its certificate, as
        :meth:`txacme.client.Client.finalize` does, through the same steps
        (:meth:`send_csr`, :meth:`refresh_order`, :meth:`fetch_certificate`).

        :raises AuthorizationsNotValid: If a challenge was not answered.
        :raises ServerError: ``badCSR`` if the CSR does not name the order's
            identifiers.
        """
        request = as_csr(csr)
        valid = await finalize_order(
            self, orderr, request, Deadline(self._clock, self.policy.timeout)
        )
        return await self.fetch_certificate(valid, request)

    def _sign(
        self, request: x509.CertificateSigningRequest, names: Sequence[str]
    ) -> x509.Certificate:
        public_key = request.public_key()
        now = self._now()
        subject = (
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
            if len(names[0]) <= 64
            else x509.Name([])
        )
        ca_public_key = self.ca_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + self.certificate_lifetime)
            .add_extension(
                x509.SubjectAlternativeName([general_name(name) for name in names]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )

    # -- renewal information (RFC 9773) -------------------------------------

    @deferred_async
    async def renewal_info(
        self, cert: x509.Certificate | bytes | messages.CertificateResource
    ) -> RenewalWindow:
        """
        The renewal window of a certificate this client issued.

        :raises NotOffered: Unless ``offer_renewal_info`` is set.
        """
        if not self.offer_renewal_info:
            raise NotOffered("renewalInfo", "the fake CA offers no ARI (RFC 9773)")
        if isinstance(cert, messages.CertificateResource):
            cert = cert.body
        if isinstance(cert, bytes):
            cert = (
                x509.load_pem_x509_certificate(cert)
                if cert.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(cert)
            )
        assert isinstance(cert, x509.Certificate)
        window = self.renewal_windows.get(cert.serial_number)
        if window is None:
            not_before = cert.not_valid_before_utc
            lifetime = cert.not_valid_after_utc - not_before
            window = (not_before + lifetime * 2 / 3, not_before + lifetime * 5 / 6)
        return RenewalWindow(start=window[0], end=window[1], retry_after=6 * 3600.0)

    @deferred_async
    async def close(self) -> None:
        """Count the call."""
        self.closed += 1
