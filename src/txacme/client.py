"""
ACME client API (like :mod:`acme.client`) implementation for Twisted.

This is the API of txacme 0.9's ``txacme.client``, speaking RFC 8555
(ACME v2) on the wire: each method of the ACME v1 era maps onto the RFC 8555
resources as described in :doc:`/migration`.  Every method returns a
:class:`~twisted.internet.defer.Deferred`; cancelling it cancels the requests
in flight.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import Any, TypeVar
from urllib.parse import urljoin

from acme import challenges as acme_challenges
from acme import messages
from attrs import field, frozen, validators
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from josepy.errors import DeserializationError
from josepy.interfaces import JSONDeSerializable
from josepy.jwa import RS256, JWASignature
from josepy.jwk import JWK
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.url import URL

from txacme._deferred import deferred_async
from txacme._headers import parse_retry_after
from txacme._types import HTTPResponse as _Response
from txacme.errors import (
    AccountDoesNotExist,
    AuthorizationFailed,
    AuthorizationsNotValid,
    ChainTooLong,
    MalformedResponse,
    NoSupportedChallenges,
    OrderFailed,
    PollTimeout,
    ServerError,
    TermsOfServiceNotAgreed,
)
from txacme.interfaces import IResponder
from txacme.jws import (
    PEM_CHAIN_TYPE,
    JWSClient,
    decode_json,
    response_links,
)
from txacme.messages import CertificateChainResource
from txacme.util import encode_csr, identifiers_from_csr

__all__ = [
    "AuthorizationFailed",
    "Client",
    "JWSClient",
    "NoSupportedChallenges",
    "PollingPolicy",
    "ServerError",
    "answer_challenge",
    "fqdn_identifier",
    "poll_until_valid",
]

_log = Logger()
_R = TypeVar("_R", bound=JSONDeSerializable)

_REQUIRED_DIRECTORY_KEYS = ("newNonce", "newAccount", "newOrder")
# Account fields RFC 8555 §7.3 lets a client send; ACME v1 fields such as
# "agreement", "key" or "resource" are dropped.
_ACCOUNT_REQUEST_FIELDS = (
    "contact",
    "termsOfServiceAgreed",
    "onlyReturnExisting",
    "externalAccountBinding",
)
# What CAs answer a newAccount without termsOfServiceAgreed: Boulder and
# RFC 8555 "malformed" or "userActionRequired", Pebble 2.4 the draft-era
# "agreementRequired".
_TERMS_ERROR_CODES = (
    "malformed",
    "userActionRequired",
    "agreementRequired",
    "unauthorized",
)
_PENDING_STATES = (messages.STATUS_PENDING, messages.STATUS_PROCESSING)


@frozen
class PollingPolicy:
    """
    How the client waits for a resource to change state: an authorization
    being validated, an order being processed.

    The n-th wait (from 0) is ``first_delay * factor ** n`` seconds, at most
    ``max_delay``; a ``Retry-After`` header from the server overrides it.
    After ``timeout`` seconds in all, polling gives up.

    :ivar first_delay: Seconds before the first poll.
    :ivar factor: Growth of each later delay.
    :ivar max_delay: The ceiling of a computed delay.
    :ivar timeout: The overall limit, in seconds.
    """

    first_delay: float = field(default=1.0, validator=validators.gt(0))
    factor: float = field(default=1.5, validator=validators.ge(1))
    max_delay: float = field(default=10.0, validator=validators.gt(0))
    timeout: float = field(default=300.0, validator=validators.gt(0))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """
        The seconds to wait before poll number ``attempt + 1``.

        :param attempt: How many waits came before this one.
        :param retry_after: The server's ``Retry-After``, which wins if given.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        return float(min(self.max_delay, self.first_delay * self.factor**attempt))


def _identifier_key(
    identifiers: Iterable[messages.Identifier],
) -> frozenset[tuple[str, str]]:
    return frozenset(
        (identifier.typ.name, _normalize(identifier.typ.name, identifier.value))
        for identifier in identifiers
    )


def _normalize(typ: str, value: str) -> str:
    if typ == messages.IDENTIFIER_IP.name:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return value.lower().rstrip(".")


def _to_identifier(value: messages.Identifier | str) -> messages.Identifier:
    if isinstance(value, messages.Identifier):
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=value)
    return messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(address))


