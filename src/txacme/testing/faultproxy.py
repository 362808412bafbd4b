"""
An HTTPS proxy in front of Pebble that injects the network faults of issue
11 ("Issuance that survives the network"): connections closed before or
after the CA acts, 503 pages, truncated errors, rate limits, slow answers
and captive portals (see :data:`txacme.testing.FaultKind`).

:class:`FaultProxy` listens on a free loopback port with a certificate for
``127.0.0.1`` and ``localhost`` from a CA of its own (clients trust it
through :meth:`FaultProxy.trust_root` or :meth:`FaultProxy.http_client`),
and forwards each request to Pebble's ACME listener over TLS, keeping the
``Host`` header (Pebble builds its URLs from it, so the URLs it hands out
lead back through the proxy), every other end-to-end header and the body.
Pebble's answer goes back with its status, headers (``Replay-Nonce``,
``Location``, ``Link``, ``Retry-After``, ...) and body; bodies are read
whole before they are passed on, ACME's being small.

A :class:`~txacme.testing.FaultPlan` in :attr:`FaultProxy.plan` decides,
per request and from a seed, whether the request gets a fault and which;
it may be limited to some endpoints, recognized from Pebble's URL layout
by :func:`classify_pebble_path`.  :attr:`FaultProxy.requests` records what
happened to each request, and :meth:`FaultProxy.orphaned_orders` which
orders the CA finalized without the client receiving the certificate.
(The module is longer than most: the proxy is one object, its serving,
forwarding, fault answers and record of what it did sharing its state;
the faults themselves are :class:`~txacme.testing.FaultPlan`'s.)

::

    from twisted.internet.task import react
    from txacme.testing import FaultPlan
    from txacme.testing.faultproxy import FaultProxy
    from txacme.testing.pebble import PebbleServer

    async def main(reactor):
        pebble = PebbleServer.start()
        proxy = FaultProxy.for_pebble(
            reactor, pebble, FaultPlan.mixed(0.2, seed=1)
        )
        proxy.start()
        try:
            http = proxy.http_client(reactor)
            ...  # a txacme client of proxy.directory_url, through http
        finally:
            await proxy.stop()
            pebble.stop()
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from attrs import define, field, frozen
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IConsumer,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from txacme.testing._faults import (
    FaultKind,
    FaultPlan,
    canned_answer,
)
from txacme.testing._pebble_ca import TestCA
from txacme.testing._processes import PebbleStartError, free_ports
from txacme.testing._sites import ConnectionTracker
from txacme.testing.pebble import PebbleServer

__all__ = [
    "PEBBLE_PATHS",
    "FaultProxy",
    "ProxiedRequest",
    "classify_pebble_path",
]

LOOPBACK = "127.0.0.1"

PEBBLE_PATHS: tuple[tuple[str, str], ...] = (
    ("/dir", "directory"),
    ("/nonce-plz", "newNonce"),
    ("/sign-me-up", "newAccount"),
    ("/order-plz", "newOrder"),
    ("/rollover-account-key", "keyChange"),
    ("/revoke-cert", "revokeCert"),
    ("/my-account/", "account"),
    ("/list-orderz/", "orders"),
    ("/my-order/", "order"),
    ("/finalize-order/", "finalize"),
    ("/authZ/", "authorization"),
    ("/chalZ/", "challenge"),
    ("/certZ/", "certificate"),
)
"""
Pebble's (2.4) URL layout: a path, or a path prefix (ending in ``/``),
and the endpoint kind it serves, named as
:data:`txacme.testing.Endpoint` names them.
"""

_ORDER_PREFIX = "/my-order/"
_FINALIZE_PREFIX = "/finalize-order/"

# Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own business on each
# side; Content-Length is recomputed.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"content-length",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_START_ATTEMPTS = 3


def classify_pebble_path(path: str) -> str:
    """
    The endpoint kind a path of Pebble's ACME listener serves (see
    :data:`PEBBLE_PATHS`).

    :param path: A request path; a query string is ignored.
    :returns: The endpoint kind, such as ``"newOrder"`` or
        ``"certificate"``, or ``"unknown"``.
    """
    path = path.partition("?")[0]
    for known, endpoint in PEBBLE_PATHS:
        if known.endswith("/"):
            if path.startswith(known) and len(path) > len(known):
                return endpoint
        elif path == known:
            return endpoint
    return "unknown"


@frozen
class ProxiedRequest:
    """
    What :class:`FaultProxy` did with one request.

    :ivar method: The HTTP method.
    :ivar path: The request target (path and query).
    :ivar endpoint: Its endpoint kind (:func:`classify_pebble_path`).
    :ivar fault: The fault injected, or ``None``.
    :ivar status: The status the client got, or ``None`` if its connection
        was closed without an answer (or it went away first).
    :ivar upstream_status: Pebble's status, or ``None`` if the request was
        not forwarded (or Pebble did not answer).
    :ivar duration: Seconds from the request's arrival to its end.
    """

    method: str
    path: str
    endpoint: str
    fault: FaultKind | None
    status: int | None
    upstream_status: int | None
    duration: float


@frozen
class _Upstream:
    """
    Pebble's answer, read whole.
    """

    status: int
    headers: list[tuple[bytes, list[bytes]]]
    body: bytes


@implementer(IBodyProducer)
class _Body:
    """
    A request body written at once.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IResource)
