"""
The tls-alpn-01 challenge (RFC 8737) and its responder.

How a connection gets the challenge certificate: the responder gives the
TLS layer an :class:`OpenSSL.SSL.Connection` that reads the server name and
ALPN protocols of the client's ClientHello as its bytes arrive, before
OpenSSL does (:mod:`txacme.challenges._client_hello`).  When the client
offers ``acme-tls/1`` for a name being responded to, the connection is
switched, before its handshake starts, to a context holding only the
challenge certificate, which selects ``acme-tls/1``.  Every other connection
keeps the context it was made with, untouched: the application's
certificate, its own SNI callback and its own ALPN selection.

Switching before the handshake, rather than in OpenSSL's SNI or ALPN
callbacks, means the challenge key may be of any type whatever the
application's key is, with TLS 1.2 as with TLS 1.3: OpenSSL chooses the
cipher suite and signature algorithm against the challenge certificate only.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from acme import challenges
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IReactorThreads,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from txacme._deferred import deferred_async
from txacme.challenges._client_hello import (
    MAX_CLIENT_HELLO,
    ClientHello,
    Unparsed,
    parse_client_hello,
    wanted_length,
)
from txacme.interfaces import IResponder
from txacme.messages import TLSALPN01, TLSALPN01Response
from txacme.util import (
    KEY_TYPES,
    PrivateKey,
    clock_now,
    general_name,
    generate_private_key_in_thread,
)

if TYPE_CHECKING:
    # The type of SSL.NO_OVERLAPPING_PROTOCOLS, for the ALPN callback's
    # annotation only.
    from OpenSSL.SSL import _NoOverlappingProtocols

__all__ = [
    "ACME_TLS_1",
    "ID_PE_ACME_IDENTIFIER",
    "TLSALPN01",
    "TLSALPN01Responder",
    "TLSALPN01Response",
    "tls_alpn_01_certificate",
]

_log = Logger()

ACME_TLS_1 = b"acme-tls/1"
"""The ALPN protocol name of tls-alpn-01 validation (RFC 8737 §6.2)."""

ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
"""id-pe-acmeIdentifier, the challenge certificate's extension (RFC 8737 §6.1)."""

#: How long before and after its creation a challenge certificate is valid.
#: RFC 8737 asks for nothing; validators ignore the dates.
_VALID_BEFORE = timedelta(hours=1)
_VALID_AFTER = timedelta(days=7)


# -- the challenge certificate ---------------------------------------------------------


def _der_octet_string(content: bytes) -> bytes:
    """``content`` as a DER OCTET STRING (X.690 §8.7, §10.1)."""
    length = len(content)
    if length < 0x80:
        encoded_length = bytes([length])
    else:
        size = (length.bit_length() + 7) // 8
        encoded_length = bytes([0x80 | size]) + length.to_bytes(size, "big")
    return b"\x04" + encoded_length + content


