"""
The tls-alpn-01 challenge type and its responder (RFC 8737).

The challenge certificate, the ClientHello reader and the responder's
contract are tested with TLS handshakes in memory (pyOpenSSL connections
whose bytes the test carries) and a thread pool that runs work at once, on
a fake clock.  The responder in a real TLS server is tested with handshakes
over the loopback interface on the real reactor, with pyOpenSSL clients
speaking TLS 1.2 and TLS 1.3.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar

from acme import messages
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from josepy.json_util import encode_b64jose
from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IReactorThreads,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase as RealReactorTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.support import (
    EC_KEY,
    AcmeTestCase,
    LoopbackEndpoint,
    TestCase,
    TypedAssertions,
)
from txacme.challenges import (
    TLSALPN01,
    TLSALPN01Responder,
    TLSALPN01Response,
    tls_alpn_01_certificate,
)
from txacme.challenges._client_hello import (
    MAX_CLIENT_HELLO,
    ClientHello,
    Unparsed,
    parse_client_hello,
    wanted_length,
)
from txacme.client import (
    answer_challenge,
    fqdn_identifier,
    issue_certificate,
    poll_until_valid,
)
from txacme.interfaces import IResponder
from txacme.testing.pebble import ConnectionTracker
from txacme.util import PrivateKey, csr_for_names, generate_private_key

_P = ParamSpec("_P")
_R = TypeVar("_R")

ACME_TLS_1 = b"acme-tls/1"
ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
LOOPBACK = "127.0.0.1"
NOW = datetime(2026, 11, 1, tzinfo=UTC)

#: A token of 16 bytes, as CAs send; the key authorization is made from it.
TOKEN = b"\x01" * 16


def key_authorization(token: bytes = TOKEN) -> str:
    """The key authorization of a challenge with ``token``, for EC_KEY."""
    return TLSALPN01(token=token).key_authorization(EC_KEY)


def response_for(token: bytes = TOKEN) -> TLSALPN01Response:
    """The response to the challenge with ``token``, for EC_KEY."""
    return TLSALPN01Response(key_authorization=key_authorization(token))


def challenge_for(token: bytes = TOKEN) -> TLSALPN01:
    return TLSALPN01(token=token)


def acme_identifier(certificate: x509.Certificate) -> x509.Extension[Any]:
    """The certificate's id-pe-acmeIdentifier extension."""
    return certificate.extensions.get_extension_for_oid(ACME_IDENTIFIER)


def der_digest(key_authorization: str) -> bytes:
    """The DER OCTET STRING of SHA-256 of ``key_authorization``."""
    return b"\x04\x20" + sha256(key_authorization.encode()).digest()


# -- certificates the "site" serves ----------------------------------------------------


@frozen
class SiteCertificate:
    """A site's normal certificate and key (self-signed)."""

    certificate: x509.Certificate
    key: PrivateKey

    @classmethod
    def make(cls, name: str, key: PrivateKey) -> SiteCertificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(hours=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(name), x509.IPAddress(ip_address(LOOPBACK))]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate=certificate, key=key)

    def pem(self) -> bytes:
        return self.certificate.public_bytes(
            serialization.Encoding.PEM
        ) + self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def certificate_options(self, **arguments: Any) -> CertificateOptions:
        """Twisted's TLS options for this certificate."""
        private = PrivateCertificate.loadPEM(self.pem())  # type: ignore[no-untyped-call]
        return CertificateOptions(
            privateKey=private.privateKey.original,
            certificate=private.original,
            **arguments,
        )

    def context(self) -> SSL.Context:
        """A bare OpenSSL context with this certificate and no ALPN callback."""
        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate(self.certificate)
        context.use_privatekey(self.key)
        return context


#: Made once: RSA keys are slow to generate.
EC_SITE = SiteCertificate.make(
    "site.example.test", ec.generate_private_key(ec.SECP256R1())
)
RSA_SITE = SiteCertificate.make(
    "site.example.test", rsa.generate_private_key(public_exponent=65537, key_size=2048)
)
OTHER_SITE = SiteCertificate.make(
    "other.example.test", ec.generate_private_key(ec.SECP256R1())
)


@implementer(IOpenSSLContextFactory)
@frozen
class ContextFactory:
    """An application's TLS configuration as a legacy context factory."""

    context: SSL.Context

    def getContext(self) -> SSL.Context:
        return self.context


# -- TLS clients -----------------------------------------------------------------------


def client_context(version: str) -> SSL.Context:
    """
    A client context that speaks only TLS ``version`` (``"1.2"`` or
    ``"1.3"``) and does not verify the server's certificate (a validator
    does not: it reads the certificate itself).
    """
    context = SSL.Context(SSL.TLS_METHOD)
    if version == "1.2":
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
    else:
        context.set_min_proto_version(SSL.TLS1_3_VERSION)
    return context


def client_connection(
    server_name: bytes | None, protocols: Sequence[bytes], version: str
) -> SSL.Connection:
    connection = SSL.Connection(client_context(version))
    if server_name is not None:
        connection.set_tlsext_host_name(server_name)
    if protocols:
        connection.set_alpn_protos(list(protocols))
    return connection


@frozen
class Handshake:
    """
    What a TLS client got from the server.

    :ivar certificate: The server's certificate; ``None`` if the handshake
        failed.
    :ivar protocol: The ALPN protocol selected, or ``None``.
    :ivar version: The TLS version, as OpenSSL names it.
    :ivar error: Why the handshake failed, or ``None``.
    """

    certificate: x509.Certificate | None = None
    protocol: bytes | None = None
    version: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, connection: SSL.Connection) -> Handshake:
        return cls(
            certificate=connection.get_peer_certificate(as_cryptography=True),
            protocol=connection.get_alpn_proto_negotiated() or None,
            version=connection.get_protocol_version_name(),
        )


def memory_handshake(
    server: SSL.Connection,
    server_name: bytes | None,
    protocols: Sequence[bytes] = (),
    version: str = "1.3",
    chunk: int = 2**16,
) -> Handshake:
    """
    A TLS handshake between a new client and ``server``, in memory: the
    test carries the bytes between the two, to the server ``chunk`` bytes
    at a time.
    """
    client = client_connection(server_name, protocols, version)
    client.set_connect_state()
    server.set_accept_state()
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, party in (("client", client), ("server", server)):
            if done[name]:
                continue
            try:
                party.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as error:
                return Handshake(error=f"{name}: {error}")
            else:
                done[name] = True
        moved = False
        for sender, receiver in ((client, server), (server, client)):
            try:
                data = sender.bio_read(2**16)
            except SSL.WantReadError:
                continue
            step = chunk if receiver is server else len(data)
            for start in range(0, len(data), step):
                receiver.bio_write(data[start : start + step])
            moved = True
        if all(done.values()) and not moved:
            return Handshake.of(client)
    raise AssertionError("the handshake did not finish")


