"""
Orders, authorizations and challenges of
:class:`txacme.testing.MemoryAcmeServer`: newOrder, order reads and
finalization (RFC 8555 §7.4; RFC 8738; RFC 9773 ``replaces``; profiles),
pre-authorization (§7.4.1), authorization reads and deactivation (§7.5,
§7.5.2), challenge responses and their validation (§7.5.1), and
:func:`advance`, which applies what the clock has made due (§7.1.6).

Private.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from acme import challenges, messages
from cryptography import x509
from josepy.b64 import b64encode
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txacme.testing._server_certificates import certificate_by_renewal_id, issue
from txacme.testing._server_http import Incoming, Outgoing, retry_after
from txacme.testing._server_json import (
    authorization_json,
    challenge_json,
    order_json,
)
from txacme.testing._server_protocol import (
    ProblemError,
    certificate_identifiers,
    check_account_key,
    csr_identifiers,
    decode_b64url,
    identifier_pair,
    parse_identifier,
    parse_identifiers,
    public_jwk,
    thumbprint,
)
from txacme.testing._server_records import (
    MemoryAccount,
    MemoryAuthorization,
    MemoryChallenge,
    MemoryOrder,
)
from txacme.testing._server_state import (
    Route,
    ServerState,
    check_owner,
    check_post_as_get,
    utc_datetime,
)

__all__ = [
    "advance",
    "authorization_endpoint",
    "challenge_endpoint",
    "finalize_endpoint",
    "new_authz_endpoint",
    "new_order_endpoint",
    "order_endpoint",
]


def _challenge_types(identifier: messages.Identifier, wildcard: bool) -> list[str]:
    if wildcard:
        return ["dns-01"]
    if identifier.typ == messages.IDENTIFIER_IP:
        return ["http-01", "tls-alpn-01"]
    return ["http-01", "dns-01", "tls-alpn-01"]


# Time: apply what the clock has made due (RFC 8555 §7.1.6).


def advance(state: ServerState) -> None:
    """
    Bring every record up to date with the clock: finish the validations
    whose time has come, expire authorizations, issue the certificates of
    orders whose processing is over, and derive the status of the other
    orders from their authorizations.
    """
    seconds = state.settings.clock.seconds()
    now = utc_datetime(seconds)
    for authorization in state.authorizations:
        for challenge in authorization.challenges:
            if (
                challenge.status == "processing"
                and challenge._outcome_known
                and seconds >= challenge._ready_at
            ):
                _finish_validation(state, authorization, challenge)
        if (
            authorization.status in ("pending", "valid")
            and now >= authorization.expires
        ):
            authorization.status = "expired"
    for order in state.orders:
        if order.status == "processing" and seconds >= order._issue_at:
            issue(state, order)
        elif order.status in ("pending", "ready"):
            _update_order(order, now)


def _update_order(order: MemoryOrder, now: datetime) -> None:
    statuses = {authorization.status for authorization in order.authorizations}
    if now >= order.expires:
        order.status = "invalid"
        order.error = messages.Error.with_code("malformed", detail="the order expired")
    elif statuses & {"invalid", "deactivated", "expired", "revoked"}:
        order.status = "invalid"
        order.error = messages.Error.with_code(
            "unauthorized", detail="an authorization of this order is not valid"
        )
    elif statuses == {"valid"}:
        order.status = "ready"
    else:
        order.status = "pending"


def _finish_validation(
    state: ServerState, authorization: MemoryAuthorization, challenge: MemoryChallenge
) -> None:
    ready = utc_datetime(challenge._ready_at)
    if challenge._outcome is None:
        challenge.status = "valid"
        challenge.validated = ready
        if authorization.status == "pending":
            authorization.status = "valid"
            authorization.expires = ready + state.settings.authorization_lifetime
    else:
        challenge.status = "invalid"
        challenge.error = challenge._outcome
        if authorization.status == "pending":
            authorization.status = "invalid"


def _order_response(state: ServerState, status: int, order: MemoryOrder) -> Outgoing:
    response = Outgoing.with_json(status, order_json(order))
    response.headers.append(("Location", order.url))
    if order.status == "processing":
        remaining = order._issue_at - state.settings.clock.seconds()
        response.headers.append(("Retry-After", retry_after(remaining)))
    return response


# Orders.


def new_order_endpoint(state: ServerState, request: Incoming, route: Route) -> Outgoing:
    """
    newOrder (RFC 8555 §7.4; RFC 8738; RFC 9773 ``replaces``; profiles).
    """
    signed, account = state.signed_by_account(request)
    payload = signed.jws.payload_object()
    identifiers = parse_identifiers(payload.get("identifiers"))
    profile = payload.get("profile")
    if profile is not None and (
        not isinstance(profile, str) or profile not in state.settings.profiles
    ):
        raise ProblemError("invalidProfile", f"no certificate profile {profile!r} here")
    replaces = payload.get("replaces")
    if replaces is not None:
        _check_replaces(state, replaces, account, identifiers)
    now = state.now()
    expires = now + state.settings.order_lifetime
    path = state.new_path("order")
    order = MemoryOrder(
        url=state.url(path),
        account_url=account.url,
        identifiers=identifiers,
        authorizations=[
            _authorization_for(state, account, identifier, expires, now)
            for identifier in identifiers
        ],
        expires=expires,
        finalize_url=state.url(path + "/finalize"),
        profile=profile,
        replaces=replaces,
    )
    _update_order(order, now)
    state.orders.append(order)
    state.routes[path] = Route("order", order)
    state.routes[path + "/finalize"] = Route("finalize", order)
    return _order_response(state, 201, order)


def _check_replaces(
    state: ServerState,
    replaces: object,
    account: MemoryAccount,
    identifiers: list[messages.Identifier],
) -> None:
    if not state.settings.offer_renewal_info:
        raise ProblemError(
            "malformed", "this server does not offer renewalInfo (RFC 9773)"
        )
    if not isinstance(replaces, str):
        raise ProblemError("malformed", "replaces must be a string")
    certificate = certificate_by_renewal_id(state, replaces)
    if certificate is None:
        raise ProblemError("malformed", f"replaces names no certificate: {replaces!r}")
    if certificate.account_url != account.url:
        raise ProblemError(
            "malformed", "replaces names a certificate of another account"
        )
    if certificate.replaced_by is not None:
        raise ProblemError(
            "alreadyReplaced", f"already replaced by {certificate.replaced_by}"
        )
    names = {identifier_pair(identifier) for identifier in identifiers}
    if not names & set(certificate_identifiers(certificate.certificate)):
        raise ProblemError("malformed", "the order shares no identifier with replaces")


def _authorization_for(
    state: ServerState,
    account: MemoryAccount,
    requested: messages.Identifier,
    expires: datetime,
    now: datetime,
) -> MemoryAuthorization:
    wildcard = requested.value.startswith("*.")
    identifier = messages.Identifier(
        typ=requested.typ,
        value=requested.value[2:] if wildcard else requested.value,
    )
    if state.settings.authorization_reuse:
        for authorization in state.authorizations:
            if (
                authorization.account_url == account.url
                and authorization.status == "valid"
                and authorization.identifier == identifier
                and authorization.wildcard == wildcard
                and authorization.expires > now
            ):
                return authorization
    return _new_authorization(state, account, identifier, wildcard, expires)


def _new_authorization(
    state: ServerState,
    account: MemoryAccount,
    identifier: messages.Identifier,
    wildcard: bool,
    expires: datetime,
) -> MemoryAuthorization:
    path = state.new_path("authz")
    authorization = MemoryAuthorization(
        url=state.url(path),
        identifier=identifier,
        wildcard=wildcard,
        account_url=account.url,
        expires=expires,
        challenges=[],
    )
    for challenge_type in _challenge_types(identifier, wildcard):
        challenge_path = state.new_path("challenge")
        challenge = MemoryChallenge(
            url=state.url(challenge_path),
            type=challenge_type,
            token=b64encode(secrets.token_bytes(32)).decode("ascii"),
            authorization_url=authorization.url,
        )
        authorization.challenges.append(challenge)
        state.routes[challenge_path] = Route("challenge", challenge)
    state.authorizations.append(authorization)
    state.authorizations_by_url[authorization.url] = authorization
    state.routes[path] = Route("authorization", authorization)
    return authorization


def new_authz_endpoint(state: ServerState, request: Incoming, route: Route) -> Outgoing:
    """
    newAuthz: pre-authorization (RFC 8555 §7.4.1).
    """
    signed, account = state.signed_by_account(request)
    payload = signed.jws.payload_object()
    identifier = parse_identifier(payload.get("identifier"), allow_wildcard=False)
    authorization = _new_authorization(
        state, account, identifier, False, state.now() + state.settings.order_lifetime
    )
    response = Outgoing.with_json(201, authorization_json(authorization))
    response.headers.append(("Location", authorization.url))
    return response


def order_endpoint(state: ServerState, request: Incoming, route: Route) -> Outgoing:
    """
    Order read (RFC 8555 §7.4), POST-as-GET.
    """
    order = route.record
    assert isinstance(order, MemoryOrder)
    signed, account = state.signed_by_account(request)
    check_owner(account, order.account_url)
    check_post_as_get(signed)
    return _order_response(state, 200, order)


def finalize_endpoint(state: ServerState, request: Incoming, route: Route) -> Outgoing:
    """
    Order finalization (RFC 8555 §7.4).  :func:`advance` issues the
    certificate once the clock has passed the processing delay.
    """
    order = route.record
    assert isinstance(order, MemoryOrder)
    signed, account = state.signed_by_account(request)
    check_owner(account, order.account_url)
    payload = signed.jws.payload_object()
    if order.status != "ready":
        raise ProblemError("orderNotReady", f"the order is {order.status}, not ready")
    csr_der = decode_b64url(payload.get("csr"), "csr")
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError as error:
        raise ProblemError("badCSR", f"csr is not a DER CSR: {error}") from error
    if not csr.is_signature_valid:
        raise ProblemError("badCSR", "the CSR's signature is invalid")
    csr_key = public_jwk(csr.public_key())
    if csr_key is None:
        raise ProblemError("badCSR", "the CSR key must be RSA or EC")
    try:
        check_account_key(csr_key)
    except ProblemError as problem:
        raise ProblemError("badCSR", problem.detail) from None
    if thumbprint(csr_key) == thumbprint(account.key):
        raise ProblemError("badCSR", "the CSR key must not be the account key")
    wanted = {identifier_pair(identifier) for identifier in order.identifiers}
    asked = csr_identifiers(csr)
    if asked != wanted:
        missing = sorted(value for _, value in wanted - asked)
        extra = sorted(value for _, value in asked - wanted)
        raise ProblemError(
            "badCSR",
            f"the CSR's names differ from the order's: "
            f"missing {missing}, extra {extra}",
        )
    order.csr = csr
    order.status = "processing"
    order._issue_at = state.settings.clock.seconds() + state.settings.processing_delay
    advance(state)
    return _order_response(state, 200, order)


# Authorizations and challenges.


def authorization_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    Authorization read and deactivation (RFC 8555 §7.5, §7.5.2).
    """
    authorization = route.record
    assert isinstance(authorization, MemoryAuthorization)
    signed, account = state.signed_by_account(request)
    check_owner(account, authorization.account_url)
    if signed.jws.payload_b64 != "":
        payload = signed.jws.payload_object()
        if payload.get("status") != "deactivated":
            raise ProblemError("malformed", "the only update is status: deactivated")
        if authorization.status not in ("pending", "valid"):
            raise ProblemError(
                "malformed",
                f"cannot deactivate a {authorization.status} authorization",
            )
        authorization.status = "deactivated"
        advance(state)
    response = Outgoing.with_json(200, authorization_json(authorization))
    processing = [c for c in authorization.challenges if c.status == "processing"]
    if processing:
        remaining = processing[0]._ready_at - state.settings.clock.seconds()
        response.headers.append(("Retry-After", retry_after(remaining)))
    return response


