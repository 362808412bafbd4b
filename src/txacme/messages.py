"""
ACME messages that :mod:`acme.messages` lacks or shapes differently.

Everything else (``NewRegistration``, ``RegistrationResource``,
``AuthorizationResource``, ``Identifier``, ``Order``, ...) comes from
:mod:`acme.messages` unchanged.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from random import Random
from typing import Any

from acme import challenges, messages
from attrs import frozen
from cryptography import x509
from josepy.b64 import b64decode, b64encode
from josepy.errors import DeserializationError
from josepy.json_util import JSONObjectWithFields, field
from josepy.jwk import JWK

from txacme.util import decode_csr, encode_csr

__all__ = ["CertificateChainResource", "CertificateRequest", "RenewalWindow"]


def _decode_csr_field(value: str) -> x509.CertificateSigningRequest:
    try:
        return decode_csr(value)
    except ValueError as error:
        raise DeserializationError(f"Bad CSR: {error}") from error


class CertificateRequest(JSONObjectWithFields):
    """
    A certificate request: the payload of RFC 8555's ``finalize`` (§7.4),
    ``{"csr": <base64url DER>}``, as passed to
    :meth:`txacme.client.Client.request_issuance`.

    :ivar csr: The :class:`cryptography.x509.CertificateSigningRequest`,
        for example from :func:`txacme.util.csr_for_names`.
    """

    csr: x509.CertificateSigningRequest = field(
        "csr", decoder=_decode_csr_field, encoder=encode_csr
    )


def _encode_der_chain(chain: tuple[bytes, ...]) -> list[str]:
    return [b64encode(der).decode("ascii") for der in chain]


def _decode_der_chain(chain: list[str]) -> tuple[bytes, ...]:
    return tuple(b64decode(der) for der in chain)


class CertificateChainResource(messages.CertificateResource):
    """
    The certificate resource :meth:`txacme.client.Client.request_issuance`
    returns: an :class:`acme.messages.CertificateResource` whose ``body`` is
    the leaf certificate's DER bytes and ``uri`` the RFC 8555 certificate URL,
    carrying the issuer chain the server sent with it, so that
    :meth:`~txacme.client.Client.fetch_chain` needs no further request.

    :ivar chain: The issuer certificates as DER bytes, leaf's issuer first,
        as the server sent them.
    :ivar fullchain_pem: The certificate chain exactly as downloaded.
    :ivar alternative_fullchains_pem: Alternate chains (``rel="alternate"``
        links, RFC 8555 §7.4.2), if they were fetched.
    """

    chain: tuple[bytes, ...] = field(
        "chain",
        omitempty=True,
        default=(),
        encoder=_encode_der_chain,
        decoder=_decode_der_chain,
    )
    fullchain_pem: str = field("fullchain_pem", omitempty=True, default="")
    alternative_fullchains_pem: tuple[str, ...] = field(
        "alternative_fullchains_pem", omitempty=True, default=()
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)


@frozen
class RenewalWindow:
    """
    ACME Renewal Information (RFC 9773) for one certificate, as
    :meth:`txacme.client.Client.renewal_info` returns it.

    :ivar start: The start of the suggested renewal window (aware UTC).
    :ivar end: Its end.
    :ivar retry_after: Seconds to wait before asking again (the server's
        ``Retry-After``, else six hours).
    :ivar explanation_url: A page explaining the window (for example after
        a mass revocation), or ``None``.
    """

    start: datetime
    end: datetime
    retry_after: float
    explanation_url: str | None = None

    def random_time(self, random: Random) -> datetime:
        """
        A moment chosen uniformly at random inside the window, as RFC 9773
        §4.2 asks clients to renew at, so that renewals spread out.

        :param random: The source of randomness.
        """
        span = (self.end - self.start).total_seconds()
        return self.start + timedelta(seconds=random.uniform(0, max(0.0, span)))


# -- tls-alpn-01 (RFC 8737), which acme 5 dropped ------------------------------


@challenges.ChallengeResponse.register
class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """
    The response to a tls-alpn-01 challenge (RFC 8737 §3).

    As for every challenge of RFC 8555, what is POSTed to the challenge URL
    is the empty object ``{}``: the key authorization stays with the client,
    which proves it through the certificate it serves.
    """

    typ = "tls-alpn-01"

    @property
    def key_authorization_digest(self) -> bytes:
        """
        SHA-256 of the key authorization: the value (inside a DER OCTET
        STRING) of the challenge certificate's id-pe-acmeIdentifier extension.
        """
        return hashlib.sha256(self.key_authorization.encode("utf-8")).digest()


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    """
    A tls-alpn-01 challenge (RFC 8737 §3).

    acme 5 dropped its own class for this type; importing
    :mod:`txacme.messages` (as every txacme module does) registers this
    one, so that authorizations parse tls-alpn-01 challenges as
    :class:`TLSALPN01` instead of
    :class:`acme.challenges.UnrecognizedChallenge`.
    """

    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: JWK, **unused_kwargs: Any) -> bytes:
        """
        SHA-256 of the key authorization for ``account_key``: what the
        challenge certificate's id-pe-acmeIdentifier extension holds.
        """
        return hashlib.sha256(
            self.key_authorization(account_key).encode("utf-8")
        ).digest()
