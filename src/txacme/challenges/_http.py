"""
The http-01 responder (RFC 8555 §8.3), its standalone server and its
self-check.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from acme import challenges
from attrs import define, field, frozen, validators
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IRequest, IResponse
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import Site
from zope.interface import implementer

from txacme._deferred import deferred_async
from txacme.interfaces import IResponder

__all__ = ["HTTP01Responder", "SelfCheck", "SelfCheckFailed"]

_log = Logger()

#: The most body bytes the self-check reads.  A key authorization is under a
#: hundred bytes; anything this long is not one.
_MAX_BODY = 4096

#: What the self-check's requests say they are.
_USER_AGENT = b"txacme http-01 self-check"


# -- what is served ------------------------------------------------------------------


class _TokenResource(Resource):
    """
    Serves one key authorization, for GET and HEAD only.
    """

    isLeaf = True

    def __init__(self, key_authorization: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._key_authorization = key_authorization

    def render_GET(self, request: IRequest) -> bytes:
        # The body is the key authorization and nothing else.  RFC 8555 §8.3
        # sets no content type (its example shows application/octet-stream)
        # and validators read only the body (Pebble: the integration tests);
        # text/plain is what txacme 0.9 answered.
        request.setHeader(b"content-type", b"text/plain")  # type: ignore[no-untyped-call]
        request.setHeader(b"cache-control", b"no-store")  # type: ignore[no-untyped-call]
        return self._key_authorization

    def render_HEAD(self, request: IRequest) -> bytes:
        return self.render_GET(request)


class _NotFound(Resource):
    """
    A resource answering 404 for itself and for every child it was not
    given with ``putChild``.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        return NoResource()

    def render(self, request: IRequest) -> bytes:
        page: bytes = NoResource().render(request)  # type: ignore[no-untyped-call]
        return page


class _ChallengeDirectory(_NotFound):
    """
    The resource mounted at ``/.well-known/acme-challenge``: it serves the
    exact tokens being responded to and a 404 for every other path.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[bytes, Resource] = {}

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        if request.postpath:
            # /.well-known/acme-challenge/<token>/more is not a token path.
            return NoResource()
        token = self.tokens.get(path)
        if token is None:
            return NoResource()
        return token


# -- the self-check ------------------------------------------------------------------


class SelfCheckFailed(Exception):
    """
    The http-01 self-check (:class:`SelfCheck`) did not get the key
    authorization from the token URL, so the CA would not either: the
    challenge was not answered.

    :ivar server_name: The name whose challenge was checked.
    :ivar url: The URL fetched, ``http://<name>/.well-known/acme-challenge/<token>``.
    :ivar address: Where the check connected instead of the name's port 80
        (:attr:`SelfCheck.address`), or ``None``.
    :ivar reason: What went wrong, in words: the connection failed, the
        status was not 200, the body was not the key authorization, or no
        answer came in time.
    """

    def __init__(
        self,
        server_name: str,
        url: str,
        reason: str,
        address: tuple[str, int] | None = None,
    ) -> None:
        where = "" if address is None else f" (connecting to {_hostport(address)})"
        super().__init__(
            f"http-01 self-check for {server_name} failed: {url}{where} {reason}"
        )
        self.server_name = server_name
        self.url = url
        self.address = address
        self.reason = reason


def _hostport(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _token_url(server_name: str, challenge: challenges.HTTP01) -> str:
    """
    The URL a CA fetches for an http-01 challenge (RFC 8555 §8.3; for an IP
    address identifier, RFC 8738 §3, the address, bracketed if IPv6).
    """
    try:
        address = ipaddress.ip_address(server_name)
    except ValueError:
        host = server_name.rstrip(".")
    else:
        host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}{challenge.path}"


def _host(server_name: str) -> str:
    """The host to connect to for ``server_name``: a name or a bare address."""
    return server_name.rstrip(".")


@implementer(IAgentEndpointFactory)
@frozen
class _ConnectTo:
    """Every request of an agent goes to one host and port."""

    reactor: Any
    host: str
    port: int

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self.reactor, self.host, self.port
        )
        return endpoint


class _BoundedBody(Protocol):
    """
    Collects a response body of at most :data:`_MAX_BODY` bytes; a longer
    one fails :attr:`done` and the connection is closed.
    """

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred(self._cancel)
        self._body = bytearray()

    def _cancel(self, done: Deferred[bytes]) -> None:
        # The body's transport proxies the connection's loseConnection only.
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._body += data
        if len(self._body) > _MAX_BODY:
            self.done.errback(ValueError(f"a body longer than {_MAX_BODY} bytes"))
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.done.called:
            return
        if reason is None or isinstance(
            reason.value, (ResponseDone, PotentialDataLoss)
        ):
            self.done.callback(bytes(self._body))
        else:
            self.done.errback(reason)


def _describe(error: Exception) -> str:
    """
    An error in words; for the HTTP client's wrapping errors, those they
    wrap.
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(str(reason.value) for reason in reasons)
    return str(error) or type(error).__name__


