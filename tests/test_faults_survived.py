"""
Issuance that survives the network (issue 11): every retry path of the
transport and the workflow, on the in-memory server's fault switches, one
fault at a time and in seeded mixes; and no certificate lost (every
certificate the CA issued is the one the client returned).
"""

from __future__ import annotations

from typing import Any

from acme import messages
from cryptography import x509
from twisted.internet.defer import Deferred

from tests.support import AcmeTestCase, RecordingResponder
from txacme.client import Client, issue_certificate, poll_until_valid
from txacme.errors import NetworkError, ServerError
from txacme.jws import RetryPolicy
from txacme.testing import FAULT_KINDS, Endpoint, FaultKind
from txacme.util import csr_for_names, generate_private_key

_KEY = generate_private_key("p256")
#: Retries that wait the same every time: the tests advance the clock by it.
_POLICY = RetryPolicy(first_delay=1.0, factor=1.0, jitter=0.0)


class FaultTestCase(AcmeTestCase):
    """Issuing on the in-memory server, its clock run to the end."""

    def client(self, **arguments: Any) -> Client:
        arguments.setdefault("retry_policy", _POLICY)
        return self.registered_client(**arguments)

    def finish(self, deferred: Deferred[Any], seconds: float = 120) -> None:
        """Advance the clock in small steps until ``deferred`` fires."""
        for _ in range(int(seconds * 10)):
            if deferred.called:
                return
            self.clock.advance(0.1)

    def issue(self, client: Client, name: str) -> Deferred[str]:
        return issue_certificate(
            client,
            self.clock,
            csr_for_names([name], _KEY),
            [RecordingResponder()],
        )

    def issued(self, client: Client, name: str) -> x509.Certificate:
        """Issue for ``name``; the leaf, checked to be the CA's only one."""
        result = self.issue(client, name)
        self.finish(result)
        chain = self.successResultOf(result)
        leaf = x509.load_pem_x509_certificates(chain.encode("ascii"))[0]
        issued = [
            record
            for record in self.server.certificates
            if name in [str(value) for value in _names(record.certificate)]
        ]
        self.assertEqual([record.certificate for record in issued], [leaf])
        return leaf


def _names(certificate: x509.Certificate) -> list[str]:
    return certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


