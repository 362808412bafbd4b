"""
tls-alpn-01 validated for real by Pebble.

Pebble's ``tlsPort`` points at a TLS listener on 127.0.0.1 that serves a
``twisted.web`` site with its own certificate, its TLS options wrapped by a
:class:`~txacme.challenges.TLSALPN01Responder`.  Every name resolves to
127.0.0.1 through pebble-challtestsrv.  Certificates are issued through
:mod:`txacme.client` with tls-alpn-01 as the only responder, Pebble's
validator connecting to the listener, while plain TLS clients (and an HTTPS
client) connect to the same port at the same time and must get the site's
certificate.  The issued chain is verified against Pebble's root.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import Certificate
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from tests.integration.pebble import PebbleOptions, PebbleTestCase, verify_chain
from tests.test_tls_alpn import (
    ACME_TLS_1,
    Handshake,
    SiteCertificate,
    der_digest,
    loopback_handshake,
)
from txacme.challenges import TLSALPN01, TLSALPN01Responder
from txacme.client import (
    Client,
    answer_challenge,
    fqdn_identifier,
    issue_certificate,
    poll_until_valid,
)
from txacme.messages import CertificateRequest
from txacme.testing.pebble import ConnectionTracker
from txacme.util import csr_for_names, generate_private_key

LOOPBACK = "127.0.0.1"
SITE_BODY = b"the site over TLS\n"

#: The site's own certificate (self-signed), for every name it serves.
SITE = SiteCertificate.make(
    "site.example.test", ec.generate_private_key(ec.SECP256R1())
)


class TLSALPN01PebbleTests(PebbleTestCase):
    """
    Pebble validates tls-alpn-01 against the responder in a site's TLS
    listener.  Authorizations are never reused, so every one is validated.
    """

    pebble_options = PebbleOptions(authz_reuse=0)
    timeout = 180

    def setUp(self) -> None:
        super().setUp()
        reactor: Any = self.reactor
        self.responder = TLSALPN01Responder(reactor)

    async def serve_site(self) -> None:
        """
        Serve the site over TLS on Pebble's tls-alpn-01 port, its TLS
        options wrapped by the responder, until the test ends.
        """
        factory = TLSMemoryBIOFactory(
            self.responder.wrap(
                SITE.certificate_options(acceptableProtocols=[b"http/1.1"])
            ),
            False,
            Site(site_root()),  # type: ignore[no-untyped-call]
            clock=self.reactor,
        )
        tracker = ConnectionTracker(factory)
        endpoint: Any = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            self.reactor, self.pebble.tls_port, interface=LOOPBACK
        )
        port: IListeningPort = await endpoint.listen(tracker)

        async def close() -> None:
            await maybeDeferred(port.stopListening)
            await tracker.close_all()

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))

    async def plain_clients_get_the_site(self, server_name: str) -> None:
        """
        Plain TLS clients for ``server_name`` get the site's certificate:
        with no ALPN, with http/1.1, and an HTTPS GET verifying the site's
        certificate gets the site's page.
        """
        port = self.pebble.tls_port
        for protocols in ([], [b"http/1.1"]):
            handshake = await loopback_handshake(
                self.reactor, port, server_name.encode(), protocols, "1.3"
            )
            self.assertEqual(handshake.certificate, SITE.certificate)
        self.assertEqual(await self.https_get(f"https://{LOOPBACK}:{port}/"), SITE_BODY)

    async def https_get(self, url: str) -> bytes:
        """GET ``url``, trusting only the site's certificate."""
        pool = HTTPConnectionPool(  # type: ignore[no-untyped-call]
            self.reactor, persistent=False
        )
        self.addCleanup(pool.closeCachedConnections)
        trust = Certificate.loadPEM(SITE.pem())
        agent = Agent(  # type: ignore[no-untyped-call]
            self.reactor,
            contextFactory=BrowserLikePolicyForHTTPS(  # type: ignore[no-untyped-call]
                trustRoot=trust
            ),
            pool=pool,
        )
        http: Any = HTTPClient(agent)
        response = await http.get(url)
        self.assertEqual(response.code, 200)
        body: bytes = await response.content()
        return body

    def test_seed_flow(self) -> Deferred[None]:
        """
        With the seed API (request_challenges, answer_challenge,
        poll_until_valid, request_issuance), Pebble validates the
        tls-alpn-01 challenge through the site's port; while it is pending,
        plain clients of the same port get the site's certificate, and a
        client offering acme-tls/1 for the name gets the challenge
        certificate.  The certificate verifies up to Pebble's root.
        """

        async def run() -> None:
            await self.serve_site()
            client = await self.registered_client()
            name = "alpn.example.test"
            authzr = await client.request_challenges(fqdn_identifier(name))
            offered = {challb.chall.typ: challb for challb in authzr.body.challenges}
            self.assertTrue(isinstance(offered["tls-alpn-01"].chall, TLSALPN01))
            stop = await answer_challenge(authzr, client, [self.responder])
            try:
                await self.plain_clients_get_the_site(name)
                probe = await loopback_handshake(
                    self.reactor,
                    self.pebble.tls_port,
                    name.encode(),
                    [ACME_TLS_1],
                    "1.2",
                )
                self.assert_challenge(probe, offered["tls-alpn-01"].chall, client)
                authzr = await poll_until_valid(authzr, self.reactor, client)
            finally:
                await stop()
            self.assertEqual(authzr.body.status, messages.STATUS_VALID)
            statuses = {
                challb.chall.typ: challb.status for challb in authzr.body.challenges
            }
            self.assertEqual(statuses["tls-alpn-01"], messages.STATUS_VALID)

            key = generate_private_key("p256")
            certr = await client.request_issuance(
                CertificateRequest(csr=csr_for_names([name], key))
            )
            chain = await client.fetch_chain(certr)
            root_pem = await self.management().root_pem()
            path = verify_chain(certr.body, [c.body for c in chain], root_pem, [name])
            self.assertEqual(path[0].public_key(), key.public_key())
            # After stop_responding the validator's request gets no
            # challenge certificate.
            after = await loopback_handshake(
                self.reactor, self.pebble.tls_port, name.encode(), [ACME_TLS_1], "1.3"
            )
            self.assertEqual(after.certificate, None)

        return self.run_with_logs(run())

    def test_issue_certificate(self) -> Deferred[None]:
        """
        ``issue_certificate`` gets one certificate for two names and an IP
        address (RFC 8738), each validated by Pebble with tls-alpn-01 in
        parallel, while plain TLS clients keep connecting to the same port
        and get the site's certificate every time.
        """

        async def run() -> None:
            await self.serve_site()
            client = await self.registered_client()
            names = ["alpn2.example.test", "www.alpn2.example.test", LOOPBACK]
            key = generate_private_key("p256")
            issuing = issue_certificate(
                client, self.reactor, csr_for_names(names, key), [self.responder]
            )
            plain: list[Handshake] = []
            while not issuing.called:
                plain.append(
                    await loopback_handshake(
                        self.reactor,
                        self.pebble.tls_port,
                        names[len(plain) % 2].encode(),
                        [b"http/1.1"],
                        "1.2" if len(plain) % 2 else "1.3",
                    )
                )
            chain = await issuing
            self.assertTrue(plain)
            for handshake in plain:
                self.assertEqual(handshake.certificate, SITE.certificate)
                self.assertEqual(handshake.protocol, b"http/1.1")
            leaf = await self.verify_issued(chain, names)
            self.assertEqual(leaf.public_key(), key.public_key())
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            self.assertEqual(
                sorted(san.value.get_values_for_type(x509.DNSName)), sorted(names[:2])
            )
            self.assertEqual(
                san.value.get_values_for_type(x509.IPAddress),
                [ip_address(LOOPBACK)],
            )
            await self.plain_clients_get_the_site(names[0])

        return self.run_with_logs(run())

    def assert_challenge(
        self, handshake: Handshake, challenge: Any, client: Client
    ) -> None:
        """The handshake got the challenge certificate of ``challenge``."""
        self.assertEqual(handshake.protocol, ACME_TLS_1)
        assert handshake.certificate is not None
        extension = handshake.certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
        )
        value = extension.value
        assert isinstance(value, x509.UnrecognizedExtension)
        self.assertEqual(
            value.value, der_digest(challenge.key_authorization(client.key))
        )


def site_root() -> Resource:
    """The site: one page at ``/``."""
    root = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"", Data(SITE_BODY, "text/plain"))  # type: ignore[no-untyped-call]
    return root
