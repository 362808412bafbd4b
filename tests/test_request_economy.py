"""
How few requests the client makes for an issuance (issue 6): the request
sequence of :func:`txacme.client.issue_certificate` against
:class:`txacme.testing.MemoryAcmeServer`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import AcmeTestCase
from txacme.challenges import HTTP01Responder
from txacme.client import PollingPolicy, issue_certificate
from txacme.util import csr_for_names, generate_private_key

_CERT_KEY = generate_private_key("p256")
assert isinstance(_CERT_KEY, ec.EllipticCurvePrivateKey)


class IssueCertificateRequestsTests(AcmeTestCase):
    """The requests of one ``issue_certificate`` call."""

    def endpoints_after(self, start: int) -> list[str]:
        """The endpoints of the server's requests from number ``start`` on."""
        return [request.endpoint for request in self.server.requests[start:]]

    def test_no_refresh_before_finalize(self) -> None:
        """
        Once every authorization was polled valid, the order is finalized at
        once, without a refresh of the order first: newOrder, the
        authorization, the challenge, one poll, finalize, the certificate.
        """
        self.server = self.make_server(authorization_reuse=False)
        client = self.registered_client(policy=PollingPolicy(first_delay=1.0))
        start = len(self.server.requests)
        chain = self.successResultOf(
            self.settle(
                issue_certificate(
                    client,
                    self.clock,
                    csr_for_names(["a.example"], _CERT_KEY),
                    [HTTP01Responder()],
                ),
                self.clock,
            )
        )
        self.assertIn("BEGIN CERTIFICATE", chain)
        self.assertEqual(
            self.endpoints_after(start),
            [
                "newOrder",
                "authorization",
                "challenge",
                "authorization",
                "finalize",
                "certificate",
            ],
        )

    def test_processing_order_polled_once(self) -> None:
        """
        An order still ``processing`` after finalize is polled (after its
        Retry-After), and nothing else is added.
        """
        self.server = self.make_server(authorization_reuse=False, processing_delay=5)
        client = self.registered_client(policy=PollingPolicy(first_delay=1.0))
        start = len(self.server.requests)
        self.successResultOf(
            self.settle(
                issue_certificate(
                    client,
                    self.clock,
                    csr_for_names(["a.example"], _CERT_KEY),
                    [HTTP01Responder()],
                ),
                self.clock,
            )
        )
        endpoints = self.endpoints_after(start)
        self.assertEqual(endpoints.count("order"), 1)
        self.assertEqual(endpoints.index("order"), endpoints.index("finalize") + 1)
        self.assertNotIn("newNonce", endpoints)