def client_hello(server_name: bytes | None, protocols: Sequence[bytes]) -> bytes:
    """The bytes of a real ClientHello (OpenSSL's) with SNI and ALPN."""
    client = client_connection(server_name, protocols, "1.3")
    client.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    return client.bio_read(2**16)


# -- a thread pool for synchronous tests -----------------------------------------------


class InlineThreadPool(ThreadPool):
    """
    A thread pool that runs each call at once, in the calling thread, or
    keeps it until :meth:`release` while ``holding``; while ``failing``,
    each call fails with :exc:`RuntimeError` instead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.failing = False
        self.held: list[Callable[[], None]] = []

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, _R], object] | None,
        func: Callable[_P, _R],
        *args: _P.args,
        **kw: _P.kwargs,
    ) -> None:
        def run() -> None:
            try:
                if self.failing:
                    raise RuntimeError("the thread pool failed")
                result = func(*args, **kw)
            except BaseException:
                if onResult is not None:
                    failure: Any = Failure()  # type: ignore[no-untyped-call]
                    onResult(False, failure)
            else:
                if onResult is not None:
                    onResult(True, result)

        if self.holding:
            self.held.append(run)
        else:
            run()

    def release(self) -> None:
        """Run the calls kept so far."""
        held, self.held = self.held, []
        for run in held:
            run()


@implementer(IReactorThreads)
class InlineThreadsClock(Clock):
    """A fake clock whose "threads" are an :class:`InlineThreadPool`."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = InlineThreadPool()
        self.advance(NOW.timestamp())

    def getThreadPool(self) -> ThreadPool:
        return self.pool

    def suggestThreadPoolSize(self, size: int) -> None:
        pass

    def callInThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        callable(*args, **kwargs)

    def callFromThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        callable(*args, **kwargs)


# -- the challenge certificate ---------------------------------------------------------