def _parse(cls: type[_R], jobj: Any, response: _Response | None) -> _R:
    """Deserialize an ACME object, turning every failure into MalformedResponse."""
    if not isinstance(jobj, dict):
        raise MalformedResponse(f"Expected a JSON object for {cls.__name__}", response)
    try:
        parsed: _R = cls.from_json(jobj)
        return parsed
    except (
        DeserializationError,
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
    ) as error:
        raise MalformedResponse(f"Invalid {cls.__name__}: {error}", response) from error


def _location(response: _Response, request_url: str) -> str:
    values = response.headers.getRawHeaders(b"location")
    if not values:
        raise MalformedResponse("The response has no Location header", response)
    value = values[0]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return urljoin(request_url, text.strip())


def parse_pem_chain(
    body: bytes, response: _Response | None = None
) -> list[x509.Certificate]:
    """
    Parse an ``application/pem-certificate-chain`` body (RFC 8555 §9.1):
    the leaf first, each further certificate the issuer of the one before.

    :returns: The certificates, leaf first.
    :raises MalformedResponse: If the body holds no certificate, or its
        certificates do not form a chain (names or signatures).
    """
    try:
        certificates = x509.load_pem_x509_certificates(body)
    except ValueError as error:
        raise MalformedResponse(
            f"The certificate body is not a PEM chain: {error}", response
        ) from error
    for position, (child, parent) in enumerate(pairwise(certificates)):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as error:
            raise MalformedResponse(
                f"The certificate body is not a chain: certificate {position + 1} "
                f"({child.subject.rfc4514_string()}) is not issued by the next one "
                f"({parent.subject.rfc4514_string()}): {error or type(error).__name__}",
                response,
            ) from error
    return certificates


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


