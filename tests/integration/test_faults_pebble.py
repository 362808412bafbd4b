"""
Issuance that survives the network, for real: txacme issues through the
fault-injecting proxy (:class:`txacme.testing.faultproxy.FaultProxy`) in
front of Pebble, which rejects half of all nonces, with a seeded mix of all
seven faults on a quarter of the requests (the directory and newNonce
included): every certificate is issued and verified, and none is orphaned
(every order Pebble finalized is one whose certificate the client got).
"""

from __future__ import annotations

from acme import messages
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from twisted.internet.defer import Deferred
from twisted.web.client import HTTPConnectionPool

from tests.integration.pebble import PebbleOptions, PebbleTestCase
from txacme.challenges import HTTP01Responder
from txacme.client import Client, JWSClient, issue_certificate
from txacme.jws import RetryPolicy
from txacme.testing import FaultPlan
from txacme.testing.faultproxy import FaultProxy
from txacme.util import csr_for_names, generate_private_key

#: Faster retries than the default (the faults' Retry-After is 1 s anyway).
_POLICY = RetryPolicy(first_delay=0.2, max_delay=2.0)


class FaultMixTests(PebbleTestCase):
    """txacme against Pebble through the fault-injecting proxy."""

    pebble_options = PebbleOptions(nonce_reject=50, authz_reuse=0)
    timeout = 300

    def test_mix_survived(self) -> Deferred[None]:
        """
        Eight certificates, one after another, through 25% of requests
        faulted (seeded: each of the seven kinds occurs) with half the
        nonces rejected: all are issued and verify for their names, no
        order is orphaned, and the client issues again without faults.
        """

        async def body() -> None:
            plan = FaultPlan.mixed(0.25, seed=2026, delay=1.0)
            proxy = FaultProxy.for_pebble(self.reactor, self.pebble, plan)
            proxy.start()
            self.addCleanup(proxy.stop)
            pool = HTTPConnectionPool(  # type: ignore[no-untyped-call]
                self.reactor, persistent=True
            )
            self.addCleanup(pool.closeCachedConnections)
            key = JWKEC(key=generate_private_key("p256"))
            http = proxy.http_client(self.reactor, pool)
            client = await Client.from_url(
                self.reactor,
                proxy.directory_url,
                key=key,
                alg=ES256,
                jws_client=JWSClient(http, key=key, alg=ES256, retry_policy=_POLICY),
            )
            await client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
            responder = HTTP01Responder()
            self.serve_http01(responder.resource)
            for index in range(8):
                names = [f"mix{index}.example.test"]
                chain = await issue_certificate(
                    client,
                    self.reactor,
                    csr_for_names(names, generate_private_key("p256")),
                    [responder],
                    timeout=120,
                )
                await self.verify_issued(chain, names)
            self.assertEqual(proxy.orphaned_orders(), [])
            self.assertTrue(
                sum(proxy.fault_counts.values()) >= 10, str(proxy.fault_counts)
            )
            proxy.plan = None
            names = ["after.example.test"]
            chain = await issue_certificate(
                client,
                self.reactor,
                csr_for_names(names, generate_private_key("p256")),
                [responder],
                timeout=60,
            )
            await self.verify_issued(chain, names)

        return self.run_with_logs(body())