class CertificateTests(TestCase):
    """
    :func:`tls_alpn_01_certificate` makes the certificate RFC 8737 §3 asks
    for.
    """

    def setUp(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_authorization = key_authorization()

    def test_acme_identifier_extension(self) -> None:
        """
        The certificate has a critical id-pe-acmeIdentifier extension, OID
        1.3.6.1.5.5.7.1.31, whose value is the DER OCTET STRING (tag 4,
        length 32) of SHA-256 of the key authorization.
        """
        certificate = tls_alpn_01_certificate(
            "example.test", self.key_authorization, self.key, NOW
        )
        extension = acme_identifier(certificate)
        self.assertEqual(extension.oid.dotted_string, "1.3.6.1.5.5.7.1.31")
        self.assertTrue(extension.critical)
        self.assertEqual(extension.value.value, der_digest(self.key_authorization))

    def test_dns_name(self) -> None:
        """
        A domain name is the one and only subjectAltName, a dNSName.
        """
        certificate = tls_alpn_01_certificate(
            "example.test", self.key_authorization, self.key, NOW
        )
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        self.assertEqual(list(san.value), [x509.DNSName("example.test")])

    def test_ipv4_address(self) -> None:
        """
        An IPv4 identifier is the one subjectAltName, an iPAddress (RFC 8738
        §6), with no dNSName.
        """
        certificate = tls_alpn_01_certificate(
            "192.0.2.7", self.key_authorization, self.key, NOW
        )
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        self.assertEqual(list(san.value), [x509.IPAddress(ip_address("192.0.2.7"))])

    def test_ipv6_address(self) -> None:
        """
        An IPv6 identifier is the one subjectAltName, an iPAddress.
        """
        certificate = tls_alpn_01_certificate(
            "2001:db8::7", self.key_authorization, self.key, NOW
        )
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        self.assertEqual(list(san.value), [x509.IPAddress(ip_address("2001:db8::7"))])

    def test_only_two_extensions(self) -> None:
        """
        The certificate has the subjectAltName and id-pe-acmeIdentifier
        extensions and no other; with its empty subject the subjectAltName
        is critical (RFC 5280 §4.2.1.6).
        """
        certificate = tls_alpn_01_certificate(
            "example.test", self.key_authorization, self.key, NOW
        )
        self.assertEqual(
            {(e.oid.dotted_string, e.critical) for e in certificate.extensions},
            {("2.5.29.17", True), ("1.3.6.1.5.5.7.1.31", True)},
        )
        self.assertEqual(certificate.subject, x509.Name([]))

    def test_self_signed_by_key(self) -> None:
        """
        The certificate holds the given key and is signed by it.
        """
        certificate = tls_alpn_01_certificate(
            "example.test", self.key_authorization, self.key, NOW
        )
        self.assertEqual(certificate.public_key(), self.key.public_key())
        certificate.verify_directly_issued_by(certificate)

    def test_rsa_key(self) -> None:
        """
        An RSA key makes an RSA certificate, signed by it.
        """
        key = generate_private_key("rsa")
        certificate = tls_alpn_01_certificate(
            "example.test", self.key_authorization, key, NOW
        )
        self.assertEqual(certificate.public_key(), key.public_key())
        certificate.verify_directly_issued_by(certificate)

    def test_valid_now(self) -> None:
        """
        The certificate is valid at ``now``, from an hour before.
        """
        certificate = tls_alpn_01_certificate(
            "example.test", self.key_authorization, self.key, NOW
        )
        self.assertEqual(certificate.not_valid_before_utc, NOW - timedelta(hours=1))
        self.assertTrue(certificate.not_valid_after_utc > NOW)


# -- the challenge type ----------------------------------------------------------------


class ChallengeTypeTests(TestCase):
    """
    Importing :mod:`txacme.challenges` registers tls-alpn-01 with
    :mod:`acme.challenges`.
    """

    def test_challenge_parses(self) -> None:
        """
        A tls-alpn-01 challenge object from a server parses as
        :class:`TLSALPN01` (not ``UnrecognizedChallenge``), with its token.
        """
        body = messages.ChallengeBody.from_json(
            {
                "type": "tls-alpn-01",
                "url": "https://ca.example/chall/1",
                "status": "pending",
                "token": "AQEBAQEBAQEBAQEBAQEBAQ",
            }
        )
        self.assertIsInstance(body.chall, TLSALPN01)
        self.assertEqual(body.chall.token, TOKEN)
        self.assertEqual(body.chall.typ, "tls-alpn-01")

    def test_response_is_empty_object(self) -> None:
        """
        The response a client POSTs serializes to ``{}`` (RFC 8555 §7.5.1),
        though it carries the key authorization.
        """
        challb = messages.ChallengeBody(
            chall=challenge_for(), uri="https://ca.example/chall/1"
        )
        response = challb.response(EC_KEY)
        self.assertIsInstance(response, TLSALPN01Response)
        self.assertEqual(response.key_authorization, key_authorization())
        self.assertEqual(response.to_partial_json(), {})
        self.assertEqual(json.loads(response.json_dumps()), {})

    def test_key_authorization(self) -> None:
        """
        The key authorization is the token and the account key's thumbprint
        (RFC 8555 §8.1).
        """
        thumbprint = encode_b64jose(EC_KEY.thumbprint())
        self.assertEqual(key_authorization(), f"AQEBAQEBAQEBAQEBAQEBAQ.{thumbprint}")

    def test_digests(self) -> None:
        """
        The challenge's ``validation`` and the response's
        ``key_authorization_digest`` are SHA-256 of the key authorization.
        """
        digest = sha256(key_authorization().encode()).digest()
        self.assertEqual(challenge_for().validation(EC_KEY), digest)
        self.assertEqual(response_for().key_authorization_digest, digest)

    def test_response_verifies(self) -> None:
        """
        The response verifies against the challenge and the account key.
        """
        self.assertTrue(response_for().verify(challenge_for(), EC_KEY.public_key()))


class AnswerChallengeTests(AcmeTestCase):
    """
    :func:`txacme.client.answer_challenge` and
    :func:`txacme.client.issue_certificate` select the tls-alpn-01
    challenge for a :class:`TLSALPN01Responder`, and a server validating
    it by a TLS handshake gets the right certificate.
    """

    def setUp(self) -> None:
        super().setUp()
        self.threads = InlineThreadsClock()
        self.responder = TLSALPN01Responder(self.threads)
        self.site = ContextFactory(EC_SITE.context())
        self.validated: list[tuple[str, str]] = []

    def validate(
        self, identifier: messages.Identifier, challenge_type: str, key_auth: str
    ) -> bool:
        """
        Validate as RFC 8737 §3 says: a handshake offering acme-tls/1 for
        the name; the certificate must be for the name and hold the digest.
        """
        self.validated.append((identifier.value, challenge_type))
        server = self.responder.wrap(self.site).serverConnectionForTLS(None)  # type: ignore[arg-type]
        handshake = memory_handshake(server, identifier.value.encode(), [ACME_TLS_1])
        if handshake.certificate is None or handshake.protocol != ACME_TLS_1:
            return False
        san = handshake.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        return list(san.value) == [x509.DNSName(identifier.value)] and (
            acme_identifier(handshake.certificate).value.value == der_digest(key_auth)
        )

    def test_answer_challenge(self) -> None:
        """
        ``answer_challenge`` picks the tls-alpn-01 challenge among those
        offered, starts the responder, and the authorization becomes valid;
        stopping leaves the name without a challenge certificate.
        """
        self.server = self.make_server(validator=self.validate)
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("example.test"))
        )
        offered = {challb.chall.typ for challb in authzr.body.challenges}
        self.assertEqual(offered, {"http-01", "dns-01", "tls-alpn-01"})
        stop = self.successResultOf(answer_challenge(authzr, client, [self.responder]))
        authzr = self.successResultOf(
            self.settle(poll_until_valid(authzr, self.clock, client), self.clock)
        )
        self.assertEqual(authzr.body.status, messages.STATUS_VALID)
        self.assertEqual(self.validated, [("example.test", "tls-alpn-01")])
        self.successResultOf(stop())
        server = self.responder.wrap(self.site).serverConnectionForTLS(None)  # type: ignore[arg-type]
        handshake = memory_handshake(server, b"example.test", [ACME_TLS_1, b"h2"])
        self.assertEqual(handshake.certificate, EC_SITE.certificate)

    def test_issue_certificate(self) -> None:
        """
        ``issue_certificate`` gets a certificate for two names, each
        validated by tls-alpn-01 through the responder.
        """
        self.server = self.make_server(validator=self.validate)
        client = self.registered_client()
        names = ["example.test", "www.example.test"]
        csr = csr_for_names(names, generate_private_key("p256"))
        chain = self.successResultOf(
            self.settle(
                issue_certificate(client, self.clock, csr, [self.responder]), self.clock
            )
        )
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        self.assertEqual(
            sorted(
                leaf.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.DNSName)
            ),
            names,
        )
        self.assertEqual(
            sorted(self.validated),
            [("example.test", "tls-alpn-01"), ("www.example.test", "tls-alpn-01")],
        )


# -- reading ClientHellos --------------------------------------------------------------