class _ProxyResource:
    """
    Hands every request, whatever its path, to the proxy.
    """

    isLeaf = True

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the proxy resource has no children")

    def render(self, request: Request) -> int:
        self._proxy._received(request)
        return NOT_DONE_YET


def _abort(request: Request) -> None:
    """
    Close a request's connection at once, without an answer.
    """
    transport = request.channel.transport
    if transport is not None:
        transport.abortConnection()  # type: ignore[attr-defined]


@define(eq=False)
class FaultProxy:
    """
    A fault-injecting HTTPS proxy in front of an ACME server (Pebble); see
    the module docstring.  Make one with :meth:`for_pebble`, then
    :meth:`start` it, and :meth:`stop` it when done.

    :ivar reactor: The reactor it listens, connects and waits on.
    :ivar upstream: The base URL of the ACME server's listener, such as
        ``https://127.0.0.1:14000``.
    :ivar upstream_trust: The CA the ACME server's TLS certificate is
        checked against.
    :ivar plan: The faults to inject, or ``None`` for none; may be replaced
        at any time.
    :ivar new_nonce_path: The ACME server's newNonce path, where the proxy
        gets a fresh ``Replay-Nonce`` for the faults that stand for the CA's
        own answer (``"truncated-error"``, ``"rate-limited"``).
    """

    reactor: IReactorTCP
    upstream: str
    upstream_trust: Certificate
    plan: FaultPlan | None = None
    new_nonce_path: str = "/nonce-plz"

    _log = Logger()

    _clock: IReactorTime = field(init=False, repr=False)
    _ca: TestCA = field(init=False, repr=False)
    _pool: HTTPConnectionPool = field(init=False, repr=False)
    _agent: Agent = field(init=False, repr=False)
    _port: IListeningPort | None = field(init=False, repr=False, default=None)
    _tracker: ConnectionTracker | None = field(init=False, repr=False, default=None)
    _in_flight: set[Deferred[None]] = field(init=False, repr=False, factory=set)
    _records: list[ProxiedRequest] = field(init=False, repr=False, factory=list)
    _counts: Counter[str] = field(init=False, repr=False, factory=Counter)
    _finalized: dict[str, None] = field(init=False, repr=False, factory=dict)
    _certificate_orders: dict[str, str] = field(init=False, repr=False, factory=dict)
    _delivered: dict[str, None] = field(init=False, repr=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        self._clock = IReactorTime(self.reactor)
        self._ca = TestCA.generate()
        self._pool = HTTPConnectionPool(  # type: ignore[no-untyped-call]
            self.reactor, persistent=True
        )
        self._agent = Agent(  # type: ignore[no-untyped-call]
            self.reactor,
            contextFactory=BrowserLikePolicyForHTTPS(  # type: ignore[no-untyped-call]
                trustRoot=self.upstream_trust
            ),
            pool=self._pool,
        )

    @classmethod
    def for_pebble(
        cls,
        reactor: IReactorTCP,
        pebble: PebbleServer,
        plan: FaultPlan | None = None,
    ) -> FaultProxy:
        """
        A proxy (not yet started) in front of a running Pebble's ACME
        listener.

        :param reactor: The reactor to run on.
        :param pebble: The Pebble.
        :param plan: The faults to inject (see :attr:`plan`).
        """
        return cls(
            reactor=reactor,
            upstream=f"https://{LOOPBACK}:{pebble.ports.acme}",
            upstream_trust=pebble.trust_root(),
            plan=plan,
        )

    # Running.

    def start(self) -> None:
        """
        Listen on a free loopback port.

        :raises RuntimeError: If it is already listening.
        :raises txacme.testing.pebble.PebbleStartError: If no port could be
            had.
        """
        if self._port is not None:
            raise RuntimeError("the proxy is already listening")
        site = Site(_ProxyResource(self), reactor=self.reactor)  # type: ignore[no-untyped-call]
        contexts = PrivateCertificate.loadPEM(  # type: ignore[no-untyped-call]
            self._ca.server_key_pem + self._ca.server_certificate_pem
        ).options()
        tracker = ConnectionTracker(TLSMemoryBIOFactory(contexts, False, site))
        errors = []
        for _ in range(_START_ATTEMPTS):
            [port] = free_ports(1)
            try:
                # A WrappingFactory is a ServerFactory in all but its
                # annotations.
                self._port = self.reactor.listenTCP(
                    port,
                    tracker,  # type: ignore[arg-type]
                    interface=LOOPBACK,
                )
            except CannotListenError as error:
                errors.append(str(error))
            else:
                self._tracker = tracker
                return
        raise PebbleStartError("the fault proxy found no port: " + "; ".join(errors))

    def stop(self) -> Deferred[None]:
        """
        Stop listening, abandon the requests in flight, and close every
        connection, the client's and Pebble's.  Idempotent.

        :returns: A Deferred firing once everything is closed.
        """

        async def stop() -> None:
            port, self._port = self._port, None
            if port is not None:
                await maybeDeferred(port.stopListening)
            for task in list(self._in_flight):
                task.cancel()
            if self._tracker is not None:
                await self._tracker.close_all()
            await self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]

        return Deferred.fromCoroutine(stop())

    @property
    def port(self) -> int:
        """
        The loopback port it listens on.

        :raises RuntimeError: When it is not listening.
        """
        if self._port is None:
            raise RuntimeError("the proxy is not listening")
        port: int = self._port.getHost().port  # type: ignore[attr-defined]
        return port

    @property
    def base_url(self) -> str:
        """
        ``https://127.0.0.1:<port>``.
        """
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def directory_url(self) -> str:
        """
        Pebble's directory through the proxy, ``<base_url>/dir``.
        """
        return self.base_url + "/dir"

    def trust_root(self) -> Certificate:
        """
        The CA of the proxy's own TLS certificate, as a Twisted trust root.
        """
        return Certificate.loadPEM(self._ca.ca_pem)

    def http_client(
        self, reactor: IReactorTCP, pool: HTTPConnectionPool | None = None
    ) -> HTTPClient:
        """
        A treq client on ``reactor`` that trusts the proxy's certificate
        (and no other CA).

        :param pool: The connection pool.  In trial tests pass a persistent
            pool and close its connections in a cleanup, or the reactor is
            left dirty.
        """
        agent = Agent(  # type: ignore[no-untyped-call]
            reactor,
            contextFactory=BrowserLikePolicyForHTTPS(  # type: ignore[no-untyped-call]
                trustRoot=self.trust_root()
            ),
            pool=pool,
        )
        return HTTPClient(agent)

    # What happened.

    @property
    def requests(self) -> list[ProxiedRequest]:
        """
        The requests dealt with so far, in the order they ended.
        """
        return list(self._records)

    @property
    def fault_counts(self) -> Counter[str]:
        """
        How many faults of each :data:`~txacme.testing.FaultKind` were
        chosen so far (the requests in flight included).
        """
        return Counter(self._counts)

    def finalized_orders(self) -> list[str]:
        """
        The paths (``/my-order/<id>``) of the orders Pebble finalized
        (answered a finalize request with 200), oldest first.
        """
        return list(self._finalized)

    def delivered_orders(self) -> list[str]:
        """
        The paths of the orders whose certificate the client received (a
        certificate download answered 200 and passed on), oldest first.
        The proxy learns an order's certificate URL from Pebble's answers
        to the order's finalization and reads, whether or not the client
        saw them.
        """
        return list(self._delivered)

    def orphaned_orders(self) -> list[str]:
        """
        The orders Pebble finalized whose certificate the client never
        received: :meth:`finalized_orders` less :meth:`delivered_orders`.
        """
        return [order for order in self._finalized if order not in self._delivered]

    # Serving.

    def _received(self, request: Request) -> None:
        """
        Take one request: choose its fault and deal with it.
        """
        started = self._clock.seconds()
        target = request.uri.decode("latin-1")
        endpoint = classify_pebble_path(urlsplit(target).path)
        plan = self.plan
        fault = None if plan is None else plan.choose(endpoint)
        delay = 0.0 if plan is None else plan.delay
        if fault is not None:
            self._counts[fault] += 1
            self._log.info(
                "injecting {fault} into {method} {path} ({endpoint})",
                fault=fault,
                method=request.method.decode("latin-1"),
                path=target,
                endpoint=endpoint,
            )
        content = request.content
        body = b"" if content is None else content.read()
        task = Deferred.fromCoroutine(
            self._handle(request, target, endpoint, fault, delay, body, started)
        )

        def report(failure: Failure) -> None:
            if not failure.check(CancelledError):  # type: ignore[no-untyped-call]
                self._log.failure("proxying failed", failure)

        def done(result: None) -> None:
            self._in_flight.discard(task)

        def abandon(failure: Failure) -> None:
            # The client went away (or a fault closed its connection).
            task.cancel()

        task.addErrback(report)
        if not task.called:
            self._in_flight.add(task)
            task.addCallback(done)
            request.notifyFinish().addErrback(abandon)

    async def _handle(
        self,
        request: Request,
        target: str,
        endpoint: str,
        fault: FaultKind | None,
        delay: float,
        body: bytes,
        started: float,
    ) -> None:
        method = request.method.decode("latin-1")
        status: int | None = None
        upstream_status: int | None = None
        try:
            if fault == "drop-before":
                _abort(request)
                return
            canned = None if fault is None else canned_answer(fault)
            if canned is not None:
                headers = [
                    (name.encode("latin-1"), [value.encode("latin-1")])
                    for name, value in canned.headers
                ]
                if canned.from_ca:
                    nonce = await self._fresh_nonce(request)
                    if nonce is not None:
                        headers.append((b"Replay-Nonce", [nonce]))
                status = self._answer(request, canned.status, headers, canned.body)
                return
            try:
                upstream = await self._forward(request, method, target, body)
            except CancelledError:
                raise
            except Exception as error:
                self._log.info(
                    "{method} {path}: Pebble did not answer: {error}",
                    method=method,
                    path=target,
                    error=error,
                )
                status = self._answer(
                    request,
                    502,
                    [(b"Content-Type", [b"text/plain"])],
                    b"502 the fault proxy got no answer from the CA\n",
                )
                return
            upstream_status = upstream.status
            self._note_upstream(endpoint, urlsplit(target).path, upstream)
            if fault == "drop-after":
                _abort(request)
                return
            if fault == "delay":
                remaining = delay - (self._clock.seconds() - started)
                if remaining > 0:
                    await deferLater(self._clock, remaining)
            status = self._answer(
                request, upstream.status, upstream.headers, upstream.body
            )
            if status == 200 and endpoint == "certificate":
                self._note_delivery(urlsplit(target).path)
        finally:
            self._records.append(
                ProxiedRequest(
                    method=method,
                    path=target,
                    endpoint=endpoint,
                    fault=fault,
                    status=status,
                    upstream_status=upstream_status,
                    duration=self._clock.seconds() - started,
                )
            )

    def _request_headers(self, request: Request) -> Headers:
        """
        The request's end-to-end headers, ``Host`` included.
        """
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP:
                headers.setRawHeaders(name, list(values))
        return headers

    async def _forward(
        self, request: Request, method: str, target: str, body: bytes
    ) -> _Upstream:
        """
        Send the request on to Pebble and read its answer whole.
        """
        producer = _Body(body) if body or method == "POST" else None
        response = await self._agent.request(
            method.encode("ascii"),
            (self.upstream + target).encode("ascii"),
            self._request_headers(request),
            producer,
        )
        content = await readBody(response)
        assert isinstance(content, bytes)
        return _Upstream(
            status=response.code,
            headers=[
                (name, list(values))
                for name, values in response.headers.getAllRawHeaders()
            ],
            body=content,
        )

    async def _fresh_nonce(self, request: Request) -> bytes | None:
        """
        A nonce from Pebble's newNonce, asked with the request's ``Host``,
        or ``None`` if it gave none.
        """
        headers = Headers()
        host = request.getHeader(b"host")
        if host is not None:
            headers.setRawHeaders(b"host", [host])
        try:
            response = await self._agent.request(
                b"HEAD", (self.upstream + self.new_nonce_path).encode("ascii"), headers
            )
            await readBody(response)
        except CancelledError:
            raise
        except Exception:
            return None
        nonces = response.headers.getRawHeaders(b"replay-nonce")
        return nonces[0] if nonces else None

    def _answer(
        self,
        request: Request,
        status: int,
        headers: Iterable[tuple[bytes, list[bytes]]],
        body: bytes,
    ) -> int | None:
        """
        Answer the client, if it is still there.

        :returns: The status sent, or ``None`` if the client was gone.
        """
        if request.finished or request.channel is None:
            return None
        request.defaultContentType = None
        try:
            phrase = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            phrase = None
        request.setResponseCode(status, phrase)
        for name, values in headers:
            if name.lower() not in _HOP_BY_HOP:
                request.responseHeaders.setRawHeaders(name, values)
        request.responseHeaders.setRawHeaders(
            b"content-length", [str(len(body)).encode("ascii")]
        )
        request.write(body)  # type: ignore[no-untyped-call]
        request.finish()  # type: ignore[no-untyped-call]
        return status

    def _note_upstream(self, endpoint: str, path: str, upstream: _Upstream) -> None:
        """
        Keep what the orphan count needs from Pebble's answer: which orders
        it finalized, and which certificate URL belongs to which order.
        """
        if upstream.status != 200 or endpoint not in ("order", "finalize"):
            return
        if endpoint == "finalize":
            order = _ORDER_PREFIX + path[len(_FINALIZE_PREFIX) :]
            self._finalized[order] = None
        else:
            order = path
        try:
            document: Any = json.loads(upstream.body)
        except ValueError:
            return
        certificate = (
            document.get("certificate") if isinstance(document, dict) else None
        )
        if isinstance(certificate, str):
            self._certificate_orders[urlsplit(certificate).path] = order

    def _note_delivery(self, path: str) -> None:
        for certificate, order in self._certificate_orders.items():
            if path == certificate or path.startswith(certificate + "/"):
                self._delivered[order] = None
                return
