"""
Answer tls-alpn-01 challenges (RFC 8737) on the port that serves a site.

A CA validating tls-alpn-01 connects to port 443 of the name, offers the
ALPN protocol ``acme-tls/1`` with the name in SNI, and reads the
certificate it gets.  This script serves a site over TLS on a loopback port
with its TLS options wrapped by a :class:`~txacme.challenges.TLSALPN01Responder`,
then:

1. starts responding to a challenge it makes up (as
   :func:`txacme.client.answer_challenge` does for a real one) and connects
   as the CA's validator and as a browser;
2. gets a certificate from txacme's in-memory ACME server, whose validator
   makes real TLS connections to the site's port;
3. does the same as (1) with the responder on a port of its own.

Run it with ``python docs/examples/tls_alpn_01.py``.
"""

# Twisted's endpoints and twisted.web have no annotations yet.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from acme import messages
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from OpenSSL import SSL
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
)
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import react
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data
from zope.interface import implementer

from txacme.challenges import TLSALPN01, TLSALPN01Responder
from txacme.client import Client, JWSClient, issue_certificate
from txacme.testing import MemoryAcmeServer
from txacme.util import PrivateKey, csr_for_names, generate_private_key

ACME_TLS_1 = b"acme-tls/1"
LOOPBACK = "127.0.0.1"


# -- the application: a site over TLS, answering challenges too ------------------------


def site_tls_options(pem: bytes) -> CertificateOptions:
    """
    The site's TLS configuration, as it was before tls-alpn-01: its
    certificate and key (``pem``), and HTTP/1.1 over ALPN.
    """
    certificate = PrivateCertificate.loadPEM(pem)
    return CertificateOptions(
        privateKey=certificate.privateKey.original,
        certificate=certificate.original,
        acceptableProtocols=[b"http/1.1"],
    )


def serve_site(
    reactor: Any,
    responder: TLSALPN01Responder,
    tls_options: IOpenSSLServerConnectionCreator,
    site: Site,
    port: int = 443,
    interface: str = "",
) -> Deferred[IListeningPort]:
    """
    Serve the site over TLS on ``port``, answering tls-alpn-01 challenges
    on the same port: the only change is ``responder.wrap``.
    """
    endpoint = SSL4ServerEndpoint(
        reactor, port, responder.wrap(tls_options), interface=interface
    )
    listening: Deferred[IListeningPort] = endpoint.listen(site)
    return listening


async def get_certificate(
    reactor: Any, client: Client, responder: TLSALPN01Responder, names: list[str]
) -> tuple[PrivateKey, str]:
    """
    Get a certificate for ``names``, validated by tls-alpn-01 through the
    responder (the client must be registered).

    :returns: The certificate's new key and its chain (PEM, leaf first).
    """
    key = generate_private_key("p256")
    chain = await issue_certificate(
        client, reactor, csr_for_names(names, key), [responder]
    )
    return key, chain


# -- the rest of the demonstration -----------------------------------------------------


def self_signed(name: str) -> bytes:
    """A stand-in for the site's real certificate and key, as PEM."""
    key = generate_private_key("p256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@frozen
class Handshake:
    """What a TLS client got: a certificate and protocol, or an error."""

    certificate: x509.Certificate | None
    protocol: bytes | None
    error: str | None = None


@implementer(IOpenSSLClientConnectionCreator)
@frozen
class _ClientOptions:
    server_name: bytes
    protocols: list[bytes]

    def clientConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        # Like a validator, do not verify the certificate: read it.
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD))
        connection.set_tlsext_host_name(self.server_name)
        connection.set_alpn_protos(self.protocols)
        return connection


@implementer(IHandshakeListener)
class _HandshakeOnly(Protocol):
    def __init__(self, done: Deferred[Handshake]) -> None:
        self.done = done
        self.result: Handshake | None = None

    def handshakeCompleted(self) -> None:
        transport: Any = self.transport
        connection: SSL.Connection = transport.getHandle()
        self.result = Handshake(
            connection.get_peer_certificate(as_cryptography=True),
            connection.get_alpn_proto_negotiated() or None,
        )
        transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        error = reason.getErrorMessage() if reason is not None else "lost"
        self.done.callback(self.result or Handshake(None, None, error))


async def connect(
    reactor: Any, port: int, server_name: str, protocols: list[bytes]
) -> Handshake:
    """
    Connect to 127.0.0.1:``port`` with this SNI and these ALPN protocols,
    and report the handshake.
    """
    done: Deferred[Handshake] = Deferred()
    factory = TLSMemoryBIOFactory(
        _ClientOptions(server_name.encode("ascii"), protocols),
        True,
        Factory.forProtocol(lambda: _HandshakeOnly(done)),
    )
    await TCP4ClientEndpoint(reactor, LOOPBACK, port).connect(factory)
    return await done


