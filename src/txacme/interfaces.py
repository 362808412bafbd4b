"""
Interfaces: the points where applications plug their own code into txacme.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    import pem
    from acme import challenges as acme_challenges
    from acme import messages
    from cryptography import x509
    from josepy.jwk import JWK
    from twisted.internet.defer import Deferred

    from txacme._polling import PollingPolicy
    from txacme.messages import RenewalWindow
    from txacme.store import CertificateSummary, OrderRecord

__all__ = [
    "ICertificateStore",
    "ICertificateSummaries",
    "IOrderJournal",
    "IResponder",
    "IssuingClient",
]


class IResponder(Interface):
    """
    Configuration for an ACME challenge responder: something that makes the
    server able to validate one challenge type for a name.

    The contract (RFC 2119 terms):

    * :attr:`challenge_type` MUST be the ACME challenge type string the
      responder answers (``"http-01"``, ``"dns-01"``, ``"tls-alpn-01"``).
    * :meth:`start_responding` MUST make the challenge answerable before it
      returns or before the Deferred it returns fires; if it cannot, it MUST
      raise or fail that Deferred, so that the challenge is not answered.
    * While started, the responder MUST keep answering every validation
      request for that challenge, however many (a CA validates from several
      vantage points, and Pebble fetches an http-01 token three times).
    * :meth:`stop_responding` MUST be idempotent, and MUST tolerate being
      called for a challenge whose start failed or never happened.  After it
      returns (or its Deferred fires), the responder SHOULD no longer answer
      for that challenge.  It MUST leave other challenges that are being
      responded to (other names, other tokens, the same name in another
      order) untouched.
    * Several challenges MAY be in progress at once, also for the same name
      (a wildcard and its base name share one dns-01 record name).
    * Neither method should block the reactor; both MAY return a Deferred.
    """

    challenge_type = Attribute(
        "The type of challenge this responder is able to respond for, as a str."
    )

    def start_responding(server_name, challenge, response):  # type: ignore[no-untyped-def]
        """
        Start responding for a particular challenge.

        :param str server_name: The server name (identifier value) for which
            the challenge is being completed.
        :param challenge: The :class:`acme.challenges.Challenge`.
        :param response: The :class:`acme.challenges.ChallengeResponse`
            (for key-authorization challenges, with ``key_authorization``).

        :returns: ``None``, or a Deferred firing once responding has started.
        """

    def stop_responding(server_name, challenge, response):  # type: ignore[no-untyped-def]
        """
        Stop responding for a particular challenge.

        May be called even if :meth:`start_responding` was never called or
        failed, and more than once; see the interface contract.

        :returns: ``None``, or a Deferred firing once responding has stopped.
        """


class ICertificateStore(Interface):
    """
    A store of certificate/key/chain bundles, keyed by server name.

    Each entry is a list of :mod:`pem` objects: the private key, the
    certificate and its issuer chain.

    * :meth:`get` MUST fail with :exc:`KeyError` when there is no entry.
    * :meth:`store` MUST replace an entry as a whole: a reader (or a process
      restarted after a crash) sees either the old entry or the new one,
      never a mixture or a truncated one.
    * All methods return Deferreds and SHOULD NOT block the reactor.
    """

    def get(server_name: str) -> Deferred[list[pem.AbstractPEMObject]]:
        """
        Retrieve the current PEM objects for the given server name.

        :param str server_name: The server name.
        :raises KeyError: (through the Deferred) if there is no entry.
        :returns: A Deferred firing with the list of PEM objects.
        """

    def store(
        server_name: str, pem_objects: list[pem.AbstractPEMObject]
    ) -> Deferred[None]:
        """
        Store PEM objects for the given server name, replacing any existing
        entry.

        :param str server_name: The server name.
        :param pem_objects: The list of PEM objects.
        :returns: A Deferred firing once the entry is stored durably.
        """

    def as_dict() -> Deferred[dict[str, list[pem.AbstractPEMObject]]]:
        """
        Get all entries in the store.

        :returns: A Deferred firing with a dict mapping server names to lists
            of PEM objects.
        """


class ICertificateSummaries(Interface):
    """
    A certificate store that can summarize its entries cheaply: an optional
    companion of :class:`ICertificateStore`, which
    :class:`~txacme.service.AcmeIssuingService` uses instead of
    :meth:`~ICertificateStore.as_dict` when a store provides it.

    * :meth:`summaries` MUST name the same entries as ``as_dict``.
    * It SHOULD NOT hold every entry's PEM objects in memory at once, and
      SHOULD NOT block the reactor for long.
    """

    def summaries() -> Deferred[dict[str, CertificateSummary | None]]:
        """
        Summarize every entry.

        :returns: A Deferred firing with a dict mapping each server name to
            the :class:`~txacme.store.CertificateSummary` of its first
            certificate, or to ``None`` for an entry without a (readable)
            certificate.
        """


class IOrderJournal(Interface):
    """
    A store that remembers an entry's order in flight: an optional
    companion of :class:`ICertificateStore`.  With one,
    :class:`~txacme.service.AcmeIssuingService` records each order (its URL,
    names, and the certificate's private key) before finalizing it, and,
    after a crash or a restart, goes on with that order (downloading the
    certificate the CA issued meanwhile) instead of ordering again: a
    certificate the CA issued is never lost, nor ordered twice (a CA limits
    duplicate certificates: Let's Encrypt to 5 a week).

    * :meth:`record_order` MUST be durable before its Deferred fires (the
      record holds a private key: it MUST be readable by its owner only).
    * :meth:`pending_order` MUST return what :meth:`record_order` recorded
      last for the entry, until :meth:`forget_order`.
    * Records MUST NOT appear as entries of the store.
    """

    def record_order(server_name: str, record: OrderRecord) -> Deferred[None]:
        """
        Remember the entry's order in flight, replacing any earlier one.

        :returns: A Deferred firing once recorded durably.
        """

    def pending_order(server_name: str) -> Deferred[OrderRecord | None]:
        """
        :returns: A Deferred firing with the entry's order in flight, or
            ``None``.
        """

    def forget_order(server_name: str) -> Deferred[None]:
        """
        Forget the entry's order in flight (done, or given up); no error if
        there is none.

        :returns: A Deferred firing once forgotten.
        """


class IssuingClient(Protocol):
    """
    What the issuance workflow (:func:`txacme.client.issue_certificate`,
    :func:`~txacme.client.answer_challenge`,
    :func:`~txacme.client.poll_until_valid`) and
    :class:`~txacme.service.AcmeIssuingService` need of an ACME client, one
    RFC 8555 exchange per method.  :class:`txacme.client.Client` provides
    it, and so does :class:`txacme.testing.FakeClient`, which therefore
    goes through the same workflow.

    The contract (RFC 2119 terms), which the test suite holds both to:

    * Every method MUST return a Deferred (cancellable) and MUST NOT wait
      for a resource to change state: the workflow does the waiting, on its
      own clock, following :attr:`policy`.
    * ``refresh_authorization`` and ``refresh_order`` MUST return the
      resource as the CA has it now, and the CA's ``Retry-After`` in
      seconds, or ``None``.
    * ``send_csr`` MUST send the CSR once and return the order as the CA
      answered (``processing`` or ``valid``); for an order that is not
      ready it MUST fail with a :exc:`~txacme.errors.ServerError` of code
      ``orderNotReady``.
    * ``fetch_certificate`` MUST return the ``valid`` order with its
      ``fullchain_pem`` (leaf first, each certificate issued by the next)
      and ``alternative_fullchains_pem``, and MUST fail with
      :exc:`~txacme.errors.MalformedResponse` if the leaf is not for the
      CSR's key.

    :ivar key: The account key (key authorizations are computed with it).
    :ivar policy: How to poll (a :class:`~txacme.client.PollingPolicy`).
    """

    @property
    def key(self) -> JWK: ...

    @property
    def policy(self) -> PollingPolicy: ...

    def register(
        self,
        new_reg: messages.NewRegistration | None = ...,
        eab: Any = ...,
    ) -> Deferred[messages.RegistrationResource]:
        """Find or create the account (``newAccount``)."""

    def new_order(
        self,
        identifiers: Iterable[messages.Identifier | str],
        profile: str | None = ...,
        replaces: str | x509.Certificate | None = ...,
    ) -> Deferred[messages.OrderResource]:
        """Create an order, its authorizations fetched."""

    def answer_challenge(
        self,
        challenge_body: messages.ChallengeBody,
        response: acme_challenges.ChallengeResponse | None,
    ) -> Deferred[messages.ChallengeResource]:
        """Tell the CA to validate a challenge."""

    def poll(
        self, authzr: messages.AuthorizationResource
    ) -> Deferred[tuple[messages.AuthorizationResource, float]]:
        """An authorization, and the seconds to wait before the next poll."""

    def refresh_authorization(
        self, authzr: messages.AuthorizationResource
    ) -> Deferred[tuple[messages.AuthorizationResource, float | None]]:
        """An authorization as the CA has it now, and its ``Retry-After``."""

    def refresh_order(
        self, orderr: messages.OrderResource
    ) -> Deferred[tuple[messages.OrderResource, float | None]]:
        """An order as the CA has it now, and its ``Retry-After``."""

    def send_csr(
        self, orderr: messages.OrderResource, csr: x509.CertificateSigningRequest
    ) -> Deferred[tuple[messages.OrderResource, float | None]]:
        """Send the order's CSR (``finalize``), once."""

    def fetch_certificate(
        self, orderr: messages.OrderResource, csr: x509.CertificateSigningRequest
    ) -> Deferred[messages.OrderResource]:
        """Download a valid order's certificate chains."""

    def renewal_info(
        self, cert: x509.Certificate | bytes | messages.CertificateResource
    ) -> Deferred[RenewalWindow]:
        """The CA's suggested renewal window (RFC 9773)."""

    def close(self) -> Deferred[None]:
        """Close the client's connections."""
