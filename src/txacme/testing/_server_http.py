"""
The HTTP side of :class:`txacme.testing.MemoryAcmeServer`: requests and
answers as plain values, the ``twisted.web`` resource that converts to and
from them (and delays or drops an answer when told to), and the ways an
answer can be spoiled on purpose.

Private.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Literal, get_args
from urllib.parse import urlsplit

from attrs import define, field, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from txacme.testing._server_protocol import ProblemError

__all__ = [
    "BREAK_KINDS",
    "JOSE_JSON",
    "PEM_CHAIN",
    "AcmeResource",
    "BreakKind",
    "Delivery",
    "Incoming",
    "Outgoing",
    "normalized_origin",
    "retry_after",
    "spoil",
]

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
PEM_CHAIN = "application/pem-certificate-chain"
JOSE_JSON = "application/jose+json"

BreakKind = Literal[
    "html",
    "truncated-json",
    "wrong-content-type",
    "no-location",
    "no-replay-nonce",
    "not-pem",
    "empty-body",
]
# Documented in txacme.testing.

BREAK_KINDS: frozenset[str] = frozenset(get_args(BreakKind))


def retry_after(seconds: float) -> str:
    """
    :returns: A ``Retry-After`` value: whole seconds, rounded up, at least 1.
    """
    return str(max(1, math.ceil(seconds)))


def normalized_origin(scheme: str, netloc: str) -> str:
    """
    :returns: ``scheme://netloc`` in lower case, without a default port.
    """
    scheme, netloc = scheme.lower(), netloc.lower()
    host, _, port = netloc.rpartition(":")
    if not host or "]" in port:
        return f"{scheme}://{netloc}"
    if (scheme, port) in (("https", "443"), ("http", "80")):
        return f"{scheme}://{host}"
    return f"{scheme}://{netloc}"


@frozen
class Incoming:
    """
    A request, as the server's handlers see it.

    :ivar method: The HTTP method.
    :ivar url: The full request URL, origin normalized.
    :ivar path: The URL's path.
    :ivar content_type: The ``Content-Type`` header, if any.
    :ivar body: The request body.
    """

    method: str
    url: str
    path: str
    content_type: str | None
    body: bytes


@define
class Outgoing:
    """
    An answer under construction.

    :ivar status: The HTTP status.
    :ivar headers: Header names and values, in order; a name may repeat.
    :ivar body: The body.
    """

    status: int
    headers: list[tuple[str, str]] = field(factory=list)
    body: bytes = b""

    @classmethod
    def with_json(
        cls, status: int, document: object, content_type: str = JSON
    ) -> Outgoing:
        """
        :returns: An answer with a JSON body.
        """
        return cls(
            status=status,
            headers=[("Content-Type", content_type)],
            body=json.dumps(document, indent=2).encode("utf-8"),
        )

    @classmethod
    def problem(cls, problem: ProblemError) -> Outgoing:
        """
        :returns: An ``application/problem+json`` answer (RFC 8555 §6.7).
        """
        answer = cls.with_json(problem.status, problem.document(), PROBLEM_JSON)
        answer.headers.extend(problem.headers.items())
        return answer

    @classmethod
    def plain(cls, status: int, text: str) -> Outgoing:
        """
        :returns: A ``text/plain`` answer, no problem document.
        """
        return cls(
            status=status,
            headers=[("Content-Type", "text/plain")],
            body=text.encode("utf-8"),
        )

    def remove(self, name: str) -> None:
        """
        Drop every header called ``name``.
        """
        self.headers = [
            (key, value) for key, value in self.headers if key.lower() != name.lower()
        ]

    def replace(self, name: str, value: str) -> None:
        """
        Set the header ``name`` to ``value`` alone.
        """
        self.remove(name)
        self.headers.append((name, value))


@frozen
class Delivery:
    """
    How an answer reaches the client.

    :ivar answer: The answer, or ``None`` to close the connection without
        one.
    :ivar delay: Seconds to hold the answer back.
    """

    answer: Outgoing | None
    delay: float = 0.0


def spoil(answer: Outgoing, kind: str) -> None:
    """
    Spoil an answer in place (see :data:`txacme.testing.BreakKind`).
    """
    if kind == "html":
        answer.replace("Content-Type", "text/html")
        answer.body = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
    elif kind == "truncated-json":
        answer.body = answer.body[: len(answer.body) // 2] or b"{"
    elif kind == "wrong-content-type":
        answer.replace("Content-Type", "text/plain")
    elif kind == "no-location":
        answer.remove("Location")
    elif kind == "no-replay-nonce":
        answer.remove("Replay-Nonce")
    elif kind == "not-pem":
        answer.body = b"this is not a PEM certificate chain\n"
    elif kind == "empty-body":
        answer.body = b""
    else:
        raise ValueError(f"unknown break kind {kind!r}")


def _drop(request: Request) -> None:
    """
    Close a request's connection without answering.
    """
    transport = request.channel.transport
    if transport is None:
        return
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()


def _start(request: Request, answer: Outgoing) -> None:
    """
    Set a request's status and headers from an answer.
    """
    request.defaultContentType = None
    request.setResponseCode(answer.status)
    grouped: dict[str, list[bytes]] = {}
    for name, value in answer.headers:
        grouped.setdefault(name, []).append(value.encode("latin-1"))
    for name, values in grouped.items():
        request.responseHeaders.setRawHeaders(name, values)


@implementer(IResource)
class AcmeResource:
    """
    A ``twisted.web`` leaf resource that hands every request, whatever its
    path, to a responder function and delivers the answer: at once, later
    (on ``clock``), or not at all (the connection is closed).
    """

    isLeaf = True

    def __init__(
        self,
        respond: Callable[[Incoming], Delivery],
        clock: IReactorTime,
        delivered: Callable[[], None],
    ) -> None:
        """
        :param respond: Answers one request.
        :param clock: Times delayed answers.
        :param delivered: Called around a delayed answer's writing: it
            flushes the in-memory connections of
            :class:`treq.testing.StubTreq`, which carry nothing written
            outside a request's own exchange until flushed.
        """
        self._respond = respond
        self._clock = clock
        self._delivered = delivered

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        """
        :returns: This resource: it answers for every path below it.
        """
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        """
        :raises NotImplementedError: Always; the resource has no children.
        """
        raise NotImplementedError("the ACME server resource has no children")

    def render(self, request: Request) -> bytes | int:
        """
        Answer a request: synchronously, or later for a delayed or dropped
        answer (``NOT_DONE_YET``).
        """
        secure = request.isSecure()  # type: ignore[no-untyped-call]
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        target = request.uri.decode("latin-1")
        content_type = request.getHeader(b"content-type")
        content = request.content
        delivery = self._respond(
            Incoming(
                method=request.method.decode("ascii"),
                url=normalized_origin("https" if secure else "http", host) + target,
                path=urlsplit(target).path,
                content_type=None
                if content_type is None
                else content_type.decode("latin-1"),
                body=b"" if content is None else content.read(),
            )
        )
        answer = delivery.answer
        if answer is None:
            _drop(request)
            return NOT_DONE_YET
        if delivery.delay > 0:
            self._deliver_later(request, answer, delivery.delay)
            return NOT_DONE_YET
        _start(request, answer)
        return answer.body

    def _deliver_later(self, request: Request, answer: Outgoing, delay: float) -> None:
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def deliver() -> None:
            # A client that gave up meanwhile is noticed on flushing.
            self._delivered()
            if gone:
                return
            _start(request, answer)
            request.responseHeaders.setRawHeaders(
                b"content-length", [str(len(answer.body)).encode("ascii")]
            )
            request.write(answer.body)  # type: ignore[no-untyped-call]
            request.finish()  # type: ignore[no-untyped-call]
            self._delivered()

        self._clock.callLater(delay, deliver)
