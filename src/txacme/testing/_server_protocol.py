"""
Request checking for :class:`txacme.testing.MemoryAcmeServer`: problem
documents, strict base64url, flattened JWS parsing and verification, key,
identifier and CSR rules.

Private.  Everything here is a pure function of its arguments; the server
module keeps the state.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from acme import messages
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy.b64 import b64decode
from josepy.errors import DeserializationError
from josepy.jwa import ES256, ES384, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

__all__ = [
    "SIGNATURE_ALGORITHMS",
    "ParsedJWS",
    "ProblemError",
    "certificate_identifiers",
    "check_account_key",
    "csr_identifiers",
    "decode_b64url",
    "error_type_urn",
    "identifier_pair",
    "parse_identifier",
    "parse_jws",
    "public_jwk",
    "thumbprint",
]

SIGNATURE_ALGORITHMS: dict[str, JWASignature] = {
    "RS256": RS256,
    "ES256": ES256,
    "ES384": ES384,
}
"""The JWS algorithms accepted on requests (RFC 8555 §6.2)."""

_EC_CURVES_FOR_ALGORITHM = {"ES256": "secp256r1", "ES384": "secp384r1"}

_DEFAULT_STATUSES = {
    "unauthorized": 403,
    "orderNotReady": 403,
    "incorrectResponse": 403,
    "caa": 403,
    "userActionRequired": 403,
    "rateLimited": 429,
    "serverInternal": 500,
    "alreadyReplaced": 409,
}

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MAX_IDENTIFIERS = 100


def error_type_urn(error_type: str) -> str:
    """
    The full problem type for an ACME error name.

    :param error_type: A short name such as ``"badNonce"``, or a full type
        URI, returned unchanged.
    :returns: For example ``"urn:ietf:params:acme:error:badNonce"``.
    """
    if ":" in error_type:
        return error_type
    return messages.ERROR_PREFIX + error_type


def default_status(error_type: str) -> int:
    """
    The HTTP status a problem of this type is served with unless the caller
    says otherwise.

    :param error_type: A short ACME error name or full type URI.
    :returns: 403, 409, 429 or 500 for the types that call for them, else 400.
    """
    short = error_type.rsplit(":", 1)[-1]
    return _DEFAULT_STATUSES.get(short, 400)


class ProblemError(Exception):
    """
    Raised by request handlers to answer with an RFC 7807 problem document
    (RFC 8555 §6.7).
    """

    def __init__(
        self,
        error_type: str,
        detail: str,
        status: int | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """
        :param error_type: Short ACME error name or full type URI.
        :param detail: Human-readable explanation.
        :param status: HTTP status; by default from the error type.
        :param headers: Extra response headers (e.g. ``Location``).
        :param extra: Extra members of the problem document.
        """
        super().__init__(f"{error_type}: {detail}")
        self.error_type = error_type_urn(error_type)
        self.detail = detail
        self.status = default_status(error_type) if status is None else status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def document(self) -> dict[str, Any]:
        """
        :returns: The problem document as a JSON object.
        """
        return {
            "type": self.error_type,
            "detail": self.detail,
            "status": self.status,
            **self.extra,
        }


def decode_b64url(value: object, what: str) -> bytes:
    """
    Decode unpadded base64url (RFC 7515 §2), strictly.

    :param value: The encoded value, which must be a string.
    :param what: Names the value in the error.
    :returns: The decoded bytes.
    :raises ProblemError: ``malformed``, for anything but unpadded base64url.
    """
    if (
        not isinstance(value, str)
        or _B64URL.fullmatch(value) is None
        or len(value) % 4 == 1
    ):
        raise ProblemError("malformed", f"{what} is not unpadded base64url")
    return b64decode(value)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise ProblemError("malformed", f"{what} is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise ProblemError("malformed", f"{what} is not a JSON object")
    return value


def thumbprint(key: JWK) -> bytes:
    """
    :returns: The RFC 7638 SHA-256 thumbprint of ``key``.
    """
    return key.thumbprint()


def load_jwk(value: object) -> JWK:
    """
    Load a public JWK from a JWS header.

    :param value: The ``jwk`` header value.
    :returns: The key.
    :raises ProblemError: ``malformed`` if it is not a public RSA or EC key.
    """
    if not isinstance(value, dict):
        raise ProblemError("malformed", "jwk is not a JSON object")
    if _PRIVATE_JWK_MEMBERS & set(value):
        raise ProblemError("malformed", "jwk contains private key material")
    if value.get("kty") not in ("RSA", "EC"):
        raise ProblemError("badPublicKey", "jwk must be an RSA or EC key")
    try:
        key = JWK.from_json(value)
    except (DeserializationError, KeyError, ValueError, TypeError) as error:
        raise ProblemError("malformed", f"jwk is not a valid key: {error}") from error
    assert isinstance(key, JWK)
    return key


def public_jwk(public_key: object) -> JWK | None:
    """
    :param public_key: The public key of a CSR or certificate.
    :returns: It as a JWK, or ``None`` if it is neither RSA nor EC.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return JWKRSA(key=public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return JWKEC(key=public_key)
    return None


def check_account_key(key: JWK) -> None:
    """
    Check that a key is acceptable as an ACME account or revocation key.

    :raises ProblemError: ``badPublicKey`` for RSA keys under 2048 bits or
        over 4096, and for EC curves other than P-256 and P-384.
    """
    # josepy wraps keys in a proxy: look at the JWK type, then the key.
    if isinstance(key, JWKRSA):
        if not 2048 <= key.key.key_size <= 4096:
            raise ProblemError("badPublicKey", "RSA keys must have 2048 to 4096 bits")
    elif isinstance(key, JWKEC):
        if key.key.curve.name not in ("secp256r1", "secp384r1"):
            raise ProblemError("badPublicKey", "EC keys must use P-256 or P-384")
    else:
        raise ProblemError("badPublicKey", "only RSA and EC keys are accepted")


@frozen
class ParsedJWS:
    """
    A flattened JWS whose structure has been checked, not yet its signature.

    :ivar protected: The decoded protected header.
    :ivar protected_b64: The protected header as received.
    :ivar payload_b64: The payload as received (``""`` for POST-as-GET).
    :ivar payload: The decoded payload.
    :ivar signature: The decoded signature.
    """

    protected: dict[str, Any]
    protected_b64: str
    payload_b64: str
    payload: bytes
    signature: bytes

    @property
    def signing_input(self) -> bytes:
        """
        The bytes the signature covers (RFC 7515 §5.2).
        """
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    def payload_object(self, what: str = "payload") -> dict[str, Any]:
        """
        :returns: The payload as a JSON object.
        :raises ProblemError: ``malformed`` if it is not one (this includes
            the empty POST-as-GET payload).
        """
        return _json_object(self.payload, what)

    def verify(self, key: JWK, algorithm: JWASignature) -> bool:
        """
        :returns: Whether the signature is valid for ``key``.
        """
        return algorithm.verify(key.key, self.signing_input, self.signature)


def parse_jws(body: bytes | dict[str, Any], what: str = "JWS") -> ParsedJWS:
    """
    Parse a flattened JWS JSON serialization (RFC 7515 §7.2.2), as RFC 8555
    §6.2 requires: one signature, everything in the protected header.

    :param body: The request body, or an already decoded JSON object (for
        the inner JWS of a key change or an external account binding).
    :param what: Names the JWS in errors.
    :returns: The parsed JWS.
    :raises ProblemError: ``malformed`` for any other shape.
    """
    envelope = _json_object(body, what) if isinstance(body, bytes) else body
    if "signatures" in envelope:
        raise ProblemError(
            "malformed", f"{what} must use the flattened JSON serialization"
        )
    if "header" in envelope:
        raise ProblemError("malformed", f"{what} must not have an unprotected header")
    for member in ("protected", "payload", "signature"):
        if not isinstance(envelope.get(member), str):
            raise ProblemError("malformed", f"{what} lacks a {member!r} string")
    protected_b64: str = envelope["protected"]
    payload_b64: str = envelope["payload"]
    protected = _json_object(
        decode_b64url(protected_b64, f"{what} protected header"),
        f"{what} protected header",
    )
    return ParsedJWS(
        protected=protected,
        protected_b64=protected_b64,
        payload_b64=payload_b64,
        payload=decode_b64url(payload_b64, f"{what} payload"),
        signature=decode_b64url(envelope["signature"], f"{what} signature"),
    )


def signature_algorithm(jws: ParsedJWS, key: JWK) -> JWASignature:
    """
    The algorithm a request JWS names, checked against the signing key.

    :raises ProblemError: ``badSignatureAlgorithm`` for an algorithm other
        than RS256, ES256 and ES384, or one that does not fit the key (with
        the ``algorithms`` member RFC 8555 §6.2 asks for).
    """
    name = jws.protected.get("alg")
    if not isinstance(name, str):
        name = repr(name)
    algorithm = SIGNATURE_ALGORITHMS.get(name)
    problem = ProblemError(
        "badSignatureAlgorithm",
        f"unsupported JWS algorithm {name} for this key",
        extra={"algorithms": sorted(SIGNATURE_ALGORITHMS)},
    )
    if algorithm is None:
        raise problem
    if isinstance(key, JWKRSA):
        if algorithm is not RS256:
            raise problem
    elif isinstance(key, JWKEC):
        curve = getattr(key.key, "curve", None)
        if curve is None or _EC_CURVES_FOR_ALGORITHM.get(name) != curve.name:
            raise problem
    else:
        raise problem
    return algorithm


def _is_dns_name(value: str) -> bool:
    if len(value) > 253 or value.endswith("."):
        return False
    labels = value.split(".")
    if len(labels) < 2:
        return False
    if all(label.isdigit() for label in labels):
        return False
    return all(_DNS_LABEL.fullmatch(label) for label in labels)


def parse_identifier(
    value: object, *, allow_wildcard: bool = True
) -> messages.Identifier:
    """
    Check one identifier of a newOrder or newAuthz request.

    DNS names are lowercased; IP addresses (RFC 8738) must be in their
    canonical text form.

    :param value: The JSON value.
    :param allow_wildcard: Whether ``*.`` names are allowed.
    :returns: The identifier.
    :raises ProblemError: ``malformed`` for a wrong shape,
        ``unsupportedIdentifier`` for a type other than ``dns`` and ``ip``,
        ``rejectedIdentifier`` for a value that is not a public-looking DNS
        name or IP address.
    """
    if not isinstance(value, dict):
        raise ProblemError("malformed", "identifier is not a JSON object")
    kind = value.get("type")
    text = value.get("value")
    if not isinstance(kind, str) or not isinstance(text, str):
        raise ProblemError("malformed", "identifier needs string 'type' and 'value'")
    if kind == "ip":
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ProblemError(
                "rejectedIdentifier", f"{text!r} is not an IP address"
            ) from None
        if str(address) != text:
            raise ProblemError(
                "malformed", f"IP address {text!r} is not in canonical form ({address})"
            )
        return messages.Identifier(typ=messages.IDENTIFIER_IP, value=text)
    if kind != "dns":
        raise ProblemError(
            "unsupportedIdentifier", f"identifier type {kind!r} is not supported"
        )
    name = text.lower()
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    if wildcard and not allow_wildcard:
        raise ProblemError(
            "rejectedIdentifier", "wildcard names cannot be pre-authorized"
        )
    if not _is_dns_name(base):
        raise ProblemError("rejectedIdentifier", f"{text!r} is not a valid DNS name")
    return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)