class Client:
    """
    ACME client interface.

    Speaks RFC 8555 to the server described by ``directory``; see
    :meth:`from_url` to build one from a directory URL.

    :param directory: The server's directory.
    :param reactor: The reactor (an ``IReactorTime``) used to wait between
        polls and for request timeouts.
    :param key: The account key.
    :param jws_client: The transport.
    :param policy: How to poll pending authorizations and processing orders.

    :ivar directory: The :class:`acme.messages.Directory`.
    :ivar key: The account key (changes after :meth:`change_key`).
    :ivar policy: The :class:`PollingPolicy`.
    """

    def __init__(
        self,
        directory: messages.Directory,
        reactor: IReactorTime,
        key: JWK,
        jws_client: JWSClient,
        *,
        policy: PollingPolicy | None = None,
    ) -> None:
        self.directory = directory
        self._reactor = reactor
        self.key = key
        self._client = jws_client
        self.policy = policy if policy is not None else PollingPolicy()
        if jws_client.reactor is None:
            jws_client.reactor = reactor
        jws_client.new_nonce_url = _directory_url(directory, "newNonce")
        # Orders created by request_challenges, by their identifier sets,
        # for request_issuance to finalize.
        self._orders: dict[frozenset[tuple[str, str]], messages.OrderResource] = {}
        self._owned_pool: Any = None

    #: How many orders made by :meth:`request_challenges` are remembered for
    #: :meth:`request_issuance` (the oldest are forgotten first).
    MAX_REMEMBERED_ORDERS = 1000

    @classmethod
    @deferred_async
    async def from_url(
        cls,
        reactor: IReactorTime,
        url: URL | str,
        key: JWK,
        alg: JWASignature = RS256,
        jws_client: JWSClient | None = None,
        *,
        policy: PollingPolicy | None = None,
    ) -> Client:
        """
        Construct a client from an ACME directory at a given URL.

        :param url: The :class:`twisted.python.url.URL` (or ``str``) to fetch
            the directory from.
        :param reactor: The Twisted reactor to use.
        :param key: The client (account) key to use.
        :param alg: The signing algorithm to use. Needs to be compatible with
            the type of key used.
        :param jws_client: The underlying client to use, or ``None`` to
            construct one (treq on a persistent ``HTTPConnectionPool``,
            trusting the platform's certificate authorities).
        :param policy: The :class:`PollingPolicy` (default: the default one).
        :returns: A Deferred firing with the constructed client.
        :raises TypeError: If ``url`` is neither a URL nor a string.
        :raises MalformedResponse: If the directory is not an RFC 8555
            directory (for example HTML, truncated JSON, or an ACME v1
            directory).
        :raises ServerError: If the server answers with an error.
        :raises NetworkError: If the server cannot be reached.
        """
        if isinstance(url, URL):
            directory_url = url.asText()
        elif isinstance(url, str):
            directory_url = url
        else:
            raise TypeError(
                f"ACME directory URL should be a URL or str, got {url!r} instead"
            )
        pool = None
        if jws_client is None:
            jws_client, pool = _default_jws_client(reactor, key, alg)
        if jws_client.reactor is None:
            jws_client.reactor = reactor
        response = await jws_client.get(directory_url)
        directory = _parse_directory(
            decode_json(response, await response.content()), response
        )
        client = cls(directory, reactor, key, jws_client, policy=policy)
        client._owned_pool = pool
        return client

    @deferred_async
    async def close(self) -> None:
        """
        Close the persistent HTTP connections of a client that
        :meth:`from_url` built its own transport for (a no-op otherwise).
        """
        pool, self._owned_pool = self._owned_pool, None
        if pool is not None:
            await pool.closeCachedConnections()

    # -- accounts (RFC 8555 §7.3) --------------------------------------------

    @deferred_async
    async def register(
        self, new_reg: messages.NewRegistration | None = None
    ) -> messages.RegistrationResource:
        """
        Create a new registration with the ACME server: ``newAccount``
        (RFC 8555 §7.3), signed with the account key as ``jwk``.

        If an account already exists for the key, it is returned (the server
        answers 200 with its URL).  Later requests are signed with the
        account URL as ``kid``.

        :param new_reg: The registration message to use, or ``None`` to
            construct one.  Most CAs refuse to create an account unless it
            has ``terms_of_service_agreed=True``.
        :returns: A Deferred firing with the registration resource; its
            ``uri`` is the account URL, its ``terms_of_service`` the CA's
            terms.
        :raises TermsOfServiceNotAgreed: If the CA wants the terms agreed.
        :raises AccountDoesNotExist: For ``only_return_existing`` without an
            account.
        """
        if new_reg is None:
            new_reg = messages.NewRegistration()
        url = self.directory["newAccount"]
        payload = _account_payload(new_reg)
        try:
            response, jobj = await self._client._post_json(url, payload, use_jwk=True)
        except ServerError as error:
            raise self._account_error(error, new_reg) from error
        location = _location(response, url)
        self._client.kid = location
        if response.code == 200 and not jobj:
            # An existing account answered with only its URL (RFC 8555
            # §7.3.1 does not require a body): read it.
            response, jobj = await self._client._post_json(location, None)
        return self._registration_resource(response, jobj, location)

    def _account_error(
        self, error: ServerError, new_reg: messages.Registration
    ) -> ServerError:
        terms = self.directory.meta.terms_of_service
        detail = (error.message.detail or "").lower()
        if (
            not new_reg.terms_of_service_agreed
            and not new_reg.only_return_existing
            and error.code in _TERMS_ERROR_CODES
            and (terms is not None or "terms" in detail)
        ):
            return TermsOfServiceNotAgreed(error.message, error.response, terms)
        if error.code == "accountDoesNotExist":
            return AccountDoesNotExist(error.message, error.response, error.retry_after)
        return error

    def _registration_resource(
        self,
        response: _Response,
        jobj: Any,
        uri: str,
        terms_of_service: str | None = None,
    ) -> messages.RegistrationResource:
        body = _parse(messages.Registration, jobj, response)
        links = response_links(response, uri)
        linked = links.get("terms-of-service", [])
        terms = (
            (linked[0] if linked else None)
            or terms_of_service
            or self.directory.meta.terms_of_service
        )
        if terms is None:
            return messages.RegistrationResource(body=body, uri=uri)
        return messages.RegistrationResource(body=body, uri=uri, terms_of_service=terms)

    @deferred_async
    async def agree_to_tos(
        self, regr: messages.RegistrationResource
    ) -> messages.RegistrationResource:
        """
        Accept the terms-of-service for a registration: an account update
        with ``termsOfServiceAgreed: true`` (RFC 8555 §7.3.2).

        :param regr: The registration to update.
        :returns: A Deferred firing with the updated registration resource.
        """
        updated = regr.update(body=regr.body.update(terms_of_service_agreed=True))
        return await self.update_registration(updated)

    @deferred_async
    async def update_registration(
        self, regr: messages.RegistrationResource, uri: str | None = None
    ) -> messages.RegistrationResource:
        """
        Submit a registration to the server to update it: POST the account's
        ``contact`` and ``termsOfServiceAgreed`` to the account URL (RFC 8555
        §7.3.2).

        :param regr: The registration, with the fields to change in its body.
        :param uri: The account URL, if not ``regr.uri``.
        :returns: A Deferred firing with the updated registration resource.
        """
        url = uri if uri is not None else regr.uri
        payload = _account_payload(regr.body, update=True)
        try:
            response, jobj = await self._client._post_json(url, payload)
        except ServerError as error:
            raise self._account_error(
                error, regr.body.update(terms_of_service_agreed=True)
            ) from error
        return self._registration_resource(
            response, jobj, url, getattr(regr, "terms_of_service", None)
        )

    # -- authorizations (RFC 8555 §7.4, §7.5) --------------------------------

    @deferred_async
    async def request_challenges(
        self, identifier: messages.Identifier
    ) -> messages.AuthorizationResource:
        """
        Create a new authorization.

        With a directory that offers ``newAuthz`` (pre-authorization, RFC
        8555 §7.4.1) this creates one; otherwise it creates an order for the
        single identifier (§7.4) and returns the order's authorization.  The
        client remembers that order for :meth:`request_issuance`.

        :param identifier: The identifier to authorize.
        :returns: A Deferred firing with the new authorization resource.
        """
        identifier = _to_identifier(identifier)
        url = _directory_url(self.directory, "newAuthz")
        if url is not None:
            response, jobj = await self._client._post_json(
                url, {"identifier": identifier.to_partial_json()}
            )
            location = _location(response, url)
            return messages.AuthorizationResource(
                body=_parse(messages.Authorization, jobj, response), uri=location
            )
        orderr = await self._create_order([identifier])
        count = len(orderr.body.authorizations or ())
        if count != 1:
            raise MalformedResponse(
                f"An order for one identifier has {count} authorizations"
            )
        authzr, _ = await self._fetch_authorization(orderr.body.authorizations[0])
        self._remember_order(orderr.update(authorizations=(authzr,)))
        return authzr

    def _remember_order(self, orderr: messages.OrderResource) -> None:
        key = _identifier_key(orderr.body.identifiers or ())
        self._orders.pop(key, None)
        self._orders[key] = orderr
        while len(self._orders) > self.MAX_REMEMBERED_ORDERS:
            del self._orders[next(iter(self._orders))]

    @deferred_async
    async def answer_challenge(
        self,
        challenge_body: messages.ChallengeBody,
        response: acme_challenges.ChallengeResponse | None,
    ) -> messages.ChallengeResource:
        """
        Respond to an authorization challenge: POST the response object
        (``{}`` for the challenge types of RFC 8555) to the challenge URL
        (§7.5.1), telling the server to validate.

        :param challenge_body: The challenge being responded to.
        :param response: The response; key authorization fields are not
            sent (RFC 8555 has the server compute them).
        :returns: A Deferred firing with the updated challenge resource.
        """
        payload: JSONDeSerializable | dict[str, Any] = (
            {} if response is None else response
        )
        http_response, jobj = await self._client._post_json(challenge_body.uri, payload)
        body = _parse(messages.ChallengeBody, jobj, http_response)
        links = response_links(http_response, challenge_body.uri)
        authzr_uri = (links.get("up") or [""])[0]
        return messages.ChallengeResource(body=body, authzr_uri=authzr_uri)

    @deferred_async
    async def poll(
        self, authzr: messages.AuthorizationResource
    ) -> tuple[messages.AuthorizationResource, float]:
        """
        Update an authorization from the server (usually to check its
        status): POST-as-GET the authorization URL.

        :param authzr: The authorization to refresh.
        :returns: A Deferred firing with ``(authorization, seconds)``: the
            updated authorization resource and the seconds to wait before
            polling again (the server's ``Retry-After``, else the polling
            policy's first delay).
        """
        updated, retry_after = await self._fetch_authorization(authzr.uri)
        if retry_after is None:
            retry_after = self.policy.first_delay
        return updated, retry_after

    async def _fetch_authorization(
        self, url: str
    ) -> tuple[messages.AuthorizationResource, float | None]:
        response, jobj = await self._client._post_json(url, None)
        body = _parse(messages.Authorization, jobj, response)
        retry_after = parse_retry_after(
            _first_header(response, b"retry-after"), self._reactor.seconds
        )
        return messages.AuthorizationResource(body=body, uri=url), retry_after

    @classmethod
    def retry_after(
        cls,
        response: _Response,
        default: float = 5,
        _now: Callable[[], float] = time.time,
    ) -> float:
        """
        Parse the ``Retry-After`` value from a response.

        :param response: The HTTP response.
        :param default: Seconds to return when the header is absent or
            malformed.
        :param _now: The current POSIX time (for the HTTP-date form).
        :returns: Seconds to wait: the delta-seconds form as is, the
            HTTP-date form as the time from now until then (0 if past).
        """
        seconds = parse_retry_after(_first_header(response, b"retry-after"), _now)
        return default if seconds is None else seconds

    # -- orders (RFC 8555 §7.4) ----------------------------------------------

    async def _create_order(
        self,
        identifiers: Sequence[messages.Identifier],
        profile: str | None = None,
        replaces: str | None = None,
    ) -> messages.OrderResource:
        """POST newOrder; the authorizations are not fetched."""
        payload: dict[str, Any] = {
            "identifiers": [identifier.to_partial_json() for identifier in identifiers]
        }
        if profile is not None:
            payload["profile"] = profile
        if replaces is not None:
            payload["replaces"] = replaces
        url = self.directory["newOrder"]
        response, jobj = await self._client._post_json(url, payload)
        location = _location(response, url)
        order = _parse(messages.Order, jobj, response)
        if order.finalize is None or order.authorizations is None:
            raise MalformedResponse(
                "The order lacks finalize or authorizations", response
            )
        return messages.OrderResource(body=order, uri=location, authorizations=())

    async def _refresh_order(
        self, orderr: messages.OrderResource
    ) -> tuple[messages.OrderResource, float | None]:
        response, jobj = await self._client._post_json(orderr.uri, None)
        order = _parse(messages.Order, jobj, response)
        retry_after = parse_retry_after(
            _first_header(response, b"retry-after"), self._reactor.seconds
        )
        return orderr.update(body=order), retry_after

    async def _raise_for_authorizations(self, orderr: messages.OrderResource) -> None:
        """Fetch an order's authorizations and name those that are not valid."""
        fetched = await gatherResults(
            [
                Deferred.fromCoroutine(self._fetch_authorization(url))
                for url in orderr.body.authorizations or ()
            ],
            consumeErrors=True,
        )
        not_valid = [
            authzr
            for authzr, _ in fetched
            if authzr.body.status != messages.STATUS_VALID
        ]
        if not_valid:
            raise AuthorizationsNotValid(not_valid)

    async def _finalize(
        self, orderr: messages.OrderResource, csr: x509.CertificateSigningRequest
    ) -> messages.OrderResource:
        """
        Finalize an order (RFC 8555 §7.4) and wait until it is valid.

        :raises AuthorizationsNotValid: If it is not ready for want of
            authorizations.
        :raises OrderFailed: If it is or becomes invalid.
        :raises PollTimeout: If it stays processing too long.
        """
        retry_after: float | None = None
        if orderr.body.status == messages.STATUS_PENDING:
            orderr, retry_after = await self._refresh_order(orderr)
        if orderr.body.status == messages.STATUS_PENDING:
            # Raises unless every authorization is valid; if they all are,
            # the server has yet to notice: wait for the order to be ready.
            await self._raise_for_authorizations(orderr)
            orderr = await self._wait_while(
                orderr, (messages.STATUS_PENDING,), retry_after
            )
        if orderr.body.status == messages.STATUS_READY:
            try:
                response, jobj = await self._client._post_json(
                    orderr.body.finalize, {"csr": encode_csr(csr)}
                )
            except ServerError as error:
                if error.code == "orderNotReady":
                    await self._raise_for_authorizations(orderr)
                raise
            orderr = orderr.update(body=_parse(messages.Order, jobj, response))
            retry_after = parse_retry_after(
                _first_header(response, b"retry-after"), self._reactor.seconds
            )
            # "ready" again right after finalize: the server has not started.
            orderr = await self._wait_while(
                orderr, (messages.STATUS_PROCESSING, messages.STATUS_READY), retry_after
            )
        elif orderr.body.status == messages.STATUS_PROCESSING:
            orderr = await self._wait_while(
                orderr, (messages.STATUS_PROCESSING,), retry_after
            )
        if orderr.body.status != messages.STATUS_VALID:
            raise OrderFailed(orderr)
        if not orderr.body.certificate:
            raise MalformedResponse(
                f"The valid order {orderr.uri} has no certificate URL"
            )
        return orderr

    async def _wait_while(
        self,
        orderr: messages.OrderResource,
        states: tuple[messages.Status, ...],
        retry_after: float | None,
    ) -> messages.OrderResource:
        """
        Poll an order while its status is one of ``states``, following the
        policy and ``Retry-After``.

        :raises PollTimeout: After the policy's timeout.
        """
        started = self._reactor.seconds()
        attempt = 0
        while orderr.body.status in states:
            waited = self._reactor.seconds() - started
            remaining = self.policy.timeout - waited
            if remaining <= 0:
                raise PollTimeout(orderr.uri, orderr.body.status.name, waited)
            await deferLater(
                self._reactor, min(self.policy.delay(attempt, retry_after), remaining)
            )
            attempt += 1
            orderr, retry_after = await self._refresh_order(orderr)
        return orderr

    async def _download_chain(
        self, url: str
    ) -> tuple[_Response, bytes, list[x509.Certificate]]:
        """POST-as-GET a certificate URL (RFC 8555 §7.4.2) and parse the chain."""
        response, body = await self._client._post(
            url, b"", content_type=PEM_CHAIN_TYPE, accept=PEM_CHAIN_TYPE
        )
        return response, body, parse_pem_chain(body, response)

    @deferred_async
    async def request_issuance(
        self, csr: messages.CertificateRequest | Any
    ) -> CertificateChainResource:
        """
        Request a certificate.

        Authorizations should have already been completed for all of the
        names requested in the CSR.  This finalizes the order that
        :meth:`request_challenges` created for exactly those names, or else
        creates an order for the CSR's names (CAs such as Let's Encrypt
        reuse the valid authorizations), waits while it is ``processing``
        (honouring ``Retry-After``; delayed issuance works), and downloads
        the certificate chain.

        Note that unlike ``acme.client.Client.request_issuance``, the
        certificate resource will have the body data as raw bytes (DER).

        :param csr: A certificate request message: normally
            :class:`txacme.messages.CertificateRequest` or
            :class:`acme.messages.CertificateRequest`.
        :returns: A Deferred firing with the issued certificate, a
            :class:`~txacme.messages.CertificateChainResource` (an
            :class:`acme.messages.CertificateResource`) that also carries
            the issuer chain for :meth:`fetch_chain`.
        :raises AuthorizationsNotValid: Naming the authorizations that are
            not valid.
        :raises OrderFailed: If the CA fails the order.
        :raises MalformedResponse: If the certificate is not a chain or does
            not match the CSR's key.
        """
        request = csr.csr
        identifiers = [
            messages.Identifier(typ=messages.IdentifierType.from_json(typ), value=value)
            for typ, value in identifiers_from_csr(request)
        ]
        if not identifiers:
            raise ValueError("The CSR names no identifier")
        orderr = self._orders.pop(_identifier_key(identifiers), None)
        if orderr is not None:
            orderr, _ = await self._refresh_order(orderr)
            if orderr.body.status == messages.STATUS_INVALID:
                # Expired or failed since: start over with a new order.
                orderr = None
        if orderr is None:
            orderr = await self._create_order(identifiers)
        orderr = await self._finalize(orderr, request)
        assert orderr.body.certificate is not None
        response, body, certificates = await self._download_chain(
            orderr.body.certificate
        )
        leaf = certificates[0]
        if leaf.public_key() != request.public_key():
            raise MalformedResponse(
                "The certificate's public key is not the CSR's", response
            )
        return CertificateChainResource(
            uri=orderr.body.certificate,
            cert_chain_uri=orderr.body.certificate,
            body=_der(leaf),
            authzrs=tuple(orderr.authorizations or ()),
            chain=tuple(_der(certificate) for certificate in certificates[1:]),
            fullchain_pem=body.decode("ascii"),
        )

    @deferred_async
    async def fetch_chain(
        self, certr: messages.CertificateResource, max_length: int = 10
    ) -> list[messages.CertificateResource]:
        """
        Fetch the intermediary chain for a certificate.

        RFC 8555 delivers the chain with the certificate: for a resource
        from :meth:`request_issuance` no request is made; for any other, the
        certificate URL is downloaded again.

        :param certr: The certificate resource.
        :param max_length: The most issuer certificates accepted.
        :returns: A Deferred firing with the issuer certificate chain as
            :class:`acme.messages.CertificateResource` objects with DER
            bodies, ordered with the trust anchor last.
        :raises ChainTooLong: (an :class:`acme.errors.ClientError`) past
            ``max_length``.
        """
        if isinstance(certr, CertificateChainResource) and certr.fullchain_pem:
            chain = list(certr.chain)
        else:
            response, _, certificates = await self._download_chain(certr.uri)
            if isinstance(certr.body, bytes) and _der(certificates[0]) != certr.body:
                raise MalformedResponse(
                    f"{certr.uri} serves another certificate than the one given",
                    response,
                )
            chain = [_der(certificate) for certificate in certificates[1:]]
        if len(chain) > max_length:
            raise ChainTooLong(
                f"Recursion limit reached: the chain has {len(chain)} issuer "
                f"certificates, more than max_length={max_length}"
            )
        return [
            messages.CertificateResource(
                uri=certr.uri, cert_chain_uri=certr.uri, body=der, authzrs=()
            )
            for der in chain
        ]