def _excerpt(body: bytes) -> str:
    text = body[:60].decode("utf-8", "replace")
    return repr(text + ("..." if len(body) > 60 else ""))


@frozen
class SelfCheck:
    """
    The http-01 self-check: before the challenge is answered, fetch the
    token URL as the CA will, and fail fast when the key authorization does
    not come back.  A broken set-up (the resource mounted at the wrong path,
    nothing listening on port 80, a firewall, a proxy serving something
    else) then fails locally, without using up the CA's limit on failed
    validations.

    :class:`HTTP01Responder` runs it when given one: ``start_responding``
    fires once ``GET http://<name>/.well-known/acme-challenge/<token>``
    answered 200 with the key authorization as its body (surrounding
    whitespace allowed, as CAs allow it), and fails with
    :exc:`SelfCheckFailed` otherwise.

    Without ``address`` it connects to port 80 of the addresses the name
    resolves to *from this host* (through the reactor's resolver, IPv6 and
    IPv4 both, as a CA does through public DNS).  Where this host resolves
    the name differently (``/etc/hosts``, split-horizon DNS) or cannot reach
    its own public address (behind NAT without hairpinning), pass
    ``address``: the request, still for ``http://<name>/...`` with that
    ``Host``, goes there instead.  So passing the check shows that the
    server answers, not that the CA can reach it.

    The check does not follow redirects (a CA does): the responder's
    resource answers the token path itself, so a redirect means it is not
    mounted where the CA looks.  Do not enable the check where the token
    path is redirected on purpose.

    :ivar reactor: The reactor: ``IReactorTCP`` and ``IReactorTime``, and
        ``IReactorPluggableNameResolver`` to resolve names.
    :ivar timeout: Seconds for the whole fetch (resolution, connection,
        request and body) before it fails.
    :ivar address: ``(host, port)`` to connect to instead of port 80 of the
        name, or ``None``.
    """

    reactor: Any
    timeout: float = field(default=10.0, kw_only=True, validator=validators.gt(0))
    address: tuple[str, int] | None = field(default=None, kw_only=True)

    @deferred_async
    async def check(
        self,
        server_name: str,
        challenge: challenges.HTTP01,
        response: challenges.HTTP01Response,
    ) -> None:
        """
        Fetch the token URL and compare the body with the key authorization.

        :param server_name: The identifier: a domain name or an IP address.
        :param challenge: The http-01 challenge (its token gives the path).
        :param response: Its response, with the key authorization.
        :returns: A Deferred firing once the key authorization was served.
            Cancelling it closes the connection.
        :raises SelfCheckFailed: If the fetch failed or did not answer 200
            with the key authorization within ``timeout`` seconds.
        """
        url = _token_url(server_name, challenge)
        fetching = Deferred.fromCoroutine(self._fetch(server_name, url))
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            fetching.cancel()

        timer = IReactorTime(self.reactor).callLater(self.timeout, expire)
        try:
            code, phrase, body = await fetching
        except Exception as error:
            if expired:
                reason = f"gave no answer within {self.timeout:g} seconds"
                raise SelfCheckFailed(server_name, url, reason, self.address) from None
            if isinstance(error, CancelledError):
                raise
            reason = f"could not be fetched: {_describe(error)}"
            raise SelfCheckFailed(server_name, url, reason, self.address) from error
        finally:
            if timer.active():
                timer.cancel()
        if code != 200:
            reason = (
                f"answered {code} {phrase.decode('latin-1')} "
                "instead of 200 with the key authorization"
            )
            raise SelfCheckFailed(server_name, url, reason, self.address)
        if body.strip() != response.key_authorization.encode("ascii"):
            reason = (
                f"answered the body {_excerpt(body)} instead of the key authorization"
            )
            raise SelfCheckFailed(server_name, url, reason, self.address)
        _log.debug("http-01: self-check passed for {url}", url=url)

    async def _fetch(self, server_name: str, url: str) -> tuple[int, bytes, bytes]:
        """
        GET ``url``: its status, phrase and body.  The connection is closed
        before this returns.
        """
        if self.address is None:
            host, port = _host(server_name), 80
        else:
            host, port = self.address
        pool = HTTPConnectionPool(self.reactor, persistent=True)  # type: ignore[no-untyped-call]
        agent = Agent.usingEndpointFactory(  # type: ignore[no-untyped-call]
            self.reactor, _ConnectTo(self.reactor, host, port), pool=pool
        )
        try:
            try:
                answer: IResponse = await agent.request(
                    b"GET",
                    url.encode("ascii"),
                    Headers({b"user-agent": [_USER_AGENT]}),
                )
            except ConnectingCancelledError as error:
                # Cancelled while connecting.
                raise CancelledError() from error
            except (ResponseFailed, RequestTransmissionFailed) as error:
                # Cancelled later: the CancelledError comes wrapped.
                if any(
                    isinstance(reason.value, CancelledError) for reason in error.reasons
                ):
                    raise CancelledError() from error
                raise
            reader = _BoundedBody()
            answer.deliverBody(reader)  # type: ignore[no-untyped-call]
            body = await reader.done
            return answer.code, answer.phrase, body
        finally:
            await pool.closeCachedConnections()  # type: ignore[no-untyped-call]