def parse_identifiers(value: object) -> list[messages.Identifier]:
    """
    Check the ``identifiers`` of a newOrder request (RFC 8555 §7.4).

    :returns: The identifiers, duplicates removed, in request order.
    :raises ProblemError: As :func:`parse_identifier`, and ``malformed`` for
        an empty or over-long list.
    """
    if not isinstance(value, list) or not value:
        raise ProblemError("malformed", "identifiers must be a non-empty list")
    if len(value) > _MAX_IDENTIFIERS:
        raise ProblemError(
            "malformed", f"at most {_MAX_IDENTIFIERS} identifiers per order"
        )
    identifiers: list[messages.Identifier] = []
    for item in value:
        identifier = parse_identifier(item)
        if identifier not in identifiers:
            identifiers.append(identifier)
    return identifiers


def identifier_pair(identifier: messages.Identifier) -> tuple[str, str]:
    """
    :returns: An identifier as a ``(type, value)`` pair, as
        :func:`csr_identifiers` and :func:`certificate_identifiers` give
        them.
    """
    return (identifier.typ.name, identifier.value)


def csr_identifiers(csr: x509.CertificateSigningRequest) -> set[tuple[str, str]]:
    """
    The identifiers a CSR asks for: its subjectAltName DNS names and IP
    addresses and its subject common name.

    :returns: ``(type, value)`` pairs, DNS names lowercased.
    :raises ProblemError: ``badCSR`` for subjectAltName entries of other
        kinds.
    """
    found: set[tuple[str, str]] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    except ValueError as error:
        raise ProblemError("badCSR", f"unreadable CSR extensions: {error}") from error
    for general_name in san:
        if isinstance(general_name, x509.DNSName):
            found.add(("dns", general_name.value.lower()))
        elif isinstance(general_name, x509.IPAddress):
            found.add(("ip", str(general_name.value)))
        else:
            raise ProblemError(
                "badCSR", f"unsupported subjectAltName entry {general_name}"
            )
    for attribute in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        text = value if isinstance(value, str) else value.decode("utf-8", "replace")
        try:
            found.add(("ip", str(ipaddress.ip_address(text))))
        except ValueError:
            found.add(("dns", text.lower()))
    return found


def csr_common_name(csr: x509.CertificateSigningRequest) -> str | None:
    """
    :returns: The CSR subject's common name, if it has one.
    """
    for attribute in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def certificate_identifiers(certificate: x509.Certificate) -> list[tuple[str, str]]:
    """
    The identifiers an issued certificate names: its subjectAltName DNS
    names and IP addresses.

    :returns: ``(type, value)`` pairs.
    """
    san = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    pairs = [("dns", name) for name in san.get_values_for_type(x509.DNSName)]
    pairs.extend(
        ("ip", str(address)) for address in san.get_values_for_type(x509.IPAddress)
    )
    return pairs