class ClientHelloTests(TestCase):
    """
    The responder reads SNI and ALPN from the raw ClientHello, strictly.
    """

    def test_real_client_hello(self) -> None:
        """
        OpenSSL's ClientHello gives its server name and ALPN protocols, in
        the client's order.
        """
        data = client_hello(b"example.test", [b"h2", ACME_TLS_1])
        self.assertEqual(
            parse_client_hello(data),
            ClientHello(server_name="example.test", protocols=(b"h2", ACME_TLS_1)),
        )

    def test_no_extensions_asked(self) -> None:
        """
        A ClientHello without SNI or ALPN gives no name and no protocols.
        """
        self.assertEqual(
            parse_client_hello(client_hello(None, [])),
            ClientHello(server_name=None, protocols=()),
        )

    def test_name_normalized(self) -> None:
        """
        The server name is lower-cased and loses a trailing dot.
        """
        hello = parse_client_hello(client_hello(b"Example.TEST.", []))
        assert isinstance(hello, ClientHello)
        self.assertEqual(hello.server_name, "example.test")

    @given(st.data())
    def test_any_split_is_incomplete_then_complete(self, data: st.DataObject) -> None:
        """
        Every proper prefix of a ClientHello is incomplete, and the whole
        one parses, however the bytes were split.
        """
        whole = client_hello(b"example.test", [ACME_TLS_1])
        cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1))
        self.assertEqual(parse_client_hello(whole[:cut]), Unparsed.INCOMPLETE)
        self.assertIsInstance(parse_client_hello(whole), ClientHello)

    @given(st.data())
    def test_wanted_length(self, data: st.DataObject) -> None:
        """
        For a proper prefix of a ClientHello, the length wanted is more than
        the prefix and at most the whole; for the whole, its length.
        """
        whole = client_hello(b"example.test", [ACME_TLS_1])
        cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1))
        wanted = wanted_length(whole[:cut])
        self.assertTrue(cut < wanted <= len(whole), (cut, wanted))
        self.assertEqual(wanted_length(whole), len(whole))

    @given(st.integers(min_value=1, max_value=400))
    def test_fragmented_records(self, size: int) -> None:
        """
        A ClientHello split over several TLS records (the record layer may
        fragment a handshake message, RFC 8446 §5.1) parses the same.
        """
        whole = client_hello(b"example.test", [ACME_TLS_1])
        message = whole[5:]
        records = b"".join(
            whole[:3] + len(chunk).to_bytes(2, "big") + chunk
            for chunk in (message[i : i + size] for i in range(0, len(message), size))
        )
        self.assertEqual(parse_client_hello(records), parse_client_hello(whole))

    @given(st.binary(max_size=600))
    def test_any_bytes(self, data: bytes) -> None:
        """
        Any bytes at all give a result, never an exception.
        """
        result = parse_client_hello(data)
        self.assertIsInstance(result, (ClientHello, Unparsed))

    @given(st.binary(max_size=600))
    def test_corrupted_client_hello(self, noise: bytes) -> None:
        """
        A real ClientHello with bytes overwritten gives a result, never an
        exception.
        """
        whole = bytearray(client_hello(b"example.test", [ACME_TLS_1]))
        whole[5 : 5 + len(noise)] = noise
        result = parse_client_hello(bytes(whole))
        self.assertIsInstance(result, (ClientHello, Unparsed))

    def test_not_tls(self) -> None:
        """
        Bytes that are not a TLS handshake record are invalid at once: an
        HTTP request, an alert record, and an SSL 2 style hello.
        """
        self.assertEqual(parse_client_hello(b"G"), Unparsed.INVALID)
        self.assertEqual(parse_client_hello(b"GET / HTTP/1.1\r\n"), Unparsed.INVALID)
        self.assertEqual(
            parse_client_hello(b"\x15\x03\x03\x00\x02\x02\x28"), Unparsed.INVALID
        )
        self.assertEqual(parse_client_hello(b"\x80\x2e\x01\x03\x01"), Unparsed.INVALID)

    def test_not_client_hello(self) -> None:
        """
        A handshake record holding another message type is invalid.
        """
        whole = bytearray(client_hello(b"example.test", [ACME_TLS_1]))
        whole[5] = 2  # ServerHello
        self.assertEqual(parse_client_hello(bytes(whole)), Unparsed.INVALID)

    def test_oversized(self) -> None:
        """
        A handshake message announced larger than MAX_CLIENT_HELLO is
        invalid without waiting for it.
        """
        length = (MAX_CLIENT_HELLO + 1).to_bytes(3, "big")
        data = b"\x16\x03\x01\x00\x04\x01" + length
        self.assertEqual(parse_client_hello(data), Unparsed.INVALID)

    def test_empty_record(self) -> None:
        """
        A handshake record of length zero is invalid (RFC 8446 §5.1).
        """
        self.assertEqual(parse_client_hello(b"\x16\x03\x01\x00\x00"), Unparsed.INVALID)

    def test_duplicate_extension(self) -> None:
        """
        A ClientHello with two ALPN extensions is invalid (RFC 8446 §4.2).
        """
        self.assertEqual(
            parse_client_hello(_hello_with_extensions(_alpn([ACME_TLS_1]) * 2)),
            Unparsed.INVALID,
        )

    def test_empty_protocol_name(self) -> None:
        """
        An ALPN extension with an empty protocol name is invalid (RFC 7301
        §3.1).
        """
        self.assertEqual(
            parse_client_hello(_hello_with_extensions(_alpn([b""]))),
            Unparsed.INVALID,
        )

    def test_non_ascii_name(self) -> None:
        """
        A server name that is not ASCII is no name.
        """
        self.assertEqual(
            parse_client_hello(
                _hello_with_extensions(_sni(b"\xc3\xa9.test") + _alpn([ACME_TLS_1]))
            ),
            ClientHello(server_name=None, protocols=(ACME_TLS_1,)),
        )

    def test_no_extensions_block(self) -> None:
        """
        A TLS 1.2 ClientHello may end without an extensions block: no name,
        no protocols.
        """
        self.assertEqual(
            parse_client_hello(_hello(b"")),
            ClientHello(server_name=None, protocols=()),
        )

    def test_trailing_bytes_in_body(self) -> None:
        """
        Bytes after the extensions block inside the ClientHello are invalid.
        """
        body_end = _hello_with_extensions(_alpn([ACME_TLS_1]), trailing=b"\x00")
        self.assertEqual(parse_client_hello(body_end), Unparsed.INVALID)


def _vector(length_size: int, content: bytes) -> bytes:
    return len(content).to_bytes(length_size, "big") + content


def _sni(name: bytes) -> bytes:
    return b"\x00\x00" + _vector(2, _vector(2, b"\x00" + _vector(2, name)))


def _alpn(protocols: Sequence[bytes]) -> bytes:
    return b"\x00\x10" + _vector(
        2, _vector(2, b"".join(_vector(1, protocol) for protocol in protocols))
    )


def _hello(extensions_block: bytes, trailing: bytes = b"") -> bytes:
    """A ClientHello record built by hand (RFC 8446 §4.1.2)."""
    body = (
        b"\x03\x03"
        + b"\x00" * 32
        + _vector(1, b"")
        + _vector(2, b"\x13\x01")
        + _vector(1, b"\x00")
        + extensions_block
        + trailing
    )
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message


def _hello_with_extensions(extensions: bytes, trailing: bytes = b"") -> bytes:
    return _hello(_vector(2, extensions), trailing)


# -- the responder's contract, in memory -----------------------------------------------


