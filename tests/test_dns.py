"""
Tests for the dns-01 responders of :mod:`txacme.challenges`.

:class:`RFC2136Responder` is tested against :class:`FakeDNSServer`, a small
authoritative DNS server built here with dnspython, served by Twisted on
real loopback sockets (UDP and TCP on one ephemeral port): it answers
queries from in-memory zones, applies RFC 2136 updates after verifying
their TSIG signature, records every request, and can be made to misbehave
(drop messages, truncate, refuse, send decoys).  The tests run on the real
reactor with short time bounds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.tsig
import dns.update
import dns.zone
from acme import challenges
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.protocol import (
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tests.support import EC_KEY, TypedAssertions
from txacme.challenges import (
    CallableDNS01Responder,
    DNSAuthenticationError,
    DNSLookupError,
    DNSServerUnreachable,
    DNSTimeout,
    DNSUpdateError,
    PropagationTimeout,
    RFC2136Responder,
    ZoneNotFound,
)
from txacme.challenges._dns import dns01_record
from txacme.challenges._dns_transport import answer_to
from txacme.interfaces import IResponder

_E = TypeVar("_E", bound=BaseException)

LOOPBACK = "127.0.0.1"
KEY_NAME = "txacme-test."
SECRET = "c2VjcmV0IGZvciB0eGFjbWUncyB1bml0IHRlc3RzISE="
WRONG_SECRET = "d3Jvbmcgc2VjcmV0IGZvciB0eGFjbWUncyB0ZXN0cyE="

EXAMPLE_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
@ IN NS ns2
ns1 IN A 192.0.2.1
ns2 IN A 192.0.2.2
www IN A 192.0.2.10
_acme-challenge.alias IN CNAME alias.delegated.test.
_acme-challenge.loop IN CNAME _acme-challenge.loop.example.test.
_acme-challenge.long IN CNAME hop1.example.test.
hop1 IN CNAME hop2.example.test.
hop2 IN CNAME hop3.example.test.
hop3 IN CNAME hop4.example.test.
hop4 IN CNAME hop5.example.test.
hop5 IN CNAME hop6.example.test.
hop6 IN CNAME hop7.example.test.
hop7 IN CNAME hop8.example.test.
hop8 IN CNAME hop9.example.test.
"""

DELEGATED_ZONE = """
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 192.0.2.3
"""

