"""
Tests for the test doubles of :mod:`txacme.testing` that stand in for the
client and responders of :class:`txacme.service.AcmeIssuingService`:
:class:`FakeClient`, :class:`FakeClientController`, :class:`NullResponder`
and the re-exported :class:`MemoryStore`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from acme import messages
from cryptography import x509
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

import txacme.store
from tests.support import EC_KEY, NOW, RecordingResponder, TestCase
from txacme.client import PollingPolicy, issue_certificate, renewal_certificate_id
from txacme.errors import AuthorizationsNotValid, NotOffered, ServerError
from txacme.interfaces import IResponder
from txacme.service import IssuingClient
from txacme.testing import (
    FakeClient,
    FakeClientController,
    FakeOrder,
    MemoryStore,
    NullResponder,
)
from txacme.util import csr_for_names, generate_private_key

_KEY = generate_private_key("p256")


class FakeClientTestCase(TestCase):
    """A clock at :data:`NOW` and a FakeClient on it."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.controller = FakeClientController()
        self.client = FakeClient(EC_KEY, self.clock, controller=self.controller)

    def order_and_answer(self, *names: str) -> messages.OrderResource:
        """An order for ``names`` with every challenge answered (http-01)."""
        orderr = self.successResultOf(self.client.new_order(names))
        for authzr in orderr.authorizations:
            [challb] = [
                challb
                for challb in authzr.body.challenges
                if challb.chall.typ == ("dns-01" if authzr.body.wildcard else "http-01")
            ]
            self.successResultOf(
                self.client.answer_challenge(challb, challb.response(EC_KEY))
            )
        return orderr

    def issue(self, *names: str) -> x509.Certificate:
        orderr = self.order_and_answer(*names)
        finalized = self.successResultOf(
            self.client.finalize(orderr, csr_for_names(list(names), _KEY))
        )
        return x509.load_pem_x509_certificates(finalized.fullchain_pem.encode())[0]


