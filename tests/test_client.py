"""
Tests for the seed API of :mod:`txacme.client` against the in-memory ACME
server: every method of txacme 0.9's ``Client`` and the module helpers, and
how each fails on bad input.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.url import URL
from twisted.web.http_headers import Headers

from tests.support import EC_KEY, NOW, AcmeTestCase, RecordingResponder, stub_treq
from txacme.challenges import HTTP01Responder
from txacme.client import (
    AuthorizationFailed,
    Client,
    JWSClient,
    NoSupportedChallenges,
    ServerError,
    answer_challenge,
    fqdn_identifier,
    poll_until_valid,
)
from txacme.errors import (
    AuthorizationsNotValid,
    ChainTooLong,
    MalformedResponse,
    TermsOfServiceNotAgreed,
)
from txacme.jws import RetryPolicy
from txacme.messages import CertificateChainResource, CertificateRequest
from txacme.util import csr_for_names, generate_private_key

_CERT_KEY = generate_private_key("p256")
_ACCOUNT_PRIVATE_KEY: Any = EC_KEY.key._wrapped


def _verify_chain(
    test: AcmeTestCase, leaf_der: bytes, chain: list[bytes], name: str
) -> None:
    """Verify a leaf and its issuers against the in-memory CA's roots."""
    store = verification.Store(test.server.root_certificates())
    verifier = (
        verification.PolicyBuilder()
        .store(store)
        .time(datetime.fromtimestamp(test.clock.seconds(), UTC))
        .build_server_verifier(x509.DNSName(name))
    )
    verifier.verify(
        x509.load_der_x509_certificate(leaf_der),
        [x509.load_der_x509_certificate(der) for der in chain],
    )


class FromURLTests(AcmeTestCase):
    """Tests for :meth:`Client.from_url`."""

    def test_url_or_text(self) -> None:
        """
        The directory is read from a ``URL`` or a ``str``; the transport is
        left as it was given (the client passes the account and the
        ``newNonce`` URL with each request).
        """
        for url in (URL.fromText(self.server.directory_url), self.server.directory_url):
            jws = self.make_jws_client()
            client = self.successResultOf(
                Client.from_url(self.clock, url, EC_KEY, jws_client=jws)
            )
            self.assertEqual(client.directory["newOrder"].startswith("https://"), True)
            self.assertIsNone(jws.new_nonce_url)
            self.assertIsNone(jws.kid)
            self.successResultOf(
                client.register(
                    messages.NewRegistration.from_data(terms_of_service_agreed=True)
                )
            )
            self.assertIsNone(jws.kid)

    def test_wrong_type(self) -> None:
        """A directory URL that is neither a URL nor a str is a TypeError."""
        self.failureResultOf(
            Client.from_url(self.clock, 42, EC_KEY, jws_client=self.make_jws_client()),  # type: ignore[arg-type]
            TypeError,
        )

    def test_not_absolute(self) -> None:
        """
        A directory URL without an https (or http) scheme and a host is a
        ValueError, before any request.
        """
        for url in ("/wrong/kind/of/directory", "ftp://ca.example/dir", "https://"):
            error = self.errorOf(
                Client.from_url(
                    self.clock, url, EC_KEY, jws_client=self.make_jws_client()
                ),
                ValueError,
            )
            self.assertIn(repr(url), str(error))
        self.assertEqual(self.server.requests, [])

    def test_broken_directories(self) -> None:
        """
        A directory served as HTML, as truncated JSON or with the wrong
        content type (each time it is asked for) fails with
        MalformedResponse, and the next attempt works.
        """
        for kind in ("html", "truncated-json", "wrong-content-type"):
            self.server.break_next("directory", kind, count=2)
            made = Client.from_url(
                self.clock,
                self.server.directory_url,
                EC_KEY,
                jws_client=self.make_jws_client(
                    retry_policy=RetryPolicy(max_retries=1)
                ),
            )
            self.clock.advance(60)
            failure = self.errorOf(made, MalformedResponse)
            self.assertIn("HTTP 200", str(failure))
        self.make_client()

    def stub_directory(
        self, body: bytes, content_type: bytes = b"application/json"
    ) -> Deferred[Client]:
        http = stub_treq(
            lambda method, url, params, headers, data: (
                200,
                {b"content-type": content_type},
                body,
            )
        )
        jws = JWSClient(http, EC_KEY, self.make_jws_client().alg, reactor=self.clock)
        return Client.from_url(
            self.clock, "https://ca.test/directory", EC_KEY, jws_client=jws
        )

    def test_acme_v1_directory(self) -> None:
        """An ACME v1 directory is refused, saying so."""
        failure = self.errorOf(
            self.stub_directory(
                b'{"new-reg": "https://ca.test/new-reg", "new-authz": "x"}'
            ),
            MalformedResponse,
        )
        self.assertIn("ACME v1", str(failure))
        self.assertIn("newNonce", str(failure))

    def test_not_an_object(self) -> None:
        """A JSON directory that is not an object is refused."""
        self.failureResultOf(self.stub_directory(b'["newNonce"]'), MalformedResponse)

    def test_server_error(self) -> None:
        """A problem document for the directory is a ServerError."""
        self.server.fail_next("directory", "malformed", status=400, detail="nope")
        failure = self.errorOf(
            Client.from_url(
                self.clock,
                self.server.directory_url,
                EC_KEY,
                jws_client=self.make_jws_client(),
            ),
            ServerError,
        )
        self.assertEqual(failure.code, "malformed")


