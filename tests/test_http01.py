"""
The http-01 responder's standalone server and its self-check, over the
loopback interface on the real reactor.

Servers listen on 127.0.0.1 through :class:`tests.support.LoopbackEndpoint`,
which tracks their connections so that each test ends with every port and
connection closed; clients are treq over an Agent whose connections are closed in a
cleanup.  (The resource itself, mounted in a site, is tested in memory in
``test_challenges``.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acme import challenges
from josepy.jwk import JWKEC
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from tests.support import (
    EC_KEY,
    LoopbackEndpoint,
    TypedAssertions,
)
from tests.support import TestCase as SyncTestCase
from txacme.challenges import HTTP01Responder, SelfCheck, SelfCheckFailed
from txacme.testing.pebble import ConnectionTracker
from txacme.util import generate_private_key

LOOPBACK = "127.0.0.1"
NAME = "www.example.test"

#: Another account's key: its key authorizations differ from EC_KEY's.
OTHER_KEY = JWKEC(key=generate_private_key("p256"))


def http01_challenge(
    token: bytes | None = None, key: JWKEC = EC_KEY
) -> tuple[challenges.HTTP01, challenges.HTTP01Response]:
    """An http-01 challenge (a random token by default) and its response."""
    challenge = challenges.HTTP01(token=token or os.urandom(16))
    response = challenge.response(key)
    assert isinstance(response, challenges.HTTP01Response)
    return challenge, response


def port_of(listening: IListeningPort) -> int:
    address: Any = listening.getHost()
    return int(address.port)


def closed_port() -> int:
    """A loopback port with nothing listening (it was just released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


class Loopback:
    """
    Servers on 127.0.0.1 and an HTTP client, all closed (ports and
    connections) by the cleanups it registers with ``add_cleanup``.

    :ivar endpoint: A :class:`LoopbackEndpoint` on a free port.
    :ivar trackers: The connection trackers of every server listening.
    :ivar http: A treq client.
    """

    def __init__(
        self, reactor: Any, add_cleanup: Callable[[Callable[..., object]], None]
    ) -> None:
        self.reactor = reactor
        self._add_cleanup = add_cleanup
        self.trackers: list[ConnectionTracker] = []
        self.endpoint = LoopbackEndpoint(reactor, self.trackers)
        pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
        add_cleanup(pool.closeCachedConnections)
        self.http = HTTPClient(Agent(reactor, pool=pool))  # type: ignore[no-untyped-call]

    async def serve(self, factory: Any) -> int:
        """Serve ``factory`` on a free loopback port until the test ends."""
        listening = await self.endpoint.listen(factory)
        self._add_cleanup(lambda: self.close(listening))
        return port_of(listening)

    async def serve_standalone(
        self, responder: HTTP01Responder, timeout: float = 30.0
    ) -> int:
        """Run ``responder.listen`` on a free loopback port until the test ends."""
        listening = await responder.listen(self.endpoint, self.reactor, timeout)
        self._add_cleanup(lambda: self.close(listening))
        return port_of(listening)

    def close(self, listening: IListeningPort) -> Deferred[None]:
        """Stop ``listening`` and close every server connection."""

        async def close() -> None:
            await maybeDeferred(listening.stopListening)
            for tracker in self.trackers:
                await tracker.close_all()

        return Deferred.fromCoroutine(close())

    async def fetch(
        self, port: int, path: str, method: str = "GET"
    ) -> tuple[int, bytes, dict[bytes, list[bytes]]]:
        """``method`` ``path`` on 127.0.0.1:``port``: status, body, headers."""
        response: Any = await self.http.request(
            method, f"http://{LOOPBACK}:{port}{path}"
        )
        body: bytes = await response.content()
        return (
            response.code,
            body,
            {
                name.lower(): values
                for name, values in response.headers.getAllRawHeaders()
            },
        )


class LoopbackTestCase(TypedAssertions, TestCase):
    """
    A test case on the real reactor with a :class:`Loopback`.
    """

    timeout = 30

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.loopback = Loopback(reactor, self.addCleanup)
        self.trackers = self.loopback.trackers
        self.serve = self.loopback.serve
        self.serve_standalone = self.loopback.serve_standalone
        self.fetch = self.loopback.fetch


# -- resources standing in for misconfigured servers -----------------------------------


class Fixed(Resource):
    """Answers every path with one status and body."""

    isLeaf = True

    def __init__(self, body: bytes, code: int = 200) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body = body
        self.code = code

    def render_GET(self, request: IRequest) -> bytes:
        request.setResponseCode(self.code)  # type: ignore[no-untyped-call]
        return self.body


class Recording(Resource):
    """
    A site root that records each request's ``Host`` and ``User-Agent``
    and serves ``challenge_resource`` at ``/.well-known/acme-challenge``.
    """

    def __init__(self, challenge_resource: Resource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.requests: list[tuple[bytes | None, bytes | None]] = []
        well_known = Resource()  # type: ignore[no-untyped-call]
        well_known.putChild(b"acme-challenge", challenge_resource)
        self.putChild(b".well-known", well_known)

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        headers = request.requestHeaders
        self.requests.append(
            (
                (headers.getRawHeaders(b"host") or [None])[0],
                (headers.getRawHeaders(b"user-agent") or [None])[0],
            )
        )
        child: IResource = super().getChildWithDefault(path, request)  # type: ignore[no-untyped-call]
        return child


def site(resource: Resource) -> Site:
    return Site(resource)  # type: ignore[no-untyped-call]


# -- the standalone server -------------------------------------------------------------


class StandaloneTests(LoopbackTestCase):
    """
    :meth:`HTTP01Responder.listen`: an HTTP server that serves the exact
    token paths being responded to and 404 for everything else.
    """

    async def test_token_served(self) -> None:
        """
        A pending token's path answers 200 with the key authorization as
        ``text/plain``, not cacheable, as often as asked.
        """
        responder = HTTP01Responder()
        port = await self.serve_standalone(responder)
        challenge, response = http01_challenge()
        await responder.start_responding(NAME, challenge, response)
        for _ in range(3):
            code, body, headers = await self.fetch(port, challenge.path)
            self.assertEqual(code, 200)
            self.assertEqual(body, response.key_authorization.encode("ascii"))
            self.assertEqual(headers[b"content-type"], [b"text/plain"])
            self.assertEqual(headers[b"cache-control"], [b"no-store"])

    async def test_head(self) -> None:
        """
        ``HEAD`` on a pending token's path answers 200 with the content type
        and no body; on any other path, 404.
        """
        responder = HTTP01Responder()
        port = await self.serve_standalone(responder)
        challenge, response = http01_challenge()
        other, _ = http01_challenge()
        await responder.start_responding(NAME, challenge, response)
        code, body, headers = await self.fetch(port, challenge.path, "HEAD")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(headers[b"content-type"], [b"text/plain"])
        code, body, _ = await self.fetch(port, other.path, "HEAD")
        self.assertEqual((code, body), (404, b""))

    async def test_other_paths_not_found(self) -> None:
        """
        With a token pending, every other path answers 404: the root, the
        directories above the token, another token, a path below the token,
        and the token under another directory.
        """
        responder = HTTP01Responder()
        port = await self.serve_standalone(responder)
        challenge, response = http01_challenge()
        other, _ = http01_challenge()
        await responder.start_responding(NAME, challenge, response)
        token = challenge.encode("token")
        for path in (
            "/",
            "/index.html",
            "/.well-known",
            "/.well-known/",
            "/.well-known/acme-challenge",
            "/.well-known/acme-challenge/",
            other.path,
            challenge.path + "/",
            challenge.path + "/more",
            f"/.well-known/other/{token}",
            f"/{token}",
        ):
            code, body, _ = await self.fetch(port, path)
            self.assertEqual(code, 404, path)
            self.assertNotIn(response.key_authorization.encode("ascii"), body)

    async def test_other_methods(self) -> None:
        """
        Only ``GET`` and ``HEAD`` get the key authorization: a ``POST`` to
        the token path is refused (405).
        """
        responder = HTTP01Responder()
        port = await self.serve_standalone(responder)
        challenge, response = http01_challenge()
        await responder.start_responding(NAME, challenge, response)
        code, body, _ = await self.fetch(port, challenge.path, "POST")
        self.assertEqual(code, 405)
        self.assertNotIn(response.key_authorization.encode("ascii"), body)

    async def test_stopped_token_not_found(self) -> None:
        """
        After ``stop_responding`` the token answers 404 (GET and HEAD),
        while another pending token is still served.
        """
        responder = HTTP01Responder()
        port = await self.serve_standalone(responder)
        first, first_response = http01_challenge()
        second, second_response = http01_challenge()
        await responder.start_responding(NAME, first, first_response)
        await responder.start_responding("other.example.test", second, second_response)
        self.assertEqual((await self.fetch(port, first.path))[0], 200)
        responder.stop_responding(NAME, first, first_response)
        self.assertEqual((await self.fetch(port, first.path))[0], 404)
        self.assertEqual((await self.fetch(port, first.path, "HEAD"))[0], 404)
        code, body, _ = await self.fetch(port, second.path)
        self.assertEqual(code, 200)
        self.assertEqual(body, second_response.key_authorization.encode("ascii"))

    async def test_same_tokens_as_resource(self) -> None:
        """
        The standalone server and :attr:`HTTP01Responder.resource` serve the
        same tokens: one responder can do both at once.
        """
        responder = HTTP01Responder()
        standalone = await self.serve_standalone(responder)
        mounted = await self.serve(site(Recording(responder.resource)))
        challenge, response = http01_challenge()
        await responder.start_responding(NAME, challenge, response)
        for port in (standalone, mounted):
            self.assertEqual((await self.fetch(port, challenge.path))[0], 200)
        responder.stop_responding(NAME, challenge, response)
        for port in (standalone, mounted):
            self.assertEqual((await self.fetch(port, challenge.path))[0], 404)

    async def test_application_resource(self) -> None:
        """
        With an application's own resource, the standalone server serves its
        children at ``/.well-known/acme-challenge``, tokens included.
        """
        mine = Resource()  # type: ignore[no-untyped-call]
        responder = HTTP01Responder(mine)
        port = await self.serve_standalone(responder)
        challenge, response = http01_challenge()
        await responder.start_responding(NAME, challenge, response)
        code, body, _ = await self.fetch(port, challenge.path)
        self.assertEqual(code, 200)
        self.assertEqual(body, response.key_authorization.encode("ascii"))
        self.assertEqual((await self.fetch(port, "/"))[0], 404)

    async def test_idle_connection_closed(self) -> None:
        """
        A connection that sends nothing is closed after ``timeout``
        seconds.
        """
        responder = HTTP01Responder()
        port = await self.serve_standalone(responder, timeout=0.2)
        lost: Deferred[None] = Deferred()

        class Silent(Protocol):
            def connectionLost(self, reason: Failure | None = None) -> None:
                lost.callback(None)

        endpoint = TCP4ClientEndpoint(self.reactor, LOOPBACK, port, timeout=10)
        started = time.monotonic()
        await endpoint.connect(Factory.forProtocol(Silent))
        await lost
        self.assertTrue(time.monotonic() - started < 5)


# -- the self-check --------------------------------------------------------------------


class SelfCheckTests(LoopbackTestCase):
    """
    :class:`SelfCheck`: ``start_responding`` fires only once the token URL
    answers the key authorization, and otherwise fails with
    :exc:`SelfCheckFailed` and stops serving the token.
    """

    def responder(self, port: int, timeout: float = 5.0) -> HTTP01Responder:
        """A responder whose self-check connects to 127.0.0.1:``port``."""
        return HTTP01Responder(
            self_check=SelfCheck(
                self.reactor, timeout=timeout, address=(LOOPBACK, port)
            )
        )

    async def assertNotServed(
        self, responder: HTTP01Responder, challenge: challenges.HTTP01
    ) -> None:
        """The responder's resource does not serve the challenge's token."""
        port = await self.serve(site(Recording(responder.resource)))
        self.assertEqual((await self.fetch(port, challenge.path))[0], 404)

    async def test_success(self) -> None:
        """
        Against its own standalone server, start fires once the token URL
        was fetched: one request, with the name as ``Host`` and the
        self-check's ``User-Agent``.  The token stays served.
        """
        responder = HTTP01Responder()
        recording = Recording(responder.resource)
        port = await self.serve(site(recording))
        responder = HTTP01Responder(
            responder.resource,
            self_check=SelfCheck(self.reactor, address=(LOOPBACK, port)),
        )
        challenge, response = http01_challenge()
        await responder.start_responding(NAME, challenge, response)
        self.assertEqual(
            recording.requests, [(NAME.encode(), b"txacme http-01 self-check")]
        )
        code, body, _ = await self.fetch(port, challenge.path)
        self.assertEqual((code, body), (200, response.key_authorization.encode()))

    async def test_standalone_success(self) -> None:
        """
        A responder whose self-check points at its own standalone server
        starts, and leaves no connection of the check open.
        """
        responder = HTTP01Responder()
        port = await self.serve_standalone(responder)
        checked = HTTP01Responder(
            responder.resource,
            self_check=SelfCheck(self.reactor, address=(LOOPBACK, port)),
        )
        challenge, response = http01_challenge()
        await checked.start_responding(NAME, challenge, response)
        (tracker,) = self.trackers
        # The server sees the check's connection closed by the client, long
        # before its own idle timeout.
        deadline = time.monotonic() + 2
        while tracker.protocols and time.monotonic() < deadline:
            await deferLater(self.reactor, 0.01)
        self.assertEqual(tracker.protocols, {})

    async def test_host_name_address(self) -> None:
        """
        ``address`` may name its host: ``localhost`` is resolved, and the
        request still carries the challenge's name as ``Host``.
        """
        responder = HTTP01Responder()
        recording = Recording(responder.resource)
        port = await self.serve(site(recording))
        checked = HTTP01Responder(
            responder.resource,
            self_check=SelfCheck(self.reactor, address=("localhost", port)),
        )
        challenge, response = http01_challenge()
        await checked.start_responding(NAME, challenge, response)
        self.assertEqual(recording.requests[0][0], NAME.encode())

    async def test_ip_address_identifiers(self) -> None:
        """
        For an IP address identifier (RFC 8738) the URL's host, and so the
        ``Host`` header, is the address, bracketed for IPv6.
        """
        responder = HTTP01Responder()
        recording = Recording(responder.resource)
        port = await self.serve(site(recording))
        checked = HTTP01Responder(
            responder.resource,
            self_check=SelfCheck(self.reactor, address=(LOOPBACK, port)),
        )
        for identifier, host in (
            ("192.0.2.7", b"192.0.2.7"),
            ("2001:db8::7", b"[2001:db8::7]"),
        ):
            challenge, response = http01_challenge()
            await checked.start_responding(identifier, challenge, response)
            self.assertEqual(recording.requests[-1][0], host)

    async def test_wrong_body(self) -> None:
        """
        A server answering the token with another key authorization (another
        account's) fails the start with :exc:`SelfCheckFailed` naming the
        URL and what came back; the token is no longer served.
        """
        elsewhere = HTTP01Responder()
        port = await self.serve_standalone(elsewhere)
        challenge, response = http01_challenge()
        _, other_response = http01_challenge(challenge.token, OTHER_KEY)
        await elsewhere.start_responding(NAME, challenge, other_response)
        responder = self.responder(port)
        with self.assertRaises(SelfCheckFailed) as raised:
            await responder.start_responding(NAME, challenge, response)
        error = raised.exception
        url = f"http://{NAME}{challenge.path}"
        self.assertEqual((error.server_name, error.url), (NAME, url))
        self.assertIn("instead of the key authorization", error.reason)
        self.assertIn(other_response.key_authorization[:20], error.reason)
        self.assertIn(url, str(error))
        await self.assertNotServed(responder, challenge)

    async def test_whitespace_allowed(self) -> None:
        """
        A body of the key authorization and a final newline passes, as CAs
        allow surrounding whitespace.
        """
        challenge, response = http01_challenge()
        body = response.key_authorization.encode("ascii") + b"\r\n"
        port = await self.serve(site(Fixed(body)))
        await self.responder(port).start_responding(NAME, challenge, response)

    async def test_not_found(self) -> None:
        """
        A 404 (the resource not mounted where the CA looks) fails the start
        with the status in the reason.
        """
        port = await self.serve_standalone(HTTP01Responder())
        challenge, response = http01_challenge()
        responder = self.responder(port)
        with self.assertRaises(SelfCheckFailed) as raised:
            await responder.start_responding(NAME, challenge, response)
        self.assertIn("answered 404 Not Found instead of 200", raised.exception.reason)
        await self.assertNotServed(responder, challenge)

    async def test_body_too_long(self) -> None:
        """
        A body longer than anything a key authorization could be fails the
        check without being read to its end.
        """
        port = await self.serve(site(Fixed(b"x" * 100_000)))
        challenge, response = http01_challenge()
        with self.assertRaises(SelfCheckFailed) as raised:
            await self.responder(port).start_responding(NAME, challenge, response)
        self.assertIn("longer than 4096 bytes", raised.exception.reason)

    async def test_unreachable(self) -> None:
        """
        Nothing listening: the start fails at once with
        :exc:`SelfCheckFailed` saying the URL could not be fetched, and the
        token is no longer served.
        """
        challenge, response = http01_challenge()
        port = closed_port()
        responder = self.responder(port)
        started = time.monotonic()
        with self.assertRaises(SelfCheckFailed) as raised:
            await responder.start_responding(NAME, challenge, response)
        self.assertTrue(time.monotonic() - started < 2)
        self.assertIn("could not be fetched", raised.exception.reason)
        self.assertIn("refused", raised.exception.reason.lower())
        self.assertEqual(raised.exception.address, (LOOPBACK, port))
        self.assertIn(f"(connecting to {LOOPBACK}:{port})", str(raised.exception))
        await self.assertNotServed(responder, challenge)

    async def test_timeout(self) -> None:
        """
        A server that accepts the connection and never answers fails the
        start after ``timeout`` seconds, and the connection is closed.
        """
        silent_factory = Factory.forProtocol(Protocol)
        port = await self.serve(silent_factory)
        challenge, response = http01_challenge()
        responder = self.responder(port, timeout=0.3)
        started = time.monotonic()
        with self.assertRaises(SelfCheckFailed) as raised:
            await responder.start_responding(NAME, challenge, response)
        elapsed = time.monotonic() - started
        self.assertTrue(0.25 <= elapsed < 3, elapsed)
        self.assertEqual(raised.exception.reason, "gave no answer within 0.3 seconds")
        (tracker,) = self.trackers
        await tracker.close_all()
        await self.assertNotServed(responder, challenge)

    async def test_body_stalls(self) -> None:
        """
        A server that sends the headers and part of the body, then nothing,
        fails the start after ``timeout`` seconds too.
        """

        class Stalling(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"
                )

        port = await self.serve(Factory.forProtocol(Stalling))
        challenge, response = http01_challenge()
        with self.assertRaises(SelfCheckFailed) as raised:
            await self.responder(port, timeout=0.3).start_responding(
                NAME, challenge, response
            )
        self.assertEqual(raised.exception.reason, "gave no answer within 0.3 seconds")

    async def test_cancel(self) -> None:
        """
        Cancelling the start during the self-check fails it with
        ``CancelledError`` (not a self-check failure) and stops serving the
        token.
        """
        port = await self.serve(Factory.forProtocol(Protocol))
        challenge, response = http01_challenge()
        responder = self.responder(port)
        starting = responder.start_responding(NAME, challenge, response)
        # Let the connection be made and the request sent.
        while not self.trackers[0].protocols:
            await deferLater(self.reactor, 0.01)
        starting.cancel()
        with self.assertRaises(CancelledError):
            await starting
        await self.assertNotServed(responder, challenge)

    def test_timeout_must_be_positive(self) -> None:
        """A ``timeout`` of zero or less is refused when the check is made."""
        for timeout in (0, -1.0):
            with self.assertRaises(ValueError):
                SelfCheck(self.reactor, timeout=timeout)

    def test_without_self_check(self) -> None:
        """
        Without a self-check, ``start_responding`` returns a Deferred that
        has already fired: the token is served synchronously, as in txacme
        0.9.
        """
        responder = HTTP01Responder()
        challenge, response = http01_challenge()
        starting = responder.start_responding(NAME, challenge, response)
        results: list[object] = []
        starting.addCallback(results.append)
        self.assertEqual(results, [None])


class SelfCheckConnectingTests(SyncTestCase):
    """
    The self-check while its connection is still being made, on a
    ``MemoryReactorClock`` whose connections never complete: the time bound
    and cancellation cover that phase too.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()  # type: ignore[no-untyped-call]
        self.check = SelfCheck(self.reactor, timeout=5, address=(LOOPBACK, 8080))
        self.challenge, self.response = http01_challenge()

    def test_timeout_while_connecting(self) -> None:
        """
        A connection that is never made fails the check after ``timeout``
        seconds as a timeout, not as a connection error, and leaves no timer
        behind.
        """
        checking = self.check.check(NAME, self.challenge, self.response)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(4.9)
        self.assertNoResult(checking)
        self.reactor.advance(0.1)
        error = self.errorOf(checking, SelfCheckFailed)
        self.assertEqual(error.reason, "gave no answer within 5 seconds")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel_while_connecting(self) -> None:
        """
        Cancelling the check while connecting fails it with
        ``CancelledError`` and cancels its timer.
        """
        checking = self.check.check(NAME, self.challenge, self.response)
        checking.cancel()
        self.failureResultOf(checking, CancelledError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


# -- the documentation's example -------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


class ExampleTests(TypedAssertions, TestCase):
    """``docs/examples/http_01.py`` runs and prints what the page shows."""

    def test_example(self) -> None:
        """
        Run as a script, the example serves a token with its content type,
        404 for another path and for the stopped token, gets a certificate
        validated over HTTP through the standalone server with the
        self-check on, and shows the self-check failing where nothing
        listens.
        """
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), environment.get("PYTHONPATH", "")]
        )
        completed = subprocess.run(
            [sys.executable, str(ROOT / "docs" / "examples" / "http_01.py")],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment,
            cwd=ROOT,
            check=False,
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        lines = completed.stdout.splitlines()
        self.assertEqual(
            lines[:4],
            [
                "validator: 200 text/plain, body is the key authorization",
                "other path: 404",
                "validator after stop: 404",
                "issued for example.com, www.example.com, validated by http-01",
            ],
        )
        # The operating system words the refused connection.
        self.assertEqual(len(lines), 5)
        self.assertRegex(
            lines[4],
            r"^self-check failed for example\.com: could not be fetched: "
            r"Connection was refused",
        )
        # The page shows the same output.
        page = (ROOT / "docs" / "challenges" / "http-01.rst").read_text()
        for line in lines[:4]:
            self.assertIn(f"   {line}\n", page)
        self.assertIn(
            "   self-check failed for example.com: could not be fetched: "
            "Connection was refused",
            page,
        )