# A child zone below example.test, served by the same server.
CHILD_ZONE = """
$TTL 300
@ IN SOA ns1.example.test. hostmaster 1 3600 600 86400 60
@ IN NS ns1.example.test.
"""


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _frame(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


class FakeDNSServer:
    """
    An authoritative DNS server for tests, on 127.0.0.1 (UDP and TCP on the
    same ephemeral port).

    :ivar zones: The zones served, by origin (absolute names).
    :ivar keys: The TSIG keys updates may be signed with, by name.
    :ivar refused: Names whose updates the "update-policy" refuses.
    :ivar requests: Every request received, as ``(transport, message)``
        (``"udp"`` or ``"tcp"``; the message parsed without TSIG checks).
    :ivar silent: Answer nothing (every request is still recorded).
    :ivar truncate_udp: Answer every UDP query with TC set and no records.
    :ivar sign_answers: Sign successful update answers with the key.
    :ivar decoy: Before each UDP answer, send datagrams that are not an
        answer to the request (another ID, another question, garbage).
    :ivar servfail: ``(name, type)`` queries answered with SERVFAIL.
    :ivar refuse_queries: ``(name, type)`` queries answered REFUSED.
    """

    def __init__(self, zones: dict[str, str]) -> None:
        self.zones: dict[dns.name.Name, dns.zone.Zone] = {
            _name(origin): dns.zone.from_text(text, origin, relativize=False)
            for origin, text in zones.items()
        }
        self.keys: dict[dns.name.Name, dns.tsig.Key] = {
            _name(KEY_NAME): dns.tsig.Key(KEY_NAME, SECRET, "hmac-sha256")
        }
        self.refused: set[dns.name.Name] = set()
        self.requests: list[tuple[str, dns.message.Message]] = []
        self.silent = False
        self.truncate_udp = False
        self.sign_answers = True
        self.decoy = False
        self.servfail: set[tuple[dns.name.Name, int]] = set()
        self.refuse_queries: set[tuple[dns.name.Name, int]] = set()
        self.port = 0
        self._listening: list[IListeningPort] = []
        self._connections: list[_TCPServerProtocol] = []

    # -- the network ---------------------------------------------------------

    def listen(self, reactor: Any) -> FakeDNSServer:
        """
        Listen on UDP and TCP on one free loopback port.
        """
        udp: IReactorUDP = reactor
        tcp: IReactorTCP = reactor
        for _ in range(50):
            factory = Factory.forProtocol(lambda: _TCPServerProtocol(self))
            stream = tcp.listenTCP(
                0,
                factory,  # type: ignore[arg-type]
                interface=LOOPBACK,
            )
            port: int = stream.getHost().port  # type: ignore[attr-defined]
            try:
                datagrams = udp.listenUDP(
                    port, _UDPServerProtocol(self), LOOPBACK, 0xFFFF
                )
            except CannotListenError:
                stream.stopListening()
                continue
            self.port = port
            self._listening = [stream, datagrams]
            return self
        raise RuntimeError("no loopback port free for both UDP and TCP")

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    async def stop(self) -> None:
        """
        Stop listening and close every connection.
        """
        listening, self._listening = self._listening, []
        for port in listening:
            await maybeDeferred(port.stopListening)
        for connection in list(self._connections):
            connection.close()
            await connection.lost

    # -- the data ------------------------------------------------------------

    def txt(self, name: str) -> set[str]:
        """
        The TXT values at ``name``.
        """
        owner = _name(name)
        zone = self._zone_for(owner)
        if zone is None:
            return set()
        rdataset = zone.get_rdataset(owner, dns.rdatatype.TXT)
        if rdataset is None:
            return set()
        return {
            b"".join(rdata.strings).decode()
            for rdata in rdataset
            if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
        }

    def copy_zone_from(self, other: FakeDNSServer, origin: str) -> None:
        """
        Take a copy of ``other``'s zone ``origin`` (a zone transfer, in
        effect).
        """
        zone = other.zones[_name(origin)]
        self.zones[_name(origin)] = dns.zone.from_text(
            zone.to_text(relativize=False), origin, relativize=False
        )

    def updates(self) -> list[dns.update.UpdateMessage]:
        """
        The update requests received.
        """
        return [
            message
            for _, message in self.requests
            if isinstance(message, dns.update.UpdateMessage)
        ]

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        best: dns.zone.Zone | None = None
        for origin, zone in self.zones.items():
            if name.is_subdomain(origin) and (
                best is None or origin.is_subdomain(_origin(best))
            ):
                best = zone
        return best

    # -- the protocol --------------------------------------------------------

    def handle(self, wire: bytes, transport: str) -> list[bytes]:
        """
        The datagrams or TCP messages that answer ``wire``.
        """
        try:
            request = dns.message.from_wire(wire, keyring=False)
        except Exception:
            return []
        self.requests.append((transport, request))
        if self.silent:
            return []
        if request.opcode() == dns.opcode.UPDATE:
            return [self._update(request, wire)]
        answer = self._query(request, transport)
        if self.decoy and transport == "udp":
            return [*self._decoys(request), answer]
        return [answer]

    def _decoys(self, request: dns.message.Message) -> Iterator[bytes]:
        other_id = dns.message.make_response(request)
        other_id.id = (request.id + 1) % 0x10000
        yield other_id.to_wire()
        other_question = dns.message.make_query("decoy.example.test", "TXT")
        other_question.id = request.id
        other_question.flags |= dns.flags.QR
        yield other_question.to_wire()
        yield b"\x00garbage"

    def _query(self, request: dns.message.Message, transport: str) -> bytes:
        response = dns.message.make_response(request)
        question = request.question[0]
        name, rdtype = question.name, question.rdtype
        zone = self._zone_for(name)
        if (name, rdtype) in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif zone is None or (name, rdtype) in self.refuse_queries:
            response.set_rcode(dns.rcode.REFUSED)
        else:
            response.flags |= dns.flags.AA
            self._answer(response, zone, name, rdtype)
        if transport == "udp" and self.truncate_udp:
            response.flags |= dns.flags.TC
            response.answer = []
            response.authority = []
            response.additional = []
        return response.to_wire()

    def _answer(
        self,
        response: dns.message.Message,
        zone: dns.zone.Zone,
        name: dns.name.Name,
        rdtype: int,
    ) -> None:
        node = zone.get_node(name)
        kind = dns.rdatatype.RdataType(rdtype)
        cname = (
            None
            if node is None
            else node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
        )
        found = None if node is None else node.get_rdataset(dns.rdataclass.IN, kind)
        if cname is not None and rdtype != dns.rdatatype.CNAME:
            found, rdtype = cname, dns.rdatatype.CNAME
        if found is not None:
            response.answer.append(_rrset(name, found))
            if rdtype == dns.rdatatype.NS:
                for rdata in found:
                    for glue_type in (dns.rdatatype.A, dns.rdatatype.AAAA):
                        glue = zone.get_rdataset(rdata.target, glue_type)
                        if glue is not None:
                            response.additional.append(_rrset(rdata.target, glue))
            return
        exists = any(owner.is_subdomain(name) for owner in zone.nodes)
        if not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        soa = zone.get_rdataset(_origin(zone), dns.rdatatype.SOA)
        assert soa is not None
        response.authority.append(_rrset(_origin(zone), soa))

    def _update(self, request: dns.message.Message, wire: bytes) -> bytes:
        """
        Apply an RFC 2136 update (no prerequisites) signed with a known key.
        """
        if not request.had_tsig:
            return self._update_answer(request, dns.rcode.REFUSED)
        assert request.keyname is not None
        assert request.keyalgorithm is not None
        key = self.keys.get(request.keyname)
        if key is None:
            unknown = dns.tsig.Key(request.keyname, b"unknown", request.keyalgorithm)
            return self._tsig_failure(request, unknown, dns.rcode.BADKEY)
        try:
            verified = dns.message.from_wire(wire, keyring=key)
        except dns.tsig.BadSignature:
            return self._tsig_failure(request, key, dns.rcode.BADSIG)
        assert isinstance(verified, dns.update.UpdateMessage)
        zone = self.zones.get(verified.zone[0].name)
        if zone is None:
            return self._update_answer(verified, dns.rcode.NOTAUTH)
        for rrset in verified.update:
            if not rrset.name.is_subdomain(_origin(zone)):
                return self._update_answer(verified, dns.rcode.NOTZONE)
            if rrset.name in self.refused:
                return self._update_answer(verified, dns.rcode.REFUSED)
        for rrset in verified.update:
            rdataset = zone.find_rdataset(rrset.name, rrset.rdtype, create=True)
            if rrset.deleting == dns.rdataclass.NONE:
                for rdata in rrset:
                    rdataset.discard(rdata)  # type: ignore[no-untyped-call]
            elif rrset.deleting == dns.rdataclass.ANY:
                rdataset.clear()  # type: ignore[no-untyped-call]
            else:
                rdataset.update_ttl(rrset.ttl)
                for rdata in rrset:
                    rdataset.add(rdata)
            if not rdataset:
                zone.delete_rdataset(rrset.name, rrset.rdtype)
        return self._update_answer(verified, dns.rcode.NOERROR)

    def _update_answer(self, request: dns.message.Message, rcode: int) -> bytes:
        if not self.sign_answers and rcode == dns.rcode.NOERROR:
            request.keyring = None
        response = dns.message.make_response(request)
        response.set_rcode(dns.rcode.Rcode(rcode))
        return response.to_wire()

    def _tsig_failure(
        self, request: dns.message.Message, key: dns.tsig.Key, tsig_error: int
    ) -> bytes:
        # RFC 8945 §5.2: NOTAUTH, with the TSIG error in the TSIG record.
        request.keyring = None
        response = dns.message.make_response(request)
        response.set_rcode(dns.rcode.NOTAUTH)
        response.use_tsig(key, tsig_error=tsig_error)
        return response.to_wire()


def _rrset(name: dns.name.Name, rdataset: Any) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
    rrset.update(rdataset)  # type: ignore[no-untyped-call]
    return rrset


def _origin(zone: dns.zone.Zone) -> dns.name.Name:
    assert zone.origin is not None
    return zone.origin


class _UDPServerProtocol(DatagramProtocol):
    def __init__(self, server: FakeDNSServer) -> None:
        self._server = server

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        assert self.transport is not None
        for answer in self._server.handle(datagram, "udp"):
            self.transport.write(answer, addr)


class _TCPServerProtocol(Protocol):
    def __init__(self, server: FakeDNSServer) -> None:
        self._server = server
        self._buffer = b""
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self._server._connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self._buffer += data
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                return
            message = self._buffer[2 : 2 + length]
            self._buffer = self._buffer[2 + length :]
            for answer in self._server.handle(message, "tcp"):
                self.transport.write(_frame(answer))

    def close(self) -> None:
        if self.transport is not None and not self.lost.called:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._server._connections.remove(self)
        self.lost.callback(None)


def _challenge(
    token: bytes | None = None,
) -> tuple[challenges.DNS01, challenges.DNS01Response]:
    challenge = challenges.DNS01(token=token or os.urandom(32))
    response = challenge.response(EC_KEY)
    assert isinstance(response, challenges.DNS01Response)
    return challenge, response


def _free_udp_port() -> int:
    """A loopback UDP port with nothing listening (it was just released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def _free_tcp_port() -> int:
    """A loopback port with no TCP listener (it was just released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


class DNSTestCase(TypedAssertions, TestCase):
    """
    A test case on the real reactor with a primary :class:`FakeDNSServer`
    serving ``example.test``, ``delegated.test`` and ``child.example.test``,
    and a secondary serving a copy of ``example.test``.
    """

    timeout = 20

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.primary = FakeDNSServer(
            {
                "example.test.": EXAMPLE_ZONE,
                "delegated.test.": DELEGATED_ZONE,
                "child.example.test.": CHILD_ZONE,
            }
        ).listen(reactor)
        self.addCleanup(self.primary.stop)
        self.secondary = FakeDNSServer({"example.test.": EXAMPLE_ZONE}).listen(reactor)
        self.addCleanup(self.secondary.stop)

    def responder(self, **arguments: Any) -> RFC2136Responder:
        """
        A responder for the primary; ns1 is the primary and ns2 the
        secondary (``nameserver_addresses``); short time bounds.
        """
        options: dict[str, Any] = {
            "query_timeout": 0.5,
            "query_attempts": 2,
            "update_timeout": 2.0,
            "propagation_interval": 0.05,
            "propagation_timeout": 3.0,
            "nameserver_addresses": {
                "ns1.example.test": [self.primary.address],
                "ns2.example.test": [self.secondary.address],
                "ns1.delegated.test": [self.primary.address],
            },
        }
        options.update(arguments)
        server = options.pop("server", self.primary.address)
        secret = options.pop("secret", SECRET)
        key_name = options.pop("key_name", KEY_NAME)
        return RFC2136Responder(self.reactor, server, key_name, secret, **options)

    def sync_secondary_soon(self, delay: float = 0.0) -> None:
        """
        Copy the primary's zones to the secondary after ``delay`` seconds
        and then every 50 ms until the test ends (a secondary that follows
        NOTIFYs).
        """
        clock: IReactorTime = self.reactor

        def sync() -> None:
            self.secondary.copy_zone_from(self.primary, "example.test.")
            call[0] = clock.callLater(0.05, sync)

        call = [clock.callLater(delay, sync)]

        def stop() -> None:
            if call[0].active():
                call[0].cancel()

        self.addCleanup(stop)


class RecordTests(TypedAssertions, TestCase):
    """
    :func:`dns01_record`: the TXT record of RFC 8555 §8.4.
    """

    def test_value_and_name(self) -> None:
        """
        The record is ``_acme-challenge.<name>`` and the value is acme's
        ``DNS01.validation`` for the account key.
        """
        challenge, response = _challenge()
        self.assertEqual(
            dns01_record("www.example.test", response),
            ("_acme-challenge.www.example.test", challenge.validation(EC_KEY)),
        )

    def test_wildcard(self) -> None:
        """
        A wildcard's record is that of its base name, with the same value
        as for a non-wildcard name.
        """
        _, response = _challenge()
        self.assertEqual(
            dns01_record("*.example.test", response),
            dns01_record("example.test", response),
        )
        self.assertEqual(
            dns01_record("*.example.test", response)[0],
            "_acme-challenge.example.test",
        )


class AnswerMatchingTests(TypedAssertions, TestCase):
    """
    ``answer_to`` accepts only an answer to the request (RFC 5452).
    """

    def test_matching(self) -> None:
        """
        A response with the request's ID and question is accepted; another
        ID, another question, a query (no QR bit) and garbage are not.
        """
        request = dns.message.make_query("a.example.test", "TXT")
        good = dns.message.make_response(request)
        parsed = answer_to(request, good.to_wire())
        assert parsed is not None
        self.assertEqual(parsed.message.id, request.id)
        self.assertEqual(parsed.wire, good.to_wire())
        other_id = dns.message.make_response(request)
        other_id.id = (request.id + 1) % 0x10000
        self.assertIs(None, answer_to(request, other_id.to_wire()))
        other_question = dns.message.make_query("b.example.test", "TXT")
        other_question.id = request.id
        other_question.flags |= dns.flags.QR
        self.assertIs(None, answer_to(request, other_question.to_wire()))
        self.assertIs(None, answer_to(request, request.to_wire()))
        self.assertIs(None, answer_to(request, b"\x01\x02garbage"))


class InterfaceTests(DNSTestCase):
    """
    Both responders provide :class:`~txacme.interfaces.IResponder` for
    dns-01; bad configuration fails at once.
    """

    def test_rfc2136_interface(self) -> None:
        """
        ``RFC2136Responder`` provides IResponder with type ``dns-01``, and
        its repr does not show the TSIG secret.
        """
        responder = self.responder()
        verifyObject(IResponder, responder)
        self.assertEqual(responder.challenge_type, "dns-01")
        self.assertNotIn(SECRET, repr(responder))

    def test_callable_interface(self) -> None:
        """
        ``CallableDNS01Responder`` provides IResponder with type ``dns-01``.
        """
        responder = CallableDNS01Responder(lambda *_: None, lambda *_: None)
        verifyObject(IResponder, responder)
        self.assertEqual(responder.challenge_type, "dns-01")

    def test_bad_configuration(self) -> None:
        """
        A server given by host name, and an unknown TSIG algorithm, raise
        ``ValueError`` when the responder is made.
        """
        with self.assertRaises(ValueError):
            self.responder(server=("localhost", 53))
        with self.assertRaises(ValueError):
            self.responder(tsig_algorithm="hmac-sha3")


class UpdateMessageTests(DNSTestCase):
    """
    The RFC 2136 updates the responder sends.
    """

    async def test_add_one_record_signed(self) -> None:
        """
        Start sends one update for zone ``example.test`` over TCP, signed
        with the key (hmac-sha256), adding exactly one TXT record with the
        value and the TTL; the server then serves it.
        """
        self.sync_secondary_soon()
        challenge, response = _challenge()
        await self.responder(ttl=42).start_responding(
            "www.example.test", challenge, response
        )
        (update,) = self.primary.updates()
        self.assertEqual(update.zone[0].name, _name("example.test."))
        self.assertEqual(update.zone[0].rdtype, dns.rdatatype.SOA)
        self.assertEqual(update.prerequisite, [])
        (rrset,) = update.update
        self.assertEqual(rrset.name, _name("_acme-challenge.www.example.test."))
        self.assertEqual(rrset.rdtype, dns.rdatatype.TXT)
        self.assertEqual(rrset.deleting, None)
        self.assertEqual(rrset.ttl, 42)
        self.assertEqual(
            [b"".join(rdata.strings).decode() for rdata in rrset],
            [challenge.validation(EC_KEY)],
        )
        self.assertTrue(update.had_tsig)
        self.assertEqual(update.keyname, _name(KEY_NAME))
        self.assertEqual(update.keyalgorithm, _name("hmac-sha256"))
        transports = [
            transport
            for transport, message in self.primary.requests
            if message.opcode() == dns.opcode.UPDATE
        ]
        self.assertEqual(transports, ["tcp"])
        self.assertEqual(
            self.primary.txt("_acme-challenge.www.example.test."),
            {challenge.validation(EC_KEY)},
        )

    async def test_delete_exactly_one_record(self) -> None:
        """
        Stop sends one signed update deleting exactly the one TXT record
        (class NONE, RFC 2136 §2.5.4), not the RRset or the name.
        """
        self.sync_secondary_soon()
        responder = self.responder()
        challenge, response = _challenge()
        await responder.start_responding("www.example.test", challenge, response)
        await responder.stop_responding("www.example.test", challenge, response)
        _, delete = self.primary.updates()
        self.assertEqual(delete.zone[0].name, _name("example.test."))
        (rrset,) = delete.update
        self.assertEqual(rrset.name, _name("_acme-challenge.www.example.test."))
        self.assertEqual(rrset.rdtype, dns.rdatatype.TXT)
        self.assertEqual(rrset.deleting, dns.rdataclass.NONE)
        self.assertEqual(rrset.ttl, 0)
        self.assertEqual(
            [b"".join(rdata.strings).decode() for rdata in rrset],
            [challenge.validation(EC_KEY)],
        )
        self.assertTrue(delete.had_tsig)
        self.assertEqual(self.primary.txt("_acme-challenge.www.example.test."), set())

    async def test_other_algorithm(self) -> None:
        """
        The configured TSIG algorithm signs the update.
        """
        self.sync_secondary_soon()
        self.primary.keys[_name("sha512-key.")] = dns.tsig.Key(
            "sha512-key.", SECRET, "hmac-sha512"
        )
        challenge, response = _challenge()
        await self.responder(
            key_name="sha512-key", tsig_algorithm="hmac-sha512"
        ).start_responding("www.example.test", challenge, response)
        (update,) = self.primary.updates()
        self.assertEqual(update.keyalgorithm, _name("hmac-sha512"))

    async def test_raw_secret(self) -> None:
        """
        A secret given as bytes is the raw key, not base64 text.
        """
        self.sync_secondary_soon()
        import base64

        challenge, response = _challenge()
        await self.responder(secret=base64.b64decode(SECRET)).start_responding(
            "www.example.test", challenge, response
        )
        self.assertEqual(len(self.primary.updates()), 1)


class ZoneTests(DNSTestCase):
    """
    Finding the zone to update, and following CNAMEs.
    """

    async def test_walks_up_to_the_zone(self) -> None:
        """
        For a name several labels below the apex the update goes to the
        enclosing zone, found by SOA lookups on the configured server.
        """
        self.sync_secondary_soon()
        challenge, response = _challenge()
        await self.responder().start_responding(
            "a.b.c.example.test", challenge, response
        )
        (update,) = self.primary.updates()
        self.assertEqual(update.zone[0].name, _name("example.test."))
        soa_questions = [
            message.question[0].name
            for _, message in self.primary.requests
            if message.question and message.question[0].rdtype == dns.rdatatype.SOA
        ]
        self.assertEqual(soa_questions[0], _name("_acme-challenge.a.b.c.example.test."))

    async def test_child_zone(self) -> None:
        """
        A name in a child zone (``child.example.test``, served by the same
        server) is updated in the child zone, not its parent.
        """
        challenge, response = _challenge()
        await self.responder(check_propagation=False).start_responding(
            "www.child.example.test", challenge, response
        )
        (update,) = self.primary.updates()
        self.assertEqual(update.zone[0].name, _name("child.example.test."))
        self.assertEqual(
            self.primary.txt("_acme-challenge.www.child.example.test."),
            {challenge.validation(EC_KEY)},
        )

    async def test_refused_levels_are_skipped(self) -> None:
        """
        A REFUSED answer to an SOA lookup (a name the server does not
        know) moves the walk up one label.
        """
        self.sync_secondary_soon()
        self.primary.refuse_queries.add(
            (_name("_acme-challenge.www.example.test."), dns.rdatatype.SOA)
        )
        challenge, response = _challenge()
        await self.responder().start_responding("www.example.test", challenge, response)
        (update,) = self.primary.updates()
        self.assertEqual(update.zone[0].name, _name("example.test."))

    async def test_no_zone(self) -> None:
        """
        A name in no zone of the server fails with ``ZoneNotFound``, and
        sends no update.
        """
        challenge, response = _challenge()
        error = await _failure(
            ZoneNotFound,
            self.responder().start_responding("www.other.test", challenge, response),
        )
        self.assertIn("_acme-challenge.www.other.test", str(error))
        self.assertEqual(error.name, "_acme-challenge.www.other.test")
        # No zone was configured: the responder looked for the name's.
        self.assertIs(error.zone_name, None)
        self.assertEqual(self.primary.updates(), [])

    async def test_lookup_servfail(self) -> None:
        """
        SERVFAIL for a lookup fails with ``DNSLookupError`` carrying the
        RCODE.
        """
        self.primary.servfail.add(
            (_name("_acme-challenge.www.example.test."), dns.rdatatype.SOA)
        )
        challenge, response = _challenge()
        error = await _failure(
            DNSLookupError,
            self.responder().start_responding("www.example.test", challenge, response),
        )
        self.assertEqual(error.rcode, dns.rcode.SERVFAIL)
        self.assertIn("SERVFAIL", str(error))

    async def test_follows_cname(self) -> None:
        """
        With ``_acme-challenge.alias.example.test`` a CNAME for
        ``alias.delegated.test``, the record is added at the target, in
        zone ``delegated.test``, and that zone's servers are checked.
        """
        challenge, response = _challenge()
        responder = self.responder()
        await responder.start_responding("alias.example.test", challenge, response)
        (update,) = self.primary.updates()
        self.assertEqual(update.zone[0].name, _name("delegated.test."))
        self.assertEqual(update.update[0].name, _name("alias.delegated.test."))
        self.assertEqual(
            self.primary.txt("alias.delegated.test."), {challenge.validation(EC_KEY)}
        )
        self.assertEqual(self.primary.txt("_acme-challenge.alias.example.test."), set())
        await responder.stop_responding("alias.example.test", challenge, response)
        self.assertEqual(self.primary.txt("alias.delegated.test."), set())

    async def test_cname_loop(self) -> None:
        """
        A CNAME loop fails with ``DNSLookupError`` naming the chain.
        """
        challenge, response = _challenge()
        error = await _failure(
            DNSLookupError,
            self.responder().start_responding("loop.example.test", challenge, response),
        )
        self.assertIn("CNAME loop", str(error))
        self.assertEqual(self.primary.updates(), [])

    async def test_cname_chain_too_long(self) -> None:
        """
        A chain of more than eight CNAMEs fails with ``DNSLookupError``.
        """
        challenge, response = _challenge()
        error = await _failure(
            DNSLookupError,
            self.responder().start_responding("long.example.test", challenge, response),
        )
        self.assertIn("more than 8 CNAMEs", str(error))


class PropagationTests(DNSTestCase):
    """
    Waiting until every authoritative server serves the value.
    """

    async def test_waits_for_every_server(self) -> None:
        """
        Start does not fire while the secondary (ns2) lacks the value, and
        fires once it has it.
        """
        challenge, response = _challenge()
        starting = self.responder().start_responding(
            "www.example.test", challenge, response
        )
        await deferLater(self.reactor, 0.4)
        self.assertNoResult(starting)
        txt_queries = [
            message
            for _, message in self.secondary.requests
            if message.question[0].rdtype == dns.rdatatype.TXT
        ]
        self.assertTrue(len(txt_queries) >= 3, txt_queries)
        self.assertFalse(txt_queries[0].flags & dns.flags.RD)
        self.sync_secondary_soon()
        await starting
        self.assertEqual(
            self.secondary.txt("_acme-challenge.www.example.test."),
            {challenge.validation(EC_KEY)},
        )

    async def test_timeout(self) -> None:
        """
        A secondary that never gets the value fails the start with
        ``PropagationTimeout`` within the bound, naming ns2 and what it
        answered; ns1 is not named.
        """
        challenge, response = _challenge()
        starting = self.responder(propagation_timeout=0.5).start_responding(
            "www.example.test", challenge, response
        )
        error = await _failure(PropagationTimeout, starting)
        self.assertEqual(
            list(error.missing), [f"ns2.example.test 127.0.0.1:{self.secondary.port}"]
        )
        self.assertIn("RCODE NXDOMAIN", str(error))
        self.assertEqual(error.value, challenge.validation(EC_KEY))

    async def test_unreachable_nameserver(self) -> None:
        """
        An authoritative server that does not answer counts as not
        serving the value, and is named in the timeout.
        """
        port = _free_udp_port()
        challenge, response = _challenge()
        error = await _failure(
            PropagationTimeout,
            self.responder(
                propagation_timeout=0.5,
                nameserver_addresses={
                    "ns1.example.test": [self.primary.address],
                    "ns2.example.test": [(LOOPBACK, port)],
                },
            ).start_responding("www.example.test", challenge, response),
        )
        self.assertIn(f"ns2.example.test 127.0.0.1:{port}", error.missing)

    async def test_nameservers_from_glue(self) -> None:
        """
        Without ``nameserver_addresses``, the NS targets' addresses come
        from the NS answer's glue, on ``nameserver_port``.
        """
        challenge, response = _challenge()
        error = await _failure(
            PropagationTimeout,
            self.responder(
                nameserver_addresses=None,
                nameserver_port=self.secondary.port,
                propagation_timeout=0.3,
                query_timeout=0.1,
            ).start_responding("www.example.test", challenge, response),
        )
        self.assertEqual(
            sorted(error.missing),
            [
                f"ns1.example.test 192.0.2.1:{self.secondary.port}",
                f"ns2.example.test 192.0.2.2:{self.secondary.port}",
            ],
        )

    async def test_no_check(self) -> None:
        """
        With ``check_propagation=False`` start fires once the update is
        applied, without asking any nameserver.
        """
        challenge, response = _challenge()
        await self.responder(check_propagation=False).start_responding(
            "www.example.test", challenge, response
        )
        self.assertEqual(self.secondary.requests, [])
        self.assertEqual(len(self.primary.updates()), 1)


class ContractTests(DNSTestCase):
    """
    The IResponder contract: several values at one name, idempotent stop,
    stop without start, cancellation.
    """

    async def test_wildcard_and_base_name(self) -> None:
        """
        A wildcard and its base name are responded to at once with two
        values at one name; stopping one leaves the other.
        """
        self.sync_secondary_soon()
        responder = self.responder()
        wildcard, wildcard_response = _challenge()
        base, base_response = _challenge()
        await _both(
            responder.start_responding("*.example.test", wildcard, wildcard_response),
            responder.start_responding("example.test", base, base_response),
        )
        name = "_acme-challenge.example.test."
        self.assertEqual(
            self.primary.txt(name),
            {wildcard.validation(EC_KEY), base.validation(EC_KEY)},
        )
        await responder.stop_responding("*.example.test", wildcard, wildcard_response)
        self.assertEqual(self.primary.txt(name), {base.validation(EC_KEY)})
        await responder.stop_responding("example.test", base, base_response)
        self.assertEqual(self.primary.txt(name), set())

    async def test_others_values_kept(self) -> None:
        """
        Stop deletes only the responder's value: a TXT value someone else
        put at the name stays.
        """
        self.sync_secondary_soon()
        zone = self.primary.zones[_name("example.test.")]
        rdataset = zone.find_rdataset(
            "_acme-challenge.www.example.test.", dns.rdatatype.TXT, create=True
        )
        rdataset.add(
            dns.rdtypes.ANY.TXT.TXT(
                dns.rdataclass.IN, dns.rdatatype.TXT, [b"someone else's"]
            ),
            300,
        )
        responder = self.responder()
        challenge, response = _challenge()
        await responder.start_responding("www.example.test", challenge, response)
        await responder.stop_responding("www.example.test", challenge, response)
        self.assertEqual(
            self.primary.txt("_acme-challenge.www.example.test."), {"someone else's"}
        )

    async def test_stop_is_idempotent(self) -> None:
        """
        A second stop sends nothing.
        """
        self.sync_secondary_soon()
        responder = self.responder()
        challenge, response = _challenge()
        await responder.start_responding("www.example.test", challenge, response)
        await responder.stop_responding("www.example.test", challenge, response)
        requests = len(self.primary.requests)
        await responder.stop_responding("www.example.test", challenge, response)
        self.assertEqual(len(self.primary.requests), requests)
        self.assertEqual(len(self.primary.updates()), 2)

    async def test_stop_without_start(self) -> None:
        """
        Stop for a challenge never started sends nothing and succeeds.
        """
        challenge, response = _challenge()
        await self.responder().stop_responding("www.example.test", challenge, response)
        self.assertEqual(self.primary.requests, [])

    async def test_stop_after_failed_start(self) -> None:
        """
        Stop after a start whose update the server refused sends nothing
        (an update is atomic, RFC 2136 §3.4: nothing was added) and
        succeeds; nor does stopping after a start that failed before any
        update.
        """
        self.primary.refused.add(_name("_acme-challenge.www.example.test."))
        responder = self.responder()
        challenge, response = _challenge()
        await _failure(
            DNSUpdateError,
            responder.start_responding("www.example.test", challenge, response),
        )
        self.primary.refused.clear()
        await responder.stop_responding("www.example.test", challenge, response)
        self.assertEqual(len(self.primary.updates()), 1)

        other, other_response = _challenge()
        await _failure(
            ZoneNotFound,
            responder.start_responding("www.other.test", other, other_response),
        )
        await responder.stop_responding("www.other.test", other, other_response)
        self.assertEqual(len(self.primary.updates()), 1)

    async def test_stop_during_start(self) -> None:
        """
        Stop while start waits for propagation cancels the start (it fails
        with ``CancelledError``) and deletes the value.
        """
        responder = self.responder()
        challenge, response = _challenge()
        starting = responder.start_responding("www.example.test", challenge, response)
        await deferLater(self.reactor, 0.3)
        self.assertEqual(len(self.primary.updates()), 1)
        await responder.stop_responding("www.example.test", challenge, response)
        await _failure(CancelledError, starting)
        self.assertEqual(len(self.primary.updates()), 2)
        self.assertEqual(self.primary.txt("_acme-challenge.www.example.test."), set())

    async def test_cancel_start(self) -> None:
        """
        Cancelling start stops the wait at once; a stop afterwards deletes
        the value, and no socket is left open (trial checks).
        """
        responder = self.responder()
        challenge, response = _challenge()
        starting = responder.start_responding("www.example.test", challenge, response)
        await deferLater(self.reactor, 0.3)
        starting.cancel()
        await _failure(CancelledError, starting)
        await responder.stop_responding("www.example.test", challenge, response)
        self.assertEqual(self.primary.txt("_acme-challenge.www.example.test."), set())


class ErrorTests(DNSTestCase):
    """
    Failures map to the documented exceptions, each within its bound.
    """

    async def test_wrong_secret(self) -> None:
        """
        A wrong secret fails with ``DNSAuthenticationError``: NOTAUTH with
        TSIG error BADSIG, and a message about the secret.
        """
        challenge, response = _challenge()
        error = await _failure(
            DNSAuthenticationError,
            self.responder(secret=WRONG_SECRET).start_responding(
                "www.example.test", challenge, response
            ),
        )
        self.assertEqual(error.rcode, dns.rcode.NOTAUTH)
        self.assertEqual(error.tsig_error, dns.rcode.BADSIG)
        self.assertIn("secret", str(error))
        self.assertIn("BADSIG", str(error))
        self.assertEqual(self.primary.txt("_acme-challenge.www.example.test."), set())

    async def test_unknown_key(self) -> None:
        """
        A key name the server does not know fails with
        ``DNSAuthenticationError``: NOTAUTH with TSIG error BADKEY.
        """
        challenge, response = _challenge()
        error = await _failure(
            DNSAuthenticationError,
            self.responder(key_name="nobody").start_responding(
                "www.example.test", challenge, response
            ),
        )
        self.assertEqual(error.rcode, dns.rcode.NOTAUTH)
        self.assertEqual(error.tsig_error, dns.rcode.BADKEY)
        self.assertIn("does not know this TSIG key", str(error))

    async def test_refused(self) -> None:
        """
        An update the policy refuses fails with ``DNSUpdateError`` REFUSED
        (not an authentication error), naming the record and zone.
        """
        self.primary.refused.add(_name("_acme-challenge.www.example.test."))
        challenge, response = _challenge()
        error = await _failure(
            DNSUpdateError,
            self.responder().start_responding("www.example.test", challenge, response),
        )
        self.assertNotIsInstance(error, DNSAuthenticationError)
        self.assertEqual(error.rcode, dns.rcode.REFUSED)
        self.assertEqual(error.record_name, "_acme-challenge.www.example.test")
        self.assertEqual(error.zone, "example.test")
        self.assertIn("update-policy", str(error))

    async def test_unsigned_success(self) -> None:
        """
        A NOERROR answer to an update that is not signed with the key is
        not trusted: ``DNSAuthenticationError``.
        """
        self.primary.sign_answers = False
        challenge, response = _challenge()
        error = await _failure(
            DNSAuthenticationError,
            self.responder().start_responding("www.example.test", challenge, response),
        )
        self.assertEqual(error.rcode, dns.rcode.NOERROR)
        self.assertIn("not signed with the key", str(error))

    async def test_unreachable_udp(self) -> None:
        """
        A server port with nothing listening fails the start with
        ``DNSServerUnreachable`` at once (ICMP port unreachable), long
        before the time bound.
        """
        port = _free_udp_port()
        challenge, response = _challenge()
        starting = self.responder(
            server=(LOOPBACK, port), query_timeout=2.0, query_attempts=3
        ).start_responding("www.example.test", challenge, response)
        started = time.monotonic()
        error = await _failure(DNSServerUnreachable, starting)
        self.assertTrue(time.monotonic() - started < 1.5)
        self.assertEqual(error.server, (LOOPBACK, port))
        self.assertIn(f"127.0.0.1:{port}", str(error))

    async def test_silent_server(self) -> None:
        """
        A server that never answers fails with ``DNSTimeout`` after
        ``query_attempts`` transmissions of ``query_timeout`` each.
        """
        self.primary.silent = True
        challenge, response = _challenge()
        starting = self.responder(query_timeout=0.2, query_attempts=3).start_responding(
            "www.example.test", challenge, response
        )
        started = time.monotonic()
        error = await _failure(DNSTimeout, starting)
        elapsed = time.monotonic() - started
        self.assertTrue(0.55 <= elapsed < 1.5, elapsed)
        self.assertEqual(error.seconds, 0.6000000000000001)
        udp = [message for transport, message in self.primary.requests]
        self.assertEqual(len(udp), 3)
        self.assertEqual({message.id for message in udp}, {udp[0].id})

    async def test_silent_update(self) -> None:
        """
        A server that answers lookups but never an update fails the start
        with ``DNSTimeout`` after ``update_timeout``.
        """
        original = self.primary.handle

        def no_update_answers(wire: bytes, transport: str) -> list[bytes]:
            answers = original(wire, transport)
            return [] if transport == "tcp" else answers

        self.primary.handle = no_update_answers  # type: ignore[method-assign]
        challenge, response = _challenge()
        starting = self.responder(update_timeout=0.5).start_responding(
            "www.example.test", challenge, response
        )
        started = time.monotonic()
        error = await _failure(DNSTimeout, starting)
        self.assertTrue(0.45 <= time.monotonic() - started < 1.5)
        self.assertEqual(error.seconds, 0.5)

    async def test_update_refused_connection(self) -> None:
        """
        A TCP connection refused for the update (UDP lookups answered)
        fails with ``DNSServerUnreachable``.
        """
        self.sync_secondary_soon()
        stream = self.primary._listening[0]
        await maybeDeferred(stream.stopListening)
        challenge, response = _challenge()
        error = await _failure(
            DNSServerUnreachable,
            self.responder().start_responding("www.example.test", challenge, response),
        )
        self.assertNotIsInstance(error, DNSTimeout)
        self.assertIn("TCP connection failed", str(error))


class TransportTests(DNSTestCase):
    """
    UDP with TCP fall-back, and resistance to stray datagrams.
    """

    async def test_truncated_falls_back_to_tcp(self) -> None:
        """
        When UDP answers are truncated, each lookup is repeated over TCP
        and the responder works as usual.
        """
        self.primary.truncate_udp = True
        self.sync_secondary_soon()
        challenge, response = _challenge()
        await self.responder().start_responding("www.example.test", challenge, response)
        transports = [transport for transport, _ in self.primary.requests]
        self.assertEqual(transports[:2], ["udp", "tcp"])
        self.assertEqual(
            self.primary.txt("_acme-challenge.www.example.test."),
            {challenge.validation(EC_KEY)},
        )

    async def test_decoys_ignored(self) -> None:
        """
        Datagrams with another ID, another question, or garbage, sent
        before each answer, are ignored.
        """
        self.primary.decoy = True
        self.sync_secondary_soon()
        challenge, response = _challenge()
        await self.responder().start_responding("www.example.test", challenge, response)
        self.assertEqual(
            self.primary.txt("_acme-challenge.www.example.test."),
            {challenge.validation(EC_KEY)},
        )


class CallableResponderTests(TypedAssertions, TestCase):
    """
    :class:`CallableDNS01Responder` calls the application's functions.
    """

    def setUp(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def record(self, what: str) -> Callable[[str, str], None]:
        def call(record_name: str, value: str) -> None:
            self.calls.append((what, record_name, value))

        return call

    def test_set_then_remove(self) -> None:
        """
        Start calls ``set_txt(record_name, value)`` (the base name's record
        for a wildcard), stop calls ``remove_txt`` with the same.
        """
        responder = CallableDNS01Responder(self.record("set"), self.record("remove"))
        challenge, response = _challenge()
        self.successResultOf(
            responder.start_responding("*.example.test", challenge, response)
        )
        self.successResultOf(
            responder.stop_responding("*.example.test", challenge, response)
        )
        value = challenge.validation(EC_KEY)
        self.assertEqual(
            self.calls,
            [
                ("set", "_acme-challenge.example.test", value),
                ("remove", "_acme-challenge.example.test", value),
            ],
        )

    def test_propagation_check(self) -> None:
        """
        ``propagation_check`` is called after ``set_txt`` and start waits
        for the Deferred it returns.
        """
        waiting: Deferred[None] = Deferred()

        def check(record_name: str, value: str) -> Deferred[None]:
            self.calls.append(("check", record_name, value))
            return waiting

        responder = CallableDNS01Responder(
            self.record("set"), self.record("remove"), propagation_check=check
        )
        challenge, response = _challenge()
        starting = responder.start_responding("example.test", challenge, response)
        self.assertNoResult(starting)
        self.assertEqual([call[0] for call in self.calls], ["set", "check"])
        waiting.callback(None)
        self.successResultOf(starting)

    def test_async_functions(self) -> None:
        """
        ``async def`` functions and functions returning Deferreds are
        awaited.
        """
        gate: Deferred[None] = Deferred()

        async def set_txt(record_name: str, value: str) -> None:
            await gate
            self.calls.append(("set", record_name, value))

        def remove_txt(record_name: str, value: str) -> Deferred[None]:
            self.calls.append(("remove", record_name, value))
            return succeed(None)

        responder = CallableDNS01Responder(set_txt, remove_txt)
        challenge, response = _challenge()
        starting = responder.start_responding("example.test", challenge, response)
        self.assertNoResult(starting)
        gate.callback(None)
        self.successResultOf(starting)
        self.successResultOf(
            responder.stop_responding("example.test", challenge, response)
        )
        self.assertEqual([call[0] for call in self.calls], ["set", "remove"])

    def test_failure(self) -> None:
        """
        A failing ``set_txt`` fails start with its exception; stop then
        still calls ``remove_txt``, once.
        """

        def set_txt(record_name: str, value: str) -> None:
            raise RuntimeError("provider says no")

        responder = CallableDNS01Responder(set_txt, self.record("remove"))
        challenge, response = _challenge()
        failure = self.failureResultOf(
            responder.start_responding("example.test", challenge, response),
            RuntimeError,
        )
        self.assertIn("provider says no", str(failure.value))
        for _ in range(2):
            self.successResultOf(
                responder.stop_responding("example.test", challenge, response)
            )
        self.assertEqual([call[0] for call in self.calls], ["remove"])

    def test_stop_without_start(self) -> None:
        """
        Stop for a challenge never started calls nothing; a second stop
        after a start calls nothing either.
        """
        responder = CallableDNS01Responder(self.record("set"), self.record("remove"))
        challenge, response = _challenge()
        self.successResultOf(
            responder.stop_responding("example.test", challenge, response)
        )
        self.assertEqual(self.calls, [])
        self.successResultOf(
            responder.start_responding("example.test", challenge, response)
        )
        for _ in range(2):
            self.successResultOf(
                responder.stop_responding("example.test", challenge, response)
            )
        self.assertEqual([call[0] for call in self.calls], ["set", "remove"])

    def test_two_values_one_name(self) -> None:
        """
        A wildcard and its base name are set at one name with two values;
        stopping one removes only its value.
        """
        responder = CallableDNS01Responder(self.record("set"), self.record("remove"))
        wildcard, wildcard_response = _challenge()
        base, base_response = _challenge()
        responder.start_responding("*.example.test", wildcard, wildcard_response)
        responder.start_responding("example.test", base, base_response)
        responder.stop_responding("example.test", base, base_response)
        self.assertEqual(
            self.calls[-1],
            ("remove", "_acme-challenge.example.test", base.validation(EC_KEY)),
        )
        self.assertEqual(len(self.calls), 3)


class WithoutDnspythonTests(TypedAssertions, TestCase):
    """
    dnspython is an extra (``txacme[dns]``): only RFC2136Responder needs it.
    """

    def test_import_without_dnspython(self) -> None:
        """
        With dnspython unimportable, ``txacme.challenges`` imports,
        ``CallableDNS01Responder`` works, and making an ``RFC2136Responder``
        raises ``ImportError`` naming the extra.
        """
        code = (
            "import sys\n"
            "sys.modules['dns'] = None\n"
            "import txacme.challenges as c\n"
            "c.CallableDNS01Responder(print, print)\n"
            "try:\n"
            "    c.RFC2136Responder(None, ('127.0.0.1', 53), 'k', 'a2V5')\n"
            "except ImportError as error:\n"
            "    print(error)\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env=_environment(),
            check=False,
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        self.assertIn("pip install 'txacme[dns]'", completed.stdout)


def _environment() -> dict[str, str]:
    """
    The environment for a Python subprocess that imports txacme and the
    docs examples from this checkout.
    """
    root = Path(__file__).resolve().parent.parent
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(root / "src"), str(root), environment.get("PYTHONPATH", "")]
    )
    return environment


class ExampleTests(TypedAssertions, TestCase):
    """
    ``docs/examples/dns_01.py`` runs and does what the page says.
    """

    def test_memory_issuance(self) -> None:
        """
        Run as a script, the example issues a certificate for a wildcard
        and its base name through the callables responder, with two TXT
        values at one name during validation and none afterwards.
        """
        root = Path(__file__).resolve().parent.parent
        completed = subprocess.run(
            [sys.executable, str(root / "docs" / "examples" / "dns_01.py")],
            capture_output=True,
            text=True,
            timeout=120,
            env=_environment(),
            cwd=root,
            check=False,
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        output = completed.stdout
        self.assertIn(
            "peak: _acme-challenge.example.com had 2 TXT values at once\n", output
        )
        self.assertIn("names: *.example.com, example.com\n", output)
        self.assertIn("after: _acme-challenge.example.com has 0 TXT values\n", output)


async def _failure(expected: type[_E], deferred: Deferred[Any]) -> _E:
    """
    The ``expected`` exception ``deferred`` fails with.
    """
    try:
        await deferred
    except expected as error:
        return error
    raise AssertionError(f"{deferred!r} did not fail with {expected.__name__}")


async def _both(*deferreds: Deferred[Any]) -> Sequence[Any]:
    return [await deferred for deferred in deferreds]