class RegisterTests(AcmeTestCase):
    """Tests for ``register``, ``agree_to_tos`` and ``update_registration``."""

    def test_new_account(self) -> None:
        """
        A new account is created with the ``jwk``; the resource's ``uri`` is
        the account URL and ``terms_of_service`` the directory's terms.
        """
        client = self.make_client()
        regr = self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(
                    email="admin@example.test", terms_of_service_agreed=True
                )
            )
        )
        [account] = self.server.accounts
        self.assertEqual(regr.uri, account.url)
        self.assertEqual(regr.terms_of_service, "https://acme.example/terms")
        self.assertEqual(regr.body.contact, ("mailto:admin@example.test",))

    def test_existing_account(self) -> None:
        """
        Registering a key that already has an account returns that account,
        not an error.
        """
        first = self.registered_client()
        second = self.make_client()
        regr = self.successResultOf(
            second.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
        )
        self.assertEqual(len(self.server.accounts), 1)
        self.assertEqual(regr.uri, first.account_url)

    def test_terms_not_agreed(self) -> None:
        """
        A CA refusing an account without agreement to its terms makes
        ``register`` return a registration without URL, carrying the terms;
        no account is created and nothing is agreed to.
        """
        client = self.make_client()
        regr = self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(email="admin@example.test")
            )
        )
        self.assertIsNone(regr.uri)
        self.assertEqual(regr.terms_of_service, "https://acme.example/terms")
        self.assertEqual(regr.body.contact, ("mailto:admin@example.test",))
        self.assertFalse(regr.body.terms_of_service_agreed)
        self.assertEqual(self.server.accounts, [])

    def test_register_then_agree(self) -> None:
        """
        txacme 0.9's flow, ``register`` then ``agree_to_tos``, creates the
        account with the agreement and the registration's contacts; later
        requests are signed for it.
        """
        client = self.make_client()
        regr = self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(email="admin@example.test")
            )
        )
        agreed = self.successResultOf(client.agree_to_tos(regr))
        [account] = self.server.accounts
        self.assertEqual(agreed.uri, account.url)
        self.assertTrue(account.terms_of_service_agreed)
        self.assertEqual(account.contact, ("mailto:admin@example.test",))
        self.assertEqual(agreed.terms_of_service, "https://acme.example/terms")
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        self.assertEqual(authzr.body.identifier.value, "a.example")

    def test_register_without_argument_then_agree(self) -> None:
        """
        ``register()`` with no argument, as in txacme 0.9, then
        ``agree_to_tos`` creates an account without contacts.
        """
        client = self.make_client()
        regr = self.successResultOf(client.register())
        agreed = self.successResultOf(client.agree_to_tos(regr))
        [account] = self.server.accounts
        self.assertEqual(agreed.uri, account.url)
        self.assertEqual(account.contact, ())

    def test_account_needed_before_agreement(self) -> None:
        """
        A request that needs the account while ``register`` waits for the
        agreement fails with ``TermsOfServiceNotAgreed`` saying what to do,
        without sending anything; so does an update that does not agree.
        """
        client = self.make_client()
        regr = self.successResultOf(client.register())
        sent = len(self.server.requests)
        failure = self.errorOf(
            client.request_challenges(fqdn_identifier("a.example")),
            TermsOfServiceNotAgreed,
        )
        self.assertTrue(failure.account_pending)
        self.assertIn("agree_to_tos", str(failure))
        self.assertIn("https://acme.example/terms", str(failure))
        self.assertEqual(len(self.server.requests), sent)
        update = regr.update(
            body=regr.body.update(contact=("mailto:other@example.test",))
        )
        failure = self.errorOf(
            client.update_registration(update), TermsOfServiceNotAgreed
        )
        self.assertTrue(failure.account_pending)
        self.assertEqual(self.server.accounts, [])

    def test_agreement_in_register(self) -> None:
        """
        Passing the agreement to ``register`` creates the account in one
        request.
        """
        client = self.make_client()
        sent = len(self.server.requests)
        regr = self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
        )
        self.assertEqual(regr.uri, self.server.accounts[0].url)
        new_accounts = [
            request
            for request in self.server.requests[sent:]
            if request.endpoint == "newAccount"
        ]
        self.assertEqual(len(new_accounts), 1)

    def test_other_account_errors_raise(self) -> None:
        """
        ``register`` still raises for errors other than missing agreement.
        """
        client = self.make_client()
        failure = self.errorOf(
            client.register(
                messages.NewRegistration.from_data(
                    email="not an address", terms_of_service_agreed=False
                )
            ),
            ServerError,
        )
        self.assertNotIsInstance(failure, TermsOfServiceNotAgreed)

    def test_missing_location(self) -> None:
        """
        A newAccount answer without Location is a MalformedResponse; the
        client stays usable.
        """
        client = self.make_client()
        self.server.break_next("newAccount", "no-location")
        new_reg = messages.NewRegistration.from_data(terms_of_service_agreed=True)
        failure = self.errorOf(client.register(new_reg), MalformedResponse)
        self.assertIn("Location", str(failure))
        regr = self.successResultOf(client.register(new_reg))
        self.assertEqual(regr.uri, self.server.accounts[0].url)

    def test_later_requests_use_kid(self) -> None:
        """
        After registering, requests are signed with the account URL as
        ``kid`` (the server refuses ``jwk`` on newOrder).
        """
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        self.assertEqual(authzr.body.identifier.value, "a.example")

    def test_agree_to_tos_and_update(self) -> None:
        """
        ``agree_to_tos`` and ``update_registration`` update the account on
        the server.
        """
        client = self.make_client()
        regr = self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
        )
        regr = self.successResultOf(client.agree_to_tos(regr))
        self.assertEqual(regr.uri, self.server.accounts[0].url)
        updated = self.successResultOf(
            client.update_registration(
                regr.update(body=regr.body.update(contact=("mailto:new@example.test",)))
            )
        )
        self.assertEqual(updated.body.contact, ("mailto:new@example.test",))
        self.assertEqual(
            list(self.server.accounts[0].contact), ["mailto:new@example.test"]
        )

    def test_update_error(self) -> None:
        """A problem answering an update is a ServerError with its code."""
        client = self.registered_client()
        regr = self.successResultOf(client.find_registration())
        failure = self.errorOf(
            client.update_registration(
                regr.update(body=regr.body.update(contact=("ftp://nope",)))
            ),
            ServerError,
        )
        self.assertEqual(failure.code, "unsupportedContact")


