"""
Orders (RFC 8555 §7.4): creating one (``newOrder``, with RFC 9773's
``replaces`` and the profiles draft's ``profile``), reading it, and sending
its CSR to ``finalize``.  Waiting while an order is processed is
:mod:`txacme._polling`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acme import messages
from cryptography import x509

from txacme._protocol._common import Session, location, parse
from txacme.errors import MalformedResponse, ServerError
from txacme.jws import Signer
from txacme.util import encode_csr

__all__ = ["create_order", "fetch_order", "refuses_replaces", "send_csr"]


async def create_order(
    session: Session,
    signer: Signer,
    identifiers: Sequence[messages.Identifier],
    profile: str | None = None,
    replaces: str | None = None,
) -> messages.OrderResource:
    """
    POST ``newOrder``; the authorizations are not fetched.

    :raises MalformedResponse: If the order lacks ``finalize`` or
        ``authorizations``, or the answer its ``Location``.
    """
    payload: dict[str, Any] = {
        "identifiers": [identifier.to_partial_json() for identifier in identifiers]
    }
    if profile is not None:
        payload["profile"] = profile
    if replaces is not None:
        payload["replaces"] = replaces
    url = session.directory["newOrder"]
    answer = await session.post(url, payload, signer)
    order_url = location(answer.response, url)
    order = parse(messages.Order, answer.json(), answer.response)
    if order.finalize is None or order.authorizations is None:
        raise MalformedResponse(
            "The order lacks finalize or authorizations", answer.response
        )
    return messages.OrderResource(body=order, uri=order_url, authorizations=())


async def fetch_order(
    session: Session, signer: Signer, orderr: messages.OrderResource
) -> tuple[messages.OrderResource, float | None]:
    """
    POST-as-GET an order.

    :returns: It, and the server's ``Retry-After`` (seconds) if any.
    """
    answer = await session.post(orderr.uri, None, signer)
    order = parse(messages.Order, answer.json(), answer.response)
    return orderr.update(body=order), session.retry_after(answer)


async def send_csr(
    session: Session,
    signer: Signer,
    orderr: messages.OrderResource,
    csr: x509.CertificateSigningRequest,
) -> tuple[messages.OrderResource, float | None]:
    """
    POST the CSR to the order's ``finalize`` URL (RFC 8555 §7.4).

    :returns: The order as answered, and the server's ``Retry-After``.
    """
    answer = await session.post(orderr.body.finalize, {"csr": encode_csr(csr)}, signer)
    order = parse(messages.Order, answer.json(), answer.response)
    return orderr.update(body=order), session.retry_after(answer)


def refuses_replaces(error: ServerError) -> bool:
    """Whether an error to a newOrder with ``replaces`` is about that field."""
    if error.code == "alreadyReplaced":
        return True
    detail = (error.message.detail or "").lower()
    return (
        error.code in ("malformed", "conflict", "unauthorized") and "replace" in detail
    )
