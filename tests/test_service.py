"""
Tests for :class:`txacme.service.AcmeIssuingService`: issuing on start,
renewing on time (by interval and by ACME Renewal Information), backing off
after failures, panicking, sharing issuances, stopping in the middle, the
concurrency bound and multi-name entries; against
:class:`txacme.testing.FakeClient` and against the real
:class:`txacme.client.Client` talking to
:class:`txacme.testing.MemoryAcmeServer`.

Time is a :class:`~twisted.internet.task.Clock` moved with :func:`pump`,
which stops at every timer on the way, so that work happens at the moment
it is scheduled for.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from random import Random
from typing import Any, cast

import pem
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from josepy.jwa import ES256
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.support import EC_KEY, NOW, AcmeTestCase, RecordingResponder, TestCase
from txacme._issuer import key_object
from txacme.client import Client, JWSClient, PollingPolicy, renewal_certificate_id
from txacme.errors import ServerError
from txacme.interfaces import ICertificateStore, IResponder
from txacme.service import (
    AcmeIssuingService,
    Backoff,
    IssuingClient,
    parse_server_names,
)
from txacme.store import CertificateSummary, MemoryStore, summarize
from txacme.testing import (
    FakeClient,
    FakeClientController,
    MemoryAcmeServer,
    NullResponder,
)
from txacme.util import generate_private_key

DAY = 86400.0
HOUR = 3600.0

_CA_KEY = generate_private_key("p256")
_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])


def pump(clock: Clock, seconds: float) -> None:
    """
    Move ``clock`` forward by ``seconds``, stopping at each timer due on the
    way so that it runs at its own time.
    """
    end = clock.seconds() + seconds
    for _ in range(1_000_000):
        next_call = min(
            (call.getTime() for call in clock.getDelayedCalls()), default=math.inf
        )
        if next_call > end:
            clock.advance(end - clock.seconds())
            return
        clock.advance(max(0.0, next_call - clock.seconds()))
    raise AssertionError("timers keep firing without time passing")


def make_bundle(
    names: Sequence[str],
    not_before: float,
    lifetime: timedelta = timedelta(days=90),
) -> list[pem.AbstractPEMObject]:
    """
    A store entry: a new key and a certificate for ``names`` from a test
    CA, valid from ``not_before`` (POSIX time) for ``lifetime``.
    """
    key = generate_private_key("p256")
    start = datetime.fromtimestamp(not_before, UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(_CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_CA_KEY.public_key()),
            critical=False,
        )
        .sign(_CA_KEY, hashes.SHA256())
    )
    return [
        pem.PrivateKey(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
        pem.Certificate(certificate.public_bytes(serialization.Encoding.PEM)),
    ]


def leaf_of(objects: Sequence[pem.AbstractPEMObject]) -> x509.Certificate:
    """The first certificate of a store entry."""
    for obj in objects:
        if isinstance(obj, pem.Certificate):
            return x509.load_pem_x509_certificate(obj.as_bytes())
    raise AssertionError(f"no certificate in {objects!r}")


def entry_summary(store: MemoryStore, key: str) -> CertificateSummary:
    """The summary of a store entry, which must have a certificate."""
    summary = summarize(stored(store, key))
    assert summary is not None
    return summary


def stored(store: MemoryStore, key: str) -> list[pem.AbstractPEMObject]:
    """An entry of a MemoryStore (which answers at once)."""
    result: list[list[pem.AbstractPEMObject]] = []
    store.get(key).addCallback(result.append)
    return result[0]


@implementer(ICertificateStore)
class PlainStore:
    """
    An ICertificateStore with only the interface's methods (no summaries),
    as a third-party store would be; it can fail its next reads.
    """

    def __init__(self) -> None:
        self.entries: dict[str, list[pem.AbstractPEMObject]] = {}
        self.failures = 0
        self.reads = 0

    def get(self, server_name: str) -> Deferred[list[pem.AbstractPEMObject]]:
        if server_name not in self.entries:
            return fail(KeyError(server_name))
        return succeed(list(self.entries[server_name]))

    def store(
        self, server_name: str, pem_objects: Iterable[pem.AbstractPEMObject]
    ) -> Deferred[None]:
        self.entries[server_name] = list(pem_objects)
        return succeed(None)

    def as_dict(self) -> Deferred[dict[str, list[pem.AbstractPEMObject]]]:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            return fail(OSError("the store is unreachable"))
        return succeed(dict(self.entries))


class ServiceTestCase(TestCase):
    """
    A clock at :data:`NOW`, a :class:`FakeClient` on it, a recording
    responder, and a way to build services that are stopped after the test.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.fake = FakeClient(EC_KEY, self.clock)
        self.responder = RecordingResponder()
        self.panics: list[tuple[Failure, str]] = []
        self.created = 0

    def client_creator(self) -> Deferred[IssuingClient]:
        self.created += 1
        return succeed(self.fake)

    def record_panic(self, failure: Failure, server_name: str) -> None:
        self.panics.append((failure, server_name))

    def make_service(
        self, store: Any = None, **arguments: Any
    ) -> tuple[AcmeIssuingService, MemoryStore]:
        """A service on ``store`` (a new MemoryStore by default)."""
        if store is None:
            store = MemoryStore()
        arguments.setdefault("client_creator", self.client_creator)
        arguments.setdefault("responders", [self.responder])
        arguments.setdefault("panic", self.record_panic)
        arguments.setdefault("random", Random(5))
        # P-256 keys are made in microseconds, RSA-2048 (the default) in
        # tens of milliseconds: tests of the default ask for it.
        if "generate_key" not in arguments:
            arguments.setdefault("key_type", "p256")
        service = AcmeIssuingService(
            cert_store=store, clock=self.clock, email="admin@example.com", **arguments
        )
        self.addCleanup(self.stop, service)
        return service, store

    def stop(self, service: AcmeIssuingService) -> None:
        if service.running:
            service.stopService()

    def order_names(self) -> list[tuple[str, ...]]:
        return [order.names for order in self.fake.orders]


