"""
What keeps the client cheap for the CA and for its own process (issue 6):
the request sequence of :func:`txacme.client.issue_certificate` against
:class:`txacme.testing.MemoryAcmeServer`, waiting for nonces rather than
asking ``newNonce``, and the per-request work of the transport.
"""

from __future__ import annotations

import json
from typing import Any

from acme import jws as acme_jws
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.b64 import b64decode
from josepy.jwa import ES256, RS256
from josepy.jwk import JWKRSA
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.support import EC_KEY, AcmeTestCase, TestCase
from txacme._https import CachedTLSPolicy
from txacme._signing import flattened_jws
from txacme.challenges import HTTP01Responder
from txacme.client import (
    Client,
    JWSClient,
    PollingPolicy,
    issue_certificate,
)
from txacme.errors import NetworkError
from txacme.jws import RetryPolicy
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


class _HeldTreq:
    """
    A treq client whose answers are held back until :meth:`release`, so
    that requests stay in flight; or fail, with :meth:`fail_oldest`.
    """

    def __init__(self, treq: Any) -> None:
        self._treq = treq
        self.holding = True
        self._held: list[tuple[Deferred[Any], Deferred[Any]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        answer: Deferred[Any] = self._treq.request(method, url, **kwargs)
        if not self.holding:
            return answer
        held: Deferred[Any] = Deferred()
        self._held.append((answer, held))
        return held

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def release(self) -> None:
        """Deliver the oldest held answer."""
        answer, held = self._held.pop(0)
        answer.chainDeferred(held)

    def fail_oldest(self) -> None:
        """Fail the oldest held request as if the connection was refused."""
        answer, held = self._held.pop(0)
        answer.addErrback(lambda _: None)
        held.errback(ConnectionRefusedError())  # type: ignore[no-untyped-call]

    def release_all(self, limit: int = 100) -> None:
        """Deliver held answers (also those of requests made meanwhile)."""
        for _ in range(limit):
            if not self._held:
                return
            self.release()


class NonceWaitTests(AcmeTestCase):
    """
    A signed request that finds the nonce pool empty while others are in
    flight waits for the nonce their answers bring.
    """

    def setUp(self) -> None:
        super().setUp()
        self.held = _HeldTreq(self.server.treq_client())
        self.client = self.make_client_on(self.held)
        self.held.release_all()
        self.held.holding = True

    def make_client_on(self, treq: Any, **arguments: Any) -> Client:
        jws = JWSClient(treq, EC_KEY, ES256, reactor=self.clock, **arguments)
        self.held.holding = False
        client = self.successResultOf(
            Client.from_url(self.clock, self.server.directory_url, EC_KEY, ES256, jws)
        )
        self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
        )
        return client

    def test_waits_instead_of_new_nonce(self) -> None:
        """
        Four orders at once with one pooled nonce: one request is sent, the
        others wait; each answer's nonce sends the next; ``newNonce`` is
        never asked.
        """
        orders = [self.client.new_order([f"n{index}.example"]) for index in range(4)]
        self.assertEqual(self.held.in_flight, 1)
        self.held.release_all()
        for order in orders:
            self.successResultOf(order)
        self.assertEqual(self.server.request_counts()["newNonce"], 0)
        self.assertEqual(self.server.request_counts()["newOrder"], 4)

    def test_failed_request_hands_over(self) -> None:
        """
        When the request in flight fails without an answer, the waiting
        request asks ``newNonce`` and goes on.  (Without retries here: the
        failed request would be sent again otherwise.)
        """
        self.held.holding = False
        self.client = self.make_client_on(
            self.held, retry_policy=RetryPolicy(max_retries=0)
        )
        self.held.release_all()
        self.held.holding = True
        first = self.client.new_order(["a.example"])
        second = self.client.new_order(["b.example"])
        self.assertEqual(self.held.in_flight, 1)
        self.held.fail_oldest()
        self.assertIsInstance(self.failureResultOf(first).value, NetworkError)
        self.held.release_all()
        self.successResultOf(second)
        self.assertEqual(self.server.request_counts()["newNonce"], 1)

    def test_wait_is_bounded(self) -> None:
        """
        A request waits at most ``nonce_wait`` seconds for a nonce, then
        asks ``newNonce``; the late nonce goes into the pool.
        """
        first = self.client.new_order(["a.example"])
        second = self.client.new_order(["b.example"])
        self.assertEqual(self.held.in_flight, 1)
        self.clock.advance(0.9)
        self.assertEqual(self.held.in_flight, 1)
        self.clock.advance(0.1)
        # The newNonce request of the second order is in flight now too.
        self.assertEqual(self.held.in_flight, 2)
        self.held.release_all()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.server.request_counts()["newNonce"], 1)

    def test_cancelled_waiter_forgotten(self) -> None:
        """
        A request cancelled while waiting for a nonce leaves no waiter
        behind: the nonce of the answer in flight goes to the pool, and the
        next request uses it without asking ``newNonce``.
        """
        first = self.client.new_order(["a.example"])
        second = self.client.new_order(["b.example"])
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.held.release_all()
        self.successResultOf(first)
        third = self.client.new_order(["c.example"])
        self.held.release_all()
        self.successResultOf(third)
        self.assertEqual(self.server.request_counts()["newNonce"], 0)

    def test_no_wait(self) -> None:
        """With ``nonce_wait=0`` an empty pool means ``newNonce`` at once."""
        self.server = self.make_server()
        self.held = _HeldTreq(self.server.treq_client())
        client = self.make_client_on(self.held, nonce_wait=0)
        self.held.holding = True
        first = client.new_order(["a.example"])
        second = client.new_order(["b.example"])
        self.assertEqual(self.held.in_flight, 2)
        self.held.release_all()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.server.request_counts()["newNonce"], 1)


