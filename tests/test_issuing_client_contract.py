"""
The :class:`~txacme.interfaces.IssuingClient` contract, one test suite
applied to every client the issuance workflow and the service take: the
real :class:`~txacme.client.Client` on the in-memory ACME server (whose
validator passes every challenge), and :class:`~txacme.testing.FakeClient`.

:class:`ContractTests` states the contract as tests; each client joins
through a subclass that makes it.  Both go through the same workflow
(:mod:`txacme.issuance`, :mod:`txacme._polling`), so that what the service
is tested with is what it runs with.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

from acme import messages
from cryptography import x509
from josepy.jwa import ES256
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.support import EC_KEY, NOW, RecordingResponder, TestCase
from txacme._polling import Deadline, finalize_order
from txacme.client import (
    Client,
    JWSClient,
    PollingPolicy,
    answer_challenge,
    issue_certificate,
    poll_until_valid,
)
from txacme.errors import AuthorizationsNotValid, MalformedResponse, ServerError
from txacme.interfaces import IssuingClient
from txacme.testing import FakeClient, MemoryAcmeServer
from txacme.util import csr_for_names, generate_private_key

_CERTIFICATE_KEY = generate_private_key("p256")
_OTHER_KEY = generate_private_key("p256")


if TYPE_CHECKING:
    _ContractBase = TestCase
else:
    _ContractBase = object


class ContractTests(_ContractBase):
    """
    The contract of :class:`~txacme.interfaces.IssuingClient`, as tests: a
    mixin, run by each subclass that also derives from
    :class:`~tests.support.TestCase` and makes the client
    (:meth:`make_client`), registered, on :attr:`clock`.
    """

    clock: Clock
    client: IssuingClient

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.client = self.make_client()

    def make_client(self) -> IssuingClient:
        raise NotImplementedError

    def settle_all(self) -> None:
        """Let the clock run every timer due within a minute."""
        for _ in range(600):
            self.clock.advance(0.1)

    def answered_order(self, *names: str) -> messages.OrderResource:
        """An order for ``names``, every challenge answered and polled valid."""
        orderr = self.successResultOf(self.client.new_order(names))
        polled = []
        for authzr in orderr.authorizations:
            stop = self.successResultOf(
                answer_challenge(authzr, self.client, [RecordingResponder()])
            )
            result = poll_until_valid(authzr, self.clock, self.client)
            self.settle_all()
            polled.append(self.successResultOf(result))
            self.successResultOf(stop())
        updated: messages.OrderResource = orderr.update(authorizations=tuple(polled))
        return updated

    def test_provides(self) -> None:
        """The client has what the workflow needs (checked by mypy too)."""
        client: IssuingClient = self.client
        self.assertIsInstance(client.policy, PollingPolicy)
        self.assertIsNot(client.key, None)

    def test_new_order(self) -> None:
        """
        ``new_order`` answers a pending order with one pending
        authorization per identifier, fetched.
        """
        orderr = self.successResultOf(self.client.new_order(["a.example", "b.example"]))
        self.assertEqual(orderr.body.status, messages.STATUS_PENDING)
        self.assertEqual(
            sorted(identifier.value for identifier in orderr.body.identifiers),
            ["a.example", "b.example"],
        )
        self.assertEqual(len(orderr.authorizations), 2)
        for authzr in orderr.authorizations:
            self.assertEqual(authzr.body.status, messages.STATUS_PENDING)

    def test_refresh_authorization(self) -> None:
        """
        ``refresh_authorization`` answers the authorization as the CA has it,
        and a ``Retry-After`` (seconds or ``None``); ``poll`` the same with
        seconds always.
        """
        orderr = self.successResultOf(self.client.new_order(["a.example"]))
        [authzr] = orderr.authorizations
        refreshed, retry_after = self.successResultOf(
            self.client.refresh_authorization(authzr)
        )
        self.assertEqual(refreshed.uri, authzr.uri)
        self.assertEqual(refreshed.body.status, messages.STATUS_PENDING)
        self.assertTrue(retry_after is None or retry_after >= 0)
        polled, seconds = self.successResultOf(self.client.poll(authzr))
        self.assertEqual(polled.uri, authzr.uri)
        self.assertIsInstance(seconds, float)

    def test_send_csr_not_ready(self) -> None:
        """
        ``send_csr`` for an order whose authorizations are not valid fails
        with ``orderNotReady``, issuing nothing.
        """
        orderr = self.successResultOf(self.client.new_order(["a.example"]))
        error = self.errorOf(
            self.client.send_csr(
                orderr, csr_for_names(["a.example"], _CERTIFICATE_KEY)
            ),
            ServerError,
        )
        self.assertEqual(error.code, "orderNotReady")

    def test_refresh_order_ready(self) -> None:
        """
        Once every authorization is valid, ``refresh_order`` answers the
        order ``ready``.
        """
        orderr = self.answered_order("a.example")
        refreshed, _ = self.successResultOf(self.client.refresh_order(orderr))
        self.assertEqual(refreshed.body.status, messages.STATUS_READY)

    def test_send_csr_and_fetch_certificate(self) -> None:
        """
        ``send_csr`` on a ready order is answered with the order processing
        or valid; once valid, ``fetch_certificate`` answers its chain, leaf
        first for the CSR's key, each certificate issued by the next.
        """
        orderr = self.answered_order("a.example")
        csr = csr_for_names(["a.example"], _CERTIFICATE_KEY)
        sent, _ = self.successResultOf(self.client.send_csr(orderr, csr))
        self.assertIn(
            sent.body.status, (messages.STATUS_PROCESSING, messages.STATUS_VALID)
        )
        while sent.body.status == messages.STATUS_PROCESSING:
            self.settle_all()
            sent, _ = self.successResultOf(self.client.refresh_order(sent))
        fetched = self.successResultOf(self.client.fetch_certificate(sent, csr))
        chain = x509.load_pem_x509_certificates(fetched.fullchain_pem.encode("ascii"))
        self.assertEqual(chain[0].public_key(), _CERTIFICATE_KEY.public_key())
        for child, parent in pairwise(chain):
            child.verify_directly_issued_by(parent)
        self.assertIsNotNone(fetched.alternative_fullchains_pem)

    def test_fetch_certificate_checks_the_key(self) -> None:
        """
        ``fetch_certificate`` with a CSR of another key fails with
        ``MalformedResponse``.
        """
        orderr = self.answered_order("a.example")
        csr = csr_for_names(["a.example"], _CERTIFICATE_KEY)
        sent, _ = self.successResultOf(self.client.send_csr(orderr, csr))
        while sent.body.status == messages.STATUS_PROCESSING:
            self.settle_all()
            sent, _ = self.successResultOf(self.client.refresh_order(sent))
        self.errorOf(
            self.client.fetch_certificate(
                sent, csr_for_names(["a.example"], _OTHER_KEY)
            ),
            MalformedResponse,
        )

    def test_finalize_unanswered(self) -> None:
        """
        Finalizing an order never answered fails with
        ``AuthorizationsNotValid`` naming its authorizations.
        """
        orderr = self.successResultOf(self.client.new_order(["a.example"]))
        finalizing = Deferred.fromCoroutine(
            finalize_order(
                self.client,
                orderr,
                csr_for_names(["a.example"], _CERTIFICATE_KEY),
                Deadline(self.clock, 60),
            )
        )
        error = self.errorOf(finalizing, AuthorizationsNotValid)
        self.assertEqual(
            [authzr.uri for authzr in error.authorizations],
            [authzr.uri for authzr in orderr.authorizations],
        )

    def test_issue_certificate(self) -> None:
        """
        :func:`~txacme.client.issue_certificate` gets a chain for the CSR's
        names, starting and stopping the responder.
        """
        responder = RecordingResponder()
        issued = issue_certificate(
            self.client,
            self.clock,
            csr_for_names(["a.example", "b.example"], _CERTIFICATE_KEY),
            [responder],
        )
        self.settle_all()
        chain_pem = self.successResultOf(issued)
        leaf = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))[0]
        names = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
        self.assertEqual(sorted(names), ["a.example", "b.example"])
        self.assertEqual(sorted(responder.started), ["a.example", "b.example"])
        self.assertEqual(sorted(responder.stopped), sorted(responder.started))


class ClientContractTests(ContractTests, TestCase):
    """:class:`~txacme.client.Client` on the in-memory server."""

    def make_client(self) -> IssuingClient:
        server = MemoryAcmeServer(clock=self.clock)
        jws = JWSClient(server.treq_client(), EC_KEY, ES256, reactor=self.clock)
        client = self.successResultOf(
            Client.from_url(self.clock, server.directory_url, EC_KEY, jws_client=jws)
        )
        self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
        )
        return client


class FakeClientContractTests(ContractTests, TestCase):
    """:class:`~txacme.testing.FakeClient`."""

    def make_client(self) -> IssuingClient:
        return FakeClient(EC_KEY, self.clock)
