"""
:class:`Client`: the ACME client of txacme 0.9's API, speaking RFC 8555,
a few lines per method over the protocol modules of :mod:`txacme._protocol`.
Public as :class:`txacme.client.Client`.

(Longer than most modules here: one class, the facade of some thirty
public methods, the seed's and RFC 8555's, most of their lines their
documentation.  What they do lives in :mod:`txacme._protocol`, the waits
in :mod:`txacme._polling`, the HTTPS transport in :mod:`txacme._https`.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from acme import challenges as acme_challenges
from acme import messages
from attrs import evolve, frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy.jwa import RS256, JWASignature
from josepy.jwk import JWK
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.url import URL

from txacme._deferred import deferred_async
from txacme._headers import first_header, parse_retry_after
from txacme._https import default_jws_client
from txacme._polling import Deadline, PollingPolicy, finalize_order
from txacme._protocol import accounts, authorizations, certificates, orders
from txacme._protocol import renewal_info as ari
from txacme._protocol._common import (
    Session,
    as_csr,
    certificate,
    csr_identifiers,
    der,
    directory_url,
    gather,
    identifier_key,
    to_identifier,
)
from txacme._protocol.accounts import EABCredentials, alg_for_key, as_jwk
from txacme._protocol.directory import fetch_directory
from txacme._types import HTTPResponse as _Response
from txacme.errors import (
    ChainTooLong,
    MalformedResponse,
    NotOffered,
    ServerError,
    TermsOfServiceNotAgreed,
)
from txacme.jws import JWSClient, RetryPolicy, Signer
from txacme.messages import CertificateChainResource, RenewalWindow
from txacme.util import PrivateKey

if TYPE_CHECKING:
    # Annotations only: Twisted exports this interface from a private module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot
    from twisted.internet.ssl import Certificate

__all__ = ["Client"]

_log = Logger()


@frozen
class _PendingRegistration:
    """A newAccount the CA refused for want of agreement to its terms."""

    new_reg: messages.NewRegistration
    eab: EABCredentials | None
    error: TermsOfServiceNotAgreed


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
    :param alg: The account key's JWS algorithm; by default the
        transport's, if its key is ``key``, else the usual one for the key
        (:func:`~txacme.client.alg_for_key`).

    :ivar directory: The :class:`acme.messages.Directory`.
    :ivar policy: The :class:`PollingPolicy`.
    """

    #: How many orders made by :meth:`request_challenges` are remembered for
    #: :meth:`request_issuance` (the oldest are forgotten first).
    MAX_REMEMBERED_ORDERS = 1000

    def __init__(
        self,
        directory: messages.Directory,
        reactor: IReactorTime,
        key: JWK,
        jws_client: JWSClient,
        *,
        policy: PollingPolicy | None = None,
        alg: JWASignature | None = None,
    ) -> None:
        self.directory = directory
        self._reactor = reactor
        self.policy = policy if policy is not None else PollingPolicy()
        if alg is None:
            alg = jws_client.alg if jws_client.key == key else alg_for_key(key)
        self._session = Session(jws_client, directory, reactor)
        #: The account: its key, algorithm and (once registered) URL.
        self._signer = Signer(key, alg, None)
        # Orders created by request_challenges, by their identifier sets,
        # for request_issuance to finalize.
        self._orders: dict[frozenset[tuple[str, str]], messages.OrderResource] = {}
        self._owned_pool: Any = None
        # A registration the CA refused for want of agreement to its terms
        # (txacme 0.9's register-then-agree_to_tos): created when the
        # application agrees.
        self._pending: _PendingRegistration | None = None

    @property
    def key(self) -> JWK:
        """The account key (it changes with :meth:`change_key`)."""
        return self._signer.key

    @property
    def account_url(self) -> str | None:
        """The account URL, once :meth:`register` found or created it."""
        return self._signer.kid

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
        trust_root: IOpenSSLTrustRoot | Certificate | None = None,
    ) -> Client:
        """
        Construct a client from an ACME directory at a given URL.

        :param url: The :class:`twisted.python.url.URL` (or ``str``) to fetch
            the directory from.
        :param reactor: The Twisted reactor to use.
        :param key: The client (account) key to use.
        :param alg: The signing algorithm to use. Needs to be compatible with
            the type of key used.  With a ``jws_client``, the algorithm it
            was made with is used, as in txacme 0.9.
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
        :raises ValueError: If ``url`` is not an absolute ``https`` (or
            ``http``) URL.
        :raises MalformedResponse: If the directory is not an RFC 8555
            directory (for example HTML, truncated JSON, or an ACME v1
            directory).
        :raises ServerError: If the server answers with an error.
        :raises NetworkError: If the server cannot be reached.
        """
        if isinstance(url, URL):
            directory_url_text = url.asText()
        elif isinstance(url, str):
            directory_url_text = url
        else:
            raise TypeError(
                f"ACME directory URL should be a URL or str, got {url!r} instead"
            )
        parsed = URL.fromText(directory_url_text)
        if parsed.scheme not in ("https", "http") or not parsed.host:
            raise ValueError(
                "The ACME directory URL must be an absolute https (or http) URL, "
                f"not {directory_url_text!r}"
            )
        pool = None
        client_alg: JWASignature | None = alg
        if jws_client is None:
            jws_client, pool = default_jws_client(
                reactor, key, alg, trust_root, timeout, retry_policy
            )
        else:
            # As in txacme 0.9, a transport given signs as it was made to.
            client_alg = None
        if pool is None and (retry_policy is not None or trust_root is not None):
            raise TypeError(
                "retry_policy and trust_root configure the transport from_url "
                "builds; with a jws_client, configure that instead"
            )
        try:
            directory = await fetch_directory(jws_client, directory_url_text, reactor)
        except BaseException:
            # No client comes back to close() it: close the pool here.
            if pool is not None:
                await pool.closeCachedConnections()
            raise
        client = cls(directory, reactor, key, jws_client, policy=policy, alg=client_alg)
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

    # -- the account ---------------------------------------------------------

    def _account(self) -> Signer:
        """
        The account's signer, for requests that need the account.

        :raises TermsOfServiceNotAgreed: If :meth:`register` is waiting for
            the application to agree to the CA's terms of service.
        """
        if self._signer.kid is None and self._pending is not None:
            raise self._pending.error.waiting()
        return self._signer

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
        try:
            regr = await accounts.new_account(self._session, self._signer, new_reg, eab)
        except TermsOfServiceNotAgreed as error:
            return self._await_agreement(new_reg, eab, error)
        self._signer = evolve(self._signer, kid=regr.uri)
        self._pending = None
        return regr

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
        return await accounts.update_account(
            self._session,
            self._account(),
            url,
            regr.body,
            getattr(regr, "terms_of_service", None),
        )

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
        return await accounts.update_account(
            self._session,
            self._account(),
            regr.uri,
            messages.Registration(status=messages.STATUS_DEACTIVATED),
            getattr(regr, "terms_of_service", None),
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
        new_jwk = as_jwk(new_key)
        new_alg = alg if alg is not None else alg_for_key(new_jwk)
        signer = self._account()
        if signer.kid is None:
            raise ValueError("change_key needs an account: call register first")
        new_signer = Signer(new_jwk, new_alg, signer.kid)
        await accounts.change_key(self._session, signer, new_signer)
        self._signer = new_signer

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
        identifier = to_identifier(identifier)
        signer = self._account()
        if directory_url(self.directory, "newAuthz") is not None:
            return await authorizations.new_authorization(
                self._session, signer, identifier
            )
        orderr = await orders.create_order(self._session, signer, [identifier])
        count = len(orderr.body.authorizations or ())
        if count != 1:
            raise MalformedResponse(
                f"An order for one identifier has {count} authorizations"
            )
        authzr, _ = await authorizations.fetch_authorization(
            self._session, signer, orderr.body.authorizations[0]
        )
        self._remember_order(orderr.update(authorizations=(authzr,)))
        return authzr

    def _remember_order(self, orderr: messages.OrderResource) -> None:
        key = identifier_key(orderr.body.identifiers or ())
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
        return await authorizations.post_challenge(
            self._session, self._account(), challenge_body, response
        )

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
        updated, retry_after = await self.refresh_authorization(authzr)
        if retry_after is None:
            retry_after = self.policy.first_delay
        return updated, retry_after

    @deferred_async
    async def refresh_authorization(
        self, authzr: messages.AuthorizationResource
    ) -> tuple[messages.AuthorizationResource, float | None]:
        """
        An authorization as the CA has it now: POST-as-GET its URL.

        :param authzr: The authorization (only its ``uri`` is used).
        :returns: A Deferred firing with the authorization and the server's
            ``Retry-After`` in seconds, or ``None``.
        """
        return await authorizations.fetch_authorization(
            self._session, self._account(), authzr.uri
        )

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
        return await authorizations.deactivate_authorization(
            self._session, self._account(), authzr.uri
        )

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
        wanted = [to_identifier(identifier) for identifier in identifiers]
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
            if directory_url(self.directory, "renewalInfo") is None:
                _log.info("Not sending replaces: the CA offers no renewalInfo")
            elif isinstance(replaces, x509.Certificate):
                replaces_id = ari.renewal_certificate_id(replaces)
            else:
                replaces_id = replaces
        signer = self._account()
        try:
            orderr = await orders.create_order(
                self._session, signer, wanted, profile, replaces_id
            )
        except ServerError as error:
            if replaces_id is None or not orders.refuses_replaces(error):
                raise
            _log.info(
                "The CA refused replaces={replaces} ({error}); ordering without it",
                replaces=replaces_id,
                error=error,
            )
            orderr = await orders.create_order(
                self._session, signer, wanted, profile, None
            )
        fetched = await gather(
            [
                Deferred.fromCoroutine(
                    authorizations.fetch_authorization(self._session, signer, url)
                )
                for url in orderr.body.authorizations
            ]
        )
        complete: messages.OrderResource = orderr.update(
            authorizations=tuple(authzr for authzr, _ in fetched)
        )
        return complete

    @deferred_async
    async def refresh_order(
        self, orderr: messages.OrderResource
    ) -> tuple[messages.OrderResource, float | None]:
        """
        An order as the CA has it now: POST-as-GET its URL.

        :param orderr: The order.
        :returns: A Deferred firing with the order and the server's
            ``Retry-After`` in seconds, or ``None``.
        """
        return await orders.fetch_order(self._session, self._account(), orderr)

    @deferred_async
    async def send_csr(
        self,
        orderr: messages.OrderResource,
        csr: x509.CertificateSigningRequest,
    ) -> tuple[messages.OrderResource, float | None]:
        """
        Send an order's CSR to its ``finalize`` URL (RFC 8555 §7.4), once,
        without waiting: :meth:`finalize` waits too.

        :param orderr: The order, ``ready``.
        :param csr: The CSR.
        :returns: A Deferred firing with the order as the CA answered
            (usually ``processing`` or ``valid``) and its ``Retry-After``.
        :raises ServerError: ``orderNotReady`` for an order that is not
            ready, ``badCSR``...
        """
        return await orders.send_csr(self._session, self._account(), orderr, csr)

    @deferred_async
    async def fetch_certificate(
        self,
        orderr: messages.OrderResource,
        csr: x509.CertificateSigningRequest,
    ) -> messages.OrderResource:
        """
        Download a valid order's certificate chain (RFC 8555 §7.4.2) and
        the alternate chains its answer links to (``rel="alternate"``).

        :param orderr: The ``valid`` order.
        :param csr: The order's CSR: the leaf must be for its key.
        :returns: A Deferred firing with the order with ``fullchain_pem``,
            ``alternative_fullchains_pem`` and ``csr_pem``.
        :raises MalformedResponse: If a chain is not a chain, or the leaf is
            not for the CSR's key.
        """
        url = orderr.body.certificate
        if not url:
            raise MalformedResponse(f"The order {orderr.uri} has no certificate URL")
        signer = self._account()
        answer, chain = await certificates.download_chain(self._session, signer, url)
        certificates.check_leaf(chain, csr, answer.response)
        downloaded = await gather(
            [
                Deferred.fromCoroutine(
                    certificates.download_chain(self._session, signer, alternate)
                )
                for alternate in certificates.alternates(answer, url)
            ]
        )
        fetched: messages.OrderResource = orderr.update(
            csr_pem=csr.public_bytes(serialization.Encoding.PEM),
            fullchain_pem=answer.body.decode("ascii"),
            alternative_fullchains_pem=[
                alternate.body.decode("ascii") for alternate, _ in downloaded
            ],
        )
        return fetched

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
        request = as_csr(csr)
        valid = await finalize_order(
            self, orderr, request, Deadline(self._reactor, self.policy.timeout)
        )
        return await self.fetch_certificate(valid, request)

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
        request = as_csr(csr)
        identifiers = csr_identifiers(request)
        if not identifiers:
            raise ValueError("The CSR names no identifier")
        signer = self._account()
        orderr = self._orders.pop(identifier_key(identifiers), None)
        if orderr is not None:
            orderr, _ = await orders.fetch_order(self._session, signer, orderr)
            if orderr.body.status == messages.STATUS_INVALID:
                # Expired or failed since: start over with a new order.
                orderr = None
        if orderr is None:
            orderr = await orders.create_order(self._session, signer, identifiers)
        orderr = await finalize_order(
            self, orderr, request, Deadline(self._reactor, self.policy.timeout)
        )
        url = orderr.body.certificate
        assert url is not None  # finalize_order checked it.
        answer, chain = await certificates.download_chain(self._session, signer, url)
        certificates.check_leaf(chain, request, answer.response)
        return CertificateChainResource(
            uri=url,
            cert_chain_uri=url,
            body=der(chain[0]),
            authzrs=tuple(orderr.authorizations or ()),
            chain=tuple(der(issuer) for issuer in chain[1:]),
            fullchain_pem=answer.body.decode("ascii"),
        )

    @deferred_async
    async def fetch_chain(
        self, certr: messages.CertificateResource, max_length: int = 10
    ) -> list[messages.CertificateResource]:
        """
        Fetch the intermediary chain for a certificate.

        RFC 8555 delivers the chain with the certificate: for a resource
        from :meth:`request_issuance` no request is made; for any other, the
        certificate URL is downloaded again (a resource without URL has no
        chain, as in txacme 0.9).

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
        elif certr.uri is None:
            # Nowhere to fetch it from: no chain, as in txacme 0.9.
            chain = []
        else:
            answer, downloaded = await certificates.download_chain(
                self._session, self._account(), certr.uri
            )
            if isinstance(certr.body, bytes) and der(downloaded[0]) != certr.body:
                raise MalformedResponse(
                    f"{certr.uri} serves another certificate than the one given",
                    answer.response,
                )
            chain = [der(issuer) for issuer in downloaded[1:]]
        if len(chain) > max_length:
            raise ChainTooLong(
                f"Recursion limit reached: the chain has {len(chain)} issuer "
                f"certificates, more than max_length={max_length}"
            )
        return [
            messages.CertificateResource(
                uri=certr.uri, cert_chain_uri=certr.uri, body=issuer, authzrs=()
            )
            for issuer in chain
        ]

    # -- certificates (RFC 8555 §7.6, RFC 9773) --------------------------------

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
        :raises ServerError: ``alreadyRevoked`` (unless the request was sent
            again after a lost answer: then the first attempt revoked it),
            ``badRevocationReason``, ``unauthorized``...
        """
        if key is None:
            signer = self._account()
        else:
            signing_key = as_jwk(key)
            signer = Signer(signing_key, alg_for_key(signing_key), None)
        try:
            await certificates.revoke(self._session, signer, cert, reason)
        except ServerError as error:
            if error.code == "alreadyRevoked" and (error.attempts or 1) > 1:
                # Sent again after its answer was lost: the first attempt
                # revoked it.
                return
            raise

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
        return await ari.renewal_info(self._session, certificate(cert))
