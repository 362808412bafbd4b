"""
Authorizations and challenges (RFC 8555 §7.4.1, §7.5): pre-authorization
(``newAuthz``), reading an authorization, answering a challenge,
deactivation.
"""

from __future__ import annotations

from typing import Any

from acme import challenges as acme_challenges
from acme import messages
from josepy.interfaces import JSONDeSerializable
from twisted.logger import Logger

from txacme._protocol._common import Session, links, location, parse, required_url
from txacme.errors import MalformedResponse, NetworkError, ServerError
from txacme.jws import Signer

__all__ = [
    "deactivate_authorization",
    "fetch_authorization",
    "new_authorization",
    "post_challenge",
]

_log = Logger()


async def new_authorization(
    session: Session, signer: Signer, identifier: messages.Identifier
) -> messages.AuthorizationResource:
    """
    ``newAuthz`` (pre-authorization, RFC 8555 §7.4.1).

    :raises NotOffered: If the directory has no ``newAuthz``.
    """
    url = required_url(session.directory, "newAuthz")
    answer = await session.post(
        url, {"identifier": identifier.to_partial_json()}, signer
    )
    return messages.AuthorizationResource(
        body=parse(messages.Authorization, answer.json(), answer.response),
        uri=location(answer.response, url),
    )


async def fetch_authorization(
    session: Session, signer: Signer, url: str
) -> tuple[messages.AuthorizationResource, float | None]:
    """
    POST-as-GET an authorization.

    :returns: It, and the server's ``Retry-After`` (seconds) if any.
    """
    answer = await session.post(url, None, signer)
    body = parse(messages.Authorization, answer.json(), answer.response)
    return messages.AuthorizationResource(body=body, uri=url), session.retry_after(
        answer
    )


async def post_challenge(
    session: Session,
    signer: Signer,
    challenge_body: messages.ChallengeBody,
    response: acme_challenges.ChallengeResponse | None,
) -> messages.ChallengeResource:
    """
    Tell the server to validate a challenge (RFC 8555 §7.5.1): POST the
    response object (``{}`` for RFC 8555's challenge types) to its URL.

    A CA that already had the challenge (an earlier POST whose answer was
    lost, then sent again) may refuse it, as Pebble does (``malformed``:
    "Cannot update challenge with status valid").  The POST is then
    answered with the challenge's current state, as RFC 8555 means it to
    be: if the challenge is no longer ``pending`` it is returned as the
    answer; otherwise the CA's error stands.
    """
    payload: JSONDeSerializable | dict[str, Any] = {} if response is None else response
    try:
        answer = await session.post(challenge_body.uri, payload, signer)
    except ServerError as error:
        if session.transport.retry_policy.is_transient(error):
            raise
        try:
            answer = await session.post(challenge_body.uri, None, signer)
        except (ServerError, NetworkError, MalformedResponse):
            raise error from None
        current = parse(messages.ChallengeBody, answer.json(), answer.response)
        if current.status == messages.STATUS_PENDING:
            raise
        _log.info(
            "The CA refused the challenge {url} ({error}), which it already "
            "had: it is {status}",
            url=challenge_body.uri,
            error=error,
            status=current.status.name,
        )
    body = parse(messages.ChallengeBody, answer.json(), answer.response)
    authzr_uri = (links(answer, challenge_body.uri).get("up") or [""])[0]
    return messages.ChallengeResource(body=body, authzr_uri=authzr_uri)


async def deactivate_authorization(
    session: Session, signer: Signer, url: str
) -> messages.AuthorizationResource:
    """Deactivate an authorization (RFC 8555 §7.5.2)."""
    answer = await session.post(
        url, {"status": messages.STATUS_DEACTIVATED.name}, signer
    )
    return messages.AuthorizationResource(
        body=parse(messages.Authorization, answer.json(), answer.response), uri=url
    )
