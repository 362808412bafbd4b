"""
The state of :class:`txacme.testing.MemoryAcmeServer`, as tests see it.

The server keeps these records and exposes them for introspection (they are
re-exported by :mod:`txacme.testing`).  They are the live records: a test
may change a field to force a state (for example set an authorization's
``status`` to ``"invalid"``), but the server does not check such changes.
"""

from __future__ import annotations

from datetime import datetime

from acme import messages
from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy.b64 import b64encode
from josepy.jwk import JWK

__all__ = [
    "InjectedFault",
    "LoggedRequest",
    "MemoryAccount",
    "MemoryAuthorization",
    "MemoryCertificate",
    "MemoryChallenge",
    "MemoryOrder",
]


@frozen
class LoggedRequest:
    """
    One request the server answered.

    :ivar method: The HTTP method, such as ``"POST"``.
    :ivar endpoint: The endpoint kind (see
        :meth:`~txacme.testing.MemoryAcmeServer.fail_next`), or
        ``"unknown"`` for a URL the server does not serve.
    :ivar url: The request URL.
    :ivar status: The HTTP status code of the answer.
    """

    method: str
    endpoint: str
    url: str
    status: int


@frozen
class InjectedFault:
    """
    One fault the server injected (see
    :meth:`~txacme.testing.MemoryAcmeServer.inject_next`).

    :ivar method: The HTTP method of the request.
    :ivar endpoint: Its endpoint kind.
    :ivar url: Its URL.
    :ivar kind: The fault (a :data:`~txacme.testing.FaultKind`).
    """

    method: str
    endpoint: str
    url: str
    kind: str


@define(eq=False)
class MemoryAccount:
    """
    An ACME account (RFC 8555 §7.1.2).

    :ivar url: The account URL, which is also the ``kid`` of its requests.
    :ivar key: The account's public key.
    :ivar contact: The contact URLs.
    :ivar orders_url: The URL of the account's orders list.
    :ivar status: ``"valid"`` or ``"deactivated"``.
    :ivar terms_of_service_agreed: Whether the client agreed to the terms.
    :ivar external_account_key_id: The key id of the external account
        binding it was created with, if any.
    """

    url: str
    key: JWK
    contact: tuple[str, ...]
    orders_url: str
    status: str = "valid"
    terms_of_service_agreed: bool = False
    external_account_key_id: str | None = None


@define(eq=False)
class MemoryChallenge:
    """
    A challenge of an authorization (RFC 8555 §7.1.5, §8).

    :ivar url: The challenge URL.
    :ivar type: ``"http-01"``, ``"dns-01"`` or ``"tls-alpn-01"``.
    :ivar token: The token, base64url as served.
    :ivar authorization_url: The URL of the authorization it belongs to.
    :ivar status: ``"pending"``, ``"processing"``, ``"valid"`` or
        ``"invalid"``.
    :ivar validated: When it was validated, if it was.
    :ivar error: Why validation failed, if it did.
    :ivar key_authorization: The key authorization the server expects
        (RFC 8555 §8.1), known once validation was requested.
    """

    url: str
    type: str
    token: str
    authorization_url: str
    status: str = "pending"
    validated: datetime | None = None
    error: messages.Error | None = None
    key_authorization: str | None = None
    # Validation in flight: whether the validator has answered, its answer
    # (None for success, else the error), and the clock time from which the
    # answer may be applied.
    _outcome: messages.Error | None = field(default=None, repr=False, init=False)
    _outcome_known: bool = field(default=False, repr=False, init=False)
    _ready_at: float = field(default=0.0, repr=False, init=False)


@define(eq=False)
class MemoryAuthorization:
    """
    An authorization (RFC 8555 §7.1.4).

    :ivar url: The authorization URL.
    :ivar identifier: The identifier; for a wildcard order, the base domain.
    :ivar wildcard: Whether it was created for a ``*.`` name.
    :ivar account_url: The URL of the account it belongs to.
    :ivar expires: When it expires.
    :ivar challenges: Its challenges.
    :ivar status: ``"pending"``, ``"valid"``, ``"invalid"``,
        ``"deactivated"`` or ``"expired"``.
    """

    url: str
    identifier: messages.Identifier
    wildcard: bool
    account_url: str
    expires: datetime
    challenges: list[MemoryChallenge]
    status: str = "pending"