class OneFaultTests(FaultTestCase):
    """Each kind of fault, on each step of an issuance, is survived."""

    STEPS: tuple[Endpoint, ...] = (
        "newNonce",
        "newOrder",
        "authorization",
        "challenge",
        "finalize",
        "order",
        "certificate",
    )

    def test_every_kind_on_every_step(self) -> None:
        """
        One fault of each of the seven kinds, on each step of an issuance
        (newNonce included): the certificate is issued once, and returned.
        """
        for kind in FAULT_KINDS:
            for step in self.STEPS:
                # Pebble's way with a challenge sent again.
                self.server = self.make_server(refuse_repeated_challenge=True)
                client = self.client()
                if step == "newNonce":
                    # Make the next request need newNonce.
                    self.server.break_next("newOrder", "no-replay-nonce")
                self.server.inject_next(step, kind)
                leaf = self.issued(client, f"{_label(kind)}-{step.lower()}.example")
                self.assertEqual(
                    sorted(_names(leaf)), [f"{_label(kind)}-{step.lower()}.example"]
                )

    def test_lost_finalize_answer(self) -> None:
        """
        A finalize the CA acted on but whose answer was lost is sent again;
        the CA answers that the order is no longer ready (it is valid), and
        the client fetches the order and downloads the certificate: the
        one the CA issued, not a second.
        """
        client = self.client()
        self.server.drop_next("finalize", "after")
        self.issued(client, "lost-finalize.example")
        self.assertEqual(self.server.request_counts()["finalize"], 2)
        self.assertEqual(len(self.server.certificates), 1)

    def test_lost_challenge_answer(self) -> None:
        """
        A challenge POST the CA acted on but whose answer was lost is sent
        again; a CA that then refuses it (Pebble: "Cannot update challenge
        with status valid") is asked for the challenge, which is no longer
        pending, and the issuance goes on.
        """
        self.server = self.make_server(refuse_repeated_challenge=True)
        client = self.client()
        self.server.drop_next("challenge", "after")
        self.issued(client, "lost-challenge.example")
        # The POST, its repeat (refused), and the POST-as-GET that reads it.
        self.assertEqual(self.server.request_counts()["challenge"], 3)

    def test_refused_pending_challenge(self) -> None:
        """
        A challenge POST refused while the challenge is still pending is
        the CA's error, raised as it came.
        """
        client = self.client()
        order = self.successResultOf(client.new_order(["refused.example"]))
        authzr, _ = self.successResultOf(
            client.refresh_authorization(
                messages.AuthorizationResource(uri=order.body.authorizations[0])
            )
        )
        self.server.fail_next("challenge", "malformed", count=1)
        error = self.errorOf(
            client.answer_challenge(authzr.body.challenges[0], None), ServerError
        )
        self.assertEqual(error.code, "malformed")
        self.assertEqual(self.server.request_counts()["challenge"], 2)

    def test_lost_new_order_answer(self) -> None:
        """
        A newOrder acted on without its answer reaching the client makes a
        harmless twin order; the certificate is issued once.
        """
        client = self.client()
        self.server.drop_next("newOrder", "after")
        self.issued(client, "lost-order.example")
        self.assertEqual(len(self.server.orders), 2)

    def test_lost_revocation_answer(self) -> None:
        """
        A revocation sent again after its answer was lost is answered
        ``alreadyRevoked``: the certificate is revoked, and that is success.
        """
        client = self.client()
        leaf = self.issued(client, "revoked.example")
        self.server.drop_next("revokeCert", "after")
        result = client.revoke(leaf)
        self.finish(result)
        self.successResultOf(result)
        self.assertTrue(self.server.certificate_by_serial(leaf.serial_number).revoked)

    def test_already_revoked_at_first(self) -> None:
        """A certificate revoked before is still an error (one attempt)."""
        client = self.client()
        leaf = self.issued(client, "twice.example")
        self.successResultOf(client.revoke(leaf))
        error = self.errorOf(client.revoke(leaf), ServerError)
        self.assertEqual(error.code, "alreadyRevoked")

    def test_rate_limit_waits_retry_after(self) -> None:
        """A 429 with ``Retry-After: 1`` is sent again a second later."""
        client = self.client()
        self.server.inject_next("newOrder", "rate-limited")
        result = client.new_order(["a.example"])
        self.clock.advance(0.9)
        self.assertNoResult(result)
        self.clock.advance(0.1)
        self.successResultOf(result)


class BudgetTests(FaultTestCase):
    """The retries are bounded, per request and per issuance."""

    def test_request_budget(self) -> None:
        """
        A request that fails every time is given up after ``max_retries``
        retries; the error says how many attempts were made.
        """
        client = self.client(retry_policy=RetryPolicy(max_retries=2, jitter=0.0))
        self.server.inject_next("newOrder", "drop-before", count=10)
        result = client.new_order(["a.example"])
        self.finish(result)
        error = self.errorOf(result, NetworkError)
        self.assertEqual(error.attempts, 3)
        self.assertIn("3 attempts", str(error))

    def test_issuance_budget(self) -> None:
        """
        The retries of all the requests of one issuance share a budget:
        past it, the issuance fails, though each request had retries left.
        """
        client = self.client(
            retry_policy=RetryPolicy(
                max_retries=5, max_issuance_retries=3, first_delay=1.0, jitter=0.0
            )
        )
        for step in ("newOrder", "authorization", "challenge", "finalize"):
            self.server.inject_next(step, "unavailable")
        result = self.issue(client, "budget.example")
        self.finish(result)
        error = self.errorOf(result, ServerError)
        self.assertEqual(error.status, 503)
        # The next issuance has a budget of its own.
        self.issued(client, "budget.example")