def challenge_endpoint(state: ServerState, request: Incoming, route: Route) -> Outgoing:
    """
    Challenge read, and response to a challenge (RFC 8555 §7.5.1).
    """
    challenge = route.record
    assert isinstance(challenge, MemoryChallenge)
    authorization = state.authorizations_by_url[challenge.authorization_url]
    signed, account = state.signed_by_account(request)
    check_owner(account, authorization.account_url)
    if signed.jws.payload_b64 != "":
        signed.jws.payload_object()
        if challenge.status != "pending" and state.settings.refuse_repeated_challenge:
            raise ProblemError(
                "malformed",
                f"Cannot update challenge with status {challenge.status}, "
                "only status pending",
            )
        if challenge.status == "pending":
            if authorization.status != "pending":
                raise ProblemError(
                    "malformed",
                    f"the authorization is {authorization.status}, not pending",
                )
            _start_validation(state, account, authorization, challenge)
    response = Outgoing.with_json(200, challenge_json(challenge))
    response.headers.append(("Link", f'<{authorization.url}>;rel="up"'))
    if challenge.status == "processing":
        remaining = challenge._ready_at - state.settings.clock.seconds()
        response.headers.append(("Retry-After", retry_after(remaining)))
    return response


def _start_validation(
    state: ServerState,
    account: MemoryAccount,
    authorization: MemoryAuthorization,
    challenge: MemoryChallenge,
) -> None:
    settings = state.settings
    key_authorization = challenges.HTTP01(
        token=decode_b64url(challenge.token, "token")
    ).key_authorization(account.key)
    challenge.status = "processing"
    challenge.key_authorization = key_authorization
    challenge._ready_at = settings.clock.seconds() + settings.validation_delay
    names = {authorization.identifier.value}
    if authorization.wildcard:
        names.add("*." + authorization.identifier.value)
    if names & settings.invalid_identifiers:
        _validated(state, challenge, False)
        return
    try:
        result = settings.validator(
            authorization.identifier, challenge.type, key_authorization
        )
    except Exception:
        _validation_failed(state, challenge, None)
        return
    if isinstance(result, Deferred):
        result.addCallbacks(
            lambda valid: _validated(state, challenge, bool(valid)),
            lambda failure: _validation_failed(state, challenge, failure),
        )
    else:
        _validated(state, challenge, bool(result))


def _validated(state: ServerState, challenge: MemoryChallenge, valid: bool) -> None:
    challenge._outcome_known = True
    challenge._outcome = (
        None
        if valid
        else messages.Error.with_code(
            "incorrectResponse",
            detail=f"{challenge.type} validation failed: wrong response",
        )
    )
    advance(state)


def _validation_failed(
    state: ServerState, challenge: MemoryChallenge, failure: Failure | None
) -> None:
    state.log.failure("validator failed for {url}", failure, url=challenge.url)
    challenge._outcome_known = True
    challenge._outcome = messages.Error.with_code(
        "serverInternal", detail="the validator raised an exception"
    )
    advance(state)
