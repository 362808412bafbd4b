r"""
The ACME client of an ``acme:`` endpoint description, on the real reactor.

The CA is a :class:`~txacme.testing.MemoryAcmeServer` served over TLS on
127.0.0.1 with a self-signed certificate, the one the description's
``ca=`` file holds.  Its answers say ``Connection: close``, so that every
request to it makes a connection.  The endpoint's client creator is called
as the endpoint's service calls it.  The trust root read from ``ca=`` is
wrapped to count the OpenSSL contexts made with it: a TLS connection
creator makes one, for its first connection, and uses it for every later
connection.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
from acme import messages
from cryptography.hazmat.primitives import serialization
from josepy.jwk import JWKEC
from OpenSSL import SSL
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from tests.integration.pebble import TypedAssertions, expect_failure
from tests.test_tls_alpn import EC_SITE, LOOPBACK
from txacme.client import Client
from txacme.endpoint import (
    AutoTLSEndpoint,
    endpoint_from_options,
    parse_endpoint_options,
)
from txacme.errors import NetworkError
from txacme.testing import MemoryAcmeServer
from txacme.testing.pebble import ConnectionTracker
from txacme.util import generate_private_key


@implementer(IOpenSSLTrustRoot)
class CountingTrustRoot:
    """
    A trust root that adds the certificates of the trust root it wraps to
    each OpenSSL context, and counts the contexts.
    """

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.contexts = 0

    def _addCACertsToContext(self, context: SSL.Context) -> None:
        self.contexts += 1
        self.wrapped._addCACertsToContext(context)


@implementer(IResource)
class ClosingResource:
    """
    A leaf resource that answers as the leaf resource it wraps, with
    ``Connection: close``: the client closes the connection after the
    answer.
    """

    isLeaf = True

    def __init__(self, wrapped: IResource) -> None:
        self.wrapped = wrapped

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("a leaf resource")

    def render(self, request: Request) -> bytes:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        answer: bytes = self.wrapped.render(request)  # type: ignore[no-untyped-call]
        return answer


class EndpointClientTests(TypedAssertions, TestCase):
    """
    The client the endpoint's service works with is
    :meth:`Client.from_url <txacme.client.Client.from_url>`'s, on the
    transport it builds, with the account key of the store.
    """

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        workdir = Path(tempfile.mkdtemp(prefix="txacme-endpoint-client-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        self.store = workdir / "certs"
        self.store.mkdir(mode=0o700)
        # A P-256 account key, so that no RSA key is made.
        self.account_key = generate_private_key("p256")
        (self.store / "client.key").write_bytes(
            self.account_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.ca_path = workdir / "ca.pem"
        self.ca_path.write_bytes(
            EC_SITE.certificate.public_bytes(serialization.Encoding.PEM)
        )

    async def serve_ca(self) -> tuple[str, ConnectionTracker]:
        """
        Serve an ACME server over TLS on 127.0.0.1 until the test ends,
        closing every connection after one answer.

        :returns: Its directory URL, and the tracker of its connections.
        """
        site = Site(Resource())  # type: ignore[no-untyped-call]
        tracker = ConnectionTracker(
            TLSMemoryBIOFactory(
                EC_SITE.certificate_options(), False, site, clock=self.reactor
            )
        )
        endpoint: Any = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            self.reactor, 0, interface=LOOPBACK
        )
        port: IListeningPort = await endpoint.listen(tracker)

        async def stop() -> None:
            await maybeDeferred(port.stopListening)
            await tracker.close_all()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        server = MemoryAcmeServer(
            clock=self.reactor,
            base_url=f"https://{LOOPBACK}:{port.getHost().port}",  # type: ignore[attr-defined]
        )
        site.resource = ClosingResource(server.resource())
        return server.directory_url, tracker

    def endpoint(self, directory_url: str, **options: str) -> AutoTLSEndpoint:
        """The endpoint of an ``acme:`` description of the store."""
        parsed = parse_endpoint_options(
            "acme",
            [str(self.store), "tcp", "0"],
            {"directory": directory_url, **options},
        )
        return endpoint_from_options(self.reactor, parsed)

    def test_ca(self) -> Deferred[None]:
        """
        With ``ca=``, the client is a :class:`~txacme.client.Client`
        trusting the CA file for the CA's HTTPS and signing with the store's
        ``client.key``; every connection to the CA is made with one TLS
        connection creator (one OpenSSL context); ``close()`` closes its
        connections (trial fails a test that leaves one open).
        """

        async def body() -> None:
            directory_url, tracker = await self.serve_ca()
            endpoint = self.endpoint(directory_url, ca=str(self.ca_path))
            creator: Any = endpoint.client_creator
            trust_root = CountingTrustRoot(creator.trust_root)
            client = await attrs.evolve(creator, trust_root=trust_root)(
                self.reactor, endpoint.directory
            )
            try:
                self.assertEqual(type(client), Client)
                self.assertEqual(
                    client.key.thumbprint(),
                    JWKEC(key=self.account_key).thumbprint(),
                )
                # The directory came over one connection, the registration
                # comes over another.
                await client.register(
                    messages.NewRegistration.from_data(terms_of_service_agreed=True)
                )
                self.assertNotEqual(client.account_url, None)
                self.assertTrue(tracker.connections >= 2, str(tracker.connections))
                self.assertEqual(trust_root.contexts, 1)
            finally:
                await client.close()

        return Deferred.fromCoroutine(body())

    def test_platform_trust(self) -> Deferred[None]:
        """
        Without ``ca=``, the client trusts the platform's certificate
        authorities only: the CA's self-signed certificate is refused.
        """

        async def body() -> None:
            directory_url, _ = await self.serve_ca()
            endpoint = self.endpoint(directory_url)
            creator: Any = endpoint.client_creator
            self.assertEqual(creator.trust_root, None)
            error = await expect_failure(
                NetworkError, creator(self.reactor, endpoint.directory)
            )
            self.assertIn("certificate verify failed", str(error))

        return Deferred.fromCoroutine(body())
