"""
ACME Renewal Information (RFC 9773): the certificate identifier, and the
renewal window a CA suggests (``renewalInfo``, read with a plain GET).
"""

from __future__ import annotations

from acme import messages
from cryptography import x509
from josepy.b64 import b64encode

from txacme._protocol._common import Session, directory_url, parse
from txacme.errors import MalformedResponse, NotOffered
from txacme.messages import RenewalWindow

__all__ = ["DEFAULT_RETRY", "renewal_certificate_id", "renewal_info"]

#: How long to wait before asking again when the CA does not say.
DEFAULT_RETRY = 6 * 3600.0


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


async def renewal_info(session: Session, cert: x509.Certificate) -> RenewalWindow:
    """
    GET ``renewalInfo/<certID>``.

    :raises NotOffered: If the directory has no ``renewalInfo``.
    :raises ValueError: If the certificate has no Authority Key Identifier.
    :raises MalformedResponse: For a window that is missing or inverted.
    """
    base = directory_url(session.directory, "renewalInfo")
    if base is None:
        raise NotOffered("renewalInfo", "the directory offers no ARI (RFC 9773)")
    url = base.rstrip("/") + "/" + renewal_certificate_id(cert)
    answer = await session.get(url)
    jobj = answer.json()
    info = parse(messages.RenewalInfo, jobj, answer.response)
    window = info.suggested_window
    if window is None or window.start is None or window.end is None:
        raise MalformedResponse(
            "The renewal info has no suggested window", answer.response
        )
    if window.end < window.start:
        raise MalformedResponse(
            "The suggested window ends before it starts", answer.response
        )
    retry_after = session.retry_after(answer)
    explanation = jobj.get("explanationURL")
    return RenewalWindow(
        start=window.start,
        end=window.end,
        retry_after=DEFAULT_RETRY if retry_after is None else retry_after,
        explanation_url=explanation if isinstance(explanation, str) else None,
    )