class FakeClientTests(FakeClientTestCase):
    """Tests for :class:`FakeClient`."""

    def test_provides_issuing_client(self) -> None:
        """The fake has what the service needs of a client (checked by mypy)."""
        client: IssuingClient = self.client
        self.assertIs(client.key, EC_KEY)

    def test_register(self) -> None:
        """Registrations are recorded and answered with an account."""
        regr = self.successResultOf(
            self.client.register(
                messages.NewRegistration.from_data(
                    email="a@example.com", terms_of_service_agreed=True
                )
            )
        )
        self.assertTrue(regr.uri.startswith("https://"))
        self.assertEqual(regr.body.contact, ("mailto:a@example.com",))
        [registration] = self.client.registrations
        self.assertTrue(registration.terms_of_service_agreed)

    def test_order(self) -> None:
        """
        An order has one pending authorization per identifier, with
        http-01, dns-01 and tls-alpn-01 challenges; dns-01 alone for a
        wildcard, no dns-01 for an IP address.  Orders are recorded.
        """
        orderr = self.successResultOf(
            self.client.new_order(
                ["a.example", "*.b.example", "192.0.2.1"], profile="short"
            )
        )
        types = [
            [challb.to_partial_json()["type"] for challb in authzr.body.challenges]
            for authzr in orderr.authorizations
        ]
        self.assertEqual(
            types,
            [
                ["http-01", "dns-01", "tls-alpn-01"],
                ["dns-01"],
                ["http-01", "tls-alpn-01"],
            ],
        )
        self.assertEqual(
            [authzr.body.status for authzr in orderr.authorizations],
            [messages.STATUS_PENDING] * 3,
        )
        self.assertEqual(orderr.authorizations[1].body.identifier.value, "b.example")
        self.assertEqual(
            self.client.orders,
            [
                FakeOrder(
                    url=orderr.uri,
                    names=("a.example", "*.b.example", "192.0.2.1"),
                    profile="short",
                    replaces=None,
                )
            ],
        )
        self.failureResultOf(self.client.new_order([]), ValueError)

    def test_answer_validates(self) -> None:
        """Answering a challenge makes its authorization valid at once."""
        orderr = self.order_and_answer("a.example")
        [authzr] = orderr.authorizations
        polled, delay = self.successResultOf(self.client.poll(authzr))
        self.assertEqual(polled.body.status, messages.STATUS_VALID)
        self.assertEqual(delay, self.client.policy.first_delay)

    def test_finalize(self) -> None:
        """
        Finalizing issues a certificate for the order's names and the CSR's
        key, signed by the fake CA, valid from the clock's present for the
        lifetime; the chain ends with the CA certificate.  Issuances are
        counted.
        """
        self.client.certificate_lifetime = timedelta(days=6)
        orderr = self.order_and_answer("a.example", "b.example")
        finalized = self.successResultOf(
            self.client.finalize(
                orderr, csr_for_names(["a.example", "b.example"], _KEY)
            )
        )
        self.assertEqual(finalized.body.status, messages.STATUS_VALID)
        leaf, ca = x509.load_pem_x509_certificates(finalized.fullchain_pem.encode())
        self.assertEqual(ca, self.client.ca_certificate)
        leaf.verify_directly_issued_by(ca)
        self.assertEqual(leaf.public_key(), _KEY.public_key())
        self.assertEqual(
            leaf.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName),
            ["a.example", "b.example"],
        )
        start = datetime.fromtimestamp(NOW, UTC)
        self.assertEqual(leaf.not_valid_before_utc, start)
        self.assertEqual(leaf.not_valid_after_utc, start + timedelta(days=6))
        self.assertEqual(self.controller.issued, 1)
        self.assertEqual(self.client.certificates, [leaf])
        self.assertEqual(finalized.alternative_fullchains_pem, [])

    def test_finalize_checks(self) -> None:
        """
        Finalizing with unanswered challenges, or a CSR for other names,
        fails as a CA would refuse.
        """
        pending = self.successResultOf(self.client.new_order(["a.example"]))
        self.failureResultOf(
            self.client.finalize(pending, csr_for_names(["a.example"], _KEY)),
            AuthorizationsNotValid,
        )
        answered = self.order_and_answer("a.example")
        failure = self.failureResultOf(
            self.client.finalize(answered, csr_for_names(["other.example"], _KEY)),
            ServerError,
        )
        assert isinstance(failure.value, ServerError)
        self.assertEqual(failure.value.code, "badCSR")
        self.assertEqual(self.controller.issued, 0)

    def test_replaces_recorded(self) -> None:
        """
        ``replaces`` given as a certificate is recorded as its ARI
        identifier.
        """
        first = self.issue("a.example")
        self.successResultOf(self.client.new_order(["a.example"], replaces=first))
        self.assertEqual(self.client.orders[-1].replaces, renewal_certificate_id(first))

    def test_ca_key(self) -> None:
        """A given CA key signs the certificates."""
        ca_key = generate_private_key("p256")
        self.client = FakeClient(EC_KEY, self.clock, ca_key=ca_key)
        self.assertEqual(self.client.ca_certificate.public_key(), ca_key.public_key())
        leaf = self.issue("a.example")
        leaf.verify_directly_issued_by(self.client.ca_certificate)

    def test_renewal_info(self) -> None:
        """
        ``renewal_info`` is not offered by default; when it is, a
        certificate's window is the one set for its serial number, else
        the last part of its lifetime.
        """
        leaf = self.issue("a.example")
        self.failureResultOf(self.client.renewal_info(leaf), NotOffered)
        self.client.offer_renewal_info = True
        window = self.successResultOf(self.client.renewal_info(leaf))
        start = datetime.fromtimestamp(NOW, UTC)
        self.assertEqual(window.start, start + timedelta(days=60))
        self.assertEqual(window.end, start + timedelta(days=75))
        self.client.renewal_windows[leaf.serial_number] = (start, start + timedelta(1))
        window = self.successResultOf(self.client.renewal_info(leaf))
        self.assertEqual(window.start, start)

    def test_close(self) -> None:
        """Closing is counted."""
        self.successResultOf(self.client.close())
        self.assertEqual(self.client.closed, 1)

    def test_issue_certificate(self) -> None:
        """
        :func:`txacme.client.issue_certificate` gets a certificate through
        the fake, starting and stopping the responder, without the clock
        moving: the fake's CA validates at once, so it is polled at once
        (as txacme 0.9's fake answered).
        """
        responder = RecordingResponder()
        issued = issue_certificate(
            self.client,
            self.clock,
            csr_for_names(["a.example"], _KEY),
            [responder],
        )
        chain = self.successResultOf(issued)
        self.assertIn("BEGIN CERTIFICATE", chain)
        self.assertEqual(responder.started, ["a.example"])
        self.assertEqual(responder.stopped, ["a.example"])

    def test_polled_later_with_a_real_policy(self) -> None:
        """
        With a :class:`~txacme.client.PollingPolicy` like a real client's,
        the first poll waits the policy's first delay.
        """
        self.client.policy = PollingPolicy(first_delay=1.0)
        issued = issue_certificate(
            self.client,
            self.clock,
            csr_for_names(["a.example"], _KEY),
            [RecordingResponder()],
        )
        self.clock.advance(0.9)
        self.assertNoResult(issued)
        self.clock.advance(0.1)
        self.successResultOf(issued)