@define(eq=False)
class MemoryCertificate:
    """
    A certificate the server issued.

    :ivar url: The certificate URL (RFC 8555 §7.4.2).
    :ivar certificate: The leaf certificate.
    :ivar chain: The issuer certificates served with it, the leaf's issuer
        first, without the root.
    :ivar alternate_chains: The issuer certificates of each alternate
        chain, in the same form.
    :ivar alternate_urls: The URL of each alternate chain.
    :ivar account_url: The URL of the account that ordered it.
    :ivar order_url: The URL of the order it was issued for.
    :ivar renewal_window: The ARI suggested window (RFC 9773), start and end.
    :ivar renewal_explanation_url: The ARI ``explanationURL``, if any.
    :ivar revoked: Whether it was revoked.
    :ivar revocation_reason: The RFC 5280 reason code it was revoked with.
    :ivar revoked_at: When it was revoked.
    :ivar replaced_by: The URL of the finalized order that replaced it
        (RFC 9773 ``replaces``), if any.
    """

    url: str
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    alternate_chains: list[list[x509.Certificate]]
    alternate_urls: list[str]
    account_url: str
    order_url: str
    renewal_window: tuple[datetime, datetime]
    renewal_explanation_url: str | None = None
    revoked: bool = False
    revocation_reason: int | None = None
    revoked_at: datetime | None = None
    replaced_by: str | None = None

    @property
    def serial(self) -> int:
        """
        The leaf's serial number.
        """
        return self.certificate.serial_number

    @property
    def renewal_info_id(self) -> str:
        """
        The RFC 9773 certificate identifier: base64url of the authority key
        identifier, a dot, base64url of the serial number's DER content.
        """
        return renewal_info_id(self.certificate)

    def pem_chain(self, index: int = 0) -> str:
        """
        The ``application/pem-certificate-chain`` body served for this
        certificate: the leaf, then its issuers (not the root).

        :param index: 0 for the primary chain, 1 and up for the alternates.
        :returns: The PEM text.
        :raises IndexError: For a chain that does not exist.
        """
        issuers = self.chain if index == 0 else self.alternate_chains[index - 1]
        return "".join(
            certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
            for certificate in (self.certificate, *issuers)
        )


def renewal_info_id(certificate: x509.Certificate) -> str:
    """
    The RFC 9773 §4.1 identifier of a certificate.

    :param certificate: A certificate with an authority key identifier.
    :returns: ``<b64url keyIdentifier>.<b64url serial DER content>``.
    :raises ValueError: If the certificate has no key identifier in its
        authority key identifier extension.
    """
    try:
        aki = certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        )
    except x509.ExtensionNotFound:
        raise ValueError("certificate has no authority key identifier") from None
    key_identifier = aki.value.key_identifier
    if key_identifier is None:
        raise ValueError("certificate's authority key identifier has no key identifier")
    serial = certificate.serial_number
    serial_bytes = serial.to_bytes(serial.bit_length() // 8 + 1, "big")
    return f"{b64encode(key_identifier).decode()}.{b64encode(serial_bytes).decode()}"


@define(eq=False)
class MemoryOrder:
    """
    An order (RFC 8555 §7.1.3).

    :ivar url: The order URL.
    :ivar account_url: The URL of the account that placed it.
    :ivar identifiers: The identifiers, as requested (DNS names lowercased).
    :ivar authorizations: Its authorizations, one per identifier.
    :ivar expires: When it expires.
    :ivar finalize_url: Its finalize URL.
    :ivar status: ``"pending"``, ``"ready"``, ``"processing"``, ``"valid"``
        or ``"invalid"``.
    :ivar profile: The certificate profile asked for, if any.
    :ivar replaces: The RFC 9773 identifier of the certificate it replaces,
        if any.
    :ivar csr: The CSR it was finalized with.
    :ivar certificate: The issued certificate, once ``valid``.
    :ivar error: Why it became invalid, if known.
    """

    url: str
    account_url: str
    identifiers: list[messages.Identifier]
    authorizations: list[MemoryAuthorization]
    expires: datetime
    finalize_url: str
    status: str = "pending"
    profile: str | None = None
    replaces: str | None = None
    csr: x509.CertificateSigningRequest | None = None
    certificate: MemoryCertificate | None = None
    error: messages.Error | None = None
    # When finalized: the clock time at which the certificate is issued.
    _issue_at: float = field(default=0.0, repr=False, init=False)
