"""
Talk to an ACME server whose HTTPS certificate comes from a private CA, such
as Pebble or a company's internal ACME server, by giving txacme a treq
client that trusts that CA.

To have something to talk to, this script makes a throwaway CA, serves
txacme's in-memory ACME server over HTTPS on localhost with a certificate
from it, and connects twice: with the platform's trust store (which fails)
and trusting the throwaway CA (which works).

Run it with ``python docs/examples/private_ca.py``.
"""

# Twisted's Agent, Site and endpoints have no annotations yet.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy.jwa import ES256, JWASignature
from josepy.jwk import JWK, JWKEC
from treq.client import HTTPClient
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.internet.task import react
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Site

from txacme.client import Client, JWSClient
from txacme.errors import NetworkError
from txacme.testing import MemoryAcmeServer
from txacme.util import generate_private_key


def jws_client_trusting(
    reactor: Any, ca_pem: bytes, key: JWK, alg: JWASignature
) -> JWSClient:
    """
    A transport for :meth:`Client.from_url <txacme.client.Client.from_url>`
    that trusts the CA in ``ca_pem`` (and no other) for HTTPS.
    """
    agent = Agent(
        reactor,
        contextFactory=BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(ca_pem)),
    )
    return JWSClient(HTTPClient(agent), key=key, alg=alg)


async def connect_and_register(
    reactor: IReactorTime, directory_url: str, ca_pem: bytes
) -> messages.RegistrationResource:
    key = JWKEC(key=generate_private_key("p256"))
    client = await Client.from_url(
        reactor,
        directory_url,
        key=key,
        alg=ES256,
        jws_client=jws_client_trusting(reactor, ca_pem, key, ES256),
    )
    return await client.register(
        messages.NewRegistration.from_data(
            email="admin@example.com", terms_of_service_agreed=True
        )
    )


def throwaway_ca() -> tuple[bytes, bytes]:
    """
    A CA certificate, and a certificate and key for ``localhost`` that it
    issued, all as PEM.

    :returns: The CA's certificate, and the server's key and certificate.
    """
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Throwaway CA")])
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    server_pem = server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + server_certificate.public_bytes(pem)
    return ca_certificate.public_bytes(pem), server_pem


async def main(reactor: Any) -> None:
    ca_pem, server_pem = throwaway_ca()
    # Serve the in-memory ACME server over HTTPS on a free loopback port.
    site = Site(Resource())
    options = PrivateCertificate.loadPEM(server_pem).options()
    endpoint = SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
    port = await endpoint.listen(site)
    base_url = f"https://localhost:{port.getHost().port}"
    server = MemoryAcmeServer(clock=reactor, base_url=base_url)
    site.resource = server.resource()
    print(f"directory: {server.directory_url}")
    try:
        # The platform's trust store does not know the throwaway CA.
        key = JWKEC(key=generate_private_key("p256"))
        try:
            await Client.from_url(reactor, server.directory_url, key=key, alg=ES256)
        except NetworkError as error:
            print(f"platform trust: {error}")
        # A transport that trusts it.
        regr = await connect_and_register(reactor, server.directory_url, ca_pem)
        print(f"trusting the CA: registered {regr.uri}")
    finally:
        await port.stopListening()


if __name__ == "__main__":
    react(main)
