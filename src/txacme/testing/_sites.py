"""
Serving a responder where Pebble's validator connects, on loopback, and
closing every connection afterwards.  Public through
:mod:`txacme.testing.pebble`.
"""

from __future__ import annotations

from typing import Any

from attrs import define
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Site

__all__ = ["ConnectionTracker", "ServedSite", "http01_site_root"]

LOOPBACK = "127.0.0.1"


def http01_site_root(challenge_resource: Resource) -> Resource:
    """
    A site root with ``challenge_resource`` (an http-01 responder's
    resource) mounted at ``/.well-known/acme-challenge``.
    """
    root = Resource()  # type: ignore[no-untyped-call]
    well_known = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b".well-known", well_known)
    well_known.putChild(b"acme-challenge", challenge_resource)
    return root


@define
class ServedSite:
    """
    A ``twisted.web`` site listening on a loopback port, which can be stopped
    completely: listening socket and open connections alike (Pebble's
    validator may leave a connection open).
    """

    port: IListeningPort
    _factory: ConnectionTracker

    @classmethod
    def listen(cls, reactor: IReactorTCP, port: int, resource: Resource) -> ServedSite:
        """
        Serve ``resource`` on 127.0.0.1:``port``.
        """
        factory = ConnectionTracker(Site(resource))  # type: ignore[no-untyped-call]
        # A WrappingFactory is a ServerFactory in all but its annotations.
        listening = reactor.listenTCP(
            port,
            factory,  # type: ignore[arg-type]
            interface=LOOPBACK,
        )
        return cls(port=listening, factory=factory)

    def stop(self) -> Deferred[None]:
        """
        Stop listening and close every connection.  Idempotent.

        :returns: A Deferred firing once the port and connections are closed.
        """

        async def stop() -> None:
            # stopListening returns None once the port is already stopped.
            await maybeDeferred(self.port.stopListening)
            await self._factory.close_all()

        return Deferred.fromCoroutine(stop())


class ConnectionTracker(WrappingFactory):
    """
    Wraps a server factory: :meth:`close_all` aborts every connection and
    fires once they are all gone.

    :param wrapped: The server factory.

    :ivar connections: How many connections were made to the server.
    """

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self._waiting: list[Deferred[None]] = []
        self.connections = 0

    def registerProtocol(self, p: Any) -> None:
        super().registerProtocol(p)  # type: ignore[no-untyped-call]
        self.connections += 1

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)

    def close_all(self) -> Deferred[None]:
        """
        Abort every connection.

        :returns: A Deferred firing once they are all closed.
        """
        if not self.protocols:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        for protocol in list(self.protocols):
            if isinstance(protocol, ProtocolWrapper) and protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
        return waiter
