"""
The certificates of :class:`txacme.testing.MemoryAcmeServer`: issuing one
for a finalized order, certificate download with alternate chains (RFC 8555
§7.4.2), revocation (§7.6) and renewal information (RFC 9773).

Private.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from txacme.testing._server_http import PEM_CHAIN, Incoming, Outgoing, retry_after
from txacme.testing._server_protocol import (
    ProblemError,
    certificate_identifiers,
    csr_common_name,
    decode_b64url,
    identifier_pair,
    public_jwk,
    thumbprint,
)
from txacme.testing._server_records import (
    MemoryAccount,
    MemoryCertificate,
    MemoryOrder,
    renewal_info_id,
)
from txacme.testing._server_state import (
    Route,
    ServerState,
    check_owner,
    check_post_as_get,
    utc_datetime,
)

__all__ = [
    "certificate_by_renewal_id",
    "certificate_endpoint",
    "issue",
    "renewal_info_endpoint",
    "revoke_certificate_endpoint",
]

_REVOCATION_REASONS = frozenset({0, 1, 3, 4, 5})


def issue(state: ServerState, order: MemoryOrder) -> None:
    """
    Issue the certificate of a ``processing`` order whose time has come,
    and make the order ``valid``.
    """
    assert order.csr is not None
    lifetime = state.settings.certificate_lifetime
    public_key = order.csr.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    not_before = utc_datetime(order._issue_at)
    leaf = state.ca.issue(
        public_key,
        [identifier_pair(identifier) for identifier in order.identifiers],
        csr_common_name(order.csr),
        not_before,
        lifetime,
    )
    path = state.new_path("certificate")
    primary, *alternates = state.ca.chains
    certificate = MemoryCertificate(
        url=state.url(path),
        certificate=leaf,
        chain=list(primary.certificates),
        alternate_chains=[list(chain.certificates) for chain in alternates],
        alternate_urls=[
            state.url(f"{path}/{index}") for index in range(1, len(alternates) + 1)
        ],
        account_url=order.account_url,
        order_url=order.url,
        renewal_window=(
            not_before + lifetime * 2 / 3,
            not_before + lifetime * 5 / 6,
        ),
    )
    state.routes[path] = Route("certificate", certificate, 0)
    for index in range(1, len(alternates) + 1):
        state.routes[f"{path}/{index}"] = Route("certificate", certificate, index)
    state.certificates.append(certificate)
    state.certificates_by_serial[certificate.serial] = certificate
    order.certificate = certificate
    order.status = "valid"
    if order.replaces is not None:
        replaced = certificate_by_renewal_id(state, order.replaces)
        if replaced is not None and replaced.replaced_by is None:
            replaced.replaced_by = order.url
    state.log.info(
        "issued certificate {serial} for {order}",
        serial=leaf.serial_number,
        order=order.url,
    )


def certificate_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    Certificate download (RFC 8555 §7.4.2), POST-as-GET.
    """
    certificate = route.record
    assert isinstance(certificate, MemoryCertificate)
    signed, account = state.signed_by_account(request)
    check_owner(account, certificate.account_url)
    check_post_as_get(signed)
    response = Outgoing(
        status=200,
        headers=[("Content-Type", PEM_CHAIN)],
        body=certificate.pem_chain(route.chain_index).encode("ascii"),
    )
    for index, url in enumerate([certificate.url, *certificate.alternate_urls]):
        if index != route.chain_index:
            response.headers.append(("Link", f'<{url}>;rel="alternate"'))
    return response


def revoke_certificate_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    revokeCert (RFC 8555 §7.6), signed by an account or by the
    certificate's key.
    """
    signed = state.verified(request, "either")
    payload = signed.jws.payload_object()
    der = decode_b64url(payload.get("certificate"), "certificate")
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise ProblemError("malformed", f"certificate is not DER: {error}") from error
    reason = payload.get("reason", 0)
    if isinstance(reason, bool) or not isinstance(reason, int):
        raise ProblemError("malformed", "reason must be an integer")
    if reason not in _REVOCATION_REASONS:
        raise ProblemError(
            "badRevocationReason", f"reason code {reason} is not accepted"
        )
    certificate = state.certificates_by_serial.get(leaf.serial_number)
    if certificate is None or certificate.certificate != leaf:
        raise ProblemError(
            "malformed", "this certificate was not issued by this server"
        )
    if signed.account is not None:
        if not _may_revoke(state, signed.account, certificate):
            raise ProblemError(
                "unauthorized", "this account may not revoke this certificate"
            )
    else:
        certificate_key = public_jwk(leaf.public_key())
        if certificate_key is None or thumbprint(certificate_key) != thumbprint(
            signed.key
        ):
            raise ProblemError(
                "unauthorized", "the JWS key is not the certificate's key"
            )
    if certificate.revoked:
        raise ProblemError("alreadyRevoked", "the certificate is already revoked")
    now = state.now()
    certificate.revoked = True
    certificate.revocation_reason = reason
    certificate.revoked_at = now
    certificate.renewal_window = (
        now - timedelta(hours=2),
        now - timedelta(hours=1),
    )
    state.log.info("revoked certificate {serial}", serial=certificate.serial)
    return Outgoing(status=200)


def _may_revoke(
    state: ServerState, account: MemoryAccount, certificate: MemoryCertificate
) -> bool:
    if certificate.account_url == account.url:
        return True
    now = state.now()
    authorized = {
        (authorization.identifier.typ.name, authorization.identifier.value)
        for authorization in state.authorizations
        if authorization.account_url == account.url
        and authorization.status == "valid"
        and authorization.expires > now
        and not authorization.wildcard
    }
    return set(certificate_identifiers(certificate.certificate)) <= authorized


def certificate_by_renewal_id(
    state: ServerState, certificate_id: str
) -> MemoryCertificate | None:
    """
    :param certificate_id: A certificate identifier of RFC 9773 §4.1.
    :returns: The certificate it names, if this server issued it.
    """
    key_part, dot, serial_part = certificate_id.partition(".")
    if not dot:
        return None
    try:
        decode_b64url(key_part, "key identifier")
        serial = int.from_bytes(decode_b64url(serial_part, "serial"), "big")
    except ProblemError:
        return None
    certificate = state.certificates_by_serial.get(serial)
    if (
        certificate is None
        or renewal_info_id(certificate.certificate) != certificate_id
    ):
        return None
    return certificate


def renewal_info_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    renewalInfo (RFC 9773 §4): the suggested renewal window.
    """
    certificate_id = route.record
    assert isinstance(certificate_id, str)
    certificate = certificate_by_renewal_id(state, certificate_id)
    if certificate is None:
        raise ProblemError(
            "malformed", f"no certificate with identifier {certificate_id!r}", 404
        )
    start, end = certificate.renewal_window
    document: dict[str, Any] = messages.RenewalInfo(
        suggested_window=messages.RenewalInfo.SuggestedWindow(start=start, end=end)
    ).to_json()
    if certificate.renewal_explanation_url is not None:
        document["explanationURL"] = certificate.renewal_explanation_url
    response = Outgoing.with_json(200, document)
    response.headers.append(
        ("Retry-After", retry_after(state.settings.renewal_info_retry_after))
    )
    return response
