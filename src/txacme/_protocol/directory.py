"""
The directory (RFC 8555 §7.1.1): the one resource read with a plain GET,
which names every other.
"""

from __future__ import annotations

from typing import Any

from acme import messages
from josepy.errors import DeserializationError
from twisted.internet.interfaces import IReactorTime

from txacme._types import HTTPResponse as Response
from txacme.errors import MalformedResponse
from txacme.jws import JWSClient

__all__ = ["fetch_directory", "parse_directory"]

#: The entries without which a directory is not an RFC 8555 directory.
REQUIRED_KEYS = ("newNonce", "newAccount", "newOrder")


async def fetch_directory(
    transport: JWSClient, url: str, clock: IReactorTime
) -> messages.Directory:
    """
    GET and check a directory.

    :raises MalformedResponse: If it is not an RFC 8555 directory (HTML,
        truncated JSON, an ACME v1 directory...).
    """
    answer = await transport.fetch(url, clock=clock)
    return parse_directory(answer.json(), answer.response)


def parse_directory(jobj: Any, response: Response) -> messages.Directory:
    """
    A directory from its JSON.

    :raises MalformedResponse: If it lacks an RFC 8555 entry, or does not
        parse.
    """
    if not isinstance(jobj, dict):
        raise MalformedResponse("The directory is not a JSON object", response)
    missing = [key for key in REQUIRED_KEYS if not isinstance(jobj.get(key), str)]
    if missing:
        raise MalformedResponse(
            f"Not an RFC 8555 (ACME v2) directory: it lacks {', '.join(missing)}"
            + (" (ACME v1 directories are not supported)" if "new-reg" in jobj else ""),
            response,
        )
    meta = jobj.get("meta", {})
    if not isinstance(meta, dict):
        raise MalformedResponse("The directory's meta is not an object", response)
    try:
        return messages.Directory.from_json(dict(jobj))
    except (DeserializationError, TypeError, ValueError) as error:
        raise MalformedResponse(f"Invalid directory: {error}", response) from error