class ResponderContractTests(TestCase):
    """
    :class:`TLSALPN01Responder` keeps the :class:`IResponder` contract; what
    it serves is seen through TLS handshakes in memory.
    """

    def setUp(self) -> None:
        self.threads = InlineThreadsClock()
        self.responder = TLSALPN01Responder(self.threads)
        self.site = ContextFactory(EC_SITE.context())

    def handshake(
        self, server_name: bytes | None, protocols: Sequence[bytes] = (ACME_TLS_1,)
    ) -> Handshake:
        server = self.responder.wrap(self.site).serverConnectionForTLS(None)  # type: ignore[arg-type]
        return memory_handshake(server, server_name, protocols)

    def start(self, name: str, token: bytes = TOKEN) -> None:
        self.successResultOf(
            self.responder.start_responding(
                name, challenge_for(token), response_for(token)
            )
        )

    def stop(self, name: str, token: bytes = TOKEN) -> None:
        self.responder.stop_responding(name, challenge_for(token), response_for(token))

    def assertChallenge(
        self, handshake: Handshake, name: str, token: bytes = TOKEN
    ) -> None:
        """The handshake got the challenge certificate for name and token."""
        self.assertEqual(handshake.protocol, ACME_TLS_1)
        assert handshake.certificate is not None
        self.assertEqual(
            acme_identifier(handshake.certificate).value.value,
            der_digest(key_authorization(token)),
        )
        san = handshake.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        try:
            expected: x509.GeneralName = x509.IPAddress(ip_address(name))
        except ValueError:
            expected = x509.DNSName(name)
        self.assertEqual(list(san), [expected])

    def assertSite(self, handshake: Handshake) -> None:
        """The handshake got the site's certificate."""
        self.assertEqual(handshake.certificate, EC_SITE.certificate)

    def test_provides_iresponder(self) -> None:
        """
        The responder provides :class:`IResponder`, for tls-alpn-01.
        """
        self.assertTrue(verifyObject(IResponder, self.responder))
        self.assertEqual(self.responder.challenge_type, "tls-alpn-01")

    def test_start_serves(self) -> None:
        """
        Once started, a client offering acme-tls/1 for the name gets the
        challenge certificate and acme-tls/1.
        """
        self.start("example.test")
        self.assertChallenge(self.handshake(b"example.test"), "example.test")

    def test_before_start(self) -> None:
        """
        Before any start, acme-tls/1 clients get the site's certificate.
        """
        self.assertSite(self.handshake(b"example.test"))

    def test_case_insensitive(self) -> None:
        """
        The name matches whatever the case and a trailing dot in SNI or in
        the identifier (DNS names are case-insensitive).
        """
        self.start("Example.Test")
        self.assertChallenge(self.handshake(b"EXAMPLE.test."), "Example.Test")

    def test_byte_at_a_time(self) -> None:
        """
        A ClientHello that arrives a byte at a time is read all the same.
        """
        self.start("example.test")
        server = self.responder.wrap(self.site).serverConnectionForTLS(None)  # type: ignore[arg-type]
        handshake = memory_handshake(server, b"example.test", [ACME_TLS_1], chunk=1)
        self.assertChallenge(handshake, "example.test")

    def test_answers_every_time(self) -> None:
        """
        The challenge certificate is served to every validation until
        stopped, not just the first (CAs validate from several places).
        """
        self.start("example.test")
        for _ in range(3):
            self.assertChallenge(self.handshake(b"example.test"), "example.test")

    def test_stop(self) -> None:
        """
        After ``stop_responding`` the name gets the site's certificate.
        """
        self.start("example.test")
        self.stop("example.test")
        self.assertSite(self.handshake(b"example.test"))

    def test_stop_idempotent(self) -> None:
        """
        Stopping twice is fine, and the second stop changes nothing.
        """
        self.start("example.test")
        self.start("other.test")
        self.stop("example.test")
        self.stop("example.test")
        self.assertSite(self.handshake(b"example.test"))
        self.assertChallenge(self.handshake(b"other.test"), "other.test")

    def test_stop_without_start(self) -> None:
        """
        Stopping a challenge never started is a no-op and leaves started
        ones alone.
        """
        self.stop("never.test")
        self.start("example.test")
        self.stop("example.test", token=b"\x02" * 16)
        self.assertChallenge(self.handshake(b"example.test"), "example.test")

    def test_several_names(self) -> None:
        """
        Several names are served at once, each its own certificate.
        """
        names = ["a.example.test", "b.example.test", "c.example.test"]
        for index, name in enumerate(names):
            self.start(name, token=bytes([index + 1]) * 16)
        for index, name in enumerate(names):
            self.assertChallenge(
                self.handshake(name.encode()), name, token=bytes([index + 1]) * 16
            )

    def test_stop_leaves_other_names(self) -> None:
        """
        Stopping one name leaves the others served.
        """
        self.start("a.example.test", token=b"\x01" * 16)
        self.start("b.example.test", token=b"\x02" * 16)
        self.stop("a.example.test", token=b"\x01" * 16)
        self.assertSite(self.handshake(b"a.example.test"))
        self.assertChallenge(
            self.handshake(b"b.example.test"), "b.example.test", token=b"\x02" * 16
        )

    def test_same_name_twice(self) -> None:
        """
        Two challenges for one name (two orders): the later is served;
        stopping it serves the earlier again; stopping the earlier first
        leaves the later.
        """
        self.start("example.test", token=b"\x01" * 16)
        self.start("example.test", token=b"\x02" * 16)
        self.assertChallenge(
            self.handshake(b"example.test"), "example.test", token=b"\x02" * 16
        )
        self.stop("example.test", token=b"\x02" * 16)
        self.assertChallenge(
            self.handshake(b"example.test"), "example.test", token=b"\x01" * 16
        )
        self.start("example.test", token=b"\x02" * 16)
        self.stop("example.test", token=b"\x01" * 16)
        self.assertChallenge(
            self.handshake(b"example.test"), "example.test", token=b"\x02" * 16
        )

    def test_ip_address(self) -> None:
        """
        An IP identifier is served to the reverse-mapping name in SNI (RFC
        8738 §6), with an iPAddress certificate, for IPv4 and IPv6.
        """
        self.start("192.0.2.7", token=b"\x01" * 16)
        self.start("2001:db8::7", token=b"\x02" * 16)
        self.assertChallenge(
            self.handshake(b"7.2.0.192.in-addr.arpa"), "192.0.2.7", token=b"\x01" * 16
        )
        reverse = ip_address("2001:db8::7").reverse_pointer.encode()
        self.assertChallenge(self.handshake(reverse), "2001:db8::7", token=b"\x02" * 16)
        # The address itself is not a server name.
        self.assertSite(self.handshake(b"192.0.2.7"))

    def test_needs_acme_tls_1(self) -> None:
        """
        For a pending name, clients offering no ALPN or other protocols get
        the site's certificate; acme-tls/1 among others gets the challenge.
        """
        self.start("example.test")
        self.assertSite(self.handshake(b"example.test", []))
        self.assertSite(self.handshake(b"example.test", [b"http/1.1", b"h2"]))
        self.assertChallenge(
            self.handshake(b"example.test", [b"h2", ACME_TLS_1]), "example.test"
        )

    def test_needs_server_name(self) -> None:
        """
        acme-tls/1 without SNI, or for another name, gets the site's
        certificate.
        """
        self.start("example.test")
        self.assertSite(self.handshake(None))
        self.assertSite(self.handshake(b"other.example.test"))
        self.assertSite(self.handshake(b"www.example.test"))

    def test_key_made_once(self) -> None:
        """
        All challenges share one key, generated on the first start (in the
        thread pool): later starts do not make keys.
        """
        self.start("a.example.test", token=b"\x01" * 16)
        self.start("b.example.test", token=b"\x02" * 16)
        first = self.handshake(b"a.example.test").certificate
        second = self.handshake(b"b.example.test").certificate
        assert first is not None and second is not None
        self.assertEqual(first.public_key(), second.public_key())
        self.assertIsInstance(first.public_key(), ec.EllipticCurvePublicKey)

    def test_key_type(self) -> None:
        """
        ``key_type`` chooses the challenge key's type.
        """
        self.responder = TLSALPN01Responder(self.threads, key_type="rsa")
        self.start("example.test")
        certificate = self.handshake(b"example.test").certificate
        assert certificate is not None
        self.assertIsInstance(certificate.public_key(), rsa.RSAPublicKey)

    def test_work_in_threads(self) -> None:
        """
        Starting does its CPU work in the reactor's thread pool: until that
        work is done, the start has not finished and nothing is served.
        """
        self.threads.pool.holding = True
        started = self.responder.start_responding(
            "example.test", challenge_for(), response_for()
        )
        self.assertNoResult(started)
        self.assertSite(self.handshake(b"example.test"))
        while self.threads.pool.held:
            self.threads.pool.release()
        self.successResultOf(started)
        self.assertChallenge(self.handshake(b"example.test"), "example.test")

    def test_stop_while_starting(self) -> None:
        """
        A challenge stopped while its start is still working is not served
        when the start finishes.
        """
        self.threads.pool.holding = True
        started = self.responder.start_responding(
            "example.test", challenge_for(), response_for()
        )
        self.stop("example.test")
        while self.threads.pool.held:
            self.threads.pool.release()
        self.successResultOf(started)
        self.assertSite(self.handshake(b"example.test"))

    def test_cancel_start(self) -> None:
        """
        Cancelling a start serves nothing; a later start works.
        """
        self.threads.pool.holding = True
        started = self.responder.start_responding(
            "example.test", challenge_for(), response_for()
        )
        started.cancel()
        self.failureResultOf(started, CancelledError)
        self.threads.pool.release()
        self.assertSite(self.handshake(b"example.test"))
        self.threads.pool.holding = False
        self.start("example.test")
        self.assertChallenge(self.handshake(b"example.test"), "example.test")

    def test_failed_start(self) -> None:
        """
        If the certificate cannot be made the start fails, nothing is
        served, a stop afterwards is fine, and a later start works.
        """
        self.threads.pool.failing = True
        started = self.responder.start_responding(
            "example.test", challenge_for(), response_for()
        )
        self.failureResultOf(started, RuntimeError)
        self.stop("example.test")
        self.assertSite(self.handshake(b"example.test"))
        self.threads.pool.failing = False
        self.start("example.test")
        self.assertChallenge(self.handshake(b"example.test"), "example.test")

    def test_unknown_key_type(self) -> None:
        """
        An unknown key type is refused when the responder is made, not at
        its first challenge.
        """
        error = self.assertRaises(
            ValueError, TLSALPN01Responder, self.threads, key_type="dsa"
        )
        self.assertIn("'dsa'", str(error))

    def test_other_connections_untouched(self) -> None:
        """
        A connection that is not a validation keeps the site's context
        itself (its ALPN callback, SNI callback and all), even while
        challenges are pending.
        """
        self.start("example.test")
        server = self.responder.wrap(self.site).serverConnectionForTLS(None)  # type: ignore[arg-type]
        memory_handshake(server, b"example.test", [b"http/1.1"])
        self.assertIs(server.get_context(), self.site.context)