class AuthorizationTests(AcmeTestCase):
    """Tests for ``request_challenges``, ``answer_challenge``, ``poll`` and friends."""

    def test_request_challenges_new_order(self) -> None:
        """
        Without ``newAuthz``, an order for the one identifier is created and
        its authorization returned.
        """
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        self.assertEqual(authzr.body.status, messages.STATUS_PENDING)
        self.assertIn("http-01", [c.chall.typ for c in authzr.body.challenges])
        self.assertEqual(len(self.server.orders), 1)
        self.assertEqual(authzr.uri, self.server.authorizations[0].url)

    def test_request_challenges_new_authz(self) -> None:
        """With ``newAuthz`` in the directory, it is used, and no order is made."""
        self.server = self.make_server(offer_new_authz=True)
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        self.assertEqual(authzr.body.identifier.value, "a.example")
        self.assertEqual(self.server.orders, [])
        self.assertEqual(self.server.request_counts()["newAuthz"], 1)

    def test_answer_and_poll(self) -> None:
        """
        ``answer_challenge`` tells the server to validate and returns the
        challenge with its authorization's URL; ``poll`` then shows the
        authorization valid, with the seconds to wait.
        """
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        [challb] = [c for c in authzr.body.challenges if c.chall.typ == "http-01"]
        challr = self.successResultOf(
            client.answer_challenge(challb, challb.response(EC_KEY))
        )
        self.assertEqual(challr.authzr_uri, authzr.uri)
        polled, seconds = self.successResultOf(client.poll(authzr))
        self.assertEqual(polled.body.status, messages.STATUS_VALID)
        self.assertEqual(seconds, client.policy.first_delay)

    def test_poll_retry_after(self) -> None:
        """``poll`` returns the server's Retry-After while validation runs."""
        self.server = self.make_server(validation_delay=30)
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        [challb] = [c for c in authzr.body.challenges if c.chall.typ == "http-01"]
        self.successResultOf(client.answer_challenge(challb, challb.response(EC_KEY)))
        polled, seconds = self.successResultOf(client.poll(authzr))
        self.assertIn(
            polled.body.status, (messages.STATUS_PENDING, messages.STATUS_PROCESSING)
        )
        self.assertGreater(seconds, 0)

    def test_module_answer_challenge(self) -> None:
        """
        The module's ``answer_challenge`` starts the first responder whose
        type is offered and fires with a callable that stops it.
        """
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        unused = RecordingResponder("unknown-01")
        responder = RecordingResponder("http-01")
        stop = self.successResultOf(
            answer_challenge(authzr, client, [unused, responder])
        )
        self.assertEqual(responder.started, ["a.example"])
        self.assertEqual(unused.started, [])
        self.assertEqual(responder.stopped, [])
        self.successResultOf(stop())
        self.assertEqual(responder.stopped, ["a.example"])

    def test_no_supported_challenges(self) -> None:
        """No fitting responder is NoSupportedChallenges naming what was offered."""
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        failure = self.errorOf(
            answer_challenge(authzr, client, [RecordingResponder("unknown-01")]),
            NoSupportedChallenges,
        )
        self.assertIn("http-01", str(failure))

    def test_failed_start_not_answered(self) -> None:
        """
        A responder that fails to start is stopped, and the server is not
        told to validate.
        """
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        responder = RecordingResponder(fail_start=True)
        self.failureResultOf(
            answer_challenge(authzr, client, [responder]), RuntimeError
        )
        self.assertEqual(responder.stopped, ["a.example"])
        self.assertEqual(self.server.request_counts()["challenge"], 0)

    def test_start_error_not_masked_by_stop_error(self) -> None:
        """
        When a responder fails to start and then fails to stop too, the
        start's error is raised and the stop's is logged.
        """
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )

        class BrokenResponder(RecordingResponder):
            def stop_responding(
                self, server_name: str, challenge: Any, response: Any
            ) -> None:
                raise OSError("cannot delete what was never added")

        responder = BrokenResponder(fail_start=True)
        self.failureResultOf(
            answer_challenge(authzr, client, [responder]), RuntimeError
        )
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.server.request_counts()["challenge"], 0)

    def test_failed_answer_stops(self) -> None:
        """A challenge POST that fails stops the responder again."""
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        responder = RecordingResponder()
        self.server.fail_next("challenge", "malformed", status=400)
        self.failureResultOf(answer_challenge(authzr, client, [responder]), ServerError)
        self.assertEqual(responder.started, ["a.example"])
        self.assertEqual(responder.stopped, ["a.example"])

    def test_poll_until_valid(self) -> None:
        """``poll_until_valid`` fires with the valid authorization."""
        self.server = self.make_server(validation_delay=5)
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        stop = self.successResultOf(
            answer_challenge(authzr, client, [HTTP01Responder()])
        )
        result = poll_until_valid(authzr, self.clock, client)
        self.assertNoResult(result)
        valid = self.successResultOf(self.settle(result, self.clock))
        self.assertEqual(valid.body.status, messages.STATUS_VALID)
        self.successResultOf(stop())

    def test_poll_until_valid_invalid(self) -> None:
        """
        An authorization that fails is AuthorizationFailed, whose message
        carries the server's error.
        """
        self.server = self.make_server(invalid_identifiers={"bad.example"})
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("bad.example"))
        )
        self.successResultOf(answer_challenge(authzr, client, [HTTP01Responder()]))
        failure = self.errorOf(
            self.settle(poll_until_valid(authzr, self.clock, client), self.clock),
            AuthorizationFailed,
        )
        self.assertIn("bad.example", str(failure))
        self.assertIn("incorrectResponse", str(failure))
        self.assertEqual(failure.authzr.body.status, messages.STATUS_INVALID)

    def test_poll_until_valid_timeout(self) -> None:
        """An authorization still pending at the timeout is CancelledError."""
        self.server = self.make_server(validation_delay=10_000)
        client = self.registered_client()
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        self.successResultOf(answer_challenge(authzr, client, [HTTP01Responder()]))
        result = poll_until_valid(authzr, self.clock, client, timeout=60)
        self.clock.advance(59)
        self.assertNoResult(result)
        self.clock.advance(1)
        self.failureResultOf(result, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_already_valid(self) -> None:
        """
        An authorization the CA reused as valid needs no responder and no
        polling.
        """
        client = self.registered_client()
        self.authorize(client, "a.example")
        authzr = self.successResultOf(
            client.request_challenges(fqdn_identifier("a.example"))
        )
        self.assertEqual(authzr.body.status, messages.STATUS_VALID)
        responder = RecordingResponder()
        self.successResultOf(answer_challenge(authzr, client, [responder]))
        self.assertEqual(responder.started, [])
        self.successResultOf(poll_until_valid(authzr, self.clock, client))

    def authorize(self, client: Client, name: str) -> None:
        authzr = self.successResultOf(client.request_challenges(fqdn_identifier(name)))
        stop = self.successResultOf(
            answer_challenge(authzr, client, [HTTP01Responder()])
        )
        self.successResultOf(
            self.settle(poll_until_valid(authzr, self.clock, client), self.clock)
        )
        self.successResultOf(stop())


class RetryAfterTests(AcmeTestCase):
    """Tests for :meth:`Client.retry_after`."""

    def response(self, value: str | None) -> Any:
        headers = Headers()
        if value is not None:
            headers.setRawHeaders(b"retry-after", [value.encode("ascii")])

        class Response:
            code = 200

        response = Response()
        response.headers = headers  # type: ignore[attr-defined]
        return response

    def test_forms(self) -> None:
        """Delta-seconds, HTTP-date, absent and malformed values."""
        date = format_datetime(datetime.fromtimestamp(NOW + 120, UTC), usegmt=True)
        self.assertEqual(Client.retry_after(self.response("42")), 42)
        self.assertEqual(Client.retry_after(self.response(date), _now=lambda: NOW), 120)
        self.assertEqual(Client.retry_after(self.response(None)), 5)
        self.assertEqual(Client.retry_after(self.response("soon"), default=7), 7)


class IssuanceTests(AcmeTestCase):
    """Tests for ``request_issuance`` and ``fetch_chain``."""

    def authorize(self, client: Client, *names: str) -> None:
        for name in names:
            AuthorizationTests.authorize(self, client, name)  # type: ignore[arg-type]

    def issue(self, client: Client, *names: str) -> CertificateChainResource:
        return self.successResultOf(
            self.settle(
                client.request_issuance(
                    CertificateRequest(csr=csr_for_names(list(names), _CERT_KEY))
                ),
                self.clock,
            )
        )

    def test_one_name(self) -> None:
        """
        The order made by ``request_challenges`` is finalized: the result's
        body is the leaf's DER, for the CSR's key, and it verifies.
        """
        client = self.registered_client()
        self.authorize(client, "a.example")
        certr = self.issue(client, "a.example")
        self.assertEqual(len(self.server.orders), 1)
        leaf = x509.load_der_x509_certificate(certr.body)
        self.assertEqual(leaf.public_key(), _CERT_KEY.public_key())
        self.assertIsInstance(certr, messages.CertificateResource)
        self.assertEqual(certr.uri, self.server.certificates[0].url)
        _verify_chain(self, certr.body, list(certr.chain), "a.example")

    def test_three_names(self) -> None:
        """
        For a CSR whose names were authorized one by one, a new order is
        made, which the CA fills with the valid authorizations.
        """
        client = self.registered_client()
        names = ["a.example", "b.example", "c.example"]
        self.authorize(client, *names)
        certr = self.issue(client, *names)
        self.assertEqual(len(self.server.orders), 4)
        leaf = x509.load_der_x509_certificate(certr.body)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(sorted(san.get_values_for_type(x509.DNSName)), names)
        chain = self.successResultOf(client.fetch_chain(certr))
        for name in names:
            _verify_chain(self, certr.body, [c.body for c in chain], name)

    def test_not_authorized(self) -> None:
        """
        Names never authorized give AuthorizationsNotValid naming them, and
        nothing is finalized.
        """
        client = self.registered_client()
        self.authorize(client, "a.example")
        failure = self.errorOf(
            client.request_issuance(
                CertificateRequest(
                    csr=csr_for_names(["a.example", "z.example"], _CERT_KEY)
                )
            ),
            AuthorizationsNotValid,
        )
        self.assertIn("z.example", str(failure))
        self.assertNotIn("a.example (", str(failure))
        self.assertEqual(self.server.request_counts()["finalize"], 0)

    def test_delayed_issuance(self) -> None:
        """
        An order that stays ``processing`` is polled, honouring Retry-After,
        until the certificate is ready.
        """
        self.server = self.make_server(processing_delay=40)
        client = self.registered_client()
        self.authorize(client, "a.example")
        result = client.request_issuance(
            CertificateRequest(csr=csr_for_names(["a.example"], _CERT_KEY))
        )
        self.clock.advance(39)
        self.assertNoResult(result)
        certr = self.successResultOf(self.settle(result, self.clock))
        self.assertEqual(len(certr.chain), 1)
        self.assertLessEqual(self.server.request_counts()["order"], 4)

    def test_not_a_chain(self) -> None:
        """A certificate body that is not a PEM chain is a MalformedResponse."""
        client = self.registered_client()
        self.authorize(client, "a.example")
        self.server.break_next("certificate", "not-pem")
        failure = self.errorOf(
            self.settle(
                client.request_issuance(
                    CertificateRequest(csr=csr_for_names(["a.example"], _CERT_KEY))
                ),
                self.clock,
            ),
            MalformedResponse,
        )
        self.assertIn("chain", str(failure))

    def test_bad_csr(self) -> None:
        """A CSR signed with the account key is refused by the CA: badCSR."""
        client = self.registered_client()
        self.authorize(client, "a.example")
        failure = self.errorOf(
            client.request_issuance(
                CertificateRequest(
                    csr=csr_for_names(["a.example"], _ACCOUNT_PRIVATE_KEY)
                )
            ),
            ServerError,
        )
        self.assertEqual(failure.code, "badCSR")

    def test_fetch_chain_no_request(self) -> None:
        """
        ``fetch_chain`` of an issued certificate needs no request; the
        chain has the trust anchor last.
        """
        self.server = self.make_server(chain_length=3)
        client = self.registered_client()
        self.authorize(client, "a.example")
        certr = self.issue(client, "a.example")
        before = len(self.server.requests)
        chain = self.successResultOf(client.fetch_chain(certr))
        self.assertEqual(len(self.server.requests), before)
        self.assertEqual(len(chain), 3)
        top = x509.load_der_x509_certificate(chain[-1].body)
        root_names = [root.subject for root in self.server.root_certificates()]
        self.assertIn(top.issuer, root_names)

    def test_fetch_chain_download(self) -> None:
        """
        For a plain certificate resource, ``fetch_chain`` downloads the
        certificate URL once.
        """
        client = self.registered_client()
        self.authorize(client, "a.example")
        certr = self.issue(client, "a.example")
        plain = messages.CertificateResource(
            uri=certr.uri, cert_chain_uri=certr.uri, body=certr.body, authzrs=()
        )
        before = self.server.request_counts()["certificate"]
        chain = self.successResultOf(client.fetch_chain(plain))
        self.assertEqual(self.server.request_counts()["certificate"], before + 1)
        self.assertEqual([c.body for c in chain], list(certr.chain))

    def test_fetch_chain_without_url(self) -> None:
        """
        A certificate resource without URL has no chain, as in txacme 0.9:
        nothing is requested.
        """
        client = self.registered_client()
        before = len(self.server.requests)
        chain = self.successResultOf(
            client.fetch_chain(messages.CertificateResource(body=b"", authzrs=()))
        )
        self.assertEqual(chain, [])
        self.assertEqual(len(self.server.requests), before)

    def test_fetch_chain_too_long(self) -> None:
        """A chain longer than ``max_length`` is an acme ClientError."""
        self.server = self.make_server(chain_length=3)
        client = self.registered_client()
        self.authorize(client, "a.example")
        certr = self.issue(client, "a.example")
        failure = self.errorOf(client.fetch_chain(certr, max_length=2), ChainTooLong)
        self.assertIsInstance(failure, acme_errors.ClientError)


class CompatibilityTests(AcmeTestCase):
    """What txacme 0.9 code and mistakes in arguments meet."""

    def test_transport_options_need_own_transport(self) -> None:
        """
        ``retry_policy`` and ``trust_root`` configure the transport
        ``from_url`` builds: with a ``jws_client`` they are a TypeError.
        """
        from txacme.jws import RetryPolicy

        self.errorOf(
            Client.from_url(
                self.clock,
                self.server.directory_url,
                EC_KEY,
                jws_client=self.make_jws_client(),
                retry_policy=RetryPolicy(),
            ),
            TypeError,
        )

    def test_plain_csr_forms(self) -> None:
        """
        ``request_issuance`` takes a bare ``cryptography`` CSR or PEM bytes
        as well as a certificate request message.
        """
        client = self.registered_client()
        for name in ("a.example", "b.example"):
            AuthorizationTests.authorize(self, client, name)  # type: ignore[arg-type]
        bare = csr_for_names(["a.example"], _CERT_KEY)
        pem = csr_for_names(["b.example"], _CERT_KEY).public_bytes(
            serialization.Encoding.PEM
        )
        for csr in (bare, pem):
            certr = self.successResultOf(
                self.settle(client.request_issuance(csr), self.clock)
            )
            self.assertEqual(
                x509.load_der_x509_certificate(certr.body).public_key(),
                _CERT_KEY.public_key(),
            )

    def test_tls_alpn_registered_by_client(self) -> None:
        """
        Importing :mod:`txacme.client` alone registers the tls-alpn-01
        challenge type, so authorizations offering it parse it.
        """
        script = (
            "import txacme.client\n"
            "from acme.challenges import Challenge\n"
            "challenge = Challenge.from_json("
            "{'type': 'tls-alpn-01', 'token': 'a' * 43})\n"
            "print(challenge.typ)\n"
        )
        output = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        ).stdout
        self.assertEqual(output.strip(), "tls-alpn-01")