class _RecordingTreq:
    """A treq client that records the ``data`` of each request."""

    def __init__(self, treq: Any) -> None:
        self._treq = treq
        self.bodies: list[Any] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        if "data" in kwargs:
            self.bodies.append(kwargs["data"])
        answer: Deferred[Any] = self._treq.request(method, url, **kwargs)
        return answer


class _Consumer:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class RequestBodyTests(AcmeTestCase):
    """How the JWS of a signed request is handed to treq."""

    def test_body_writes_itself_at_once(self) -> None:
        """
        The body is ``bytes`` (what ``StubTreq`` takes) that also provide
        ``IBodyProducer`` (so that treq sends it with the headers rather
        than through a ``FileBodyProducer`` a reactor iteration later): its
        length is its size, and ``startProducing`` writes it whole and
        returns a Deferred that has fired.
        """
        recording = _RecordingTreq(self.server.treq_client())
        jws = JWSClient(recording, EC_KEY, ES256, reactor=self.clock)
        client = self.successResultOf(
            Client.from_url(self.clock, self.server.directory_url, EC_KEY, ES256, jws)
        )
        self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
        )
        [body] = recording.bodies
        self.assertIsInstance(body, bytes)
        self.assertTrue(IBodyProducer.providedBy(body))
        self.assertEqual(body.length, len(body))
        consumer = _Consumer()
        self.successResultOf(body.startProducing(consumer))
        self.assertEqual(b"".join(consumer.written), bytes(body))
        self.assertIn(b'"protected"', bytes(body))


@implementer(IPolicyForHTTPS)
class _CountingPolicy:
    """An HTTPS policy that counts the creators it makes."""

    def __init__(self) -> None:
        self.made: list[tuple[bytes, int]] = []

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        self.made.append((hostname, port))
        return object()


class CachedTLSPolicyTests(TestCase):
    """The HTTPS policy of the transport ``Client.from_url`` builds."""

    def test_one_creator_per_netloc(self) -> None:
        """
        The TLS connection creator of a host and port is made once and
        reused; another host or port gets its own.
        """
        inner = _CountingPolicy()
        policy = CachedTLSPolicy(inner)
        verifyObject(IPolicyForHTTPS, policy)
        first = policy.creatorForNetloc(b"acme.example", 443)
        self.assertIs(policy.creatorForNetloc(b"acme.example", 443), first)
        self.assertIsNot(policy.creatorForNetloc(b"acme.example", 8443), first)
        self.assertIsNot(policy.creatorForNetloc(b"cdn.example", 443), first)
        self.assertEqual(
            inner.made,
            [(b"acme.example", 443), (b"acme.example", 8443), (b"cdn.example", 443)],
        )

    def test_bounded(self) -> None:
        """The cache holds at most ``MAX_CREATORS`` creators."""
        inner = _CountingPolicy()
        policy = CachedTLSPolicy(inner)
        for port in range(CachedTLSPolicy.MAX_CREATORS * 3):
            policy.creatorForNetloc(b"acme.example", port)
        self.assertEqual(len(inner.made), CachedTLSPolicy.MAX_CREATORS * 3)
        self.assertTrue(len(policy._creators) <= CachedTLSPolicy.MAX_CREATORS)


class FlattenedJWSTests(TestCase):
    """The JWS the transport signs requests with (RFC 8555 §6.2)."""

    def test_same_as_acme(self) -> None:
        """
        For EC and RSA keys, with ``kid`` or ``jwk`` and with or without a
        nonce, the JWS has the protected header and payload that
        ``acme.jws.JWS.sign`` gives, and its signature verifies.
        """
        keys = [
            (EC_KEY, ES256),
            (JWKRSA(key=generate_private_key("rsa")), RS256),
        ]
        for key, alg in keys:
            for kid in (None, "https://acme.example/account/1"):
                for nonce in (b"0123456789abcdef", None):
                    ours = json.loads(
                        flattened_jws(b'{"a":1}', key, alg, nonce, "https://u", kid)
                    )
                    theirs = json.loads(
                        acme_jws.JWS.sign(
                            b'{"a":1}',
                            key=key,
                            alg=alg,
                            nonce=nonce,
                            url="https://u",
                            kid=kid,
                        ).json_dumps()
                    )
                    self.assertEqual(sorted(ours), sorted(theirs))
                    self.assertEqual(
                        json.loads(b64decode(ours["protected"])),
                        json.loads(b64decode(theirs["protected"])),
                    )
                    self.assertEqual(ours["payload"], theirs["payload"])
                    parsed = acme_jws.JWS.json_loads(json.dumps(ours))
                    self.assertTrue(parsed.verify(key.public_key()))

    def test_key_not_for_alg(self) -> None:
        """A key of another type than the algorithm's is refused."""
        self.assertRaises(
            TypeError, flattened_jws, b"", EC_KEY, RS256, None, "https://u", None
        )