class FakeClientControllerTests(FakeClientTestCase):
    """Tests for :class:`FakeClientController`."""

    def finalize(self, *names: str) -> Deferred[messages.OrderResource]:
        orderr = self.order_and_answer(*names)
        return self.client.finalize(orderr, csr_for_names(list(names), _KEY))

    def test_pause_resume(self) -> None:
        """
        Paused, issuances wait and are counted; ``release`` lets the oldest
        through, ``resume`` all.
        """
        self.controller.pause()
        first = self.finalize("a.example")
        second = self.finalize("b.example")
        third = self.finalize("c.example")
        self.assertEqual(self.controller.count(), 3)
        self.assertNoResult(first)
        self.assertEqual(self.controller.release(), 1)
        self.successResultOf(first)
        self.assertNoResult(second)
        self.controller.resume()
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(self.controller.count(), 0)
        self.assertEqual(self.controller.issued, 3)
        self.successResultOf(self.finalize("d.example"))

    def test_cancel_waiting(self) -> None:
        """Cancelling a held-back issuance removes it."""
        self.controller.pause()
        waiting = self.finalize("a.example")
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.controller.count(), 0)
        self.assertEqual(self.controller.issued, 0)

    def test_fail_next(self) -> None:
        """
        ``fail_next`` fails the next issuances, with a ServerError by
        default or the given exception; then issuance works again.
        """
        self.controller.fail_next(count=2)
        self.controller.fail_next(RuntimeError("boom"))
        error = self.errorOf(self.finalize("a.example"), ServerError)
        self.assertEqual(error.code, "serverInternal")
        self.failureResultOf(self.finalize("a.example"), ServerError)
        self.failureResultOf(self.finalize("a.example"), RuntimeError)
        self.successResultOf(self.finalize("a.example"))
        self.assertEqual(self.controller.issued, 1)

    def test_shared_between_clients(self) -> None:
        """One controller counts the issuances of several clients."""
        other = FakeClient(EC_KEY, self.clock, controller=self.controller)
        self.issue("a.example")
        self.client = other
        self.issue("b.example")
        self.assertEqual(self.controller.issued, 2)


class NullResponderTests(TestCase):
    """Tests for :class:`NullResponder`."""

    def test_responder(self) -> None:
        """It is an IResponder for its challenge type, doing nothing."""
        responder = NullResponder("dns-01")
        self.assertTrue(verifyObject(IResponder, responder))
        self.assertEqual(responder.challenge_type, "dns-01")
        responder.start_responding("a.example", None, None)
        responder.stop_responding("a.example", None, None)
        responder.stop_responding("never-started.example", None, None)


class MemoryStoreExportTests(TestCase):
    """``txacme.testing.MemoryStore`` is the store module's, as in 0.9."""

    def test_same_class(self) -> None:
        """The name in txacme.testing is txacme.store.MemoryStore."""
        self.assertIs(MemoryStore, txacme.store.MemoryStore)
