"""
The JSON of the resources :class:`txacme.testing.MemoryAcmeServer` serves
(RFC 8555 §7.1), built with :mod:`acme.messages` so that what the server
says is what an :mod:`acme`-based client reads.

Private.
"""

from __future__ import annotations

from typing import Any

from acme import challenges, messages
from josepy.b64 import b64decode

from txacme.testing._server_protocol import default_status
from txacme.testing._server_records import (
    MemoryAccount,
    MemoryAuthorization,
    MemoryChallenge,
    MemoryOrder,
)

__all__ = ["account_json", "authorization_json", "challenge_json", "order_json"]


def _status(name: str) -> messages.Status:
    # acme.messages has no "expired": callers overwrite that one.
    status = messages.Status.POSSIBLE_NAMES.get(name, messages.STATUS_UNKNOWN)
    assert isinstance(status, messages.Status)
    return status


def error_json(error: messages.Error) -> dict[str, Any]:
    """
    :returns: A problem document for an ``error`` of a challenge or order,
        with its HTTP ``status``.
    """
    document: dict[str, Any] = error.to_json()
    document["status"] = default_status(error.typ)
    return document


def account_json(account: MemoryAccount) -> dict[str, Any]:
    """
    :returns: The account object (RFC 8555 §7.1.2).
    """
    document: dict[str, Any] = messages.Registration(
        key=account.key,
        contact=account.contact,
        status=_status(account.status),
        terms_of_service_agreed=account.terms_of_service_agreed,
    ).to_json()
    document["contact"] = list(account.contact)
    document["orders"] = account.orders_url
    return document


def challenge_json(challenge: MemoryChallenge) -> dict[str, Any]:
    """
    :returns: The challenge object (RFC 8555 §7.1.5, §8).
    """
    token = b64decode(challenge.token)
    chall: challenges.Challenge
    if challenge.type == "http-01":
        chall = challenges.HTTP01(token=token)
    elif challenge.type == "dns-01":
        chall = challenges.DNS01(token=token)
    else:
        # acme 5 has no tls-alpn-01 class.
        chall = challenges.UnrecognizedChallenge(
            {"type": challenge.type, "token": challenge.token}
        )
    document: dict[str, Any] = messages.ChallengeBody(
        chall=chall,
        uri=challenge.url,
        status=_status(challenge.status),
        validated=challenge.validated,
    ).to_json()
    if challenge.error is not None:
        document["error"] = error_json(challenge.error)
    return document


def authorization_json(authorization: MemoryAuthorization) -> dict[str, Any]:
    """
    :returns: The authorization object (RFC 8555 §7.1.4).  A valid or
        invalid authorization lists only the challenge that decided it.
    """
    shown = authorization.challenges
    if authorization.status in ("valid", "invalid"):
        shown = [c for c in shown if c.status == authorization.status] or shown
    document: dict[str, Any] = messages.Authorization(
        identifier=authorization.identifier,
        challenges=(),
        status=_status(authorization.status),
        expires=authorization.expires,
        wildcard=True if authorization.wildcard else None,
    ).to_json()
    document["status"] = authorization.status
    document["challenges"] = [challenge_json(challenge) for challenge in shown]
    return document


def order_json(order: MemoryOrder) -> dict[str, Any]:
    """
    :returns: The order object (RFC 8555 §7.1.3), with ``replaces`` (RFC
        9773) and ``profile`` when set.
    """
    document: dict[str, Any] = messages.Order(
        identifiers=order.identifiers,
        status=_status(order.status),
        authorizations=[authorization.url for authorization in order.authorizations],
        finalize=order.finalize_url,
        expires=order.expires,
        certificate=None if order.certificate is None else order.certificate.url,
        profile=order.profile,
    ).to_json()
    if order.error is not None and order.status == "invalid":
        document["error"] = error_json(order.error)
    if order.replaces is not None:
        document["replaces"] = order.replaces
    return document