# -- real TLS servers on the loopback interface ----------------------------------------


@implementer(IHandshakeListener)
class HandshakeClient(Protocol):
    """
    A TLS client protocol that records the handshake and closes.
    """

    def __init__(self, done: Deferred[Handshake]) -> None:
        self._done = done
        self._result: Handshake | None = None

    def handshakeCompleted(self) -> None:
        transport: Any = self.transport
        connection: SSL.Connection = transport.getHandle()
        self._result = Handshake.of(connection)
        transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._result is None:
            error = reason.value if reason is not None else None
            self._result = Handshake(error=repr(error))
        self._done.callback(self._result)


class HandshakeClientFactory(Factory):
    def __init__(self, done: Deferred[Handshake]) -> None:
        self._done = done

    def buildProtocol(self, addr: object) -> HandshakeClient:
        return HandshakeClient(self._done)


@implementer(IOpenSSLClientConnectionCreator)
@frozen
class ClientOptions:
    """A pyOpenSSL client: this SNI, these ALPN protocols, this version."""

    server_name: bytes | None
    protocols: tuple[bytes, ...]
    version: str

    def clientConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        return client_connection(self.server_name, self.protocols, self.version)


async def loopback_handshake(
    reactor: Any,
    port: int,
    server_name: bytes | None,
    protocols: Sequence[bytes],
    version: str,
) -> Handshake:
    """A TLS handshake with 127.0.0.1:``port`` by a pyOpenSSL client."""
    done: Deferred[Handshake] = Deferred()
    factory = TLSMemoryBIOFactory(
        ClientOptions(server_name, tuple(protocols), version),
        True,
        HandshakeClientFactory(done),
        clock=reactor,
    )
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=10)
    await endpoint.connect(factory)
    return await done