def _directory_url(directory: messages.Directory, name: str) -> str | None:
    try:
        value = directory[name]
    except KeyError:
        return None
    return value if isinstance(value, str) else None


def _first_header(response: _Response, name: bytes) -> str | None:
    values = response.headers.getRawHeaders(name)
    if not values:
        return None
    value = values[0]
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _account_payload(
    body: messages.Registration, update: bool = False
) -> dict[str, Any]:
    """
    The RFC 8555 account object for a newAccount or update request, from a
    registration body that may carry ACME v1 fields.
    """
    jobj = body.to_partial_json()
    payload = {name: jobj[name] for name in _ACCOUNT_REQUEST_FIELDS if name in jobj}
    if update:
        payload.pop("onlyReturnExisting", None)
        payload.pop("externalAccountBinding", None)
        if body.status == messages.STATUS_DEACTIVATED:
            payload["status"] = messages.STATUS_DEACTIVATED.name
    if "contact" in payload:
        payload["contact"] = list(payload["contact"])
    return payload


def _parse_directory(jobj: Any, response: _Response) -> messages.Directory:
    if not isinstance(jobj, dict):
        raise MalformedResponse("The directory is not a JSON object", response)
    missing = [
        key for key in _REQUIRED_DIRECTORY_KEYS if not isinstance(jobj.get(key), str)
    ]
    if missing:
        raise MalformedResponse(
            f"Not an RFC 8555 (ACME v2) directory: it lacks {', '.join(missing)}"
            + (" (ACME v1 directories are not supported)" if "new-reg" in jobj else ""),
            response,
        )
    meta = jobj.get("meta", {})
    if not isinstance(meta, dict):
        raise MalformedResponse("The directory's meta is not an object", response)
    try:
        return messages.Directory.from_json(dict(jobj))
    except (DeserializationError, TypeError, ValueError) as error:
        raise MalformedResponse(f"Invalid directory: {error}", response) from error