class IssueOnStartTests(ServiceTestCase):
    """Starting the service issues what the store lacks."""

    def test_missing_certificates_issued(self) -> None:
        """
        Every entry without a certificate gets one at start (key, leaf and
        issuer chain, the leaf for the entry's name), after registering
        with the e-mail address and agreeing to the terms; then
        ``when_certs_valid`` fires.  The fake CA validates at once, so this
        happens without the clock moving, as with txacme 0.9's fake.
        """
        service, store = self.make_service(
            MemoryStore({"a.example": [], "b.example": []})
        )
        ready = service.when_certs_valid()
        self.assertNoResult(ready)
        service.startService()
        self.successResultOf(ready)
        self.assertTrue(service.ready)
        self.assertEqual(sorted(self.order_names()), [("a.example",), ("b.example",)])
        for name in ("a.example", "b.example"):
            objects = stored(store, name)
            self.assertEqual(
                [type(obj) for obj in objects],
                [pem.ECPrivateKey, pem.Certificate, pem.Certificate],
            )
            leaf = leaf_of(objects)
            leaf.verify_directly_issued_by(self.fake.ca_certificate)
            self.assertEqual(entry_summary(store, name).names, (name,))
            key = serialization.load_pem_private_key(objects[0].as_bytes(), None)
            self.assertEqual(key.public_key(), leaf.public_key())
        [registration] = self.fake.registrations
        self.assertEqual(registration.emails, ("admin@example.com",))
        self.assertTrue(registration.terms_of_service_agreed)
        self.assertEqual(self.responder.started, self.responder.stopped)
        self.assertEqual(len(self.responder.started), 2)

    def test_default_key_is_rsa_2048_traditional(self) -> None:
        """
        New certificates get RSA-2048 keys by default, stored as txacme 0.9
        stored them: the traditional OpenSSL format (``BEGIN RSA PRIVATE
        KEY``), which applications look for.
        """
        service, store = self.make_service(
            MemoryStore({"a.example": []}), key_type="rsa"
        )
        service.startService()
        [key_object] = [
            obj for obj in stored(store, "a.example") if isinstance(obj, pem.Key)
        ]
        self.assertIsInstance(key_object, pem.RSAPrivateKey)
        self.assertTrue(
            key_object.as_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
        )
        key = serialization.load_pem_private_key(key_object.as_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.assertEqual(key.key_size, 2048)

    def test_key_type_p256(self) -> None:
        """
        ``key_type="p256"`` gives ECDSA P-256 keys, stored in their
        traditional format (``BEGIN EC PRIVATE KEY``).
        """
        service, store = self.make_service(
            MemoryStore({"a.example": []}), key_type="p256"
        )
        service.startService()
        key_object = stored(store, "a.example")[0]
        self.assertTrue(
            key_object.as_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
        )
        key = serialization.load_pem_private_key(key_object.as_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.assertEqual(key.curve.name, "secp256r1")

    def test_generated_key_kept_in_its_traditional_format(self) -> None:
        """
        A key from ``generate_key`` is stored in the traditional format of
        its type; a type without one (Ed25519) in PKCS#8.
        """
        for generate, marker in [
            (lambda: ec.generate_private_key(ec.SECP384R1()), b"EC PRIVATE KEY"),
            (
                lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
                b"RSA PRIVATE KEY",
            ),
        ]:
            self.fake = FakeClient(EC_KEY, self.clock)
            service, store = self.make_service(
                MemoryStore({"a.example": []}), generate_key=generate
            )
            service.startService()
            self.assertIn(
                b"-----BEGIN " + marker, stored(store, "a.example")[0].as_bytes()
            )
            self.successResultOf(service.stopService())
        self.assertEqual(
            key_object(ed25519.Ed25519PrivateKey.generate()).as_bytes()[:27],  # type: ignore[arg-type]
            b"-----BEGIN PRIVATE KEY-----",
        )

    def test_unknown_key_type(self) -> None:
        """An unknown ``key_type`` is refused at once."""
        with self.assertRaises(ValueError):
            self.make_service(key_type="dsa")

    def test_generate_key(self) -> None:
        """
        ``generate_key`` makes each certificate's key; with a ``Clock`` it
        is called synchronously, on the calling thread.
        """
        keys: list[Any] = []

        def generate() -> Any:
            key = generate_private_key("p384")
            keys.append(key)
            return key

        service, store = self.make_service(
            MemoryStore({"a.example": []}), generate_key=generate
        )
        service.startService()
        self.assertEqual(len(keys), 1)
        pump(self.clock, 1)
        self.assertEqual(
            leaf_of(stored(store, "a.example")).public_key(), keys[0].public_key()
        )

    def test_valid_certificates_left_alone(self) -> None:
        """
        Entries with certificates far from renewal are not reissued; the
        service is ready at once, and asks for no client.
        """
        store = MemoryStore({"a.example": make_bundle(["a.example"], NOW)})
        service, _ = self.make_service(store)
        service.startService()
        self.successResultOf(service.when_certs_valid())
        pump(self.clock, 10 * DAY)
        self.assertEqual(self.fake.orders, [])

    def test_expired_certificate_reissued(self) -> None:
        """An expired certificate is reissued at start."""
        store = MemoryStore({"a.example": make_bundle(["a.example"], NOW - 100 * DAY)})
        service, _ = self.make_service(store)
        service.startService()
        pump(self.clock, 1)
        self.successResultOf(service.when_certs_valid())
        self.assertEqual(self.order_names(), [("a.example",)])
        self.assertTrue(
            entry_summary(store, "a.example").not_after.timestamp() > NOW + 80 * DAY
        )

    def test_names_argument(self) -> None:
        """
        An entry named in ``names`` is issued even though the store lacks
        it; one whose certificate lacks a name asked for is reissued with
        all of them, the first name staying the key.
        """
        store = MemoryStore({"a.example": make_bundle(["a.example"], NOW)})
        service, _ = self.make_service(
            store, names=["a.example,www.a.example", "c.example"]
        )
        service.startService()
        pump(self.clock, 1)
        self.successResultOf(service.when_certs_valid())
        self.assertEqual(
            sorted(self.order_names()),
            [("a.example", "www.a.example"), ("c.example",)],
        )
        self.assertEqual(
            entry_summary(store, "a.example").names, ("a.example", "www.a.example")
        )

    def test_plain_store(self) -> None:
        """
        A store with only the ICertificateStore methods (no summaries)
        works: the service summarizes ``as_dict`` itself.
        """
        store = PlainStore()
        store.entries["a.example"] = []
        service, _ = self.make_service(store)
        service.startService()
        pump(self.clock, 1)
        self.successResultOf(service.when_certs_valid())
        self.assertEqual(leaf_of(store.entries["a.example"]).serial_number > 0, True)

    def test_store_failure_retried(self) -> None:
        """
        When the store cannot be read, the service is not ready, logs the
        failure, and reads it again after the first backoff delay, not a
        whole check interval later.
        """
        store = PlainStore()
        store.entries["a.example"] = []
        store.failures = 1
        service, _ = self.make_service(
            store, backoff=Backoff(first_delay=timedelta(minutes=5))
        )
        service.startService()
        ready = service.when_certs_valid()
        pump(self.clock, 299)
        self.assertNoResult(ready)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        pump(self.clock, 2)
        self.assertEqual(store.reads, 2)
        pump(self.clock, 1)
        self.successResultOf(ready)

    def test_client_created_once(self) -> None:
        """
        One client serves all issuances, and it is registered once; the
        service closes it when it stops.
        """
        service, _ = self.make_service(
            MemoryStore({"a.example": [], "b.example": [], "c.example": []})
        )
        service.startService()
        pump(self.clock, 1)
        self.assertEqual(self.created, 1)
        self.assertEqual(len(self.fake.registrations), 1)
        self.successResultOf(service.stopService())
        self.assertEqual(self.fake.closed, 1)

    def test_client_creation_failure_retried(self) -> None:
        """
        If the client cannot be created (at start, for registering), the
        failure is logged, the issuance fails and is retried with backoff,
        creating the client anew.
        """
        outcomes: list[Deferred[IssuingClient]] = [
            fail(ConnectionRefusedError("no CA")),
            fail(ConnectionRefusedError("no CA")),
            succeed(self.fake),
        ]
        service, store = self.make_service(
            MemoryStore({"a.example": []}),
            client_creator=lambda: outcomes.pop(0),
            backoff=Backoff(first_delay=timedelta(minutes=1), jitter=0.0),
        )
        service.startService()
        self.successResultOf(service.when_certs_valid())
        self.assertEqual(len(self.flushLoggedErrors(ConnectionRefusedError)), 1)
        self.assertEqual(stored(store, "a.example"), [])
        pump(self.clock, 61)
        self.assertEqual(self.order_names(), [("a.example",)])
        self.assertEqual(entry_summary(store, "a.example").names, ("a.example",))

    def test_logs_hold_no_key(self) -> None:
        """
        Nothing the service logs while issuing contains a private key.
        """
        events: list[LogEvent] = []
        observer = implementer(ILogObserver)(lambda event: events.append(event))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service, store = self.make_service(MemoryStore({"a.example": []}))
        service.startService()
        pump(self.clock, 1)
        key_pem = stored(store, "a.example")[0].as_bytes().decode("ascii")
        service_events = [
            event for event in events if event.get("log_namespace") == "txacme.service"
        ]
        self.assertTrue(service_events)
        text = "\n".join(f"{formatEvent(event)} {event!r}" for event in service_events)
        self.assertNotIn("PRIVATE KEY", text)
        self.assertNotIn(key_pem.splitlines()[1], text)


class SlowStore(MemoryStore):
    """A MemoryStore whose summaries can be held back, as a slow disk."""

    def __init__(self, certs: dict[str, list[pem.AbstractPEMObject]]) -> None:
        super().__init__(certs)
        self.hold = False
        self.held: list[tuple[Deferred[Any], dict[str, Any]]] = []

    def summaries(self) -> Deferred[dict[str, CertificateSummary | None]]:
        if not self.hold:
            return super().summaries()
        snapshot = self.successful(super().summaries())
        waiting: Deferred[dict[str, CertificateSummary | None]] = Deferred()
        self.held.append((waiting, snapshot))
        return waiting

    @staticmethod
    def successful(deferred: Deferred[Any]) -> Any:
        results: list[Any] = []
        deferred.addCallback(results.append)
        return results[0]


class StoreRaceTests(ServiceTestCase):
    """What the service stored is newer than a store read begun before."""

    def test_stale_read_ignored(self) -> None:
        """
        A check whose (slow) read of the store began before an issuance
        stored its certificate does not take the entry for missing and
        issue it again.
        """
        store = SlowStore({"a.example": []})
        service, _ = self.make_service(store, check_interval=timedelta(hours=1))
        store.hold = True
        service.startService()
        [(first_read, snapshot)] = store.held
        issued = service.issue_cert("a.example")
        pump(self.clock, 1)
        self.successResultOf(issued)
        first_read.callback(snapshot)
        pump(self.clock, 10)
        self.assertEqual(len(self.fake.orders), 1)
        self.assertTrue(service.ready)


class RenewalTimingTests(ServiceTestCase):
    """Certificates are renewed when the time comes, not before."""

    def test_third_of_lifetime(self) -> None:
        """
        By default a certificate is renewed when a third of its lifetime
        remains (day 60 of 90), naming the one it replaces.
        """
        service, store = self.make_service(MemoryStore({"a.example": []}))
        service.startService()
        pump(self.clock, 1)
        first = leaf_of(stored(store, "a.example"))
        pump(self.clock, 60 * DAY - 10)
        self.assertEqual(len(self.fake.orders), 1)
        pump(self.clock, 20)
        self.assertEqual(len(self.fake.orders), 2)
        self.assertEqual(self.fake.orders[1].replaces, renewal_certificate_id(first))
        second = leaf_of(stored(store, "a.example"))
        self.assertNotEqual(second.serial_number, first.serial_number)

    def test_six_day_certificates(self) -> None:
        """
        Six-day certificates are renewed with two days left (a third), at
        that moment even though checks are a day apart; the store never
        holds one that expires within a day.
        """
        self.fake.certificate_lifetime = timedelta(days=6)
        service, store = self.make_service(MemoryStore({"a.example": []}))
        service.startService()
        issued_at: list[float] = []
        for _ in range(int(20 * DAY / HOUR)):
            pump(self.clock, HOUR)
            summary = entry_summary(store, "a.example")
            self.assertTrue(summary.not_after.timestamp() - self.clock.seconds() > DAY)
            if not issued_at or summary.not_before.timestamp() != issued_at[-1]:
                issued_at.append(summary.not_before.timestamp())
        gaps = [later - earlier for earlier, later in pairwise(issued_at)]
        self.assertTrue(gaps)
        for gap in gaps:
            self.assertAlmostEqual(gap / DAY, 4.0, places=2)

    def test_explicit_reissue_interval(self) -> None:
        """
        An explicit ``reissue_interval`` keeps txacme 0.9's meaning: renew
        when the certificate expires within it.
        """
        service, _ = self.make_service(
            MemoryStore({"a.example": []}), reissue_interval=timedelta(days=10)
        )
        service.startService()
        pump(self.clock, 80 * DAY - 10)
        self.assertEqual(len(self.fake.orders), 1)
        pump(self.clock, 20)
        self.assertEqual(len(self.fake.orders), 2)

    def test_reissue_interval_longer_than_lifetime(self) -> None:
        """
        A ``reissue_interval`` as long as the certificate's lifetime does
        not make every check reissue it: the default (a third) is used.
        """
        self.fake.certificate_lifetime = timedelta(days=6)
        service, _ = self.make_service(
            MemoryStore({"a.example": []}), reissue_interval=timedelta(days=30)
        )
        service.startService()
        pump(self.clock, 4 * DAY - 10)
        self.assertEqual(len(self.fake.orders), 1)
        pump(self.clock, 20)
        self.assertEqual(len(self.fake.orders), 2)

    def test_existing_certificate_due(self) -> None:
        """
        A stored certificate already inside its renewal period is renewed
        at start (not gating readiness), with ``replaces`` naming it.
        """
        bundle = make_bundle(["a.example"], NOW - 70 * DAY)
        store = MemoryStore({"a.example": bundle})
        service, _ = self.make_service(store)
        service.startService()
        self.successResultOf(service.when_certs_valid())
        pump(self.clock, 1)
        [order] = self.fake.orders
        self.assertEqual(order.replaces, renewal_certificate_id(leaf_of(bundle)))

    def test_fake_ari_window(self) -> None:
        """
        With a CA offering renewal information, the renewal happens inside
        the window it suggests, even long before a third of the lifetime
        remains.
        """
        self.fake.offer_renewal_info = True
        service, store = self.make_service(MemoryStore({"a.example": []}))
        service.startService()
        pump(self.clock, 1)
        serial = leaf_of(stored(store, "a.example")).serial_number
        start = datetime.fromtimestamp(NOW + 10 * DAY, UTC)
        self.fake.renewal_windows[serial] = (start, start + timedelta(days=1))
        pump(self.clock, 10 * DAY - 10)
        self.assertEqual(len(self.fake.orders), 1)
        pump(self.clock, 1 * DAY)
        self.assertEqual(len(self.fake.orders), 2)
        renewed = entry_summary(store, "a.example").not_before.timestamp()
        self.assertTrue(NOW + 10 * DAY <= renewed <= NOW + 11 * DAY)


class DriftingClock(Clock):
    """
    A Clock that moves on by :attr:`drift` seconds whenever it is read, as
    a real clock does while the service works through a large store, and
    records the callables it is given to call later.
    """

    def __init__(self) -> None:
        super().__init__()
        self.drift = 0.0
        self.scheduled: list[Callable[..., Any]] = []

    def seconds(self) -> float:
        self.rightNow += self.drift
        return self.rightNow

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> Any:
        self.scheduled.append(callable)
        return super().callLater(delay, callable, *args, **kw)


class WakeUpTests(ServiceTestCase):
    """The timer that wakes the service up between checks."""

    def test_armed_once_per_check(self) -> None:
        """
        A check that schedules many entries (each for its next renewal
        information question) arms the wake-up at most once, even when the
        clock moves on while it works: not once per entry.
        """
        clock = self.clock = DriftingClock()
        clock.advance(NOW)
        clock.drift = 0.001
        self.fake = FakeClient(EC_KEY, clock, offer_renewal_info=True)
        names = [f"e{index}.example" for index in range(40)]
        store = MemoryStore({name: make_bundle([name], NOW - DAY) for name in names})
        service, _ = self.make_service(store)
        service.startService()
        pump(clock, 1)
        self.assertEqual(len(service._heap), len(names))
        clock.scheduled.clear()
        self.successResultOf(service.check())
        self.assertEqual(len(service._heap), len(names))
        wakeups = [call for call in clock.scheduled if call == service._wake]
        self.assertTrue(len(wakeups) <= 1, f"armed {len(wakeups)} times")
        self.assertEqual(self.fake.orders, [])


class FailureTests(ServiceTestCase):
    """Failures are retried with backoff, and panic is called sparingly."""

    def test_exponential_backoff(self) -> None:
        """
        Failed issuances are retried after exponentially growing delays;
        the service is ready after its first check all the same.
        """
        self.fake.controller.fail_next(count=3)
        service, store = self.make_service(
            MemoryStore({"a.example": []}),
            backoff=Backoff(
                first_delay=timedelta(minutes=10),
                max_delay=timedelta(hours=1),
                jitter=0.0,
            ),
        )
        service.startService()
        pump(self.clock, 1)
        self.successResultOf(service.when_certs_valid())
        attempted_at = [NOW]
        while len(attempted_at) < 4 and self.clock.seconds() < NOW + DAY:
            pump(self.clock, 1)
            if len(self.fake.finalizations) > len(attempted_at):
                attempted_at.append(self.clock.seconds())
        # Each attempt fails at once (the fake CA validates at once), then
        # waits 10, 20 and 40 minutes; each goes on with the order the
        # failed attempt recorded (the failure might have been a lost answer).
        self.assertEqual(
            [round(later - earlier) for earlier, later in pairwise(attempted_at)],
            [600, 1200, 2400],
        )
        pump(self.clock, 1)
        self.assertEqual(entry_summary(store, "a.example").names, ("a.example",))

    def test_backoff_bounded_by_check_interval(self) -> None:
        """
        However long the backoff has grown, a failed entry is retried
        within one check interval.
        """
        self.fake.controller.fail_next(count=1000)
        service, _ = self.make_service(
            MemoryStore({"a.example": []}),
            check_interval=timedelta(hours=2),
            backoff=Backoff(
                first_delay=timedelta(hours=1), max_delay=timedelta(days=7)
            ),
        )
        service.startService()
        pump(self.clock, 1)
        for _ in range(10):
            before = len(self.fake.finalizations)
            pump(self.clock, 2 * HOUR + 2)
            self.assertTrue(len(self.fake.finalizations) > before)

    def test_retry_after_honoured(self) -> None:
        """
        A CA's ``Retry-After`` longer than the backoff delays the retry.
        """
        self.fake.controller.fail_next(
            ServerError(
                messages.Error.with_code("rateLimited", detail="slow down"),
                None,
                retry_after=7200.0,
            )
        )
        service, _ = self.make_service(
            MemoryStore({"a.example": []}),
            backoff=Backoff(first_delay=timedelta(minutes=1)),
        )
        service.startService()
        pump(self.clock, 7199)
        self.assertEqual(len(self.fake.finalizations), 1)
        pump(self.clock, 3)
        self.assertEqual(len(self.fake.finalizations), 2)

    def test_panic_once_per_check_interval(self) -> None:
        """
        When renewal keeps failing for a certificate inside the panic
        interval, ``panic`` is called with the failure and the name once,
        not on every retry; and again a check interval later.
        """
        store = MemoryStore({"a.example": make_bundle(["a.example"], NOW - 80 * DAY)})
        self.fake.controller.fail_next(count=10_000)
        service, _ = self.make_service(
            store, backoff=Backoff(first_delay=timedelta(minutes=5), jitter=0.0)
        )
        service.startService()
        pump(self.clock, 6 * HOUR)
        self.assertTrue(len(self.fake.finalizations) > 3)
        [(failure, name)] = self.panics
        self.assertEqual(name, "a.example")
        self.assertIsInstance(failure.value, ServerError)
        pump(self.clock, DAY)
        self.assertEqual(len(self.panics), 2)

    def test_no_panic_outside_panic_interval(self) -> None:
        """
        Failing renewals of a certificate with more than the panic interval
        left are retried without panicking.
        """
        store = MemoryStore({"a.example": make_bundle(["a.example"], NOW - 65 * DAY)})
        self.fake.controller.fail_next(count=10_000)
        service, _ = self.make_service(store)
        service.startService()
        pump(self.clock, 5 * DAY)
        self.assertTrue(len(self.fake.finalizations) > 5)
        self.assertEqual(self.panics, [])
        # Each failure is logged as an error, as in txacme 0.9.
        self.assertEqual(
            len(self.flushLoggedErrors(ServerError)), len(self.fake.finalizations)
        )
        pump(self.clock, 6 * DAY)
        self.assertEqual(len(self.panics), 1)
        self.flushLoggedErrors(ServerError)

    def test_missing_certificate_failure_panics(self) -> None:
        """
        An entry without a certificate that cannot be issued is a panic,
        as in txacme 0.9; the default panic logs the failure critically.
        """
        self.fake.controller.fail_next()
        service, _ = self.make_service(MemoryStore({"a.example": []}), panic=None)
        service.startService()
        pump(self.clock, 1)
        self.assertEqual(len(self.flushLoggedErrors(ServerError)), 1)

    def test_panic_callback_failure_logged(self) -> None:
        """A panic callback that raises is logged; the service goes on."""

        def broken(failure: Failure, server_name: str) -> None:
            raise RuntimeError("broken panic")

        self.fake.controller.fail_next()
        service, store = self.make_service(
            MemoryStore({"a.example": []}),
            panic=broken,
            backoff=Backoff(first_delay=timedelta(minutes=1), jitter=0.0),
        )
        service.startService()
        pump(self.clock, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        pump(self.clock, 61)
        self.assertEqual(entry_summary(store, "a.example").names, ("a.example",))


class IssueCertTests(ServiceTestCase):
    """``issue_cert`` issues now, sharing what is in flight."""

    def test_issue_cert(self) -> None:
        """
        ``issue_cert`` issues a certificate now, also for an entry that is
        not in the store, and fires once it is stored.
        """
        service, store = self.make_service()
        service.startService()
        self.fake.controller.pause()
        issued = service.issue_cert("new.example")
        self.assertNoResult(issued)
        self.fake.controller.resume()
        self.assertIs(self.successResultOf(issued), None)
        self.assertEqual(entry_summary(store, "new.example").names, ("new.example",))

    def test_shared_with_renewal(self) -> None:
        """
        ``issue_cert`` while a renewal of the same entry is in flight waits
        for that renewal rather than starting a second issuance.
        """
        service, _ = self.make_service(MemoryStore({"a.example": []}))
        service.startService()
        pump(self.clock, 1)
        self.fake.controller.pause()
        pump(self.clock, 60 * DAY + 1)
        self.assertEqual(self.fake.controller.count(), 1)
        first = service.issue_cert("a.example")
        second = service.issue_cert("A.example.")
        pump(self.clock, 10)
        self.assertEqual(self.fake.controller.count(), 1)
        self.assertNoResult(first)
        self.fake.controller.resume()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(len(self.fake.orders), 2)

    def test_cancel_cancels_for_every_caller(self) -> None:
        """
        Cancelling one caller's Deferred cancels the shared issuance, as in
        txacme 0.9: every caller gets ``CancelledError`` and nothing is
        stored.
        """
        service, store = self.make_service()
        service.startService()
        self.fake.controller.pause()
        first = service.issue_cert("a.example")
        second = service.issue_cert("a.example")
        self.assertEqual(self.fake.controller.count(), 1)
        second.cancel()
        self.failureResultOf(first, CancelledError)
        self.failureResultOf(second, CancelledError)
        self.assertEqual(self.fake.controller.count(), 0)
        self.fake.controller.resume()
        self.assertEqual(self.fake.certificates, [])
        self.failureResultOf(store.get("a.example"), KeyError)
        self.assertEqual(self.panics, [])

    def test_cancel_does_not_end_renewals(self) -> None:
        """
        Cancelling ``issue_cert`` for an entry the service renews cancels
        that issuance only: the service retries it after a backoff delay,
        and goes on with the other entries.
        """
        service, store = self.make_service(
            MemoryStore({"a.example": [], "b.example": []}),
            backoff=Backoff(first_delay=timedelta(minutes=5), jitter=0.0),
        )
        self.fake.controller.pause()
        service.startService()
        self.assertEqual(self.fake.controller.count(), 2)
        cancelled = service.issue_cert("a.example")
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        self.assertEqual(self.fake.controller.count(), 1)
        self.fake.controller.resume()
        self.assertEqual(entry_summary(store, "b.example").names, ("b.example",))
        self.assertEqual(stored(store, "a.example"), [])
        pump(self.clock, 299)
        self.assertEqual(stored(store, "a.example"), [])
        pump(self.clock, 2)
        self.assertEqual(entry_summary(store, "a.example").names, ("a.example",))

    def test_cancel_only_caller(self) -> None:
        """
        Cancelling the only caller's Deferred cancels the issuance; its
        responders are stopped.
        """
        service, _ = self.make_service()
        self.fake.policy = PollingPolicy()  # Poll a while after answering.
        issued = service.issue_cert("a.example")
        self.assertEqual(self.responder.started, ["a.example"])
        issued.cancel()
        self.failureResultOf(issued, CancelledError)
        self.assertEqual(self.responder.stopped, ["a.example"])
        pump(self.clock, 10)
        self.assertEqual(self.fake.certificates, [])
        self.assertEqual(self.panics, [])

    def test_more_names_while_in_flight(self) -> None:
        """
        Asking for more names while an issuance of the entry is in flight
        issues again with all of them once it has finished: never two at
        once.
        """
        service, store = self.make_service()
        self.fake.controller.pause()
        first = service.issue_cert("a.example")
        pump(self.clock, 1)
        second = service.issue_cert(["a.example", "b.example"])
        self.assertEqual(len(self.fake.orders), 1)
        self.fake.controller.resume()
        self.successResultOf(first)
        self.assertEqual(len(self.fake.orders), 2)
        pump(self.clock, 1)
        self.successResultOf(second)
        self.assertEqual(
            self.order_names(), [("a.example",), ("a.example", "b.example")]
        )
        self.assertEqual(
            entry_summary(store, "a.example").names, ("a.example", "b.example")
        )

    def test_failure_reaches_caller(self) -> None:
        """
        For a name the service does not keep (not in the store, not in
        ``names``), an issuance's failure reaches ``issue_cert``'s caller
        and nothing more, as in txacme 0.9: no panic, no retry of its own.
        """
        service, _ = self.make_service()
        service.startService()
        self.fake.controller.fail_next()
        issued = service.issue_cert("a.example")
        self.failureResultOf(issued, ServerError)
        self.assertEqual(self.panics, [])
        pump(self.clock, 3 * DAY)
        self.assertEqual(len(self.fake.orders), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_failure_of_kept_entry_retried(self) -> None:
        """
        For an entry the service keeps, a failed ``issue_cert`` also
        reaches the caller, and the service retries it after a backoff
        delay.
        """
        service, store = self.make_service(
            names=["a.example"],
            backoff=Backoff(first_delay=timedelta(minutes=5), jitter=0.0),
        )
        service.startService()
        self.fake.controller.fail_next()
        issued = service.issue_cert("a.example")
        self.failureResultOf(issued, ServerError)
        self.assertEqual(len(self.flushLoggedErrors(ServerError)), 1)
        pump(self.clock, 301)
        self.assertEqual(entry_summary(store, "a.example").names, ("a.example",))

    def test_bad_names(self) -> None:
        """Empty names and names that could escape a directory are refused."""
        service, _ = self.make_service()
        bad_names: list[str | list[str]] = [
            "",
            "a.example,,b.example",
            "../etc",
            ".hidden",
            [],
        ]
        for bad in bad_names:
            self.failureResultOf(service.issue_cert(bad), ValueError)


class MultiNameTests(ServiceTestCase):
    """Entries with several names (subjectAltName)."""

    def test_comma_separated(self) -> None:
        """
        ``issue_cert("a,b")`` stores one certificate for both names under
        the first; its renewal keeps both.
        """
        service, store = self.make_service()
        service.startService()
        issued = service.issue_cert("a.example, b.example")
        pump(self.clock, 1)
        self.successResultOf(issued)
        self.assertEqual(sorted(store._store), ["a.example"])
        self.assertEqual(
            entry_summary(store, "a.example").names, ("a.example", "b.example")
        )
        pump(self.clock, 61 * DAY)
        self.assertEqual(
            self.order_names(), [("a.example", "b.example"), ("a.example", "b.example")]
        )

    def test_names_from_certificate(self) -> None:
        """
        An entry stored with a multi-name certificate is renewed with the
        same names, its key first.
        """
        store = MemoryStore(
            {
                "b.example": make_bundle(
                    ["a.example", "b.example", "c.example"], NOW - 61 * DAY
                )
            }
        )
        service, _ = self.make_service(store)
        service.startService()
        pump(self.clock, 1)
        self.assertEqual(self.order_names(), [("b.example", "a.example", "c.example")])

    def test_parse_server_names(self) -> None:
        """
        Names are split on commas, trimmed, lower-cased, stripped of a
        trailing dot, IP addresses canonical, repeats dropped.
        """
        self.assertEqual(
            parse_server_names(" Example.COM., www.example.com,example.com"),
            ("example.com", "www.example.com"),
        )
        self.assertEqual(
            parse_server_names(["2001:DB8::0:1", "*.Example.com"]),
            ("2001:db8::1", "*.example.com"),
        )
        bad_names: list[str | list[str]] = ["", ",", "a,,b", []]
        for bad in bad_names:
            self.assertRaises(ValueError, parse_server_names, bad)


class ConcurrencyTests(ServiceTestCase):
    """At most ``max_concurrent`` issuances run at once."""

    def test_bound(self) -> None:
        """
        With ten entries to issue and issuance held back, only
        ``max_concurrent`` reach the CA at a time; all finish.
        """
        names = [f"n{index}.example" for index in range(10)]
        store = MemoryStore({name: [] for name in names})
        self.fake.controller.pause()
        service, _ = self.make_service(store, max_concurrent=3)
        service.startService()
        ready = service.when_certs_valid()
        pump(self.clock, 5)
        self.assertEqual(self.fake.controller.count(), 3)
        self.assertEqual(len(self.fake.orders), 3)
        highest = 0
        while self.fake.controller.count():
            highest = max(highest, self.fake.controller.count())
            self.fake.controller.release(1)
            pump(self.clock, 1)
        self.assertEqual(highest, 3)
        self.successResultOf(ready)
        self.assertEqual(self.fake.controller.issued, 10)

    def test_default_bound(self) -> None:
        """The default bound is four."""
        store = MemoryStore({f"n{index}.example": [] for index in range(6)})
        self.fake.controller.pause()
        service, _ = self.make_service(store)
        service.startService()
        pump(self.clock, 5)
        self.assertEqual(self.fake.controller.count(), 4)


class StopTests(ServiceTestCase):
    """Stopping cancels what is in flight and cleans up."""

    def test_stop_mid_issuance(self) -> None:
        """
        Stopping while a challenge is being validated cancels the issuance
        (its caller sees CancelledError), stops the responder, closes the
        client, and nothing happens afterwards.
        """
        service, store = self.make_service(MemoryStore({"a.example": []}))
        self.fake.policy = PollingPolicy()  # Poll a while after answering.
        service.startService()
        issued = service.issue_cert("a.example")
        self.assertEqual(self.responder.started, ["a.example"])
        self.assertEqual(self.responder.stopped, [])
        stopped = service.stopService()
        self.successResultOf(stopped)
        self.failureResultOf(issued, CancelledError)
        self.assertEqual(self.responder.stopped, ["a.example"])
        self.assertEqual(self.fake.closed, 1)
        self.assertFalse(service.ready)
        pump(self.clock, 100 * DAY)
        self.assertEqual(self.fake.certificates, [])
        self.assertEqual(stored(store, "a.example"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_while_held_back(self) -> None:
        """Stopping cancels issuances waiting at the CA."""
        store = MemoryStore({f"n{index}.example": [] for index in range(6)})
        self.fake.controller.pause()
        service, _ = self.make_service(store)
        service.startService()
        pump(self.clock, 5)
        self.successResultOf(service.stopService())
        self.assertEqual(self.fake.controller.count(), 0)
        self.assertEqual(self.responder.started, self.responder.stopped)

    def test_restart(self) -> None:
        """
        A stopped service can be started again: it checks the store anew
        and is ready again.
        """
        service, store = self.make_service(MemoryStore({"a.example": []}))
        service.startService()
        pump(self.clock, 1)
        self.successResultOf(service.stopService())
        waiting = service.when_certs_valid()
        self.assertNoResult(waiting)
        store.store("b.example", [])
        service.startService()
        pump(self.clock, 1)
        self.successResultOf(waiting)
        self.assertEqual(sorted(self.order_names()), [("a.example",), ("b.example",)])
        self.assertEqual(self.created, 2)

    def test_cancel_when_certs_valid(self) -> None:
        """A ``when_certs_valid`` Deferred can be cancelled."""
        service, _ = self.make_service(MemoryStore({"a.example": []}))
        waiting = service.when_certs_valid()
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        service.startService()
        pump(self.clock, 1)
        self.assertTrue(service.ready)


class FakeThreadPool:
    """Runs work at once, recording it."""

    def __init__(self) -> None:
        self.calls: list[Callable[..., object]] = []

    def callInThreadWithCallback(
        self,
        on_result: Callable[[bool, object], None],
        function: Callable[..., object],
        *arguments: object,
    ) -> None:
        self.calls.append(function)
        try:
            result = function(*arguments)
        except BaseException:
            on_result(False, Failure())  # type: ignore[no-untyped-call]
        else:
            on_result(True, result)


@implementer(IReactorThreads)
class ThreadedClock(Clock):
    """A Clock that is also a reactor with a thread pool."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = FakeThreadPool()

    def getThreadPool(self) -> Any:
        return self.pool

    def callInThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        raise AssertionError("not used")

    def callFromThread(
        self, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        callable(*args, **kwargs)

    def suggestThreadPoolSize(self, size: int) -> None:
        pass


class KeyThreadTests(ServiceTestCase):
    """Keys are generated off the reactor thread with a real reactor."""

    def test_thread_pool(self) -> None:
        """
        With a clock that is a reactor with threads, ``generate_key`` runs
        in its thread pool.
        """
        self.clock = ThreadedClock()
        self.clock.advance(NOW)
        self.fake = FakeClient(EC_KEY, self.clock)
        calls: list[int] = []

        def generate() -> Any:
            calls.append(1)
            return generate_private_key("p256")

        service, store = self.make_service(
            MemoryStore({"a.example": []}), generate_key=generate
        )
        service.startService()
        pump(self.clock, 1)
        self.assertEqual(self.clock.pool.calls, [generate])
        self.assertEqual(calls, [1])
        self.assertEqual(entry_summary(store, "a.example").names, ("a.example",))


class BackoffTests(TestCase):
    """Tests for :class:`Backoff`."""

    def test_growth_and_ceiling(self) -> None:
        """Without jitter, delays double up to the ceiling."""
        backoff = Backoff(
            first_delay=timedelta(minutes=1),
            max_delay=timedelta(minutes=5),
            jitter=0.0,
        )
        self.assertEqual(
            [backoff.delay(n, Random(0)) for n in range(1, 6)],
            [60.0, 120.0, 240.0, 300.0, 300.0],
        )
        self.assertEqual(backoff.delay(10_000, Random(0)), 300.0)

    def test_jitter(self) -> None:
        """Jitter shortens a delay by at most its fraction, and varies."""
        backoff = Backoff(first_delay=timedelta(seconds=100), jitter=0.5)
        random = Random(1)
        delays = [backoff.delay(1, random) for _ in range(200)]
        self.assertTrue(all(50.0 <= delay <= 100.0 for delay in delays))
        self.assertTrue(len(set(delays)) > 100)

    def test_validation(self) -> None:
        """A jitter of 1 or more, or a factor below 1, is refused."""
        self.assertRaises(ValueError, Backoff, jitter=1.0)
        self.assertRaises(ValueError, Backoff, factor=0.5)

    def test_service_arguments(self) -> None:
        """Non-positive intervals and bounds are refused."""
        store = MemoryStore()
        clock = Clock()
        for arguments in (
            {"check_interval": timedelta(0)},
            {"reissue_interval": timedelta(days=-1)},
            {"panic_interval": timedelta(0)},
            {"max_concurrent": 0},
        ):
            self.assertRaises(
                ValueError,
                AcmeIssuingService,
                store,
                lambda: succeed(None),
                clock,
                [],
                **arguments,
            )


class MemoryServerServiceTests(AcmeTestCase):
    """
    The service with the real client, exchanging RFC 8555 messages with
    the in-memory server (which validates every challenge), answered by a
    :class:`NullResponder`.
    """

    def setUp(self) -> None:
        super().setUp()
        self.panics: list[str] = []
        self.responders: list[IResponder] = [NullResponder("http-01")]

    def start(
        self,
        store: MemoryStore,
        server: MemoryAcmeServer | None = None,
        **arguments: Any,
    ) -> AcmeIssuingService:
        server = server if server is not None else self.server

        def creator() -> Deferred[Client]:
            jws = JWSClient(server.treq_client(), EC_KEY, ES256, reactor=self.clock)
            return Client.from_url(
                self.clock, server.directory_url, EC_KEY, ES256, jws_client=jws
            )

        arguments.setdefault("random", Random(3))
        service = AcmeIssuingService(
            store,
            creator,
            self.clock,
            self.responders,
            email="admin@example.com",
            panic=lambda failure, name: self.panics.append(name),
            **arguments,
        )
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    def verify(
        self,
        store: MemoryStore,
        key: str,
        names: Sequence[str],
        server: MemoryAcmeServer | None = None,
    ) -> None:
        """The entry holds a chain to the server's root for ``names``."""
        server = server if server is not None else self.server
        objects = stored(store, key)
        certificates = [
            x509.load_pem_x509_certificate(obj.as_bytes())
            for obj in objects
            if isinstance(obj, pem.Certificate)
        ]
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(server.root_certificates()))
            .time(datetime.fromtimestamp(self.clock.seconds(), UTC))
            .build_server_verifier(x509.DNSName(names[0]))
        )
        verifier.verify(certificates[0], certificates[1:])
        self.assertEqual(entry_summary(store, key).names, tuple(names))

    def test_issue_on_start(self) -> None:
        """
        The service registers (e-mail, terms agreed) and issues a
        certificate that verifies up to the server's root.
        """
        store = MemoryStore({"a.example": []})
        service = self.start(store)
        ready = service.when_certs_valid()
        pump(self.clock, 5)
        self.successResultOf(ready)
        self.verify(store, "a.example", ["a.example"])
        [account] = self.server.accounts
        self.assertEqual(account.contact, ("mailto:admin@example.com",))
        self.assertTrue(account.terms_of_service_agreed)

    def test_multi_name(self) -> None:
        """A multi-name entry gets one certificate for all its names."""
        store = MemoryStore()
        service = self.start(store)
        issued = service.issue_cert(["a.example", "b.example", "192.0.2.7"])
        pump(self.clock, 5)
        self.successResultOf(issued)
        self.verify(store, "a.example", ["a.example", "b.example", "192.0.2.7"])

    def test_interval_renewal_without_ari(self) -> None:
        """
        A CA without renewal information: renewal at a third of the
        lifetime left, without ``replaces`` (the CA does not take it).
        """
        store = MemoryStore({"a.example": []})
        self.start(store)
        pump(self.clock, 60 * DAY - 10)
        self.assertEqual(len(self.server.certificates), 1)
        pump(self.clock, 30)
        self.assertEqual(len(self.server.certificates), 2)
        self.assertEqual([order.replaces for order in self.server.orders], [None, None])
        self.assertEqual(self.server.request_counts()["renewalInfo"], 0)

    def test_ari_window(self) -> None:
        """
        With ARI, the service asks the CA when to renew, asks again after
        the ``Retry-After`` it gives, renews inside the (moved) window, and
        sends ``replaces`` naming the old certificate.
        """
        server = self.make_server(offer_renewal_info=True)
        store = MemoryStore({"a.example": []})
        self.start(store, server)
        pump(self.clock, 5)
        [first] = server.certificates
        asked = server.request_counts()["renewalInfo"]
        self.assertTrue(asked >= 1)
        start = datetime.fromtimestamp(NOW + 10 * DAY, UTC)
        server.set_renewal_window(first.serial, start, start + timedelta(hours=12))
        pump(self.clock, 6 * HOUR + 60)
        self.assertTrue(server.request_counts()["renewalInfo"] > asked)
        pump(self.clock, 10 * DAY - 6 * HOUR - 120)
        self.assertEqual(len(server.certificates), 1)
        pump(self.clock, 12 * HOUR + 120)
        self.assertEqual(len(server.certificates), 2)
        second = server.certificates[1]
        renewed_at = second.certificate.not_valid_before_utc.timestamp()
        self.assertTrue(NOW + 10 * DAY <= renewed_at <= NOW + 10.5 * DAY + 60)
        self.assertEqual(
            server.orders[-1].replaces, renewal_certificate_id(first.certificate)
        )
        self.assertEqual(first.replaced_by, server.orders[-1].url)
        self.verify(store, "a.example", ["a.example"], server)

    def test_ari_window_in_the_past(self) -> None:
        """
        A window that has already passed (as after a revocation) means
        renewing at once: at the next renewalInfo answer.
        """
        server = self.make_server(
            offer_renewal_info=True, renewal_info_retry_after=3600
        )
        store = MemoryStore({"a.example": []})
        self.start(store, server)
        pump(self.clock, 5)
        [first] = server.certificates
        past = datetime.fromtimestamp(NOW - DAY, UTC)
        server.set_renewal_window(first.serial, past, past + timedelta(hours=1))
        pump(self.clock, HOUR + 60)
        self.assertEqual(len(server.certificates), 2)

    def test_backoff_after_server_errors(self) -> None:
        """
        An order the CA refuses is retried after the backoff delay, and
        then succeeds; the missing certificate's failure is a panic.
        """
        self.server.fail_next("newOrder", "rejectedIdentifier", status=400)
        store = MemoryStore({"a.example": []})
        service = self.start(
            store, backoff=Backoff(first_delay=timedelta(minutes=2), jitter=0.0)
        )
        pump(self.clock, 5)
        self.successResultOf(service.when_certs_valid())
        self.assertEqual(self.panics, ["a.example"])
        self.assertEqual(stored(store, "a.example"), [])
        pump(self.clock, 120)
        self.verify(store, "a.example", ["a.example"])

    def test_rate_limit_retry_after(self) -> None:
        """
        A rate limit whose ``Retry-After`` is long is not retried before
        it; then issuance succeeds.
        """
        self.server.fail_next("newOrder", "rateLimited", retry_after=7200)
        store = MemoryStore({"a.example": []})
        self.start(store, backoff=Backoff(first_delay=timedelta(minutes=1)))
        pump(self.clock, 7100)
        self.assertEqual(self.server.certificates, [])
        pump(self.clock, 200)
        self.verify(store, "a.example", ["a.example"])

    def test_stop_mid_validation(self) -> None:
        """
        Stopping while the server is still validating cancels the issuance
        and stops the responder; nothing is requested afterwards.
        """
        server = self.make_server(validation_delay=60)
        recording = RecordingResponder()
        self.responders = [recording]
        store = MemoryStore({"a.example": []})
        service = self.start(store, server)
        pump(self.clock, 10)
        self.assertEqual(recording.started, ["a.example"])
        self.assertEqual(recording.stopped, [])
        self.successResultOf(service.stopService())
        self.assertEqual(recording.stopped, ["a.example"])
        requests = len(server.requests)
        pump(self.clock, 10 * DAY)
        self.assertEqual(len(server.requests), requests)
        self.assertEqual(server.certificates, [])

    def test_issue_cert_shares_with_check(self) -> None:
        """
        ``issue_cert`` while the start-up issuance of the entry is being
        validated shares it: one order reaches the server.
        """
        server = self.make_server(validation_delay=30)
        store = MemoryStore({"a.example": []})
        service = self.start(store, server)
        pump(self.clock, 5)
        first = service.issue_cert("a.example")
        second = service.issue_cert("a.example")
        self.assertNoResult(first)
        pump(self.clock, 60)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(len(server.orders), 1)
        self.verify(store, "a.example", ["a.example"], server)

    def test_concurrency_bound(self) -> None:
        """
        With slow validation, no more than ``max_concurrent`` orders are in
        flight at the server at once; every entry is issued.
        """
        server = self.make_server(validation_delay=30)
        names = [f"n{index}.example" for index in range(5)]
        store = MemoryStore({name: [] for name in names})
        service = self.start(store, server, max_concurrent=2)
        pump(self.clock, 5)
        self.assertEqual(len(server.orders), 2)
        ready = service.when_certs_valid()
        pump(self.clock, 300)
        self.successResultOf(ready)
        self.assertEqual(len(server.certificates), 5)

    def test_client_provides_issuing_client(self) -> None:
        """The real client has what the service needs of a client."""
        client: IssuingClient = self.registered_client()
        self.assertTrue(callable(client.renewal_info))


class DocumentationTests(TestCase):
    """What ``docs/service.rst`` shows works as it says."""

    def test_example_script(self) -> None:
        """
        ``docs/examples/service.py`` runs as a script: both entries are
        issued at start (one with two names), each is renewed once in its
        ARI window (days 60 to 75), replacing the old one, and the service
        stops.
        """
        root = Path(__file__).resolve().parent.parent
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(root / "src"), *filter(None, [environment.get("PYTHONPATH")])]
        )
        completed = subprocess.run(
            [sys.executable, str(root / "docs" / "examples" / "service.py")],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment,
            cwd=root,
            check=False,
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        output = completed.stdout
        self.assertRegex(output, r"(?m)^ready after 0.1 s$")
        self.assertRegex(
            output,
            r"(?m)^example\.com\.pem: example\.com, www\.example\.com; "
            r"valid until 2026-04-01$",
        )
        self.assertRegex(output, r"(?m)^example\.org\.pem: example\.org; ")
        renewals = re.findall(
            r"(?m)^day (\d+): renewed (\S+) \(replacing the old one\)$", output
        )
        self.assertEqual(
            sorted(name for _, name in renewals), ["example.com.pem", "example.org.pem"]
        )
        for renewal_day, _ in renewals:
            self.assertTrue(60 <= int(renewal_day) <= 75)
        self.assertRegex(
            output, r"(?m)^files: client\.key, example\.com\.pem, example\.org\.pem$"
        )
        self.assertTrue(output.endswith("stopped\n"))

    def test_fake_client_snippet(self) -> None:
        """
        The guide's FakeClient snippet: held back at the CA after the first
        poll, issued and ready once resumed.
        """
        clock = Clock()
        controller = FakeClientController()
        client = FakeClient(EC_KEY, clock, controller=controller)
        service = AcmeIssuingService(
            cert_store=MemoryStore({"example.com": []}),
            client_creator=lambda: succeed(client),
            clock=clock,
            responders=[NullResponder("http-01")],
        )
        controller.pause()
        service.startService()
        self.addCleanup(service.stopService)
        clock.advance(1)
        self.assertEqual(controller.count(), 1)
        controller.resume()
        self.assertTrue(service.ready)
        self.assertEqual(controller.issued, 1)


class StoreOnlyStore:
    """
    A store with only ``store`` and ``as_dict``, as applications wrote them
    for txacme 0.9.3 (whose ``issue_cert`` needed nothing else).
    """

    def __init__(self, entries: dict[str, list[pem.AbstractPEMObject]]) -> None:
        self.entries = entries

    def store(
        self, server_name: str, pem_objects: list[pem.AbstractPEMObject]
    ) -> Deferred[None]:
        self.entries[server_name] = list(pem_objects)
        return succeed(None)

    def as_dict(self) -> Deferred[dict[str, list[pem.AbstractPEMObject]]]:
        return succeed(dict(self.entries))


class Compat093Tests(ServiceTestCase):
    """What applications written for txacme 0.9.3 rely on."""

    def test_store_without_get(self) -> None:
        """
        A store with only ``store`` and ``as_dict`` works: issuing and
        renewing never call ``get``.
        """
        entries: dict[str, list[pem.AbstractPEMObject]] = {
            "old.example": make_bundle(["old.example"], NOW - 80 * DAY)
        }
        service, _ = self.make_service(cast(Any, StoreOnlyStore(entries)))
        service.startService()
        self.successResultOf(service.issue_cert("new.example"))
        self.assertEqual(sorted(entries), ["new.example", "old.example"])
        self.assertEqual(
            sorted(self.order_names()), [("new.example",), ("old.example",)]
        )
        self.assertEqual([order.replaces for order in self.fake.orders], [None, None])

    def test_store_with_failing_get(self) -> None:
        """
        A ``get`` that fails other than with ``KeyError`` is logged, and
        the renewal goes on without ``replaces``.
        """

        class BrokenGet(StoreOnlyStore):
            def get(self, server_name: str) -> Deferred[list[pem.AbstractPEMObject]]:
                return fail(NotImplementedError("no get here"))

        entries = {"old.example": make_bundle(["old.example"], NOW - 80 * DAY)}
        service, _ = self.make_service(cast(Any, BrokenGet(entries)))
        service.startService()
        self.assertEqual(self.order_names(), [("old.example",)])
        self.assertEqual(
            entry_summary_of(entries["old.example"]).names, ("old.example",)
        )

    def test_registers_at_start(self) -> None:
        """
        The service registers when it starts, also with nothing to issue,
        as txacme 0.9.3 did; ``_regr`` holds the registration and
        ``_registered`` says so.
        """
        service, _ = self.make_service()
        self.assertFalse(service._registered)
        service.startService()
        [registration] = self.fake.registrations
        self.assertEqual(registration.emails, ("admin@example.com",))
        self.assertTrue(service._registered)
        assert service._regr is not None
        self.assertEqual(service._regr.body.contact, ("mailto:admin@example.com",))
        self.successResultOf(service.stopService())
        service.startService()
        self.assertEqual(len(self.fake.registrations), 2)

    def test_ensure_registered_without_starting(self) -> None:
        """
        ``_ensure_registered()`` registers without the service running, once;
        setting ``_registered`` to ``False`` makes it register again, with a
        new client.
        """
        service, _ = self.make_service()
        self.successResultOf(service._ensure_registered())
        self.successResultOf(service._ensure_registered())
        self.assertEqual((self.created, len(self.fake.registrations)), (1, 1))
        service._registered = False
        self.assertFalse(service._registered)
        self.successResultOf(service._ensure_registered())
        self.assertEqual((self.created, len(self.fake.registrations)), (2, 2))
        self.assertTrue(service._registered)

    def test_registration_failure_shows_at_start(self) -> None:
        """
        A registration that fails at start is logged at once; the service
        still serves what it has (``when_certs_valid`` fires).
        """

        class Refusing(FakeClient):
            def register(
                self, new_reg: Any = None, eab: Any = None
            ) -> Deferred[messages.RegistrationResource]:
                return fail(ServerError(messages.Error.with_code("unauthorized"), None))

        self.fake = Refusing(EC_KEY, self.clock)
        service, _ = self.make_service(
            MemoryStore({"a.example": make_bundle(["a.example"], NOW)})
        )
        service.startService()
        self.successResultOf(service.when_certs_valid())
        self.assertEqual(len(self.flushLoggedErrors(ServerError)), 1)
        self.assertFalse(service._registered)

    def test_check_certs(self) -> None:
        """
        ``check()`` (txacme 0.9's ``_check_certs``) checks the store now and
        fires once the issuances it started are done; before the service
        starts, it does nothing.
        """
        store = MemoryStore()
        service, _ = self.make_service(store)
        self.assertIs(self.successResultOf(service.check()), None)
        service.startService()
        self.successResultOf(store.store("later.example", []))
        self.assertIs(self.successResultOf(service._check_certs()), None)
        self.assertEqual(self.order_names(), [("later.example",)])

    def test_stop_cancels_when_certs_valid(self) -> None:
        """
        Stopping the service before its first check finished fails the
        Deferreds of ``when_certs_valid`` (with ``CancelledError``).
        """
        hanging: Deferred[IssuingClient] = Deferred()
        service, _ = self.make_service(client_creator=lambda: hanging)
        waiting = service.when_certs_valid()
        service.startService()
        self.assertNoResult(waiting)
        self.successResultOf(service.stopService())
        self.failureResultOf(waiting, CancelledError)

    def test_inside_panic_interval_reissued(self) -> None:
        """
        A certificate inside ``panic_interval`` but not inside
        ``reissue_interval`` is reissued, as in txacme 0.9.
        """
        store = MemoryStore({"a.example": make_bundle(["a.example"], NOW - 80 * DAY)})
        service, _ = self.make_service(
            store,
            reissue_interval=timedelta(days=1),
            panic_interval=timedelta(days=15),
        )
        service.startService()
        self.assertEqual(self.order_names(), [("a.example",)])

    def test_explicit_panic_interval_longer_than_lifetime(self) -> None:
        """
        An explicit ``panic_interval`` longer than a certificate's lifetime
        is used as given: the certificate is reissued at start; the new
        one (as short-lived) is reissued at the next check, not in a loop.
        """
        self.fake.certificate_lifetime = timedelta(days=6)
        store = MemoryStore(
            {"a.example": make_bundle(["a.example"], NOW, timedelta(days=6))}
        )
        service, _ = self.make_service(store, panic_interval=timedelta(days=15))
        service.startService()
        self.assertEqual(len(self.fake.orders), 1)
        pump(self.clock, DAY - 1)
        self.assertEqual(len(self.fake.orders), 1)
        pump(self.clock, 2)
        self.assertEqual(len(self.fake.orders), 2)

    def test_default_intervals(self) -> None:
        """
        By default a 90-day or a 31-day certificate is renewed 30 days
        before it expires (txacme 0.9's ``reissue_interval``), a 6-day one
        when a third of its lifetime remains.
        """
        for lifetime, renew_after in [(90, 60 * DAY), (31, DAY), (6, 4 * DAY)]:
            self.fake = FakeClient(EC_KEY, self.clock)
            start = self.clock.seconds()
            store = MemoryStore(
                {
                    "a.example": make_bundle(
                        ["a.example"], start, timedelta(days=lifetime)
                    )
                }
            )
            service, _ = self.make_service(store, check_interval=timedelta(days=100))
            service.startService()
            pump(self.clock, renew_after - 10)
            self.assertEqual(self.fake.orders, [], lifetime)
            pump(self.clock, 20)
            self.assertEqual(len(self.fake.orders), 1, lifetime)
            self.successResultOf(service.stopService())

    def test_default_panic_interval(self) -> None:
        """
        By default, renewal failures of a 90-day certificate call ``panic``
        within its last 15 days (txacme 0.9's ``panic_interval``), not
        before.
        """
        self.fake.controller.fail_next(count=10_000)
        store = MemoryStore({"a.example": make_bundle(["a.example"], NOW - 70 * DAY)})
        service, _ = self.make_service(store)
        service.startService()
        pump(self.clock, 4 * DAY)
        self.assertEqual(self.panics, [])
        self.flushLoggedErrors(ServerError)
        pump(self.clock, 2 * DAY)
        self.assertEqual(len(self.panics), 1)
        self.flushLoggedErrors(ServerError)

    def test_no_certificate_panic_message(self) -> None:
        """
        The default panic for an entry that never had a certificate says
        it could not be obtained, not that it expires.
        """
        events: list[LogEvent] = []
        observer = implementer(ILogObserver)(lambda event: events.append(event))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.fake.controller.fail_next()
        service, _ = self.make_service(MemoryStore({"a.example": []}), panic=None)
        service.startService()
        self.flushLoggedErrors(ServerError)
        [text] = [
            formatEvent(event) for event in events if "PANIC" in formatEvent(event)
        ]
        self.assertIn("Unable to obtain a certificate for 'a.example'", text)
        self.assertNotIn("expire", text)

    def test_controller_resume_with_failure(self) -> None:
        """
        ``FakeClientController.resume(failure)`` fails the issuances held
        back with it, as txacme 0.9's did; ``resume()`` lets them go on.
        """
        service, _ = self.make_service()
        service.startService()
        self.fake.controller.pause()
        failing = service.issue_cert("a.example")
        self.fake.controller.resume(Failure(RuntimeError("refused")))  # type: ignore[no-untyped-call]
        self.failureResultOf(failing, RuntimeError)
        self.fake.controller.pause()
        passing = service.issue_cert("b.example")
        self.fake.controller.resume()
        self.successResultOf(passing)


def entry_summary_of(objects: list[pem.AbstractPEMObject]) -> CertificateSummary:
    summary = summarize(objects)
    assert summary is not None
    return summary
