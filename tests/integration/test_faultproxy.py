"""
The fault-injecting proxy (:class:`txacme.testing.faultproxy.FaultProxy`)
in front of a real Pebble.

Without faults a :class:`txacme.client.Client` gets a certificate through
it, and the URLs Pebble hands out lead back through it.  With each fault
forced on one endpoint, a plain treq request (JWS requests signed here by
hand, not by txacme) sees exactly that fault, and Pebble has acted on the
request, or not, as the fault says.  Nothing here depends on txacme
surviving the faults: that is the transport's business, tested elsewhere.
"""

from __future__ import annotations

import json
import time
from typing import Any

import treq
from acme import messages
from acme.jws import JWS
from cryptography import x509
from josepy.b64 import b64decode
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import deferLater
from twisted.web.client import HTTPConnectionPool, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from tests.integration.pebble import (
    PebbleOptions,
    PebbleTestCase,
    expect_failure,
    expect_raises,
)
from txacme.challenges import HTTP01Responder
from txacme.client import Client, JWSClient, issue_certificate
from txacme.testing import FaultPlan
from txacme.testing.faultproxy import FaultProxy, ProxiedRequest
from txacme.util import csr_for_names, generate_private_key

_JOSE = Headers({b"content-type": [b"application/jose+json"]})


class _HandClient:
    """
    A minimal ACME client written here, for requests txacme must not
    retry or check: it signs with ``acme.jws`` and sends through treq.
    """

    def __init__(self, http: HTTPClient, directory: dict[str, Any]) -> None:
        self.http = http
        self.directory = directory
        self.key = JWKEC(key=generate_private_key("p256"))
        self.kid: str | None = None

    async def nonce(self) -> str:
        response = await self.http.head(self.directory["newNonce"])
        await treq.content(response)
        nonces: list[str] = response.headers.getRawHeaders("replay-nonce", [])
        assert len(nonces) == 1, nonces
        return nonces[0]

    async def post(self, url: str, payload: object = None) -> IResponse:
        """
        A signed POST (``payload`` ``None``: POST-as-GET); its response,
        body unread.
        """
        raw = b"" if payload is None else json.dumps(payload).encode()
        jws = JWS.sign(
            raw,
            key=self.key,
            alg=ES256,
            nonce=b64decode(await self.nonce()),
            url=url,
            kid=self.kid,
        )
        body: str = jws.json_dumps()
        response: IResponse = await self.http.post(
            url, data=body.encode(), headers=_JOSE
        )
        return response

    async def register(self) -> None:
        response = await self.post(
            self.directory["newAccount"], {"termsOfServiceAgreed": True}
        )
        await treq.content(response)
        assert response.code == 201, response.code
        [self.kid] = response.headers.getRawHeaders("location")

    async def new_order(self, name: str) -> IResponse:
        return await self.post(
            self.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": name}]},
        )

    async def orders(self) -> list[str]:
        """
        The account's orders, as Pebble lists them (RFC 8555 §7.1.2.1).
        """
        assert self.kid is not None
        account = await self.post(self.kid)
        account_document: dict[str, Any] = await treq.json_content(account)
        listing = await self.post(account_document["orders"])
        document: dict[str, Any] = await treq.json_content(listing)
        orders: list[str] = document.get("orders") or []
        return orders


