"""
What the protocol modules share: the :class:`Session` every exchange goes
through, and parsing helpers that turn every malformed answer into
:exc:`~txacme.errors.MalformedResponse`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urljoin

from acme import messages
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from josepy.errors import DeserializationError
from josepy.interfaces import JSONDeSerializable
from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IReactorTime

from txacme._answers import links as response_links
from txacme._headers import first_header, parse_retry_after
from txacme._names import canonical_name
from txacme._types import HTTPResponse as Response
from txacme.errors import MalformedResponse, NotOffered
from txacme.jws import JSON_CONTENT_TYPE, Answer, JWSClient, Signer
from txacme.util import identifiers_from_csr

__all__ = [
    "Session",
    "as_csr",
    "certificate",
    "csr_identifiers",
    "der",
    "directory_url",
    "gather",
    "identifier_key",
    "links",
    "location",
    "parse",
    "required_url",
    "to_identifier",
]

_R = TypeVar("_R", bound=JSONDeSerializable)
_T = TypeVar("_T")


@frozen
class Session:
    """
    What every exchange with one CA needs besides the account: the
    transport, the CA's directory, and the clock (request timeouts, retry
    delays, ``Retry-After`` dates).

    :ivar transport: The :class:`~txacme.jws.JWSClient`.
    :ivar directory: The CA's :class:`acme.messages.Directory`.
    :ivar clock: The clock.
    """

    transport: JWSClient
    directory: messages.Directory
    clock: IReactorTime

    @property
    def nonce_url(self) -> str | None:
        """The directory's ``newNonce`` URL."""
        return directory_url(self.directory, "newNonce")

    async def post(
        self,
        url: str,
        payload: bytes | Mapping[str, Any] | JSONDeSerializable | None,
        signer: Signer,
        *,
        content_type: str | None = JSON_CONTENT_TYPE,
        accept: str | None = None,
    ) -> Answer:
        """A signed request (``None`` as payload: POST-as-GET, §6.3)."""
        return await self.transport.post_jws(
            url,
            payload,
            signer,
            nonce_url=self.nonce_url or "",
            clock=self.clock,
            content_type=content_type,
            accept=accept,
        )

    async def get(
        self, url: str, content_type: str | None = JSON_CONTENT_TYPE
    ) -> Answer:
        """A plain GET (the directory, renewal information)."""
        return await self.transport.fetch(
            url, clock=self.clock, content_type=content_type
        )

    def retry_after(self, answer: Answer) -> float | None:
        """The answer's ``Retry-After``, in seconds from now, if any."""
        return parse_retry_after(
            first_header(answer.response, b"retry-after"), self.clock.seconds
        )


def parse(cls: type[_R], jobj: Any, response: Response | None) -> _R:
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


def location(response: Response, request_url: str) -> str:
    """
    The ``Location`` header, resolved against the request URL.

    :raises MalformedResponse: If there is none.
    """
    values = response.headers.getRawHeaders(b"location")
    if not values:
        raise MalformedResponse("The response has no Location header", response)
    value = values[0]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return urljoin(request_url, text.strip())


def links(answer: Answer, base: str) -> dict[str, list[str]]:
    """The ``Link`` relations of an answer (RFC 8288), resolved."""
    return response_links(answer.response, base)


def directory_url(directory: messages.Directory, name: str) -> str | None:
    """A directory entry's URL, or ``None`` if the directory has none."""
    try:
        value = directory[name]
    except KeyError:
        return None
    return value if isinstance(value, str) else None


def required_url(directory: messages.Directory, name: str) -> str:
    """
    :raises NotOffered: If the directory has no ``name`` URL.
    """
    url = directory_url(directory, name)
    if url is None:
        raise NotOffered(name, f"the directory has no {name} URL")
    return url


def normalize(typ: str, value: str) -> str:
    """An identifier's value in the form CAs compare (RFC 8738 for IPs)."""
    return canonical_name(value)


def identifier_key(
    identifiers: Iterable[messages.Identifier],
) -> frozenset[tuple[str, str]]:
    """A set of identifiers, as a key that ignores order and case."""
    return frozenset(
        (identifier.typ.name, normalize(identifier.typ.name, identifier.value))
        for identifier in identifiers
    )


def to_identifier(value: messages.Identifier | str) -> messages.Identifier:
    """
    An identifier from a string (a DNS name, a wildcard, an IPv4 or IPv6
    address) or an identifier, IP addresses in their canonical form.
    """
    if isinstance(value, messages.Identifier):
        if value.typ == messages.IDENTIFIER_IP:
            # CAs compare addresses in their canonical text form (RFC 8738).
            canonical: messages.Identifier = value.update(
                value=normalize(value.typ.name, value.value)
            )
            return canonical
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=value)
    return messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(address))


def csr_identifiers(csr: x509.CertificateSigningRequest) -> list[messages.Identifier]:
    """The identifiers a CSR names (its subjectAltName, else its CN)."""
    return [
        messages.Identifier(typ=messages.IdentifierType.from_json(typ), value=value)
        for typ, value in identifiers_from_csr(csr)
    ]


def as_csr(csr: Any) -> x509.CertificateSigningRequest:
    """
    A CSR from what callers pass: a ``cryptography`` CSR, PEM bytes, or a
    certificate request message (anything with a ``csr``).

    :raises TypeError: For anything else.
    """
    if isinstance(csr, x509.CertificateSigningRequest):
        return csr
    if isinstance(csr, bytes):
        return x509.load_pem_x509_csr(csr)
    inner = getattr(csr, "csr", None)
    if isinstance(inner, x509.CertificateSigningRequest):
        return inner
    raise TypeError(f"Not a certificate signing request: {csr!r}")


def certificate(
    cert: x509.Certificate | bytes | messages.CertificateResource,
) -> x509.Certificate:
    """
    A certificate from what callers pass: a ``cryptography`` certificate,
    DER or PEM bytes, or a certificate resource with a DER body.
    """
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, messages.CertificateResource):
        cert = cert.body
    if isinstance(cert, bytes):
        if cert.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(cert)
        return x509.load_der_x509_certificate(cert)
    raise TypeError(f"Not a certificate: {cert!r}")


def der(cert: x509.Certificate) -> bytes:
    """A certificate's DER encoding."""
    return cert.public_bytes(serialization.Encoding.DER)


def json_bytes(payload: Any) -> bytes:
    """A JSON payload's bytes."""
    return json.dumps(payload).encode("utf-8")


async def gather(deferreds: list[Deferred[_T]]) -> list[_T]:
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