def describe(handshake: Handshake, key_authorization_digest: bytes) -> str:
    """What a client got, in words."""
    if handshake.certificate is None:
        return "handshake failed"
    protocol = (handshake.protocol or b"none").decode()
    certificate = handshake.certificate
    try:
        extension = certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
        )
    except x509.ExtensionNotFound:
        subject = certificate.subject.rfc4514_string()
        return f"site certificate {subject}, protocol {protocol}"
    names = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    value = extension.value
    assert isinstance(value, x509.UnrecognizedExtension)
    # The extension's value is a DER OCTET STRING: tag 4, length 32, digest.
    matches = value.value == b"\x04\x20" + key_authorization_digest
    return (
        f"challenge certificate for {', '.join(names)}, "
        f"acmeIdentifier {'matches' if matches else 'DOES NOT MATCH'}, "
        f"protocol {protocol}"
    )


def tls_alpn_01_validator(reactor: Any, port: int) -> Any:
    """
    A validator for the in-memory ACME server that checks tls-alpn-01 as a
    CA does (RFC 8737 §3), connecting to ``port`` on 127.0.0.1.
    """

    async def validate(
        identifier: messages.Identifier, challenge_type: str, key_authorization: str
    ) -> bool:
        if challenge_type != "tls-alpn-01":
            return False
        handshake = await connect(reactor, port, identifier.value, [ACME_TLS_1])
        digest = TLSALPN01.response_cls(
            key_authorization=key_authorization
        ).key_authorization_digest
        return describe(handshake, digest).startswith(
            f"challenge certificate for {identifier.value}, acmeIdentifier matches"
        )

    return lambda *arguments: Deferred.fromCoroutine(validate(*arguments))


async def main(reactor: Any) -> None:
    responder = TLSALPN01Responder(reactor)
    root = Resource()
    root.putChild(b"", Data(b"Hello from the site\n", "text/plain"))
    listening = await serve_site(
        reactor,
        responder,
        site_tls_options(self_signed("example.com")),
        Site(root),
        port=0,
        interface=LOOPBACK,
    )
    address: Any = listening.getHost()
    port = address.port

    # 1. A made-up challenge, answered on the site's own port.
    account_key = JWKEC(key=generate_private_key("p256"))
    challenge = TLSALPN01(token=os.urandom(16))
    response = challenge.response(account_key)
    digest = challenge.validation(account_key)
    await responder.start_responding("example.com", challenge, response)
    validation = await connect(reactor, port, "example.com", [ACME_TLS_1])
    print(f"validator: {describe(validation, digest)}")
    browser = await connect(reactor, port, "example.com", [b"http/1.1"])
    print(f"browser: {describe(browser, digest)}")
    responder.stop_responding("example.com", challenge, response)
    after = await connect(reactor, port, "example.com", [ACME_TLS_1])
    print(f"validator after stop: {describe(after, digest)}")

    # 2. A certificate, from a server that validates over real TLS.
    server = MemoryAcmeServer(
        clock=reactor, validator=tls_alpn_01_validator(reactor, port)
    )
    jws_client = JWSClient(server.treq_client(), key=account_key, alg=ES256)
    client = await Client.from_url(
        reactor, server.directory_url, key=account_key, alg=ES256, jws_client=jws_client
    )
    await client.register(
        messages.NewRegistration.from_data(terms_of_service_agreed=True)
    )
    _, chain = await get_certificate(
        reactor, client, responder, ["example.com", "www.example.com"]
    )
    leaf = x509.load_pem_x509_certificates(chain.encode("ascii"))[0]
    names = leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    print(f"issued for {', '.join(names)}, validated by tls-alpn-01")
    await maybeDeferred(listening.stopListening)

    # 3. The responder on a port of its own: challenges only.
    standalone = await responder.listen(
        TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK)
    )
    standalone_address: Any = standalone.getHost()
    standalone_port = standalone_address.port
    challenge = TLSALPN01(token=os.urandom(16))
    response = challenge.response(account_key)
    digest = challenge.validation(account_key)
    await responder.start_responding("example.com", challenge, response)
    validation = await connect(reactor, standalone_port, "example.com", [ACME_TLS_1])
    print(f"standalone validator: {describe(validation, digest)}")
    browser = await connect(reactor, standalone_port, "example.com", [b"http/1.1"])
    print(f"standalone browser: {describe(browser, digest)}")
    responder.stop_responding("example.com", challenge, response)
    await maybeDeferred(standalone.stopListening)


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
