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
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin

from acme import challenges as acme_challenges
from acme import jws as acme_jws
from acme import messages
from attrs import field, frozen, validators
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy.b64 import b64decode, b64encode
from josepy.errors import DeserializationError
from josepy.interfaces import JSONDeSerializable
from josepy.jwa import ES256, ES384, ES512, HS256, HS384, HS512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA, JWKOct
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    FirstError,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.url import URL
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from txacme._deferred import deferred_async
from txacme._headers import first_header, parse_retry_after
from txacme._types import HTTPResponse as _Response

# Imported for its side effect: it registers the tls-alpn-01 challenge type
# with acme (acme 5 dropped its own), so that authorizations parse it.
from txacme.challenges import _tls_alpn  # noqa: F401
from txacme.errors import (
    AuthorizationFailed,
    AuthorizationsNotValid,
    ChainTooLong,
    ExternalAccountRequired,
    MalformedResponse,
    NoSupportedChallenges,
    NotOffered,
    OrderFailed,
    PollTimeout,
    ServerError,
    TermsOfServiceNotAgreed,
)
from txacme.interfaces import IResponder
from txacme.jws import (
    JSON_CONTENT_TYPE,
    JSON_ERROR_CONTENT_TYPE,  # noqa: F401 (txacme 0.9 exported it from here)
    PEM_CHAIN_TYPE,
    JWSClient,
    RetryPolicy,
    decode_json,
    response_links,
)
from txacme.messages import CertificateChainResource, RenewalWindow
from txacme.util import PrivateKey, encode_csr, identifiers_from_csr

__all__ = [
    "DER_CONTENT_TYPE",
    "REPLAY_NONCE_HEADER",
    "AuthorizationFailed",
    "Client",
    "EABCredentials",
    "JWSClient",
    "NoSupportedChallenges",
    "PollingPolicy",
    "ServerError",
    "alg_for_key",
    "answer_challenge",
    "fqdn_identifier",
    "issue_certificate",
    "poll_until_valid",
    "renewal_certificate_id",
    "select_chain",
]

#: The ``Replay-Nonce`` header (txacme 0.9 exported this name).
REPLAY_NONCE_HEADER = "Replay-Nonce"
#: The content type of a DER certificate (txacme 0.9 exported this name;
#: RFC 8555 serves PEM chains, :data:`txacme.jws.PEM_CHAIN_TYPE`).
DER_CONTENT_TYPE = "application/pkix-cert"

if TYPE_CHECKING:
    # Annotations only: Twisted exports this interface from a private module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot

_log = Logger()
_R = TypeVar("_R", bound=JSONDeSerializable)
_T = TypeVar("_T")

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
    being validated (:func:`poll_until_valid`), an order being processed
    (:meth:`Client.finalize`, :meth:`Client.request_issuance`).

    The n-th wait (from 0) is ``first_delay * factor ** n`` seconds, at most
    ``max_delay``; a ``Retry-After`` header from the server overrides it.
    The wait before the first poll of an authorization, right after its
    challenge was answered, is ``initial_delay`` (``first_delay`` unless
    set; 0 polls at once, for a CA that validates before it answers, such
    as :class:`txacme.testing.FakeClient`).  An order still processing
    after ``timeout`` seconds in all fails with
    :class:`~txacme.errors.PollTimeout`; authorizations have the ``timeout``
    argument of :func:`poll_until_valid` (and :func:`issue_certificate`)
    instead, as in txacme 0.9.

    :ivar first_delay: Seconds before the first poll.
    :ivar factor: Growth of each later delay.
    :ivar max_delay: The ceiling of a computed delay.
    :ivar timeout: The overall limit, in seconds.
    :ivar initial_delay: Seconds between answering a challenge and the
        first poll of its authorization, or ``None`` for ``first_delay``.
    """

    first_delay: float = field(default=1.0, validator=validators.gt(0))
    factor: float = field(default=1.5, validator=validators.ge(1))
    max_delay: float = field(default=10.0, validator=validators.gt(0))
    timeout: float = field(default=300.0, validator=validators.gt(0))
    initial_delay: float | None = field(
        default=None, validator=validators.optional(validators.ge(0))
    )

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
        and the server gave no ``Retry-After``), :meth:`delay` otherwise.
        """
        if attempt == 0 and retry_after is None and self.initial_delay is not None:
            return self.initial_delay
        return self.delay(attempt, retry_after)


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
        if value.typ == messages.IDENTIFIER_IP:
            # CAs compare addresses in their canonical text form (RFC 8738).
            canonical: messages.Identifier = value.update(
                value=_normalize(value.typ.name, value.value)
            )
            return canonical
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


