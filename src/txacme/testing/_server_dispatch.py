"""
How :class:`txacme.testing.MemoryAcmeServer` answers a request: it routes
it, applies the faults of its switches, runs the endpoint's handler, adds
the headers every answer carries (RFC 8555 §6.5, §7.1), spoils the answer
if asked, and logs it.  Here too are the two endpoints with no records of
their own, the directory (§7.1.1) and newNonce (§7.2).

Private.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from txacme.testing._faults import CannedAnswer, canned_answer
from txacme.testing._server_accounts import (
    account_endpoint,
    key_change_endpoint,
    new_account_endpoint,
    orders_list_endpoint,
)
from txacme.testing._server_certificates import (
    certificate_endpoint,
    renewal_info_endpoint,
    revoke_certificate_endpoint,
)
from txacme.testing._server_faults import FaultSwitches, Injection
from txacme.testing._server_http import (
    JOSE_JSON,
    Delivery,
    Incoming,
    Outgoing,
    spoil,
)
from txacme.testing._server_orders import (
    advance,
    authorization_endpoint,
    challenge_endpoint,
    finalize_endpoint,
    new_authz_endpoint,
    new_order_endpoint,
    order_endpoint,
)
from txacme.testing._server_protocol import ProblemError
from txacme.testing._server_records import InjectedFault, LoggedRequest
from txacme.testing._server_state import Route, ServerState

__all__ = ["respond"]

_Handler = Callable[[ServerState, Incoming, Route], Outgoing]


def _directory_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    The directory (RFC 8555 §7.1.1).
    """
    settings = state.settings
    directory: dict[str, Any] = {
        kind: state.url(state.path_of(kind))
        for kind in (
            "newNonce",
            "newAccount",
            "newOrder",
            "revokeCert",
            "keyChange",
        )
    }
    if settings.offer_new_authz:
        directory["newAuthz"] = state.url(state.path_of("newAuthz"))
    if settings.offer_renewal_info:
        directory["renewalInfo"] = state.url(state.path_of("renewalInfo"))
    meta: dict[str, Any] = {}
    if settings.terms_of_service is not None:
        meta["termsOfService"] = settings.terms_of_service
    if settings.eab_required:
        meta["externalAccountRequired"] = True
    if settings.profiles:
        meta["profiles"] = dict(settings.profiles)
    if meta:
        directory["meta"] = meta
    return Outgoing.with_json(200, directory)


def _new_nonce_endpoint(
    state: ServerState, request: Incoming, route: Route
) -> Outgoing:
    """
    newNonce (RFC 8555 §7.2): 200 to HEAD, 204 to GET.
    """
    status = 200 if request.method == "HEAD" else 204
    return Outgoing(status=status, headers=[("Cache-Control", "no-store")])


# Each endpoint kind: the methods it allows, and its handler.
_HANDLERS: dict[str, tuple[tuple[str, ...], _Handler]] = {
    "directory": (("GET",), _directory_endpoint),
    "newNonce": (("HEAD", "GET"), _new_nonce_endpoint),
    "renewalInfo": (("GET",), renewal_info_endpoint),
    "newAccount": (("POST",), new_account_endpoint),
    "account": (("POST",), account_endpoint),
    "orders": (("POST",), orders_list_endpoint),
    "keyChange": (("POST",), key_change_endpoint),
    "newOrder": (("POST",), new_order_endpoint),
    "newAuthz": (("POST",), new_authz_endpoint),
    "order": (("POST",), order_endpoint),
    "finalize": (("POST",), finalize_endpoint),
    "authorization": (("POST",), authorization_endpoint),
    "challenge": (("POST",), challenge_endpoint),
    "certificate": (("POST",), certificate_endpoint),
    "revokeCert": (("POST",), revoke_certificate_endpoint),
}


def respond(state: ServerState, switches: FaultSwitches, request: Incoming) -> Delivery:
    """
    Answer one request: route it, apply injected faults, run the
    endpoint's handler, add the headers every answer carries (RFC 8555
    §6.5, §7.1), spoil the answer if asked, and log it.
    """
    advance(state)
    kind = "unknown"
    injection: Injection | None = None
    canned: CannedAnswer | None = None
    try:
        route = state.route(request)
        kind = route.kind
        injection = switches.next_injection(kind)
        if injection is not None:
            switches.injected.append(
                InjectedFault(request.method, kind, request.url, injection.kind)
            )
            if injection.kind == "drop-before":
                return Delivery(None)
            canned = canned_answer(injection.kind)
        if canned is not None:
            if not canned.from_ca:
                # A device in between answered: the server saw nothing.
                return Delivery(
                    Outgoing(canned.status, list(canned.headers), canned.body)
                )
            state.use_nonce_quietly(request)
            response = Outgoing(canned.status, list(canned.headers), canned.body)
        else:
            # A request with a fault of its own leaves those of
            # fail_next and break_next to the next request.
            fault = switches.next_failure(kind) if injection is None else None
            if fault is not None:
                state.use_nonce_quietly(request)
                response = fault.answer()
            else:
                response = _dispatch(state, request, route)
    except ProblemError as problem:
        state.log.info(
            "{method} {endpoint}: {problem_type}: {detail}",
            method=request.method,
            endpoint=kind,
            problem_type=problem.error_type,
            detail=problem.detail,
        )
        response = Outgoing.problem(problem)
    except Exception:
        state.log.failure(
            "{method} {endpoint} failed", method=request.method, endpoint=kind
        )
        response = Outgoing.problem(
            ProblemError("serverInternal", "the in-memory ACME server failed")
        )
    response.headers.append(("Replay-Nonce", state.new_nonce()))
    response.headers.append(("Link", f'<{state.directory_url}>;rel="index"'))
    if injection is None:
        kind_of_spoil = switches.next_break(kind)
        if kind_of_spoil is not None:
            spoil(response, kind_of_spoil)
    state.requests.append(
        LoggedRequest(request.method, kind, request.url, response.status)
    )
    state.log.debug(
        "{method} {url} ({endpoint}) -> {status}",
        method=request.method,
        url=request.url,
        endpoint=kind,
        status=response.status,
    )
    if injection is not None and injection.kind == "drop-after":
        return Delivery(None)
    if injection is not None and injection.kind == "delay":
        return Delivery(response, injection.delay)
    return Delivery(response)


def _dispatch(state: ServerState, request: Incoming, route: Route) -> Outgoing:
    """
    Run the handler of the route's endpoint, after checking the method and,
    for a POST, the content type (RFC 8555 §6.2).
    """
    methods, handler = _HANDLERS[route.kind]
    if request.method not in methods:
        detail = f"{request.method} is not allowed here; use {' or '.join(methods)}"
        if methods == ("POST",) and request.method == "GET":
            detail = "this resource is read with POST-as-GET (RFC 8555 §6.3)"
        raise ProblemError(
            "malformed", detail, 405, headers={"Allow": ", ".join(methods)}
        )
    if request.method == "POST":
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if media_type != JOSE_JSON:
            raise ProblemError(
                "malformed",
                f"Content-Type must be {JOSE_JSON} (RFC 8555 §6.2)",
                415,
            )
    return handler(state, request, route)
