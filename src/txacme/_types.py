"""
Structural types shared by the modules.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.web.http_headers import Headers


class HTTPResponse(Protocol):
    """The parts of a treq response that txacme uses."""

    @property
    def code(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    def content(self) -> Deferred[bytes]: ...


class TreqClient(Protocol):
    """
    The parts of a treq client that txacme uses:
    :class:`treq.client.HTTPClient`, or :class:`treq.testing.StubTreq`.
    """

    def request(
        self, method: str, url: str, *, headers: Any = ..., data: Any = ...
    ) -> Deferred[Any]: ...