# -- the responder -------------------------------------------------------------------


def _standalone_root(challenge_resource: Resource) -> Resource:
    """
    A site root serving ``challenge_resource`` at
    ``/.well-known/acme-challenge`` and 404 everywhere else.
    """
    root = _NotFound()
    well_known = _NotFound()
    root.putChild(b".well-known", well_known)
    well_known.putChild(b"acme-challenge", challenge_resource)
    return root


@implementer(IResponder)
@define
class HTTP01Responder:
    """
    An http-01 challenge responder (RFC 8555 §8.3) for ``twisted.web``, or
    on a port of its own.

    While a challenge is being responded to,
    ``GET /.well-known/acme-challenge/<token>`` (and ``HEAD``) answers the
    key authorization (``text/plain``, as in txacme 0.9); every other path
    under the resource, and every token after :meth:`stop_responding`,
    answers 404.  Any number of challenges, for any names, may be pending
    at once.

    Run it in one of two ways:

    * In the application's own site, on port 80: mount :attr:`resource` at
      ``/.well-known/acme-challenge``.
    * On its own, with :meth:`listen`: a minimal HTTP server that answers
      the token paths and 404 for everything else (for applications without
      a ``twisted.web`` site on port 80).

    :ivar resource: The ``twisted.web`` resource to mount.  By default a
        resource that answers only the pending tokens; an application's own
        :class:`~twisted.web.resource.Resource` may be passed instead, and the
        tokens become its children.
    :ivar self_check: If given, :meth:`start_responding` fetches the token
        URL once it is served and fails with :exc:`SelfCheckFailed` when the
        key authorization does not come back (see :class:`SelfCheck`).
    """

    challenge_type = "http-01"

    resource: Resource = field(factory=_ChallengeDirectory)
    self_check: SelfCheck | None = field(default=None, kw_only=True)

    def _tokens(self) -> dict[bytes, Resource]:
        if isinstance(self.resource, _ChallengeDirectory):
            return self.resource.tokens
        # A plain Resource passed in by the application (as txacme 0.9
        # allowed): its static children are the tokens.
        children: dict[bytes, Resource] = self.resource.children
        return children

    def listen(
        self,
        endpoint: IStreamServerEndpoint,
        clock: IReactorTime,
        timeout: float = 30.0,
    ) -> Deferred[IListeningPort]:
        """
        Serve :attr:`resource` at ``/.well-known/acme-challenge`` on
        ``endpoint``, with 404 for every other path: an HTTP server for the
        challenges alone.

        :param endpoint: Where to listen: for a CA, port 80 of every address
            the names resolve to, for example
            ``TCP6ServerEndpoint(reactor, 80)``.
        :param clock: The reactor's clock, for the idle timeout.
        :param timeout: Seconds after which an idle connection is closed.
        :returns: A Deferred firing with the listening port (stop it with
            ``stopListening``; open connections close when their client is
            done or idle for ``timeout`` seconds).
        """
        site = Site(  # type: ignore[no-untyped-call]
            _standalone_root(self.resource), timeout=timeout, reactor=clock
        )
        site.displayTracebacks = False
        listening: Deferred[IListeningPort] = endpoint.listen(site)
        return listening

    @deferred_async
    async def start_responding(
        self,
        server_name: str,
        challenge: challenges.HTTP01,
        response: challenges.HTTP01Response,
    ) -> None:
        """
        Start serving the key authorization at the challenge's token path,
        then run the self-check if there is one.

        The token is served from the moment this is called; without a
        self-check the Deferred has already fired when this returns.

        :param server_name: The identifier's value.
        :param challenge: The http-01 challenge.
        :param response: Its response, with the key authorization.
        :returns: A Deferred firing once the token is served (and passed
            the self-check).  Cancelling it during the self-check stops
            serving the token.
        :raises SelfCheckFailed: If the self-check failed; the token is no
            longer served.
        """
        token = challenge.encode("token").encode("ascii")
        served = _TokenResource(response.key_authorization.encode("ascii"))
        self._tokens()[token] = served
        _log.debug("http-01: responding for {server_name}", server_name=server_name)
        if self.self_check is None:
            return
        try:
            await self.self_check.check(server_name, challenge, response)
        except BaseException:
            if self._tokens().get(token) is served:
                del self._tokens()[token]
            raise

    def stop_responding(
        self,
        server_name: str,
        challenge: challenges.HTTP01,
        response: challenges.HTTP01Response,
    ) -> None:
        """
        Stop serving the challenge's token path; other tokens are left as
        they are.  Idempotent; a no-op for a challenge that was never
        started.
        """
        token = challenge.encode("token").encode("ascii")
        if self._tokens().pop(token, None) is not None:
            _log.debug(
                "http-01: stopped responding for {server_name}",
                server_name=server_name,
            )
