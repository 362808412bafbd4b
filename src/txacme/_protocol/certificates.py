"""
Certificates (RFC 8555 §7.4.2, §7.6): downloading a chain (and the
alternate chains it links to) and revocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from acme import messages
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from josepy.b64 import b64encode

from txacme._protocol._common import (
    Session,
    certificate,
    der,
    json_bytes,
    links,
    required_url,
)
from txacme._types import HTTPResponse as Response
from txacme.errors import MalformedResponse
from txacme.jws import PEM_CHAIN_TYPE, Answer, Signer

__all__ = ["alternates", "check_leaf", "download_chain", "parse_pem_chain", "revoke"]


async def download_chain(
    session: Session, signer: Signer, url: str
) -> tuple[Answer, list[x509.Certificate]]:
    """
    POST-as-GET a certificate URL (RFC 8555 §7.4.2) and parse the chain.

    :returns: The answer (its ``Link: rel="alternate"`` name the alternate
        chains) and the certificates, leaf first.
    """
    answer = await session.post(
        url, b"", signer, content_type=PEM_CHAIN_TYPE, accept=PEM_CHAIN_TYPE
    )
    return answer, parse_pem_chain(answer.body, answer.response)


def alternates(answer: Answer, url: str) -> list[str]:
    """The alternate chains' URLs a certificate answer links to."""
    return links(answer, url).get("alternate", [])


def parse_pem_chain(
    body: bytes, response: Response | None = None
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


def check_leaf(
    certificates: Sequence[x509.Certificate],
    request: x509.CertificateSigningRequest,
    response: Response | None,
) -> None:
    """
    :raises MalformedResponse: If the leaf certificate is not for the CSR's
        key (a CA bug, or a certificate URL mixed up).
    """
    if certificates[0].public_key() != request.public_key():
        raise MalformedResponse(
            "The certificate's public key is not the CSR's", response
        )


async def revoke(
    session: Session,
    signer: Signer,
    cert: x509.Certificate | bytes | messages.CertificateResource,
    reason: int,
) -> None:
    """
    ``revokeCert`` (RFC 8555 §7.6), signed by the account (``kid``) or by
    the certificate's key (``jwk``).

    :raises NotOffered: If the directory has no ``revokeCert``.
    """
    payload: dict[str, object] = {
        "certificate": b64encode(der(certificate(cert))).decode("ascii")
    }
    if reason:
        payload["reason"] = reason
    url = required_url(session.directory, "revokeCert")
    await session.post(url, json_bytes(payload), signer, content_type=None)