def _default_jws_client(
    reactor: IReactorTime, key: JWK, alg: JWASignature
) -> tuple[JWSClient, Any]:
    """A JWSClient on treq with a persistent pool and platform trust."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
    pool.maxPersistentPerHost = 8
    agent = Agent(  # type: ignore[no-untyped-call]
        reactor,
        contextFactory=BrowserLikePolicyForHTTPS(),  # type: ignore[no-untyped-call]
        pool=pool,
    )
    return JWSClient(HTTPClient(agent), key, alg, reactor=reactor), pool


# -- module level helpers ------------------------------------------------------


def fqdn_identifier(fqdn: str) -> messages.Identifier:
    """
    Construct an identifier from an FQDN.

    Trivial implementation, just saves on typing.

    :param fqdn: The domain name.
    :returns: The identifier.
    """
    return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=fqdn)


def _find_supported_challenge(
    authzr: messages.AuthorizationResource, responders: Sequence[IResponder]
) -> tuple[IResponder, messages.ChallengeBody]:
    """The first responder (in the caller's order) with an offered challenge."""
    for responder in responders:
        for challb in authzr.body.challenges or ():
            if getattr(challb.chall, "typ", None) == responder.challenge_type:
                return responder, challb
    raise NoSupportedChallenges(authzr)


@deferred_async
async def answer_challenge(
    authzr: messages.AuthorizationResource,
    client: Client,
    responders: Sequence[IResponder],
) -> Callable[[], Deferred[None]]:
    """
    Complete an authorization using a responder.

    Picks the first responder (in the order given) whose challenge type the
    server offers, starts it responding, and tells the server to validate.
    An authorization that is already valid (reused by the CA) needs
    nothing: no responder is started.

    :param authzr: The authorization to complete.
    :param client: The ACME client.
    :param responders: A list of :class:`~txacme.interfaces.IResponder`
        that can be used to complete the challenge with.
    :returns: A Deferred firing, once the server was told to validate, with
        a callable that stops responding (it returns a Deferred and may be
        called more than once).
    :raises NoSupportedChallenges: If no responder fits.
    """
    if authzr.body.status == messages.STATUS_VALID:
        return _no_op_stop
    responder, challb = _find_supported_challenge(authzr, responders)
    response = challb.response(client.key)
    server_name = authzr.body.identifier.value

    def stop_responding() -> Deferred[None]:
        # IResponder.stop_responding is idempotent by contract.
        return maybeDeferred(
            responder.stop_responding, server_name, challb.chall, response
        )

    try:
        await maybeDeferred(
            responder.start_responding, server_name, challb.chall, response
        )
        await client.answer_challenge(challb, response)
    except BaseException:
        await stop_responding()
        raise
    return stop_responding


def _no_op_stop() -> Deferred[None]:
    return succeed(None)


def poll_until_valid(
    authzr: messages.AuthorizationResource,
    clock: IReactorTime,
    client: Client,
    timeout: float = 300.0,
) -> Deferred[messages.AuthorizationResource]:
    """
    Poll an authorization until it is in a state other than pending or
    processing.

    The waits follow the client's :class:`PollingPolicy` (and the server's
    ``Retry-After``).

    :param authzr: The authorization to complete.
    :param clock: The ``IReactorTime`` implementation to use; usually the
        reactor, when not testing.
    :param client: The ACME client.
    :param timeout: Maximum time to poll in seconds, before giving up.
    :raises txacme.client.AuthorizationFailed: if the authorization is no
        longer in the pending, processing, or valid states.
    :raises twisted.internet.defer.CancelledError: if the authorization was
        still in pending or processing state when the timeout was reached.
    :returns: A Deferred firing when the authorization has completed; if
        the authorization is valid, the authorization resource will be
        returned.
    """
    result = Deferred.fromCoroutine(_poll_until_valid(authzr, clock, client))
    timer = clock.callLater(timeout, result.cancel)

    def stop_timer(outcome: object) -> object:
        if timer.active():
            timer.cancel()
        return outcome

    result.addBoth(stop_timer)
    return result


async def _poll_until_valid(
    authzr: messages.AuthorizationResource, clock: IReactorTime, client: Client
) -> messages.AuthorizationResource:
    policy: PollingPolicy = getattr(client, "policy", None) or PollingPolicy()
    if authzr.body.status == messages.STATUS_VALID:
        return authzr
    # The server was just asked to validate: give it the first delay before
    # the first poll rather than spending a request on a certain "pending".
    retry_after: float | None = None
    attempt = 0
    while True:
        await deferLater(clock, policy.delay(attempt, retry_after))
        attempt += 1
        if isinstance(client, Client):
            authzr, retry_after = await client._fetch_authorization(authzr.uri)
        else:
            authzr, retry_after = await client.poll(authzr)
        status = authzr.body.status
        if status == messages.STATUS_VALID:
            return authzr
        if status not in _PENDING_STATES:
            raise AuthorizationFailed(authzr)
