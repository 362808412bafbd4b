"""
The account endpoints of :class:`txacme.testing.MemoryAcmeServer`:
newAccount with its contact, terms of service and external account binding
checks (RFC 8555 §7.3, §7.3.1, §7.3.4), account read, update and
deactivation (§7.3.2, §7.3.6), the account's orders list (§7.1.2.1) and key
rollover (§7.3.5).

Private.
"""

from __future__ import annotations

import json

from josepy.jwa import HS256, HS384, HS512, JWASignature
from josepy.jwk import JWK

from txacme.testing._server_http import Incoming, Outgoing
from txacme.testing._server_json import account_json
from txacme.testing._server_protocol import (
    ProblemError,
    check_account_key,
    load_jwk,
    parse_jws,
    signature_algorithm,
    thumbprint,
)
from txacme.testing._server_records import MemoryAccount
from txacme.testing._server_state import (
    Route,
    ServerState,
    check_owner,
    check_post_as_get,
)

__all__ = [
    "account_endpoint",
    "key_change_endpoint",
    "new_account_endpoint",
    "orders_list_endpoint",
]

_MAC_ALGORITHMS: dict[str, JWASignature] = {
    "HS256": HS256,
    "HS384": HS384,
    "HS512": HS512,
}


def new_account_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    newAccount (RFC 8555 §7.3, §7.3.1, §7.3.4).
    """
    settings = state.settings
    signed = state.verified(request, "jwk")
    payload = signed.jws.payload_object()
    existing = state.accounts_by_key.get(thumbprint(signed.key))
    if existing is not None:
        if existing.status != "valid":
            raise ProblemError("unauthorized", f"account is {existing.status}")
        response = Outgoing.with_json(200, account_json(existing))
        response.headers.append(("Location", existing.url))
        return response
    if payload.get("onlyReturnExisting") is True:
        raise ProblemError("accountDoesNotExist", "no account exists with this key")
    contact = _checked_contact(payload.get("contact", []))
    agreed = payload.get("termsOfServiceAgreed") is True
    if (
        settings.terms_of_service is not None
        and settings.require_terms_agreement
        and not agreed
    ):
        raise ProblemError("malformed", "must agree to terms of service")
    binding = payload.get("externalAccountBinding")
    key_id = None
    if binding is not None:
        key_id = _checked_binding(state, binding, signed.key, request.url)
    elif settings.eab_required:
        raise ProblemError(
            "externalAccountRequired", "an external account binding is required"
        )
    path = state.new_path("account")
    account = MemoryAccount(
        url=state.url(path),
        key=signed.key,
        contact=contact,
        orders_url=state.url(path + "/orders"),
        terms_of_service_agreed=agreed,
        external_account_key_id=key_id,
    )
    state.accounts.append(account)
    state.accounts_by_key[thumbprint(account.key)] = account
    state.accounts_by_url[account.url] = account
    state.routes[path] = Route("account", account)
    state.routes[path + "/orders"] = Route("orders", account)
    state.log.info("new account {url}", url=account.url)
    response = Outgoing.with_json(201, account_json(account))
    response.headers.append(("Location", account.url))
    return response


def _checked_contact(contact: object) -> tuple[str, ...]:
    if not isinstance(contact, list) or not all(
        isinstance(item, str) for item in contact
    ):
        raise ProblemError("malformed", "contact must be a list of strings")
    for item in contact:
        scheme, _, address = item.partition(":")
        if scheme.lower() != "mailto":
            raise ProblemError(
                "unsupportedContact", f"only mailto: contacts, not {item!r}"
            )
        local, _, domain = address.partition("@")
        if not local or "." not in domain or set("?,; ") & set(address):
            raise ProblemError(
                "invalidContact", f"{item!r} is not a single email address"
            )
    return tuple(contact)


def _checked_binding(
    state: ServerState, binding: object, account_key: JWK, url: str
) -> str:
    """
    Verify an external account binding (RFC 8555 §7.3.4).

    :returns: The external account key id.
    """
    eab_keys = state.settings.eab_keys
    if not isinstance(binding, dict):
        raise ProblemError("malformed", "externalAccountBinding must be a JWS object")
    jws = parse_jws(binding, "externalAccountBinding")
    header = jws.protected
    algorithm_name = header.get("alg")
    if not isinstance(algorithm_name, str) or algorithm_name not in _MAC_ALGORITHMS:
        raise ProblemError(
            "badSignatureAlgorithm",
            "externalAccountBinding must use HS256, HS384 or HS512",
        )
    if "nonce" in header or "jwk" in header:
        raise ProblemError(
            "malformed", "externalAccountBinding must not have nonce or jwk"
        )
    if header.get("url") != url:
        raise ProblemError(
            "unauthorized", "externalAccountBinding url is not newAccount's"
        )
    key_id = header.get("kid")
    if not isinstance(key_id, str) or key_id not in eab_keys:
        raise ProblemError(
            "unauthorized", f"unknown external account key id {key_id!r}"
        )
    try:
        bound_key = load_jwk(json.loads(jws.payload))
    except ValueError:
        raise ProblemError(
            "malformed", "externalAccountBinding payload is not a JWK"
        ) from None
    if thumbprint(bound_key) != thumbprint(account_key):
        raise ProblemError(
            "unauthorized", "externalAccountBinding binds a different key"
        )
    algorithm = _MAC_ALGORITHMS[algorithm_name]
    if not algorithm.verify(eab_keys[key_id], jws.signing_input, jws.signature):
        raise ProblemError("unauthorized", "externalAccountBinding MAC is invalid")
    return key_id


def account_endpoint(state: ServerState, request: Incoming, route: Route) -> Outgoing:
    """
    Account read, update and deactivation (RFC 8555 §7.3.2, §7.3.6).
    """
    account = route.record
    assert isinstance(account, MemoryAccount)
    signed, signer = state.signed_by_account(request)
    check_owner(signer, account.url)
    if signed.jws.payload_b64 != "":
        payload = signed.jws.payload_object()
        status = payload.get("status", account.status)
        if status not in (account.status, "deactivated"):
            raise ProblemError(
                "malformed", "the only status a client sets is deactivated"
            )
        if "contact" in payload:
            account.contact = _checked_contact(payload["contact"])
        if payload.get("termsOfServiceAgreed") is True:
            account.terms_of_service_agreed = True
        if status != account.status:
            account.status = status
            state.log.info("account {url} deactivated", url=account.url)
    return Outgoing.with_json(200, account_json(account))


def orders_list_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    An account's orders list (RFC 8555 §7.1.2.1), without paging.
    """
    account = route.record
    assert isinstance(account, MemoryAccount)
    signed, signer = state.signed_by_account(request)
    check_owner(signer, account.url)
    check_post_as_get(signed)
    urls = [
        order.url
        for order in state.orders
        if order.account_url == account.url and order.status != "invalid"
    ]
    return Outgoing.with_json(200, {"orders": urls})