class LoopbackTestCase(TypedAssertions, RealReactorTestCase):
    """
    Tests on the real reactor, with servers on 127.0.0.1 closed (port and
    connections) after each test.
    """

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.trackers: list[ConnectionTracker] = []
        self.endpoint = LoopbackEndpoint(self.reactor, self.trackers)

    async def listen(self, factory: Any) -> int:
        """Listen on a free loopback port until the test ends."""
        port = await self.endpoint.listen(factory)
        self.addCleanup(self._close, port)
        address: Any = port.getHost()
        return int(address.port)

    async def _close_async(self, port: IListeningPort) -> None:
        await port.stopListening()  # type: ignore[misc]
        for tracker in self.trackers:
            await tracker.close_all()

    def _close(self, port: IListeningPort) -> Deferred[None]:
        return Deferred.fromCoroutine(self._close_async(port))

    async def start(
        self, responder: TLSALPN01Responder, name: str, token: bytes = TOKEN
    ) -> None:
        await responder.start_responding(
            name, challenge_for(token), response_for(token)
        )

    def assertChallenge(
        self, handshake: Handshake, name: str, token: bytes = TOKEN
    ) -> None:
        """The handshake got the challenge certificate for name and token."""
        self.assertEqual(handshake.error, None)
        self.assertEqual(handshake.protocol, ACME_TLS_1)
        assert handshake.certificate is not None
        self.assertEqual(
            acme_identifier(handshake.certificate).value.value,
            der_digest(key_authorization(token)),
        )
        san = handshake.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(list(san), [x509.DNSName(name)])


def site_resource() -> Resource:
    return Data(b"the site\n", "text/plain")  # type: ignore[no-untyped-call]


if TYPE_CHECKING:
    _WrappedServerBase = LoopbackTestCase
else:
    _WrappedServerBase = object