def tls_alpn_01_certificate(
    identifier: str, key_authorization: str, key: PrivateKey, now: datetime
) -> x509.Certificate:
    """
    Make a tls-alpn-01 challenge certificate (RFC 8737 §3).

    The certificate is self-signed by ``key``, has an empty subject, and has
    exactly two extensions, both critical: a subjectAltName with the one
    identifier (a dNSName, or for an IP address an iPAddress, RFC 8738 §6),
    and id-pe-acmeIdentifier (OID 1.3.6.1.5.5.7.1.31) whose value is the DER
    OCTET STRING of SHA-256 of the key authorization.

    This is CPU work (a signature): from the reactor thread, prefer running
    it in a thread, as :class:`TLSALPN01Responder` does.

    :param identifier: The domain name or IP address being validated.
    :param key_authorization: The key authorization (RFC 8555 §8.1), as in
        :attr:`TLSALPN01Response.key_authorization
        <acme.challenges.KeyAuthorizationChallengeResponse.key_authorization>`.
    :param key: The certificate's key.
    :param now: The current time; the certificate is valid from an hour
        before it to seven days after.
    :returns: The certificate.
    """
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    empty = x509.Name([])
    return (
        x509.CertificateBuilder()
        .subject_name(empty)
        .issuer_name(empty)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _VALID_BEFORE)
        .not_valid_after(now + _VALID_AFTER)
        # An empty subject needs a critical subjectAltName (RFC 5280 §4.2.1.6).
        .add_extension(
            x509.SubjectAlternativeName([general_name(identifier)]),
            critical=True,
        )
        .add_extension(
            x509.UnrecognizedExtension(
                ID_PE_ACME_IDENTIFIER, _der_octet_string(digest)
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def _server_name_for(identifier: str) -> str:
    """
    The TLS server name a validator sends for an identifier: the name
    itself, or for an IP address its reverse-mapping name (RFC 8738 §6),
    in the form :mod:`._client_hello` reports names.
    """
    try:
        address = ipaddress.ip_address(identifier)
    except ValueError:
        return identifier.lower().rstrip(".")
    return address.reverse_pointer


# -- TLS connections ---------------------------------------------------------------


def _select_acme_tls_1(
    connection: SSL.Connection, offered: list[bytes]
) -> bytes | _NoOverlappingProtocols:
    # Only clients that offered acme-tls/1 are switched to this context.
    if ACME_TLS_1 in offered:
        return ACME_TLS_1
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _keep_context(connection: SSL.Connection) -> None:
    # Stands in for the application's SNI callback, which OpenSSL would
    # otherwise call (it is on the connection's first context) and which
    # could switch the connection away from the challenge certificate.
    pass


def _challenge_context(certificate: x509.Certificate, key: PrivateKey) -> SSL.Context:
    """
    A context serving ``certificate`` and selecting ``acme-tls/1``.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate(certificate)
    context.use_privatekey(key)
    context.check_privatekey()
    context.set_alpn_select_callback(_select_acme_tls_1)
    context.set_tlsext_servername_callback(_keep_context)
    context.set_session_id(b"txacme-tls-alpn-01")
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_options(SSL.OP_NO_TICKET)
    return context


def _challenges_only_context() -> SSL.Context:
    """
    The context of :meth:`TLSALPN01Responder.listen` connections that are
    not challenge validations: it has no certificate, so their handshakes
    fail.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_options(SSL.OP_NO_TICKET)
    return context


_Route = Callable[[ClientHello], SSL.Context | None]

#: The most bytes read for a ClientHello: the largest one read, with the
#: headers of the records it may be split over.
_MAX_RECEIVED = MAX_CLIENT_HELLO + 1024


class _ChallengeRoutingConnection(SSL.Connection):
    """
    A server connection that reads the ClientHello as it is received and,
    if ``route`` gives a context for it, switches to that context before
    OpenSSL reads the ClientHello.
    """

    def __init__(self, context: SSL.Context, route: _Route) -> None:
        super().__init__(context)
        self._route = route
        # The bytes received while the ClientHello is incomplete, and the
        # length they must reach before it is worth reading them again.
        self._received: bytearray | None = bytearray()
        self._wanted = 1

    def bio_write(self, buf: Any) -> int:
        if self._received is not None:
            self._inspect(bytes(buf))
        return super().bio_write(buf)

    def _inspect(self, data: bytes) -> None:
        assert self._received is not None
        self._received += data
        if len(self._received) < self._wanted:
            return
        received = bytes(self._received)
        hello = parse_client_hello(received)
        if hello is Unparsed.INCOMPLETE and len(received) <= _MAX_RECEIVED:
            self._wanted = wanted_length(received)
            return
        self._received = None
        if isinstance(hello, ClientHello):
            context = self._route(hello)
            if context is not None:
                self.set_context(context)


@implementer(IOpenSSLServerConnectionCreator)
@frozen
class _RespondingConnectionCreator:
    """
    The application's TLS configuration, with challenge validations routed
    to the challenge certificate.
    """

    wrapped: IOpenSSLServerConnectionCreator | IOpenSSLContextFactory
    route: _Route

    def serverConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        if IOpenSSLServerConnectionCreator.providedBy(self.wrapped):
            context = self.wrapped.serverConnectionForTLS(tlsProtocol).get_context()
        else:
            context = self.wrapped.getContext()
        return _ChallengeRoutingConnection(context, self.route)


@implementer(IOpenSSLServerConnectionCreator)
@frozen
class _ChallengesOnlyConnectionCreator:
    """
    Connections that answer challenge validations and nothing else.
    """

    context: SSL.Context
    route: _Route

    def serverConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        return _ChallengeRoutingConnection(self.context, self.route)


@implementer(IHandshakeListener)
class _CloseAfterHandshake(Protocol):
    """
    The protocol of :meth:`TLSALPN01Responder.listen`: once the handshake is
    over there is nothing more to say (RFC 8737 §3), so it closes the
    connection; one that stays open too long is dropped.
    """

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self._clock = clock
        self._timeout = timeout
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._timer = self._clock.callLater(self._timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def handshakeCompleted(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _CloseAfterHandshakeFactory(Factory):
    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self._clock = clock
        self._timeout = timeout

    def buildProtocol(self, addr: object) -> _CloseAfterHandshake:
        protocol = _CloseAfterHandshake(self._clock, self._timeout)
        protocol.factory = self
        return protocol


# -- the responder -----------------------------------------------------------------


@frozen
class _Pending:
    """One challenge being responded to."""

    identifier: str
    context: SSL.Context


@implementer(IResponder)
class TLSALPN01Responder:
    """
    A tls-alpn-01 challenge responder (RFC 8737) for Twisted TLS servers.

    While a challenge is being responded to, a TLS client that offers the
    ALPN protocol ``acme-tls/1`` with the identifier's name in SNI (for an
    IP address, its reverse-mapping name, RFC 8738 §6) gets the challenge
    certificate (see :func:`tls_alpn_01_certificate`) and ``acme-tls/1``.
    Every other client -- no ALPN, another protocol, another name -- is
    served as if the responder were not there.

    Run it in one of two ways:

    * In the application's own TLS server, on port 443: pass the server's
      TLS configuration through :meth:`wrap` and use what it returns
      instead.  The site keeps its certificate(s) and its own SNI and ALPN
      settings.
    * On its own, with :meth:`listen`: a TLS listener that answers
      challenge validations and fails every other handshake (for when
      nothing else serves port 443, or behind a proxy that routes
      ``acme-tls/1`` by ALPN).

    One responder can serve both, and any number of names at once.  If two
    challenges for the same name are started (two orders), the later one is
    served until it stops.

    The challenge key is generated once, in the reactor's thread pool, when
    the first challenge starts; each challenge's certificate is signed in
    the thread pool too.

    :param reactor: The reactor: its thread pool runs the CPU work, and its
        clock dates the certificates (:meth:`listen` uses it too).  It must
        provide :class:`~twisted.internet.interfaces.IReactorThreads` and
        :class:`~twisted.internet.interfaces.IReactorTime`.
    :param key_type: The type of the challenge key, one of
        :data:`txacme.util.KEY_TYPES`.  Any type works with any application
        certificate; ECDSA P-256 (the default) is the quickest to make.
    :raises ValueError: For an unknown key type.
    """

    challenge_type = "tls-alpn-01"

    def __init__(self, reactor: IReactorThreads, key_type: str = "p256") -> None:
        if key_type.lower() not in KEY_TYPES:
            raise ValueError(
                f"Unknown key type {key_type!r}; expected one of "
                f"{', '.join(sorted(KEY_TYPES))}"
            )
        self._reactor = reactor
        self._clock = IReactorTime(reactor)
        self._key_type = key_type
        self._key: PrivateKey | None = None
        self._key_lock = DeferredLock()
        # Server name (as sent in SNI) -> key authorization -> challenge; the
        # last one inserted is served.
        self._pending: dict[str, dict[str, _Pending]] = {}
        # Challenges asked for and not stopped, while their certificates are
        # being made: a stop meanwhile cancels the start.
        self._starting: dict[tuple[str, str], object] = {}

    def __repr__(self) -> str:
        return f"<TLSALPN01Responder pending={sorted(self._pending)!r}>"

    # Running it.

    def wrap(
        self, tls_options: IOpenSSLServerConnectionCreator | IOpenSSLContextFactory
    ) -> IOpenSSLServerConnectionCreator:
        """
        Make a TLS server able to answer challenges as well.

        ``tls_options`` is what the server uses today: a
        :class:`~twisted.internet.ssl.CertificateOptions` (with or without
        ``contextForServerName``), or any other
        :class:`~twisted.internet.interfaces.IOpenSSLServerConnectionCreator`
        or :class:`~twisted.internet.interfaces.IOpenSSLContextFactory`.
        Listen with the result instead, for example with
        :class:`~twisted.internet.endpoints.SSL4ServerEndpoint` or
        :class:`~twisted.protocols.tls.TLSMemoryBIOFactory`.

        Each connection is made on the context of the connection
        ``tls_options`` makes (or on its ``getContext()``), so its
        certificates, SNI callback, ALPN protocols and TLS versions all
        apply; per-connection settings other than the context do not carry
        over.  A validation connection reaches the application's protocol
        like any other, and the validator closes it after the handshake.

        :param tls_options: The server's TLS configuration.
        :returns: The configuration to listen with.
        """
        return _RespondingConnectionCreator(tls_options, self._route)

    def listen(
        self, endpoint: IStreamServerEndpoint, timeout: float = 30.0
    ) -> Deferred[IListeningPort]:
        """
        Listen on ``endpoint`` and answer challenge validations only.

        A client offering ``acme-tls/1`` for a pending name gets the
        challenge certificate and then the connection is closed; every other
        handshake fails.

        :param endpoint: Where to listen: for a CA, port 443 of every address
            the names resolve to, for example
            ``TCP6ServerEndpoint(reactor, 443)``.
        :param timeout: Seconds after which a connection is dropped.  A
            validator closes its connection right after the handshake (RFC
            8737 §3).
        :returns: A Deferred firing with the listening port (stop it with
            ``stopListening``).
        """
        factory = TLSMemoryBIOFactory(
            _ChallengesOnlyConnectionCreator(_challenges_only_context(), self._route),
            False,
            _CloseAfterHandshakeFactory(self._clock, timeout),
            clock=self._clock,
        )
        listening: Deferred[IListeningPort] = endpoint.listen(factory)
        return listening

    def _route(self, hello: ClientHello) -> SSL.Context | None:
        """
        The challenge context for a ClientHello, or ``None`` if it is not a
        validation of a pending challenge (RFC 8737 §3).
        """
        if ACME_TLS_1 not in hello.protocols or hello.server_name is None:
            return None
        pending = self._pending.get(hello.server_name)
        if not pending:
            return None
        challenge = next(reversed(pending.values()))
        _log.debug(
            "tls-alpn-01: serving the challenge certificate for {identifier}",
            identifier=challenge.identifier,
        )
        return challenge.context

    # IResponder.

    @deferred_async
    async def start_responding(
        self,
        server_name: str,
        challenge: challenges.KeyAuthorizationChallenge,
        response: challenges.KeyAuthorizationChallengeResponse,
    ) -> None:
        """
        Start serving the challenge certificate for ``server_name``.

        :param server_name: The identifier's value: a domain name or an IP
            address.
        :param challenge: The :class:`TLSALPN01` challenge.
        :param response: Its response, with the key authorization.
        :returns: A Deferred firing once the certificate is served.
        """
        name = _server_name_for(server_name)
        key_authorization = response.key_authorization
        ticket = object()
        self._starting[name, key_authorization] = ticket
        try:
            key = await self._challenge_key()
            certificate = await deferToThreadPool(
                self._reactor,
                self._reactor.getThreadPool(),
                tls_alpn_01_certificate,
                server_name,
                key_authorization,
                key,
                clock_now(self._clock),
            )
        finally:
            started = self._starting.get((name, key_authorization)) is ticket
            if started:
                del self._starting[name, key_authorization]
        if not started:
            # Stopped (or started again) meanwhile.
            return
        pending = self._pending.setdefault(name, {})
        # Started again: it moves to the end, to be the one served.
        pending.pop(key_authorization, None)
        pending[key_authorization] = _Pending(
            identifier=server_name, context=_challenge_context(certificate, key)
        )
        _log.debug("tls-alpn-01: responding for {identifier}", identifier=server_name)

    def stop_responding(
        self,
        server_name: str,
        challenge: challenges.KeyAuthorizationChallenge,
        response: challenges.KeyAuthorizationChallengeResponse,
    ) -> None:
        """
        Stop serving the challenge certificate of this challenge.  Other
        challenges, for this name or others, are left as they are.
        Idempotent, and a no-op for a challenge that was never started.
        """
        name = _server_name_for(server_name)
        key_authorization = response.key_authorization
        self._starting.pop((name, key_authorization), None)
        pending = self._pending.get(name)
        if pending is None or pending.pop(key_authorization, None) is None:
            return
        if not pending:
            del self._pending[name]
        _log.debug(
            "tls-alpn-01: stopped responding for {identifier}", identifier=server_name
        )

    async def _challenge_key(self) -> PrivateKey:
        """
        The challenge key, generated in the thread pool the first time.
        """
        await self._key_lock.acquire()
        try:
            if self._key is None:
                self._key = await generate_private_key_in_thread(
                    self._reactor, self._key_type
                )
            return self._key
        finally:
            self._key_lock.release()
