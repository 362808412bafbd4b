"""
Utilities: private keys, certificate signing requests and small helpers.

The names of txacme 0.9's ``txacme.util`` that still make sense are here
with the same signatures.  Key generation is CPU work (an RSA-4096 key can
take a second): code running on the reactor thread should use
:func:`generate_private_key_in_thread`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import josepy.b64
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy.errors import DeserializationError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.url import URL

__all__ = [
    "KEY_TYPES",
    "CSRDecodingError",
    "PrivateKey",
    "check_directory_url_type",
    "clock_now",
    "const",
    "csr_for_names",
    "decode_csr",
    "encode_csr",
    "general_name",
    "generate_private_key",
    "generate_private_key_in_thread",
    "identifiers_from_csr",
    "tap",
]

_T = TypeVar("_T")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""The private key types txacme generates and accepts for certificates."""

_RSA_SIZES = {"rsa": 2048, "rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}
_EC_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "ec": ec.SECP256R1,
    "p256": ec.SECP256R1,
    "secp256r1": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "secp384r1": ec.SECP384R1,
}
KEY_TYPES: frozenset[str] = frozenset(_RSA_SIZES) | frozenset(_EC_CURVES)
"""The names :func:`generate_private_key` accepts."""


def generate_private_key(key_type: str) -> PrivateKey:
    """
    Generate a private key.

    This blocks for as long as the key takes to generate (tens to hundreds of
    milliseconds for RSA): from the reactor thread, prefer
    :func:`generate_private_key_in_thread`.

    :param key_type: ``"rsa"`` (2048 bits, as in txacme 0.9), ``"rsa2048"``,
        ``"rsa3072"``, ``"rsa4096"``, ``"ec"`` or ``"p256"`` (ECDSA P-256), or
        ``"p384"`` (ECDSA P-384).
    :returns: The new private key.
    :raises ValueError: For any other key type.
    """
    name = key_type.lower()
    if name in _RSA_SIZES:
        return rsa.generate_private_key(
            public_exponent=65537, key_size=_RSA_SIZES[name]
        )
    if name in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[name]())
    raise ValueError(
        f"Unknown key type {key_type!r}; expected one of {', '.join(sorted(KEY_TYPES))}"
    )


def generate_private_key_in_thread(
    reactor: IReactorThreads, key_type: str
) -> Deferred[PrivateKey]:
    """
    Generate a private key in the reactor's thread pool, so that the reactor
    thread is not blocked meanwhile.

    :param reactor: The reactor whose thread pool to use.
    :param key_type: As for :func:`generate_private_key`.
    :returns: A Deferred firing with the key.
    :raises ValueError: (through the Deferred) for an unknown key type.
    """
    return deferToThreadPool(
        reactor, reactor.getThreadPool(), generate_private_key, key_type
    )


def general_name(name: str) -> x509.GeneralName:
    """
    The subjectAltName entry for a name: an ``iPAddress`` for an IPv4 or
    IPv6 address (RFC 8738), a ``dNSName`` for anything else (wildcards
    included).

    :param name: The name or address.
    """
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return x509.DNSName(name)
    return x509.IPAddress(address)


def csr_for_names(
    names: Sequence[str], key: PrivateKey
) -> x509.CertificateSigningRequest:
    """
    Generate a certificate signing request for the given names.

    Every name goes into the subjectAltName extension (IP addresses, RFC
    8738, as IP address entries; wildcards such as ``*.example.com`` as DNS
    names).  The first name is also the subject's common name if it fits (64
    characters at most); a longer one leaves the subject empty, which CAs
    accept since the names are in the SAN.

    :param names: The names, the first one being the "main" name.
    :param key: The private key of the certificate to be.
    :returns: The signed CSR.
    :raises ValueError: If ``names`` is empty.
    """
    if len(names) == 0:
        raise ValueError("Must have at least one name")
    subject: list[x509.NameAttribute[str]] = []
    if len(names[0]) <= 64:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(
            x509.SubjectAlternativeName([general_name(name) for name in names]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


def identifiers_from_csr(csr: x509.CertificateSigningRequest) -> list[tuple[str, str]]:
    """
    The identifiers a CSR asks for, as ``(type, value)`` pairs in the order
    the CSR names them: its subjectAltName DNS names (type ``"dns"``) and IP
    addresses (type ``"ip"``), and its common name if the SAN lacks it.

    :param csr: The certificate signing request.
    :returns: The identifiers, without duplicates.
    """
    found: list[tuple[str, str]] = []

    def add(identifier: tuple[str, str]) -> None:
        if identifier not in found:
            found.append(identifier)

    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    for general_name in san:
        if isinstance(general_name, x509.DNSName):
            add(("dns", general_name.value.lower()))
        elif isinstance(general_name, x509.IPAddress):
            add(("ip", str(general_name.value)))
    for attribute in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = (
            attribute.value
            if isinstance(attribute.value, str)
            else attribute.value.decode()
        )
        try:
            add(("ip", str(ipaddress.ip_address(value))))
        except ValueError:
            add(("dns", value.lower()))
    return found


def encode_csr(csr: x509.CertificateSigningRequest) -> str:
    """
    Encode a CSR as unpadded base64url DER, the form of RFC 8555's
    ``finalize`` request (§7.4).
    """
    return josepy.b64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode(
        "ascii"
    )


class CSRDecodingError(DeserializationError, ValueError):
    """
    :func:`decode_csr` was given something that is not a base64url DER
    CSR.  It is josepy's :class:`~josepy.errors.DeserializationError`, as
    txacme 0.9 raised, and a :class:`ValueError` too.
    """


def decode_csr(b64der: str | bytes) -> x509.CertificateSigningRequest:
    """
    Decode a CSR from unpadded base64url DER.

    :raises CSRDecodingError: If it is not base64url or not a DER CSR: a
        :class:`josepy.errors.DeserializationError` (as in txacme 0.9) and
        a :class:`ValueError`.
    """
    try:
        der = josepy.b64.b64decode(b64der)
    except (TypeError, ValueError) as error:
        raise CSRDecodingError(f"Not base64url: {error}") from error
    try:
        return x509.load_der_x509_csr(der)
    except ValueError as error:
        raise CSRDecodingError(f"Not a DER certificate signing request: {error}") from (
            error
        )


def clock_now(clock: IReactorTime) -> datetime:
    """
    The current time of ``clock``, as an aware UTC datetime.
    """
    return datetime.fromtimestamp(clock.seconds(), UTC)


def check_directory_url_type(url: object) -> None:
    """
    Check that ``url`` is a :class:`twisted.python.url.URL`, as txacme 0.9
    required of directory URLs.

    :raises TypeError: If it is not.
    """
    if not isinstance(url, URL):
        raise TypeError(
            "ACME directory URL should be a twisted.python.url.URL, "
            f"got {url!r} instead"
        )


def const(value: _T) -> Callable[..., _T]:
    """
    A function that ignores its arguments and returns ``value``.

    Kept from txacme 0.9, whose callback chains used it; txacme itself no
    longer does (it is written with ``async def``).
    """

    def constant(*args: object, **kwargs: object) -> _T:
        return value

    return constant


def tap(function: Callable[..., object]) -> Callable[..., _T]:
    """
    Wrap ``function`` as a callback that calls it with the result and passes
    the result on unchanged.

    Kept from txacme 0.9, whose callback chains used it; txacme itself no
    longer does (it is written with ``async def``).
    """

    def tapped(result: _T, *args: object, **kwargs: object) -> _T:
        function(result, *args, **kwargs)
        return result

    return tapped