def key_change_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    Account key rollover (RFC 8555 §7.3.5).
    """
    signed, account = state.signed_by_account(request)
    inner = parse_jws(signed.jws.payload_object("keyChange payload"), "inner JWS")
    header = inner.protected
    if "jwk" not in header or "kid" in header:
        raise ProblemError("malformed", "the inner JWS must carry jwk and no kid")
    if "nonce" in header:
        raise ProblemError("malformed", "the inner JWS must not have a nonce")
    if header.get("url") != request.url:
        raise ProblemError("malformed", "the inner JWS url must equal the outer one")
    new_key = load_jwk(header["jwk"])
    check_account_key(new_key)
    if not inner.verify(new_key, signature_algorithm(inner, new_key)):
        raise ProblemError("malformed", "the inner JWS signature is invalid")
    payload = inner.payload_object("inner JWS payload")
    if payload.get("account") != account.url:
        raise ProblemError("unauthorized", "the inner payload names another account")
    try:
        old_key = load_jwk(payload.get("oldKey"))
    except ProblemError:
        raise ProblemError(
            "malformed", "the inner payload's oldKey is not a JWK"
        ) from None
    if thumbprint(old_key) != thumbprint(account.key):
        raise ProblemError("unauthorized", "oldKey is not the account's current key")
    holder = state.accounts_by_key.get(thumbprint(new_key))
    if holder is not None:
        raise ProblemError(
            "malformed",
            "the new key is already in use by an account",
            409,
            headers={"Location": holder.url},
        )
    del state.accounts_by_key[thumbprint(account.key)]
    account.key = new_key
    state.accounts_by_key[thumbprint(new_key)] = account
    state.log.info("account {url} changed its key", url=account.url)
    return Outgoing.with_json(200, account_json(account))