class PerseveranceTests(FaultTestCase):
    """
    Past the transport's retries, what the CA may have acted on (a
    finalization, the download of what it issued) and the polls are tried
    again until the deadline: a certificate the CA issued is not given up.
    """

    def short_retries(self) -> Client:
        return self.client(retry_policy=RetryPolicy(max_retries=2, jitter=0.0))

    def test_download_outlasts_the_retries(self) -> None:
        """
        A certificate download failing more often than the transport
        retries is tried again: the certificate issued is the one returned.
        """
        client = self.short_retries()
        self.server.inject_next("certificate", "unavailable", count=7)
        self.issued(client, "download.example")
        self.assertEqual(self.server.fault_counts["unavailable"], 7)

    def test_finalize_answers_lost(self) -> None:
        """
        A finalization whose answers are all lost, the CA having acted on
        the first: the order is read, found finalized, and its certificate
        downloaded (the CA issued once).
        """
        client = self.short_retries()
        self.server.drop_next("finalize", "after", count=3)
        self.issued(client, "finalize.example")
        self.assertEqual(self.server.request_counts()["finalize"], 3)

    def test_finalize_not_reached(self) -> None:
        """
        A finalization that never reaches the CA fails the issuance once the
        retries are spent: the order is read, is still ready, and the CA
        issued nothing.
        """
        client = self.short_retries()
        self.server.drop_next("finalize", "before", count=3)
        result = self.issue(client, "unreached.example")
        self.finish(result)
        self.errorOf(result, NetworkError)
        self.assertEqual(self.server.certificates, [])

    def test_polls_outlast_the_retries(self) -> None:
        """Polls failing more often than the transport retries go on."""
        self.server = self.make_server(validation_delay=5.0)
        client = self.short_retries()
        order = self.successResultOf(client.new_order(["poll.example"]))
        authzr, _ = self.successResultOf(
            client.refresh_authorization(
                messages.AuthorizationResource(uri=order.body.authorizations[0])
            )
        )
        [challenge] = [body for body in authzr.body.challenges if body.typ == "http-01"]
        self.successResultOf(client.answer_challenge(challenge, None))
        self.server.inject_next("authorization", "drop-before", count=6)
        result = poll_until_valid(authzr, self.clock, client)
        self.finish(result)
        self.assertEqual(
            self.successResultOf(result).body.status, messages.STATUS_VALID
        )

    def test_deadline_ends_it(self) -> None:
        """
        A download failing for good ends at the issuance's deadline with the
        last error, not later and not in a hang.
        """
        client = self.short_retries()
        self.server.inject_next("certificate", "unavailable", count=10_000)
        started = self.clock.seconds()
        result = issue_certificate(
            client,
            self.clock,
            csr_for_names(["forever.example"], _KEY),
            [RecordingResponder()],
            timeout=30,
        )
        self.finish(result, seconds=120)
        error = self.errorOf(result, ServerError)
        self.assertEqual(error.status, 503)
        self.assertLessEqual(self.clock.seconds() - started, 31)


class MixTests(FaultTestCase):
    """Seeded mixes of every fault, with half of all nonces rejected."""

    def issue_many(self, rate: float, count: int, seed: int) -> int:
        """
        Issue ``count`` certificates, one after another, with ``rate`` of
        requests faulted and half the nonces rejected; return how many
        succeeded, checking that every certificate the CA issued was
        returned (no orphan).
        """
        self.server = self.make_server(nonce_rejection=0.5, seed=seed)
        client = self.client(retry_policy=RetryPolicy(first_delay=0.5, jitter=0.1))
        self.server.random_faults(rate, seed=seed)
        returned: set[int] = set()
        succeeded = 0
        for index in range(count):
            result = self.issue(client, f"m{index}.example")
            self.finish(result, seconds=600)
            if result.called and not isinstance(result.result, BaseException):
                chain = self.successResultOf(result)
                returned.add(
                    x509.load_pem_x509_certificates(chain.encode("ascii"))[
                        0
                    ].serial_number
                )
                succeeded += 1
            else:
                self.failureResultOf(result)
        issued = {
            record.certificate.serial_number for record in self.server.certificates
        }
        self.assertEqual(issued - returned, set())
        self.assertTrue(self.server.fault_counts, "no fault was injected")
        return succeeded

    def test_ten_percent(self) -> None:
        """
        At 10% of requests faulted (all seven kinds) and half of all nonces
        rejected, every issuance succeeds.
        """
        self.assertEqual(self.issue_many(0.10, 15, seed=11), 15)

    def test_twenty_five_percent(self) -> None:
        """At 25% of requests faulted, every issuance still succeeds here."""
        self.assertEqual(self.issue_many(0.25, 10, seed=12), 10)


def _label(kind: FaultKind) -> str:
    return kind.replace("-", "")
