"""
DNS messages carried over Twisted: one request, one answer.

dnspython builds and parses the messages; this module only moves their
wire form, never blocking the reactor:

* :func:`exchange_udp` sends a request over UDP from a fresh socket on an
  ephemeral port, retransmits it after each ``timeout`` up to ``attempts``
  times (an answer to any of the copies counts), and repeats the exchange
  over TCP when the answer is truncated (RFC 1035 §4.2.1, RFC 7766).
* :func:`exchange_tcp` sends it over one new TCP connection (two-octet
  length prefix, RFC 1035 §4.2.2), within one ``timeout`` for connecting
  and answering.

Datagrams that are not an answer to the request (another ID, another
question, unparseable) are ignored, as RFC 5452 advises.  Every socket is
closed before the returned coroutine finishes, whatever the outcome, also
when it is cancelled.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.opcode
from attrs import frozen
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.python.failure import Failure

from txacme.challenges._dns_errors import Address, DNSServerUnreachable, DNSTimeout

_T = TypeVar("_T")

# The largest DNS message: TCP's two-octet length.
_MAX_MESSAGE = 0xFFFF


class _Expired(Exception):
    """A wait of :func:`_within` ran out of time."""


async def _within(clock: IReactorTime, seconds: float, waiting: Deferred[_T]) -> _T:
    """
    Await ``waiting``, cancelling it after ``seconds``.

    :raises _Expired: If the time ran out (whatever ``waiting`` failed with
        on being cancelled).
    """
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        waiting.cancel()

    timer = clock.callLater(max(seconds, 0.0), expire)
    try:
        return await waiting
    except Exception:
        if expired:
            raise _Expired() from None
        raise
    finally:
        if timer.active():
            timer.cancel()


class _Truncated:
    """The server set TC: the answer must be fetched over TCP."""


_TRUNCATED = _Truncated()


@frozen
class Answer:
    """
    An answer: the parsed message (its TSIG record not verified) and the
    wire form it was parsed from (to verify the TSIG record with).
    """

    message: dns.message.Message
    wire: bytes


def answer_to(request: dns.message.Message, wire: bytes) -> Answer | None:
    """
    Parse ``wire`` if it is an answer to ``request``, without verifying a
    TSIG signature (the caller does, knowing what the RCODE means).

    :returns: The answer, or ``None`` if ``wire`` is not one (unparseable,
        not a response, another ID, opcode or question).
    """
    try:
        answer = dns.message.from_wire(wire, keyring=False)
    except dns.exception.DNSException:
        return None
    if (
        not answer.flags & dns.flags.QR
        or answer.id != request.id
        or answer.opcode() != request.opcode()
    ):
        return None
    # Some error answers carry no question (zone) section; a present one
    # must be the request's.
    if answer.question and answer.question != request.question:
        return None
    return Answer(answer, wire)


def _is_truncated_answer(request: dns.message.Message, wire: bytes) -> bool:
    """
    Whether ``wire``'s header is that of a truncated answer to ``request``
    (its body may be cut anywhere, so only the header is read).
    """
    return (
        len(wire) >= 12
        and int.from_bytes(wire[0:2], "big") == request.id
        and wire[2] & 0x80 != 0  # QR
        and wire[2] & 0x02 != 0  # TC
    )


def _local_interface(host: str) -> str:
    """
    The address to bind a UDP client socket to for talking to ``host``:
    the loopback address for a loopback server, otherwise any address of
    the same family.
    """
    address = ipaddress.ip_address(host)
    if address.version == 6:
        return "::1" if address.is_loopback else "::"
    return "127.0.0.1" if address.is_loopback else ""


class _UDPExchange(DatagramProtocol):
    """
    One request over a connected UDP socket: each :meth:`send` returns a
    Deferred for the next datagram that answers it.
    """

    def __init__(
        self,
        server: Address,
        accept: Callable[[bytes], Answer | _Truncated | None],
    ) -> None:
        self._server = server
        self._accept = accept
        self._waiter: Deferred[Answer | _Truncated] | None = None
        self._stopped = False

    def startProtocol(self) -> None:
        # Connected: the kernel drops datagrams from other addresses and
        # reports ICMP port unreachable as connectionRefused.
        assert self.transport is not None
        self.transport.connect(*self._server)

    def send(self, wire: bytes) -> Deferred[Answer | _Truncated]:
        def forget(cancelled: Deferred[Answer | _Truncated]) -> None:
            if self._waiter is cancelled:
                self._waiter = None

        if self._stopped:
            return fail(self._unreachable())
        waiter: Deferred[Answer | _Truncated] = Deferred(forget)
        self._waiter = waiter
        assert self.transport is not None
        self.transport.write(wire, None)
        return waiter

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        outcome = self._accept(datagram)
        if outcome is None:
            return
        self._waiter = None
        waiter.callback(outcome)

    def _unreachable(self) -> DNSServerUnreachable:
        return DNSServerUnreachable(self._server, "unreachable (ICMP error on UDP)")

    def connectionRefused(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(self._unreachable())

    def stopProtocol(self) -> None:
        # Besides our own stopListening, Twisted's epoll reactor drops the
        # port when the socket reports an error (ICMP port or host
        # unreachable) without data: the same failure as a refusal.
        self._stopped = True
        self.connectionRefused()


async def exchange_udp(
    reactor: IReactorUDP,
    clock: IReactorTime,
    tcp: IReactorTCP,
    server: Address,
    request: dns.message.Message,
    *,
    timeout: float,
    attempts: int,
) -> Answer:
    """
    Send ``request`` over UDP and return the answer; repeat the exchange
    over TCP (with ``timeout``) if the answer is truncated.

    :param timeout: Seconds to wait after each transmission.
    :param attempts: How many times to send the request (at least one).
    :raises DNSTimeout: If no answer came after ``attempts`` transmissions.
    :raises DNSServerUnreachable: If the server's host answered ICMP port
        unreachable.
    """
    wire = request.to_wire()

    def accept(datagram: bytes) -> Answer | _Truncated | None:
        if _is_truncated_answer(request, datagram):
            return _TRUNCATED
        return answer_to(request, datagram)

    protocol = _UDPExchange(server, accept)
    port = reactor.listenUDP(
        0, protocol, interface=_local_interface(server[0]), maxPacketSize=_MAX_MESSAGE
    )
    try:
        outcome: Answer | _Truncated | None = None
        for _ in range(max(attempts, 1)):
            try:
                outcome = await _within(clock, timeout, protocol.send(wire))
            except _Expired:
                continue
            break
    finally:
        await maybeDeferred(port.stopListening)
    if outcome is None:
        raise DNSTimeout(server, timeout * max(attempts, 1))
    if isinstance(outcome, _Truncated):
        return await exchange_tcp(tcp, clock, server, request, timeout=timeout)
    return outcome


class _TCPExchange(Protocol):
    """
    One request over one TCP connection: messages framed by a two-octet
    length (RFC 1035 §4.2.2).
    """

    def __init__(
        self,
        server: Address,
        wire: bytes,
        accept: Callable[[bytes], Answer | None],
    ) -> None:
        self._server = server
        self._wire = wire
        self._accept = accept
        self._buffer = b""
        self.answer: Deferred[Answer] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.connected_once = False

    def connectionMade(self) -> None:
        self.connected_once = True
        assert self.transport is not None
        self.transport.write(len(self._wire).to_bytes(2, "big") + self._wire)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                return
            message = self._buffer[2 : 2 + length]
            self._buffer = self._buffer[2 + length :]
            answer = self._accept(message)
            if answer is not None and not self.answer.called:
                self.answer.callback(answer)
                assert self.transport is not None
                self.transport.loseConnection()
                return

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.answer.called:
            self.answer.errback(
                DNSServerUnreachable(
                    self._server, "closed the TCP connection without an answer"
                )
            )
        self.closed.callback(None)


def _tcp_endpoint(
    reactor: IReactorTCP, server: Address, timeout: float
) -> IStreamClientEndpoint:
    host, port = server
    if ipaddress.ip_address(host).version == 6:
        return TCP6ClientEndpoint(  # type: ignore[no-untyped-call]
            reactor, host, port, timeout=max(int(timeout), 1)
        )
    return TCP4ClientEndpoint(reactor, host, port, timeout=max(int(timeout), 1))


async def exchange_tcp(
    reactor: IReactorTCP,
    clock: IReactorTime,
    server: Address,
    request: dns.message.Message,
    *,
    timeout: float,
) -> Answer:
    """
    Send ``request`` over a new TCP connection and return the answer.

    :param timeout: Seconds for connecting and answering together.
    :raises DNSTimeout: If it took longer.
    :raises DNSServerUnreachable: If the connection was refused or closed
        without an answer.
    """
    wire = request.to_wire()
    protocol = _TCPExchange(server, wire, lambda message: answer_to(request, message))
    deadline = clock.seconds() + timeout
    try:
        try:
            await _within(
                clock,
                timeout,
                connectProtocol(  # type: ignore[no-untyped-call]
                    _tcp_endpoint(reactor, server, timeout), protocol
                ),
            )
            return await _within(clock, deadline - clock.seconds(), protocol.answer)
        except _Expired:
            raise DNSTimeout(server, timeout) from None
        except ConnectError as error:
            raise DNSServerUnreachable(
                server, f"TCP connection failed: {error.__class__.__name__}"
            ) from None
    finally:
        if protocol.connected_once:
            transport = ITCPTransport(protocol.transport)
            if not protocol.closed.called:
                transport.abortConnection()
            await protocol.closed