def _parse_pem_chain(
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


def _check_leaf(
    certificates: Sequence[x509.Certificate],
    request: x509.CertificateSigningRequest,
    response: _Response,
) -> None:
    """
    :raises MalformedResponse: If the leaf certificate is not for the CSR's
        key (a CA bug, or a certificate URL mixed up).
    """
    if certificates[0].public_key() != request.public_key():
        raise MalformedResponse(
            "The certificate's public key is not the CSR's", response
        )


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
        # A registration the CA refused for want of agreement to its terms
        # (txacme 0.9's register-then-agree_to_tos): created when the
        # application agrees.
        self._pending: _PendingRegistration | None = None

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
        timeout: float = 60.0,
        *,
        policy: PollingPolicy | None = None,
        retry_policy: RetryPolicy | None = None,
        trust_root: IOpenSSLTrustRoot | None = None,
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
        :param timeout: Seconds after which a request without an answer
            fails with :class:`~txacme.errors.NetworkError` (as in txacme
            0.9.3); for the transport built here.
        :param policy: The :class:`PollingPolicy` (default: the default one).
        :param retry_policy: The :class:`~txacme.jws.RetryPolicy` of the
            transport built here (default: the default one).
        :param trust_root: The certificate authorities the transport built
            here trusts for the CA's HTTPS, e.g.
            ``twisted.internet.ssl.Certificate.loadPEM(...)`` for Pebble or a
            private CA; ``None`` for the platform's.
        :returns: A Deferred firing with the constructed client.
        :raises TypeError: If ``url`` is neither a URL nor a string, or if
            ``retry_policy`` or ``trust_root`` come with a ``jws_client``
            (configure that one instead).
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
            jws_client, pool = _default_jws_client(reactor, key, alg, trust_root)
            jws_client.timeout = timeout
            if retry_policy is not None:
                jws_client.retry_policy = retry_policy
        elif retry_policy is not None or trust_root is not None:
            raise TypeError(
                "retry_policy and trust_root configure the transport from_url "
                "builds; with a jws_client, configure that instead"
            )
        if jws_client.reactor is None:
            jws_client.reactor = reactor
        try:
            response = await jws_client.get(directory_url)
            directory = _parse_directory(
                decode_json(response, await response.content()), response
            )
        except BaseException:
            # No client comes back to close() it: close the pool here.
            if pool is not None:
                await pool.closeCachedConnections()
            raise
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
        self,
        new_reg: messages.NewRegistration | None = None,
        eab: EABCredentials | None = None,
    ) -> messages.RegistrationResource:
        """
        Create a new registration with the ACME server: ``newAccount``
        (RFC 8555 §7.3), signed with the account key as ``jwk``.

        If an account already exists for the key, it is returned (the server
        answers 200 with its URL).  Later requests are signed with the
        account URL as ``kid``.

        Most CAs create an account only with ``terms_of_service_agreed=True``
        in this request.  Without it, when the CA refuses for that reason,
        the registration returned has no ``uri`` (no account exists yet) and
        its ``terms_of_service`` is the CA's terms: once the user agreed,
        :meth:`agree_to_tos` creates the account, as in txacme 0.9's
        register-then-agree flow.  Nothing is agreed to unless the
        application does so; a request needing the account meanwhile raises
        :exc:`~txacme.errors.TermsOfServiceNotAgreed`.

        :param new_reg: The registration message to use, or ``None`` to
            construct one.
        :param eab: External Account Binding credentials (RFC 8555 §7.3.4),
            for CAs that require them (ZeroSSL, Google, Sectigo...).
        :returns: A Deferred firing with the registration resource; its
            ``uri`` is the account URL (``None`` while the CA waits for the
            agreement), its ``terms_of_service`` the CA's terms.
        :raises ExternalAccountRequired: If the CA requires ``eab`` and none
            was given (checked before anything is sent).
        :raises AccountDoesNotExist: For ``only_return_existing`` without an
            account.
        """
        if new_reg is None:
            new_reg = messages.NewRegistration()
        url = self.directory["newAccount"]
        if eab is not None:
            new_reg = new_reg.update(
                external_account_binding=eab.binding(self.key.public_key(), url)
            )
        elif (
            self.directory.meta.external_account_required
            and not new_reg.only_return_existing
            and not new_reg.external_account_binding
        ):
            raise ExternalAccountRequired(
                messages.Error.from_json(
                    {
                        "type": messages.ERROR_PREFIX + "externalAccountRequired",
                        "detail": "The directory says the CA requires External "
                        "Account Binding: pass eab=EABCredentials(key_id, "
                        "hmac_key) to Client.register",
                    }
                ),
                None,
            )
        payload = _account_payload(new_reg)
        try:
            response, jobj = await self._client._post_json(url, payload, use_jwk=True)
        except ServerError as error:
            account_error = self._account_error(error, new_reg)
            if not isinstance(account_error, TermsOfServiceNotAgreed):
                raise account_error from error
            return self._await_agreement(new_reg, eab, account_error)
        location = _location(response, url)
        self._client.kid = location
        self._pending = None
        if response.code == 200 and not jobj:
            # An existing account answered with only its URL (RFC 8555
            # §7.3.1 does not require a body): read it.
            response, jobj = await self._signed_json(location, None)
        return self._registration_resource(response, jobj, location)

    def _await_agreement(
        self,
        new_reg: messages.NewRegistration,
        eab: EABCredentials | None,
        error: TermsOfServiceNotAgreed,
    ) -> messages.RegistrationResource:
        """
        The CA wants its terms agreed to before it creates the account: as
        ACME v1 CAs did, return a registration for the application to
        agree on (:meth:`agree_to_tos`), without an account URL yet.  The
        account is created by ``agree_to_tos``; nothing is agreed to on the
        application's behalf.
        """
        self._pending = _PendingRegistration(new_reg, eab, error)
        _log.info(
            "The CA creates the account once its terms of service {terms} are "
            "agreed to (agree_to_tos)",
            terms=error.terms_of_service,
        )
        body = messages.Registration(
            contact=new_reg.contact, terms_of_service_agreed=False
        )
        if error.terms_of_service is None:
            return messages.RegistrationResource(body=body, uri=None)
        return messages.RegistrationResource(
            body=body, uri=None, terms_of_service=error.terms_of_service
        )

    def _account_url(self) -> str:
        """
        The account URL requests are signed with (``kid``).

        :raises TermsOfServiceNotAgreed: If :meth:`register` is waiting for
            the application to agree to the CA's terms of service.
        """
        kid = self._client.kid
        if kid is None and self._pending is not None:
            raise self._pending.error.waiting()
        return kid  # type: ignore[return-value]

    async def _signed_json(
        self,
        url: str,
        payload: Mapping[str, Any] | JSONDeSerializable | None,
    ) -> tuple[_Response, Any]:
        """A JSON request signed for the account (``kid``)."""
        self._account_url()
        return await self._client._post_json(url, payload)

    async def _signed(
        self, url: str, payload: bytes, **kwargs: Any
    ) -> tuple[_Response, bytes]:
        """A request signed for the account, or with ``key`` if given."""
        if kwargs.get("key") is None:
            self._account_url()
        return await self._client._post(url, payload, **kwargs)

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

        When :meth:`register` returned a registration without a URL, because
        the CA creates accounts only with the agreement (RFC 8555 §7.3),
        this creates the account: ``newAccount`` again, with the same
        contacts (as ``regr`` has them) and External Account Binding, and
        ``termsOfServiceAgreed: true``.

        :param regr: The registration to update.
        :returns: A Deferred firing with the updated registration resource.
        """
        updated = regr.update(body=regr.body.update(terms_of_service_agreed=True))
        return await self.update_registration(updated)

    async def _create_pending(
        self, regr: messages.RegistrationResource, pending: _PendingRegistration
    ) -> messages.RegistrationResource:
        """Create the account :meth:`register` left waiting for agreement."""
        if not regr.body.terms_of_service_agreed:
            raise pending.error.waiting()
        new_reg = pending.new_reg.update(
            contact=regr.body.contact, terms_of_service_agreed=True
        )
        created = await self.register(new_reg, pending.eab)
        if created.body.terms_of_service_agreed is None:
            # The CA created the account with the agreement, but its account
            # object omits the field (Pebble's does; RFC 8555 §7.1.2 makes
            # it optional).
            created = created.update(
                body=created.body.update(terms_of_service_agreed=True)
            )
        return created

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
        :raises TermsOfServiceNotAgreed: For the registration :meth:`register`
            left waiting for agreement to the CA's terms, unless the update
            agrees to them (then the account is created, as by
            :meth:`agree_to_tos`).
        """
        url = uri if uri is not None else regr.uri
        if url is None:
            pending = self._pending
            if pending is None:
                raise ValueError(
                    "The registration has no account URL: register it first"
                )
            return await self._create_pending(regr, pending)
        payload = _account_payload(regr.body, update=True)
        try:
            response, jobj = await self._signed_json(url, payload)
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
            response, jobj = await self._signed_json(
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
        http_response, jobj = await self._signed_json(challenge_body.uri, payload)
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
        response, jobj = await self._signed_json(url, None)
        body = _parse(messages.Authorization, jobj, response)
        retry_after = parse_retry_after(
            first_header(response, b"retry-after"), self._reactor.seconds
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
        seconds = parse_retry_after(first_header(response, b"retry-after"), _now)
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
        response, jobj = await self._signed_json(url, payload)
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
        response, jobj = await self._signed_json(orderr.uri, None)
        order = _parse(messages.Order, jobj, response)
        retry_after = parse_retry_after(
            first_header(response, b"retry-after"), self._reactor.seconds
        )
        return orderr.update(body=order), retry_after

    async def _raise_for_authorizations(self, orderr: messages.OrderResource) -> None:
        """Fetch an order's authorizations and name those that are not valid."""
        fetched = await _all(
            [
                Deferred.fromCoroutine(self._fetch_authorization(url))
                for url in orderr.body.authorizations or ()
            ]
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
        submitted = False
        if orderr.body.status == messages.STATUS_PENDING and _seen_valid(orderr):
            # The caller has seen every authorization valid (as
            # issue_certificate has), so the order is ready (RFC 8555
            # §7.1.6): finalize at once rather than refresh it first, one
            # request less per certificate.  Should the server not have
            # caught up (orderNotReady), refresh and go on as below.
            try:
                orderr, retry_after = await self._submit_csr(orderr, csr)
            except ServerError as error:
                if error.code != "orderNotReady":
                    raise
                orderr, retry_after = await self._refresh_order(orderr)
            else:
                submitted = True
        elif orderr.body.status == messages.STATUS_PENDING:
            orderr, retry_after = await self._refresh_order(orderr)
        if not submitted and orderr.body.status == messages.STATUS_PENDING:
            # Raises unless every authorization is valid; if they all are,
            # the server has yet to notice: wait for the order to be ready.
            await self._raise_for_authorizations(orderr)
            orderr = await self._wait_while(
                orderr, (messages.STATUS_PENDING,), retry_after
            )
        if not submitted and orderr.body.status == messages.STATUS_READY:
            try:
                orderr, retry_after = await self._submit_csr(orderr, csr)
            except ServerError as error:
                if error.code == "orderNotReady":
                    await self._raise_for_authorizations(orderr)
                raise
            submitted = True
        if submitted:
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

    async def _submit_csr(
        self, orderr: messages.OrderResource, csr: x509.CertificateSigningRequest
    ) -> tuple[messages.OrderResource, float | None]:
        """POST the CSR to the order's finalize URL (RFC 8555 §7.4)."""
        response, jobj = await self._signed_json(
            orderr.body.finalize, {"csr": encode_csr(csr)}
        )
        orderr = orderr.update(body=_parse(messages.Order, jobj, response))
        retry_after = parse_retry_after(
            first_header(response, b"retry-after"), self._reactor.seconds
        )
        return orderr, retry_after

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
        response, body = await self._signed(
            url, b"", content_type=PEM_CHAIN_TYPE, accept=PEM_CHAIN_TYPE
        )
        return response, body, _parse_pem_chain(body, response)

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
        request = _as_csr(csr)
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
        _check_leaf(certificates, request, response)
        leaf = certificates[0]
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

    # -- the RFC 8555 API -------------------------------------------------------

    @deferred_async
    async def find_registration(self) -> messages.RegistrationResource:
        """
        Find the existing account of the client's key: ``newAccount`` with
        ``onlyReturnExisting`` (RFC 8555 §7.3.1).  Later requests are signed
        with its URL as ``kid``.

        :returns: A Deferred firing with the registration resource.
        :raises AccountDoesNotExist: If the key has no account.
        """
        return await self.register(messages.NewRegistration(only_return_existing=True))

    @deferred_async
    async def deactivate_registration(
        self, regr: messages.RegistrationResource
    ) -> messages.RegistrationResource:
        """
        Deactivate an account (RFC 8555 §7.3.6).  The CA refuses every later
        request signed for it; this cannot be undone.

        :param regr: The account.
        :returns: A Deferred firing with the deactivated registration.
        """
        response, jobj = await self._signed_json(
            regr.uri, {"status": messages.STATUS_DEACTIVATED.name}
        )
        return self._registration_resource(
            response, jobj, regr.uri, getattr(regr, "terms_of_service", None)
        )

    @deferred_async
    async def change_key(
        self, new_key: JWK | PrivateKey, alg: JWASignature | None = None
    ) -> None:
        """
        Replace the account key (``keyChange``, RFC 8555 §7.3.5): an inner
        JWS signed by the new key, inside an outer one signed by the current
        key.  Afterwards the client signs with the new key.

        :param new_key: The new key, as a JWK or a ``cryptography`` private
            key (RSA, or ECDSA P-256/P-384).
        :param alg: Its algorithm; by default RS256 for RSA, ES256/ES384 for
            ECDSA.
        :returns: A Deferred firing once the CA switched keys.
        :raises ServerError: With HTTP status 409 (Pebble and Boulder send
            type ``malformed``) if the new key already belongs to an account;
            the account keeps its old key.
        """
        new_jwk = _as_jwk(new_key)
        new_alg = alg if alg is not None else alg_for_key(new_jwk)
        kid = self._client.kid
        if kid is None:
            raise ValueError("change_key needs an account: call register first")
        url = _required_url(self.directory, "keyChange")
        inner = acme_jws.JWS.sign(
            json.dumps(
                {"account": kid, "oldKey": self.key.public_key().to_partial_json()}
            ).encode("utf-8"),
            key=new_jwk,
            alg=new_alg,
            nonce=None,
            url=url,
        )
        await self._signed(url, inner.json_dumps().encode("utf-8"), content_type=None)
        self._client.set_key(new_jwk, new_alg)
        self.key = new_jwk

    @deferred_async
    async def deactivate_authorization(
        self, authzr: messages.AuthorizationResource
    ) -> messages.AuthorizationResource:
        """
        Deactivate an authorization (RFC 8555 §7.5.2), so that it can no
        longer be used to issue certificates.

        :param authzr: The authorization.
        :returns: A Deferred firing with the deactivated authorization.
        """
        response, jobj = await self._signed_json(
            authzr.uri, {"status": messages.STATUS_DEACTIVATED.name}
        )
        return messages.AuthorizationResource(
            body=_parse(messages.Authorization, jobj, response), uri=authzr.uri
        )

    @deferred_async
    async def revoke(
        self,
        cert: x509.Certificate | bytes | messages.CertificateResource,
        reason: int = 0,
        key: JWK | PrivateKey | None = None,
    ) -> None:
        """
        Revoke a certificate (``revokeCert``, RFC 8555 §7.6).

        :param cert: The certificate: a ``cryptography`` certificate, DER or
            PEM bytes, or a certificate resource with a DER body.
        :param reason: The CRL reason code (RFC 5280 §5.3.1): 0 unspecified,
            1 keyCompromise, 4 superseded, 5 cessationOfOperation...
        :param key: The certificate's private key, to revoke without the
            account that ordered it (the request is signed with ``jwk``);
            ``None`` to sign with the account.
        :returns: A Deferred firing once revoked.
        :raises ServerError: ``alreadyRevoked``, ``badRevocationReason``,
            ``unauthorized``...
        """
        payload = {"certificate": b64encode(_certificate_der(cert)).decode("ascii")}
        if reason:
            payload["reason"] = reason  # type: ignore[assignment]
        url = _required_url(self.directory, "revokeCert")
        if key is None:
            await self._signed(url, _json_bytes(payload), content_type=None)
        else:
            signing_key = _as_jwk(key)
            await self._signed(
                url,
                _json_bytes(payload),
                content_type=None,
                key=signing_key,
                alg=alg_for_key(signing_key),
            )

    @deferred_async
    async def renewal_info(
        self, cert: x509.Certificate | bytes | messages.CertificateResource
    ) -> RenewalWindow:
        """
        Ask when to renew a certificate (ACME Renewal Information, RFC 9773):
        GET ``renewalInfo/<certID>``.

        :param cert: The certificate (as for :meth:`revoke`); it must have
            an Authority Key Identifier.
        :returns: A Deferred firing with the suggested window and the
            seconds to wait before asking again.
        :raises NotOffered: If the directory has no ``renewalInfo``.
        :raises ValueError: If the certificate has no Authority Key
            Identifier.
        """
        base = _directory_url(self.directory, "renewalInfo")
        if base is None:
            raise NotOffered("renewalInfo", "the directory offers no ARI (RFC 9773)")
        url = base.rstrip("/") + "/" + renewal_certificate_id(_certificate(cert))
        response, body = await self._client._exchange("GET", url, JSON_CONTENT_TYPE)
        jobj = decode_json(response, body)
        info = _parse(messages.RenewalInfo, jobj, response)
        window = info.suggested_window
        if window is None or window.start is None or window.end is None:
            raise MalformedResponse(
                "The renewal info has no suggested window", response
            )
        if window.end < window.start:
            raise MalformedResponse(
                "The suggested window ends before it starts", response
            )
        retry_after = parse_retry_after(
            first_header(response, b"retry-after"), self._reactor.seconds
        )
        explanation = jobj.get("explanationURL")
        return RenewalWindow(
            start=window.start,
            end=window.end,
            retry_after=_ARI_DEFAULT_RETRY if retry_after is None else retry_after,
            explanation_url=explanation if isinstance(explanation, str) else None,
        )

    @deferred_async
    async def new_order(
        self,
        identifiers: Iterable[messages.Identifier | str],
        profile: str | None = None,
        replaces: str | x509.Certificate | None = None,
    ) -> messages.OrderResource:
        """
        Create an order (``newOrder``, RFC 8555 §7.4) and fetch its
        authorizations.

        :param identifiers: :class:`acme.messages.Identifier` objects or
            plain strings: DNS names, wildcards (``*.example.com``), IPv4 or
            IPv6 addresses (RFC 8738).
        :param profile: A certificate profile the CA offers in
            ``meta.profiles`` (draft-ietf-acme-profiles).
        :param replaces: The certificate this order replaces (a certificate,
            or its ARI certID), sent only when the directory offers
            ``renewalInfo`` (RFC 9773 §5); if the CA refuses it, the order is
            made again without it.
        :returns: A Deferred firing with the order, its ``authorizations``
            fetched.
        :raises NotOffered: If ``profile`` is not among the CA's profiles.
        """
        wanted = [_to_identifier(identifier) for identifier in identifiers]
        if not wanted:
            raise ValueError("An order needs at least one identifier")
        if profile is not None:
            offered = self.directory.meta.profiles or {}
            if profile not in offered:
                raise NotOffered(
                    "profile",
                    f"the CA offers no profile {profile!r}; it offers: "
                    f"{', '.join(sorted(offered)) or 'none'}",
                )
        replaces_id: str | None = None
        if replaces is not None:
            if _directory_url(self.directory, "renewalInfo") is None:
                _log.info("Not sending replaces: the CA offers no renewalInfo")
            elif isinstance(replaces, x509.Certificate):
                replaces_id = renewal_certificate_id(replaces)
            else:
                replaces_id = replaces
        try:
            orderr = await self._create_order(wanted, profile, replaces_id)
        except ServerError as error:
            if replaces_id is None or not _refuses_replaces(error):
                raise
            _log.info(
                "The CA refused replaces={replaces} ({error}); ordering without it",
                replaces=replaces_id,
                error=error,
            )
            orderr = await self._create_order(wanted, profile, None)
        fetched = await _all(
            [
                Deferred.fromCoroutine(self._fetch_authorization(url))
                for url in orderr.body.authorizations
            ]
        )
        complete: messages.OrderResource = orderr.update(
            authorizations=tuple(authzr for authzr, _ in fetched)
        )
        return complete

    @deferred_async
    async def finalize(
        self,
        orderr: messages.OrderResource,
        csr: x509.CertificateSigningRequest | messages.CertificateRequest | bytes | Any,
    ) -> messages.OrderResource:
        """
        Finalize an order whose authorizations are valid (RFC 8555 §7.4),
        wait while it is ``processing`` (following the polling policy and
        ``Retry-After``), and download its certificate chain and the
        alternate chains (``Link: rel="alternate"``, §7.4.2).

        :param orderr: The order.
        :param csr: The CSR: a ``cryptography`` CSR, PEM bytes, or a
            certificate request message.
        :returns: A Deferred firing with the ``valid`` order, with
            ``fullchain_pem`` and ``alternative_fullchains_pem``.
        :raises AuthorizationsNotValid: Naming authorizations not valid.
        :raises OrderFailed: If the order is or becomes invalid.
        :raises PollTimeout: If it stays processing past the policy's
            timeout.
        """
        request = _as_csr(csr)
        orderr = await self._finalize(orderr, request)
        assert orderr.body.certificate is not None
        response, body, certificates = await self._download_chain(
            orderr.body.certificate
        )
        _check_leaf(certificates, request, response)
        alternates = response_links(response, orderr.body.certificate).get(
            "alternate", []
        )
        downloaded = await _all(
            [Deferred.fromCoroutine(self._download_chain(url)) for url in alternates]
        )
        finalized: messages.OrderResource = orderr.update(
            csr_pem=request.public_bytes(serialization.Encoding.PEM),
            fullchain_pem=body.decode("ascii"),
            alternative_fullchains_pem=[
                chain.decode("ascii") for _, chain, _ in downloaded
            ],
        )
        return finalized


@frozen
class _PendingRegistration:
    """A newAccount the CA refused for want of agreement to its terms."""

    new_reg: messages.NewRegistration
    eab: EABCredentials | None
    error: TermsOfServiceNotAgreed


_ARI_DEFAULT_RETRY = 6 * 3600.0
# Base64url as CAs print keys; some use the standard alphabet or padding.
_BASE64URL = re.compile(r"[A-Za-z0-9_\-+/]+=*")


@frozen
class EABCredentials:
    """
    External Account Binding credentials (RFC 8555 §7.3.4): what a CA
    such as ZeroSSL, Google Trust Services or Sectigo hands out to bind an
    ACME account to an account with it.

    :ivar key_id: The key identifier.
    :ivar hmac_key: The MAC key: raw bytes, or the base64url text CAs show.
    :ivar alg: The MAC algorithm: ``HS256`` (the usual), ``HS384`` or
        ``HS512``.
    """

    key_id: str
    hmac_key: bytes | str = field(repr=False)
    alg: str = field(
        default="HS256", validator=validators.in_(("HS256", "HS384", "HS512"))
    )

    def binding(self, account_key: JWK, new_account_url: str) -> dict[str, Any]:
        """
        The ``externalAccountBinding`` value: a JWS over the account's
        public key, MACed with the HMAC key.

        :param account_key: The account's public key.
        :param new_account_url: The directory's ``newAccount`` URL.
        """
        if isinstance(self.hmac_key, bytes):
            key_bytes = self.hmac_key
        else:
            text = self.hmac_key.strip()
            # josepy's decoder skips characters outside the alphabet: check
            # first, so that a mangled key fails here, not as a bad MAC.
            if not _BASE64URL.fullmatch(text):
                raise ValueError("The EAB HMAC key is not base64url text")
            key_bytes = b64decode(text.rstrip("=").replace("+", "-").replace("/", "_"))
        if not key_bytes:
            raise ValueError("The EAB HMAC key is empty")
        signed = acme_jws.JWS.sign(
            json.dumps(account_key.public_key().to_partial_json()).encode("utf-8"),
            key=JWKOct(key=key_bytes),
            alg=_HMAC_ALGORITHMS[self.alg],
            nonce=None,
            url=new_account_url,
            kid=self.key_id,
        )
        binding: dict[str, Any] = signed.to_partial_json()
        return binding


_HMAC_ALGORITHMS: dict[str, JWASignature] = {
    "HS256": HS256,
    "HS384": HS384,
    "HS512": HS512,
}


def alg_for_key(key: JWK) -> JWASignature:
    """
    The JWS algorithm for a key: RS256 for RSA, ES256 for P-256, ES384 for
    P-384, ES512 for P-521.

    :raises ValueError: For any other key.
    """
    if isinstance(key, JWKRSA):
        return RS256
    if isinstance(key, JWKEC):
        curve = key.key.curve.name
        algorithms = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}
        if curve in algorithms:
            return algorithms[curve]
    raise ValueError(f"No JWS algorithm for {type(key).__name__} keys of this kind")


def _as_jwk(key: JWK | PrivateKey) -> JWK:
    if isinstance(key, JWK):
        return key
    # josepy's ComparableKey (a JWK's .key) wraps the cryptography key.
    key = getattr(key, "_wrapped", key)
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return JWKEC(key=key)
    raise TypeError(f"Not an RSA or ECDSA private key: {key!r}")


def _certificate(
    cert: x509.Certificate | bytes | messages.CertificateResource,
) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, messages.CertificateResource):
        cert = cert.body
    if isinstance(cert, bytes):
        if cert.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(cert)
        return x509.load_der_x509_certificate(cert)
    raise TypeError(f"Not a certificate: {cert!r}")


def _certificate_der(
    cert: x509.Certificate | bytes | messages.CertificateResource,
) -> bytes:
    return _der(_certificate(cert))


def renewal_certificate_id(cert: x509.Certificate) -> str:
    """
    The ARI certificate identifier (RFC 9773 §4.1): the base64url Authority
    Key Identifier, a dot, and the base64url DER encoding of the serial
    number's value.

    :raises ValueError: If the certificate has no Authority Key Identifier.
    """
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        aki = None
    if aki is None or aki.key_identifier is None:
        raise ValueError(
            "The certificate has no Authority Key Identifier: no ARI certID"
        )
    serial = cert.serial_number
    serial_bytes = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    return (
        b64encode(aki.key_identifier).decode("ascii")
        + "."
        + b64encode(serial_bytes).decode("ascii")
    )


def _refuses_replaces(error: ServerError) -> bool:
    """Whether an error to a newOrder with ``replaces`` is about that field."""
    if error.code == "alreadyReplaced":
        return True
    detail = (error.message.detail or "").lower()
    return (
        error.code in ("malformed", "conflict", "unauthorized") and "replace" in detail
    )


def _required_url(directory: messages.Directory, name: str) -> str:
    url = _directory_url(directory, name)
    if url is None:
        raise NotOffered(name, f"the directory has no {name} URL")
    return url


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


def _as_csr(csr: Any) -> x509.CertificateSigningRequest:
    if isinstance(csr, x509.CertificateSigningRequest):
        return csr
    if isinstance(csr, bytes):
        return x509.load_pem_x509_csr(csr)
    inner = getattr(csr, "csr", None)
    if isinstance(inner, x509.CertificateSigningRequest):
        return inner
    raise TypeError(f"Not a certificate signing request: {csr!r}")


async def _all(deferreds: list[Deferred[_T]]) -> list[_T]:
    """
    Wait for all ``deferreds``; on the first failure cancel the rest and
    raise that failure's exception (not a ``FirstError``).
    """
    try:
        return await gatherResults(deferreds, consumeErrors=True)
    except FirstError as error:
        for deferred in deferreds:
            deferred.cancel()
        error.subFailure.raiseException()
        raise  # pragma: no cover (raiseException always raises)


def _directory_url(directory: messages.Directory, name: str) -> str | None:
    try:
        value = directory[name]
    except KeyError:
        return None
    return value if isinstance(value, str) else None


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
    reactor: IReactorTime,
    key: JWK,
    alg: JWASignature,
    trust_root: IOpenSSLTrustRoot | None = None,
) -> tuple[JWSClient, Any]:
    """
    A JWSClient on treq with a persistent pool, trusting ``trust_root`` or
    the platform's certificate authorities.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
    pool.maxPersistentPerHost = 8
    agent = Agent(  # type: ignore[no-untyped-call]
        reactor,
        contextFactory=_CachedTLSPolicy(
            BrowserLikePolicyForHTTPS(trust_root)  # type: ignore[no-untyped-call]
        ),
        pool=pool,
    )
    return JWSClient(HTTPClient(agent), key, alg, reactor=reactor), pool


@implementer(IPolicyForHTTPS)
class _CachedTLSPolicy:
    """
    An HTTPS policy that makes the TLS connection creator of each host and
    port once, and then reuses it.

    ``Agent`` asks its policy for a creator on every request, also one sent
    over a pooled connection, and ``BrowserLikePolicyForHTTPS`` makes a new
    one each time: certificate options, an OpenSSL context, the cipher
    list and the IDNA form of the name.  A creator serves any number of
    connections; each is still verified for the creator's host name.
    """

    #: The most creators kept (an ACME client talks to a host or two).
    MAX_CREATORS = 32

    def __init__(self, policy: IPolicyForHTTPS) -> None:
        self._policy = policy
        self._creators: dict[tuple[bytes, int], Any] = {}

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        key = (hostname, port)
        creator = self._creators.get(key)
        if creator is None:
            if len(self._creators) >= self.MAX_CREATORS:
                self._creators.clear()
            creator = self._policy.creatorForNetloc(hostname, port)
            self._creators[key] = creator
        return creator


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
        # The cause is what the caller needs; a failure to clean up after
        # it (a responder whose stop fails after a failed start) is logged.
        try:
            await stop_responding()
        except Exception:
            _log.failure(
                "Stopping the {challenge_type} responder for {server_name} "
                "after a failure failed",
                challenge_type=responder.challenge_type,
                server_name=server_name,
            )
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
        delay = policy.authorization_delay(attempt, retry_after)
        if delay > 0:
            await deferLater(clock, delay)
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


def _issuer_names(certificate: x509.Certificate) -> list[str]:
    return [
        attribute.value
        if isinstance(attribute.value, str)
        else attribute.value.decode()
        for attribute in certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]


def select_chain(
    default_pem: str, alternatives_pem: Sequence[str], preferred_chain: str | None
) -> str:
    """
    Pick a certificate chain by the name of its issuer.

    A chain whose topmost certificate was issued by ``preferred_chain`` (the
    root's common name) wins; failing that, one in which any certificate's
    issuer has that name (an intermediate); failing that, the default chain.
    Chains are looked at in order, the default first.

    :param default_pem: The default chain (PEM).
    :param alternatives_pem: The alternate chains (PEM).
    :param preferred_chain: The issuer common name wanted, or ``None``.
    :returns: The chosen chain (PEM).
    """
    if preferred_chain is None:
        return default_pem
    chains = [default_pem, *alternatives_pem]
    parsed = [
        x509.load_pem_x509_certificates(chain.encode("ascii")) for chain in chains
    ]
    for chain, certificates in zip(chains, parsed, strict=True):
        if preferred_chain in _issuer_names(certificates[-1]):
            return chain
    for chain, certificates in zip(chains, parsed, strict=True):
        if any(
            preferred_chain in _issuer_names(certificate)
            for certificate in certificates
        ):
            return chain
    return default_pem


@deferred_async
async def issue_certificate(
    client: Client,
    clock: IReactorTime,
    csr: x509.CertificateSigningRequest | messages.CertificateRequest | bytes | Any,
    responders: Sequence[IResponder],
    preferred_chain: str | None = None,
    profile: str | None = None,
    replaces: str | x509.Certificate | None = None,
    timeout: float = 300.0,
) -> str:
    """
    Get a certificate in one call: order the CSR's names, answer every
    pending authorization with the responders (in parallel; authorizations
    the CA reuses as valid are skipped), wait until they are valid, finalize,
    and return the chain.  Every responder started is stopped afterwards,
    also when something fails or the call is cancelled.

    :param client: The ACME client, registered.
    :param clock: The clock for polling.
    :param csr: The certificate signing request (its SAN names and IP
        addresses are the order's identifiers).
    :param responders: :class:`~txacme.interfaces.IResponder` objects, in
        order of preference.
    :param preferred_chain: The issuer common name of the chain wanted
        (see :func:`select_chain`); ``None`` for the CA's default.
    :param profile: A certificate profile the CA offers.
    :param replaces: The certificate (or ARI certID) being renewed.
    :param timeout: Seconds to wait for each authorization to be valid.
    :returns: A Deferred firing with the certificate chain (PEM, leaf
        first).
    :raises AuthorizationFailed: If an authorization fails.
    :raises NoSupportedChallenges: If no responder fits an authorization.
    :raises twisted.internet.defer.CancelledError: If an authorization
        stayed pending for ``timeout`` seconds.
    """
    request = _as_csr(csr)
    identifiers = [
        messages.Identifier(typ=messages.IdentifierType.from_json(typ), value=value)
        for typ, value in identifiers_from_csr(request)
    ]
    orderr = await client.new_order(identifiers, profile=profile, replaces=replaces)
    stoppers: list[Callable[[], Deferred[None]]] = []

    async def authorize(
        authzr: messages.AuthorizationResource,
    ) -> messages.AuthorizationResource:
        stoppers.append(await answer_challenge(authzr, client, responders))
        return await poll_until_valid(authzr, clock, client, timeout)

    try:
        authorized = await _all(
            [
                Deferred.fromCoroutine(authorize(authzr))
                for authzr in orderr.authorizations
                if authzr.body.status != messages.STATUS_VALID
            ]
        )
    finally:
        await _stop_all(stoppers)
    # The authorizations as last seen, all valid: finalize need not refresh
    # the order to learn that it is ready.
    polled = {authzr.uri: authzr for authzr in authorized}
    orderr = orderr.update(
        authorizations=tuple(
            polled.get(authzr.uri, authzr) for authzr in orderr.authorizations
        )
    )
    orderr = await client.finalize(orderr, request)
    return select_chain(
        orderr.fullchain_pem, orderr.alternative_fullchains_pem or (), preferred_chain
    )


async def _stop_all(stoppers: Sequence[Callable[[], Deferred[None]]]) -> None:
    """Stop every responder; a failure to stop is logged, not raised."""
    results = await DeferredList(
        [maybeDeferred(stop) for stop in stoppers], consumeErrors=True
    )
    for success, outcome in results:
        if not success:
            _log.failure("Stopping a responder failed", outcome)
