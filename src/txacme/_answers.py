"""
What the transport makes of the server's answers: the error of an error
answer (a problem document, or an HTTP status without one), the nonce an
answer brings, and the failure of a request that got no answer, in words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from acme import messages
from josepy.b64 import b64decode
from josepy.errors import DeserializationError
from OpenSSL import SSL
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.error import SchemeNotSupported

from txacme._headers import first_header, parse_links, parse_retry_after
from txacme._types import HTTPResponse as Response
from txacme.errors import (
    AccountDoesNotExist,
    ExternalAccountRequired,
    MalformedResponse,
    RateLimited,
    ServerError,
    UserActionRequired,
)

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "decode_json",
    "describe_failure",
    "links",
    "response_nonce",
    "server_error",
]

_log = Logger()

#: The content type of problem documents (RFC 7807).
PROBLEM_CONTENT_TYPE = "application/problem+json"

_ERROR_CLASSES: dict[str, type[ServerError]] = {
    messages.ERROR_PREFIX + "rateLimited": RateLimited,
    messages.ERROR_PREFIX + "userActionRequired": UserActionRequired,
    messages.ERROR_PREFIX + "externalAccountRequired": ExternalAccountRequired,
    messages.ERROR_PREFIX + "accountDoesNotExist": AccountDoesNotExist,
}


def decode_json(response: Response, body: bytes) -> Any:
    """
    Decode a JSON response body.

    :raises MalformedResponse: If it is not JSON.
    """
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedResponse(f"Undecodable JSON body: {error}", response) from error


def response_nonce(response: Response) -> bytes | None:
    """The ``Replay-Nonce`` of an answer, decoded, or ``None``."""
    value = first_header(response, b"replay-nonce")
    if not value:
        return None
    try:
        return b64decode(value)
    except (TypeError, ValueError, DeserializationError):
        _log.warn("Ignoring a malformed Replay-Nonce {value!r}", value=value)
        return None


def links(response: Response, base: str = "") -> dict[str, list[str]]:
    """The ``Link`` relations of a response (RFC 8288)."""
    return parse_links(response.headers.getRawHeaders(b"link") or [], base)


def server_error(
    response: Response, body: bytes, received: str | None, now: Callable[[], float]
) -> ServerError:
    """
    The ServerError for an error answer, with or without problem document,
    of the subclass its ACME error type calls for.

    :param received: The answer's media type, or ``None``.
    :param now: The current time, for ``Retry-After`` dates.
    """
    current = now()
    retry_after = parse_retry_after(
        first_header(response, b"retry-after"), lambda: current
    )
    jobj: Any = None
    if received == PROBLEM_CONTENT_TYPE:
        try:
            jobj = json.loads(body)
            if not isinstance(jobj, dict):
                raise TypeError("not a JSON object")
            problem = messages.Error.from_json(jobj)
        except (ValueError, TypeError, DeserializationError) as failure:
            jobj = None
            problem = _problem(
                f"HTTP {response.code} with an undecodable problem document: {failure}"
            )
    else:
        snippet = body[:200].decode("utf-8", "replace").strip()
        problem = _problem(
            f"HTTP {response.code} ({received or 'no content type'}): {snippet}",
            title=f"HTTP {response.code}",
        )
    error_class = _ERROR_CLASSES.get(problem.typ, ServerError)
    error = error_class(problem, response, retry_after)
    if retry_after is not None:
        error.retry_at = current + retry_after
    if isinstance(error, UserActionRequired):
        terms = links(response).get("terms-of-service", [])
        error.terms_of_service = terms[0] if terms else None
        instance = jobj.get("instance") if jobj is not None else None
        error.instance = instance if isinstance(instance, str) else None
    return error


def _problem(detail: str, title: str | None = None) -> messages.Error:
    """A problem document of type ``about:blank`` made up on the client side."""
    jobj = {"type": "about:blank", "detail": detail}
    if title is not None:
        jobj["title"] = title
    problem: messages.Error = messages.Error.from_json(jobj)
    return problem


def _causes(error: BaseException) -> list[BaseException]:
    """The failure and those it wraps (twisted.web's ``reasons``)."""
    found = [error]
    for reason in getattr(error, "reasons", None) or ():
        value = reason.value if isinstance(reason, Failure) else reason
        if isinstance(value, BaseException):
            found.append(value)
    return found


def lasting_failure(error: BaseException) -> bool:
    """
    Whether a request failed for a reason that sending it again does not
    change: the server's TLS certificate is not trusted (until the trust
    changes), or the URL cannot be requested at all (no ``https``/``http``
    scheme, no host).
    """
    if isinstance(error, ValueError | TypeError):
        return True
    return any(
        isinstance(cause, SchemeNotSupported)
        or (isinstance(cause, SSL.Error) and "certificate verify failed" in str(cause))
        for cause in _causes(error)
    )


def describe_failure(error: BaseException) -> str:
    """A request's failure to get an answer, in words."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        inner = [
            reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
            for reason in reasons
        ]
        return f"{type(error).__name__}: {'; '.join(inner)}"
    return f"{type(error).__name__}: {error}"