class FaultProxyTests(PebbleTestCase):
    """
    The proxy forwards faithfully, and injects each fault as documented.
    (No nonces are rejected: the requests here are not retried.)
    """

    pebble_options = PebbleOptions(nonce_reject=0)
    timeout = 120

    def proxy(self, plan: FaultPlan | None = None) -> FaultProxy:
        """
        A started proxy in front of this test's Pebble, stopped at the end.
        """
        proxy = FaultProxy.for_pebble(self.reactor, self.pebble, plan)
        proxy.start()
        self.addCleanup(proxy.stop)
        return proxy

    def client_of(self, proxy: FaultProxy) -> HTTPClient:
        """
        A treq client trusting the proxy, on a pool of its own (so that a
        first request goes on a new connection, which Twisted does not
        retry), closed at the end.
        """
        pool = HTTPConnectionPool(  # type: ignore[no-untyped-call]
            self.reactor, persistent=True
        )
        self.addCleanup(pool.closeCachedConnections)
        return proxy.http_client(self.reactor, pool)

    async def hand_client(self, proxy: FaultProxy) -> _HandClient:
        """
        A registered hand-made client of Pebble through ``proxy``.
        """
        http = self.client_of(proxy)
        response = await http.get(proxy.directory_url)
        client = _HandClient(http, await treq.json_content(response))
        await client.register()
        return client

    def last(self, proxy: FaultProxy, endpoint: str) -> ProxiedRequest:
        """
        The proxy's record of the last request to ``endpoint``.
        """
        records = [record for record in proxy.requests if record.endpoint == endpoint]
        self.assertTrue(records, str(proxy.requests))
        return records[-1]

    def test_issuance_without_faults(self) -> Deferred[None]:
        """
        With no plan, a txacme client gets a certificate through the proxy:
        the directory's URLs point at the proxy (``Host`` is kept), the
        proxy recognizes every endpoint the issuance used, passes Pebble's
        statuses on, and counts the order as finalized and delivered.
        """

        async def body() -> None:
            proxy = self.proxy()
            http = self.client_of(proxy)
            directory = await treq.json_content(await http.get(proxy.directory_url))
            for name in ("newNonce", "newAccount", "newOrder", "revokeCert"):
                self.assertTrue(
                    directory[name].startswith(proxy.base_url + "/"), directory
                )
            key = JWKEC(key=generate_private_key("p256"))
            client = await Client.from_url(
                self.reactor,
                proxy.directory_url,
                key=key,
                alg=ES256,
                jws_client=JWSClient(http, key=key, alg=ES256),
            )
            await client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
            responder = HTTP01Responder()
            self.serve_http01(responder.resource)
            names = ["proxied.example.test"]
            chain = await issue_certificate(
                client,
                self.reactor,
                csr_for_names(names, generate_private_key("p256")),
                [responder],
                timeout=60,
            )
            leaf = await self.verify_issued(chain, names)
            self.assertEqual(
                leaf.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.DNSName),
                names,
            )
            endpoints = {record.endpoint for record in proxy.requests}
            self.assertTrue(
                {
                    "directory",
                    "newNonce",
                    "newAccount",
                    "newOrder",
                    "authorization",
                    "challenge",
                    "finalize",
                    "certificate",
                }
                <= endpoints,
                str(endpoints),
            )
            self.assertNotIn("unknown", endpoints)
            for record in proxy.requests:
                self.assertEqual(record.fault, None)
                self.assertEqual(record.status, record.upstream_status, str(record))
            self.assertEqual(len(proxy.finalized_orders()), 1)
            self.assertEqual(proxy.delivered_orders(), proxy.finalized_orders())
            self.assertEqual(proxy.orphaned_orders(), [])
            self.assertEqual(proxy.fault_counts, {})

        return self.run_with_logs(body())

    def test_drop_before(self) -> Deferred[None]:
        """
        ``drop-before`` on newOrder: the connection closes without an
        answer, nothing reaches Pebble (the account has no order), and the
        next request to newOrder goes through.
        """

        async def body() -> None:
            proxy = self.proxy()
            client = await self.hand_client(proxy)
            proxy.plan = FaultPlan.always(
                "drop-before", endpoints=["newOrder"], limit=1
            )
            client.http = self.client_of(proxy)
            failure = await expect_failure(
                ResponseNeverReceived, client.new_order("before.example.test")
            )
            self.assertTrue(failure.reasons[0].check(ConnectionLost), str(failure))
            record = self.last(proxy, "newOrder")
            self.assertEqual(
                (record.fault, record.status, record.upstream_status),
                ("drop-before", None, None),
            )
            self.assertEqual(await client.orders(), [])
            created = await client.new_order("before.example.test")
            await treq.content(created)
            self.assertEqual(created.code, 201)
            self.assertEqual(len(await client.orders()), 1)

        return self.run_with_logs(body())

    def test_drop_after(self) -> Deferred[None]:
        """
        ``drop-after`` on newOrder: the connection closes without an
        answer, yet Pebble created the order.
        """

        async def body() -> None:
            proxy = self.proxy()
            client = await self.hand_client(proxy)
            proxy.plan = FaultPlan.always("drop-after", endpoints=["newOrder"], limit=1)
            client.http = self.client_of(proxy)
            failure = await expect_failure(
                ResponseNeverReceived, client.new_order("after.example.test")
            )
            self.assertTrue(failure.reasons[0].check(ConnectionLost), str(failure))
            record = self.last(proxy, "newOrder")
            self.assertEqual(
                (record.fault, record.status, record.upstream_status),
                ("drop-after", None, 201),
            )
            orders = await client.orders()
            self.assertEqual(len(orders), 1)
            self.assertTrue(orders[0].startswith(proxy.base_url + "/my-order/"))

        return self.run_with_logs(body())

    def test_unavailable(self) -> Deferred[None]:
        """
        ``unavailable`` on the directory: a 503 HTML page with
        ``Retry-After: 1`` and no nonce, not from Pebble; other endpoints
        are untouched.
        """

        async def body() -> None:
            proxy = self.proxy(FaultPlan.always("unavailable", endpoints=["directory"]))
            http = self.client_of(proxy)
            response = await http.get(proxy.directory_url)
            page = await treq.content(response)
            self.assertEqual(response.code, 503)
            self.assertEqual(
                response.headers.getRawHeaders("content-type"), ["text/html"]
            )
            self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
            self.assertEqual(response.headers.getRawHeaders("replay-nonce"), None)
            self.assertIn(b"503 Service Temporarily Unavailable", page)
            self.assertEqual(self.last(proxy, "directory").upstream_status, None)
            nonce = await http.head(proxy.base_url + "/nonce-plz")
            await treq.content(nonce)
            self.assertEqual(nonce.code, 200)
            self.assertTrue(nonce.headers.getRawHeaders("replay-nonce"))

        return self.run_with_logs(body())

    def test_truncated_error(self) -> Deferred[None]:
        """
        ``truncated-error`` on newOrder: a 500 ``application/problem+json``
        whose body is cut (not JSON), with a nonce from Pebble; no order.
        """

        async def body() -> None:
            proxy = self.proxy()
            client = await self.hand_client(proxy)
            proxy.plan = FaultPlan.always("truncated-error", endpoints=["newOrder"])
            response = await client.new_order("truncated.example.test")
            content = await treq.content(response)
            self.assertEqual(response.code, 500)
            self.assertEqual(
                response.headers.getRawHeaders("content-type"),
                ["application/problem+json"],
            )
            self.assertTrue(content.startswith(b"{"))
            expect_raises(ValueError, json.loads, content)
            self.assertTrue(response.headers.getRawHeaders("replay-nonce"))
            self.assertEqual(self.last(proxy, "newOrder").upstream_status, None)
            proxy.plan = None
            self.assertEqual(await client.orders(), [])

        return self.run_with_logs(body())

    def test_rate_limited(self) -> Deferred[None]:
        """
        ``rate-limited`` on newOrder: a 429 ``rateLimited`` problem document
        with ``Retry-After: 1`` and a nonce; no order.
        """

        async def body() -> None:
            proxy = self.proxy()
            client = await self.hand_client(proxy)
            proxy.plan = FaultPlan.always("rate-limited", endpoints=["newOrder"])
            response = await client.new_order("limited.example.test")
            document: dict[str, Any] = json.loads(await treq.content(response))
            self.assertEqual(response.code, 429)
            self.assertEqual(document["type"], "urn:ietf:params:acme:error:rateLimited")
            self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
            self.assertTrue(response.headers.getRawHeaders("replay-nonce"))
            proxy.plan = None
            self.assertEqual(await client.orders(), [])

        return self.run_with_logs(body())

    def test_delay(self) -> Deferred[None]:
        """
        ``delay`` on the directory: Pebble's answer, intact, at least two
        seconds after the request.
        """

        async def body() -> None:
            proxy = self.proxy(FaultPlan.always("delay", endpoints=["directory"]))
            http = self.client_of(proxy)
            started = time.monotonic()
            response = await http.get(proxy.directory_url)
            directory = await treq.json_content(response)
            elapsed = time.monotonic() - started
            self.assertEqual(response.code, 200)
            self.assertTrue(elapsed >= 2.0, str(elapsed))
            self.assertTrue(directory["newOrder"].startswith(proxy.base_url))
            record = self.last(proxy, "directory")
            self.assertEqual((record.fault, record.upstream_status), ("delay", 200))
            self.assertTrue(record.duration >= 2.0, str(record))

        return self.run_with_logs(body())

    def test_captive_portal(self) -> Deferred[None]:
        """
        ``captive-portal`` on newOrder: 200 ``text/html`` with a page that is
        not JSON, no nonce, and no order at Pebble.
        """

        async def body() -> None:
            proxy = self.proxy()
            client = await self.hand_client(proxy)
            proxy.plan = FaultPlan.always("captive-portal", endpoints=["newOrder"])
            response = await client.new_order("portal.example.test")
            page = await treq.content(response)
            self.assertEqual(response.code, 200)
            self.assertEqual(
                response.headers.getRawHeaders("content-type"), ["text/html"]
            )
            self.assertEqual(response.headers.getRawHeaders("replay-nonce"), None)
            expect_raises(ValueError, json.loads, page)
            proxy.plan = None
            self.assertEqual(await client.orders(), [])

        return self.run_with_logs(body())

    def test_stop_in_flight(self) -> Deferred[None]:
        """
        Stopping the proxy while an answer is held back closes the client's
        connection; the stop completes (and trial finds no connection left).
        """

        async def body() -> None:
            proxy = FaultProxy.for_pebble(
                self.reactor,
                self.pebble,
                FaultPlan.always("delay", endpoints=["directory"], delay=30),
            )
            proxy.start()
            http = self.client_of(proxy)
            pending = http.get(proxy.directory_url)
            for _ in range(200):
                if proxy.fault_counts:
                    break
                await deferLater(self.reactor, 0.05)
            await proxy.stop()
            await expect_failure(ResponseNeverReceived, pending)
            self.assertEqual(proxy.fault_counts, {"delay": 1})

        return self.run_with_logs(body())