class WrappedServerMixin(_WrappedServerBase):
    """
    A twisted.web site over TLS on one port, its TLS options wrapped by the
    responder: validations get the challenge certificate, everyone else the
    site's.  Mixed into a :class:`LoopbackTestCase` that chooses the TLS
    version and the site's key type.
    """

    version: ClassVar[str]
    site: ClassVar[SiteCertificate]

    async def serve(
        self, responder: TLSALPN01Responder, tls_options: Any | None = None
    ) -> int:
        if tls_options is None:
            tls_options = self.site.certificate_options(
                acceptableProtocols=[b"h2", b"http/1.1"]
            )
        factory = TLSMemoryBIOFactory(
            responder.wrap(tls_options),
            False,
            Site(site_resource()),  # type: ignore[no-untyped-call]
            clock=self.reactor,
        )
        return await self.listen(factory)

    async def handshake(
        self, port: int, server_name: bytes | None, protocols: Sequence[bytes]
    ) -> Handshake:
        handshake = await loopback_handshake(
            self.reactor, port, server_name, protocols, self.version
        )
        if handshake.error is None:
            self.assertEqual(handshake.version, f"TLSv{self.version}")
        return handshake

    def test_validation_gets_challenge(self) -> Deferred[None]:
        """
        A client offering acme-tls/1 with the pending name in SNI gets the
        challenge certificate and acme-tls/1.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            port = await self.serve(responder)
            handshake = await self.handshake(port, b"example.test", [ACME_TLS_1])
            self.assertChallenge(handshake, "example.test")

        return Deferred.fromCoroutine(run())

    def test_no_alpn_gets_site(self) -> Deferred[None]:
        """
        A client offering no ALPN gets the site's certificate, also for the
        pending name.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            port = await self.serve(responder)
            handshake = await self.handshake(port, b"example.test", [])
            self.assertEqual(handshake.certificate, self.site.certificate)
            self.assertEqual(handshake.protocol, None)

        return Deferred.fromCoroutine(run())

    def test_http_gets_site(self) -> Deferred[None]:
        """
        A client offering http/1.1 for the pending name gets the site's
        certificate and http/1.1, as the site's options say.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            port = await self.serve(responder)
            handshake = await self.handshake(port, b"example.test", [b"http/1.1"])
            self.assertEqual(handshake.certificate, self.site.certificate)
            self.assertEqual(handshake.protocol, b"http/1.1")

        return Deferred.fromCoroutine(run())

    def test_other_name_gets_site(self) -> Deferred[None]:
        """
        A client offering acme-tls/1 (and http/1.1) for a name that is not
        pending gets the site's certificate and http/1.1.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            port = await self.serve(responder)
            handshake = await self.handshake(
                port, b"other.example.test", [ACME_TLS_1, b"http/1.1"]
            )
            self.assertEqual(handshake.certificate, self.site.certificate)
            self.assertEqual(handshake.protocol, b"http/1.1")

        return Deferred.fromCoroutine(run())

    def test_other_name_only_acme_tls_1(self) -> Deferred[None]:
        """
        A client offering only acme-tls/1 for a name that is not pending is
        answered by the site's own TLS settings, as without the responder:
        with a site without ALPN, the site's certificate and no protocol;
        with Twisted's ``CertificateOptions``, which accepts only its own
        protocols (RFC 7301 §3.2), a failed handshake, also without the
        responder -- never the challenge certificate.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            bare = await self.serve(responder, ContextFactory(self.site.context()))
            handshake = await self.handshake(bare, b"other.example.test", [ACME_TLS_1])
            self.assertEqual(handshake.certificate, self.site.certificate)
            self.assertEqual(handshake.protocol, None)

            wrapped = await self.serve(responder)
            with_responder = await self.handshake(
                wrapped, b"other.example.test", [ACME_TLS_1]
            )
            unwrapped_factory = TLSMemoryBIOFactory(
                self.site.certificate_options(acceptableProtocols=[b"h2", b"http/1.1"]),
                False,
                Site(site_resource()),  # type: ignore[no-untyped-call]
                clock=self.reactor,
            )
            unwrapped = await self.listen(unwrapped_factory)
            without_responder = await self.handshake(
                unwrapped, b"other.example.test", [ACME_TLS_1]
            )
            self.assertEqual(with_responder.certificate, None)
            self.assertEqual(without_responder.certificate, None)

        return Deferred.fromCoroutine(run())

    def test_after_stop(self) -> Deferred[None]:
        """
        After ``stop_responding``, acme-tls/1 clients for the name get the
        site's certificate (from a site without ALPN) and never again the
        challenge certificate.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            port = await self.serve(responder, ContextFactory(self.site.context()))
            before = await self.handshake(port, b"example.test", [ACME_TLS_1])
            self.assertChallenge(before, "example.test")
            responder.stop_responding("example.test", challenge_for(), response_for())
            after = await self.handshake(port, b"example.test", [ACME_TLS_1])
            self.assertEqual(after.certificate, self.site.certificate)
            self.assertEqual(after.protocol, None)

        return Deferred.fromCoroutine(run())

    def test_site_sni_contexts(self) -> Deferred[None]:
        """
        With the site's own per-name contexts (``contextForServerName``),
        each name keeps its certificate, also the pending name for clients
        that are not validating; a validation of the pending name gets the
        challenge certificate, though the site has a context for that name.
        """

        async def run() -> None:
            other = OTHER_SITE.certificate_options().getContext()

            def context_for(name: bytes | None) -> SSL.Context | None:
                if name in (b"other.example.test", b"example.test"):
                    return other
                return None

            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            port = await self.serve(
                responder,
                self.site.certificate_options(
                    acceptableProtocols=[b"http/1.1"], contextForServerName=context_for
                ),
            )
            validation = await self.handshake(port, b"example.test", [ACME_TLS_1])
            self.assertChallenge(validation, "example.test")
            browser = await self.handshake(port, b"example.test", [b"http/1.1"])
            self.assertEqual(browser.certificate, OTHER_SITE.certificate)
            elsewhere = await self.handshake(port, b"www.example.test", [b"http/1.1"])
            self.assertEqual(elsewhere.certificate, self.site.certificate)

        return Deferred.fromCoroutine(run())

    def test_ip_identifier(self) -> Deferred[None]:
        """
        An IP identifier is validated with its reverse-mapping name in SNI
        (RFC 8738 §6) and gets an iPAddress certificate.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, LOOPBACK)
            port = await self.serve(responder)
            handshake = await self.handshake(
                port, b"1.0.0.127.in-addr.arpa", [ACME_TLS_1]
            )
            assert handshake.certificate is not None
            san = handshake.certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value
            self.assertEqual(list(san), [x509.IPAddress(ip_address(LOOPBACK))])
            self.assertEqual(handshake.protocol, ACME_TLS_1)

        return Deferred.fromCoroutine(run())


class TLS12ECSiteTests(WrappedServerMixin, LoopbackTestCase):
    """TLS 1.2, a site with a P-256 certificate."""

    version = "1.2"
    site = EC_SITE


class TLS12RSASiteTests(WrappedServerMixin, LoopbackTestCase):
    """
    TLS 1.2, a site with an RSA certificate and a P-256 challenge key: the
    key types need not match.
    """

    version = "1.2"
    site = RSA_SITE


class TLS13ECSiteTests(WrappedServerMixin, LoopbackTestCase):
    """TLS 1.3, a site with a P-256 certificate."""

    version = "1.3"
    site = EC_SITE


class TLS13RSASiteTests(WrappedServerMixin, LoopbackTestCase):
    """TLS 1.3, a site with an RSA certificate and a P-256 challenge key."""

    version = "1.3"
    site = RSA_SITE


class StandaloneTests(LoopbackTestCase):
    """
    :meth:`TLSALPN01Responder.listen` answers validations on a port of its
    own, and nothing else.
    """

    def test_validation(self) -> Deferred[None]:
        """
        A validation gets the challenge certificate, for TLS 1.2 and 1.3,
        and the server closes the connection after the handshake.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            listening = await responder.listen(self.endpoint)
            self.addCleanup(self._close, listening)
            port = listening.getHost().port  # type: ignore[attr-defined]
            for version in ("1.2", "1.3"):
                handshake = await loopback_handshake(
                    self.reactor, port, b"example.test", [ACME_TLS_1], version
                )
                self.assertChallenge(handshake, "example.test")
                self.assertEqual(handshake.version, f"TLSv{version}")

        return Deferred.fromCoroutine(run())

    def test_others_fail(self) -> Deferred[None]:
        """
        A client offering no ALPN, or http/1.1, or acme-tls/1 for a name
        that is not pending, gets no certificate: its handshake fails.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            await self.start(responder, "example.test")
            listening = await responder.listen(self.endpoint)
            self.addCleanup(self._close, listening)
            port = listening.getHost().port  # type: ignore[attr-defined]
            for server_name, protocols in (
                (b"example.test", []),
                (b"example.test", [b"http/1.1"]),
                (b"other.example.test", [ACME_TLS_1]),
                (None, [ACME_TLS_1]),
            ):
                handshake = await loopback_handshake(
                    self.reactor, port, server_name, protocols, "1.3"
                )
                self.assertEqual(handshake.certificate, None)
                self.assertNotEqual(handshake.error, None)

        return Deferred.fromCoroutine(run())

    def test_idle_connection_dropped(self) -> Deferred[None]:
        """
        A connection that never sends anything is dropped after the
        timeout.
        """

        async def run() -> None:
            responder = TLSALPN01Responder(self.reactor)
            listening = await responder.listen(self.endpoint, timeout=0.2)
            self.addCleanup(self._close, listening)
            port = listening.getHost().port  # type: ignore[attr-defined]
            lost: Deferred[None] = Deferred()

            class Silent(Protocol):
                def connectionLost(self, reason: Failure | None = None) -> None:
                    lost.callback(None)

            endpoint = TCP4ClientEndpoint(self.reactor, LOOPBACK, port, timeout=10)
            await endpoint.connect(Factory.forProtocol(Silent))
            started = self.reactor.seconds()
            await lost
            self.assertTrue(self.reactor.seconds() - started < 10)

        return Deferred.fromCoroutine(run())


# -- the documentation's example -------------------------------------------------------


ROOT = Path(__file__).resolve().parent.parent


class ExampleTests(TestCase):
    """
    ``docs/examples/tls_alpn_01.py`` runs and shows what the page says.
    """

    def test_example(self) -> None:
        """
        Run as a script, the example serves the challenge certificate to a
        validator and the site's certificate to a browser on the same port,
        serves no challenge certificate after stopping, gets a certificate
        validated over real TLS connections, and serves challenges only
        from the standalone listener.
        """
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [environment.get("PYTHONPATH")])]
        )
        completed = subprocess.run(
            [sys.executable, str(ROOT / "docs" / "examples" / "tls_alpn_01.py")],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment,
            cwd=ROOT,
            check=False,
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        output = completed.stdout
        self.assertIn(
            "validator: challenge certificate for example.com, "
            "acmeIdentifier matches, protocol acme-tls/1\n",
            output,
        )
        self.assertIn(
            "browser: site certificate CN=example.com, protocol http/1.1\n", output
        )
        self.assertIn("validator after stop: handshake failed\n", output)
        self.assertIn(
            "issued for example.com, www.example.com, validated by tls-alpn-01\n",
            output,
        )
        self.assertIn(
            "standalone validator: challenge certificate for example.com, "
            "acmeIdentifier matches, protocol acme-tls/1\n",
            output,
        )
        self.assertIn("standalone browser: handshake failed\n", output)
