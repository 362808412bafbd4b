"""
Tests for the JWS transport, :class:`txacme.jws.JWSClient`: nonces,
retries, content types, problem documents and network failures.
"""

from __future__ import annotations

from random import Random
from typing import Any

from acme import messages
from josepy.jwa import ES256
from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived
from twisted.web.error import SchemeNotSupported

from tests.support import EC_KEY, AcmeTestCase, stub_treq
from txacme.client import fqdn_identifier
from txacme.errors import (
    MalformedResponse,
    NetworkError,
    RateLimited,
    ServerError,
    UserActionRequired,
)
from txacme.jws import JWSClient, RetryPolicy

_NO_JITTER = RetryPolicy(jitter=0.0, first_delay=1.0)
#: Raise at once: for the tests of the errors themselves.
_NO_RETRIES = RetryPolicy(max_retries=0)
_refused: Any = ConnectionRefusedError


class NoncePoolTests(AcmeTestCase):
    """The nonce pool."""

    def test_nonce_from_every_response(self) -> None:
        """
        Every response's nonce goes into the pool (the directory's too), so
        ``newNonce`` is never asked while responses carry nonces.
        """
        client = self.registered_client()
        for name in ("a.example", "b.example", "c.example"):
            self.successResultOf(client.request_challenges(fqdn_identifier(name)))
        self.assertEqual(self.server.request_counts()["newNonce"], 0)

    def test_new_nonce_when_empty(self) -> None:
        """
        With the pool empty (a directory without Replay-Nonce), ``newNonce``
        is asked once, and then never again.
        """
        self.server.break_next("directory", "no-replay-nonce")
        client = self.registered_client()
        for name in ("a.example", "b.example"):
            self.successResultOf(client.request_challenges(fqdn_identifier(name)))
        self.assertEqual(self.server.request_counts()["newNonce"], 1)

    def test_missing_nonce_retried(self) -> None:
        """
        The answer to a signed request without Replay-Nonce is no CA's (RFC
        8555 §6.5): the request is sent again, with a nonce from
        ``newNonce``, and succeeds.
        """
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.break_next("authorization", "no-replay-nonce")
        result = client.request_challenges(fqdn_identifier("a.example"))
        self.assertNoResult(result)
        self.clock.advance(1)
        self.successResultOf(result)
        self.assertEqual(self.server.request_counts()["authorization"], 2)
        self.assertEqual(self.server.request_counts()["newNonce"], 1)

    def test_new_nonce_without_nonce(self) -> None:
        """
        A ``newNonce`` answer without a nonce is retried; when every
        attempt lacks one, the MalformedResponse names the URL and the
        content type.
        """
        self.server.break_next("directory", "no-replay-nonce")
        client = self.make_client(retry_policy=RetryPolicy(max_retries=1))
        self.server.break_next("newNonce", "no-replay-nonce", count=2)
        result = client.register(
            messages.NewRegistration.from_data(terms_of_service_agreed=True)
        )
        self.clock.advance(5)
        failure = self.errorOf(result, MalformedResponse)
        self.assertIn("Replay-Nonce", str(failure))
        self.assertIn("new-nonce", str(failure))
        self.assertIn("HEAD", str(failure))
        self.assertEqual(self.server.request_counts()["newNonce"], 2)

    def test_new_nonce_failures_retried(self) -> None:
        """
        ``newNonce`` failing (503, then 429) is retried within the request's
        loop; the request then succeeds.
        """
        self.server.break_next("directory", "no-replay-nonce")
        client = self.make_client(retry_policy=_NO_JITTER)
        self.server.fail_next("newNonce", None, status=503)
        self.server.fail_next("newNonce", "rateLimited", retry_after=1)
        result = client.register(
            messages.NewRegistration.from_data(terms_of_service_agreed=True)
        )
        for _ in range(10):
            self.clock.advance(1)
        self.successResultOf(result)
        self.assertEqual(self.server.request_counts()["newNonce"], 3)

    def test_bad_nonce_retried(self) -> None:
        """
        At 50% rejected nonces, every request still succeeds: each
        ``badNonce`` is retried with the nonce from the error response.
        """
        self.server = self.make_server(nonce_rejection=0.5, seed=7)
        client = self.registered_client()
        for index in range(20):
            self.successResultOf(
                client.request_challenges(fqdn_identifier(f"n{index}.example"))
            )
        self.assertEqual(self.server.request_counts()["newNonce"], 0)
        rejected = [r for r in self.server.requests if r.status == 400]
        self.assertGreater(len(rejected), 5)

    def test_bad_nonce_bound(self) -> None:
        """
        Past ``max_nonce_retries`` the badNonce error is raised; the client
        stays usable.
        """
        self.server = self.make_server(nonce_rejection=1.0)
        client = self.make_client(max_nonce_retries=3)
        new_reg = messages.NewRegistration.from_data(terms_of_service_agreed=True)
        failure = self.errorOf(client.register(new_reg), ServerError)
        self.assertEqual(failure.code, "badNonce")
        self.assertEqual(self.server.request_counts()["newAccount"], 4)
        self.server.nonce_rejection = 0.0
        self.successResultOf(client.register(new_reg))


class ErrorAnswerTests(AcmeTestCase):
    """Problem documents, content types, transient errors."""

    def test_problem_document(self) -> None:
        """
        A problem document is a ServerError carrying it and the response.
        """
        client = self.registered_client()
        self.server.fail_next(
            "newOrder", "rejectedIdentifier", status=400, detail="no way"
        )
        failure = self.errorOf(
            client.request_challenges(fqdn_identifier("a.example")), ServerError
        )
        self.assertEqual(failure.code, "rejectedIdentifier")
        self.assertEqual(failure.message.detail, "no way")
        assert failure.response is not None
        self.assertEqual(failure.response.code, 400)
        self.assertIn("no way", str(failure))

    def test_wrong_content_type(self) -> None:
        """
        A success with an unexpected content type (a middlebox's page) is
        retried; when every attempt gets one, it is a MalformedResponse
        naming the content types, the request and the attempts.
        """
        client = self.registered_client(
            retry_policy=RetryPolicy(max_retries=2, jitter=0.0)
        )
        self.server.break_next("newOrder", "wrong-content-type", count=3)
        result = client.request_challenges(fqdn_identifier("a.example"))
        for _ in range(10):
            self.clock.advance(1)
        failure = self.errorOf(result, MalformedResponse)
        self.assertIn("text/plain", str(failure))
        self.assertIn("POST https://", str(failure))
        self.assertIn("3 attempts", str(failure))
        self.assertEqual(failure.attempts, 3)
        self.assertTrue(failure.transient)

    def test_middlebox_answers_retried(self) -> None:
        """
        A 200 that is an HTML page, or JSON cut short, is retried, and the
        request then succeeds.
        """
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.break_next("newOrder", "html")
        self.server.break_next("authorization", "truncated-json")
        result = client.request_challenges(fqdn_identifier("a.example"))
        self.clock.advance(1)
        self.clock.advance(1)
        self.successResultOf(result)

    def test_truncated_json(self) -> None:
        """
        Undecodable JSON in every attempt is a MalformedResponse; the client
        stays usable.
        """
        client = self.registered_client(retry_policy=_NO_RETRIES)
        self.server.break_next("newOrder", "truncated-json")
        self.failureResultOf(
            client.request_challenges(fqdn_identifier("a.example")), MalformedResponse
        )
        self.successResultOf(client.request_challenges(fqdn_identifier("a.example")))

    def test_server_internal_retried(self) -> None:
        """
        ``serverInternal`` and a plain 503 are retried after a backoff, and
        then succeed.
        """
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.fail_next("newOrder", "serverInternal", status=500)
        self.server.fail_next("authorization", None, status=503)
        result = client.request_challenges(fqdn_identifier("a.example"))
        self.assertNoResult(result)
        self.clock.advance(1)
        self.assertNoResult(result)
        self.clock.advance(1)
        self.successResultOf(result)

    def test_retries_bounded(self) -> None:
        """
        After ``max_retries`` the last error is raised, saying when a retry
        makes sense.
        """
        client = self.registered_client(
            retry_policy=RetryPolicy(max_retries=2, jitter=0.0, first_delay=1.0)
        )
        self.server.fail_next("newOrder", "serverInternal", status=500, count=5)
        result = client.request_challenges(fqdn_identifier("a.example"))
        self.clock.advance(1)
        self.clock.advance(2)
        failure = self.errorOf(result, ServerError)
        self.assertEqual(failure.code, "serverInternal")
        self.assertEqual(failure.retry_after, 4)
        self.assertEqual(failure.attempts, 3)
        self.assertIn("(3 attempts)", str(failure))
        self.assertIn("[POST https://", str(failure))
        self.assertEqual(self.server.request_counts()["newOrder"], 3)

    def test_rate_limited_retry_after(self) -> None:
        """A short Retry-After on ``rateLimited`` is waited for exactly."""
        client = self.registered_client()
        self.server.fail_next("newOrder", "rateLimited", status=429, retry_after=7)
        result = client.request_challenges(fqdn_identifier("a.example"))
        self.clock.advance(6.9)
        self.assertNoResult(result)
        self.clock.advance(0.1)
        self.successResultOf(result)

    def test_rate_limited_long(self) -> None:
        """
        A Retry-After longer than the policy waits for is raised at once as
        RateLimited, carrying it.
        """
        client = self.registered_client()
        self.server.fail_next("newOrder", "rateLimited", status=429, retry_after=3600)
        failure = self.errorOf(
            client.request_challenges(fqdn_identifier("a.example")), RateLimited
        )
        self.assertEqual(failure.retry_after, 3600)
        self.assertEqual(failure.retry_at, self.clock.seconds() + 3600)

    def test_not_transient(self) -> None:
        """Other errors are not retried."""
        client = self.registered_client()
        self.server.fail_next("newOrder", "malformed", status=400)
        self.failureResultOf(
            client.request_challenges(fqdn_identifier("a.example")), ServerError
        )
        self.assertEqual(self.server.request_counts()["newOrder"], 1)

    def test_user_action_required(self) -> None:
        """
        ``userActionRequired`` names the new terms of service from the
        Link header.
        """
        http = stub_treq(
            lambda method, url, params, headers, data: (
                403,
                {
                    b"content-type": b"application/problem+json",
                    b"link": b'<https://ca.test/terms/v2>;rel="terms-of-service"',
                },
                b'{"type": "urn:ietf:params:acme:error:userActionRequired",'
                b' "detail": "agree", "instance": "https://ca.test/agree"}',
            )
        )
        jws = JWSClient(http, EC_KEY, ES256, reactor=self.clock)
        failure = self.errorOf(jws.get("https://ca.test/directory"), UserActionRequired)
        self.assertEqual(failure.terms_of_service, "https://ca.test/terms/v2")
        self.assertEqual(failure.instance, "https://ca.test/agree")
        self.assertIn("https://ca.test/terms/v2", str(failure))


class _CountingTreq:
    """A treq client whose every request is refused, counting them."""

    def __init__(self) -> None:
        self.requests = 0

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        self.requests += 1
        return fail(_refused())


class _FailingTreq:
    """A treq client whose requests fail, or never finish."""

    def __init__(self, result: Deferred[Any] | None) -> None:
        self.result = result
        self.cancelled = 0

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        if self.result is not None:
            return self.result

        def cancel(deferred: Deferred[Any]) -> None:
            self.cancelled += 1

        return Deferred(cancel)


class NetworkTests(AcmeTestCase):
    """Requests that get no answer."""

    def test_connection_refused(self) -> None:
        """A refused connection is a NetworkError naming the URL."""
        clock = Clock()
        jws = JWSClient(
            _FailingTreq(fail(_refused())),
            EC_KEY,
            ES256,
            reactor=clock,
            retry_policy=_NO_RETRIES,
        )
        failure = self.errorOf(jws.get("https://ca.test/directory"), NetworkError)
        self.assertIn("https://ca.test/directory", str(failure))
        self.assertIsInstance(failure.__cause__, ConnectionRefusedError)

    def test_connection_refused_retried(self) -> None:
        """
        A request that got no answer is sent again after the policy's
        backoff; the last NetworkError says how many attempts were made.
        """
        clock = Clock()
        treq = _CountingTreq()
        jws = JWSClient(
            treq,
            EC_KEY,
            ES256,
            reactor=clock,
            retry_policy=RetryPolicy(max_retries=3, jitter=0.0, first_delay=1.0),
        )
        result = jws.get("https://ca.test/directory")
        self.assertEqual(treq.requests, 1)
        clock.advance(1)
        self.assertEqual(treq.requests, 2)
        clock.advance(2)
        self.assertEqual(treq.requests, 3)
        clock.advance(4)
        failure = self.errorOf(result, NetworkError)
        self.assertEqual(treq.requests, 4)
        self.assertEqual(failure.attempts, 4)
        self.assertIn("4 attempts", str(failure))

    def test_untrusted_certificate_not_retried(self) -> None:
        """
        A server certificate that is not trusted is not a passing failure:
        the request is not sent again, and the NetworkError says so.
        """
        clock = Clock()
        tls = SSL.Error([("SSL routines", "", "certificate verify failed")])
        refusal = ResponseNeverReceived(  # type: ignore[no-untyped-call]
            [Failure(tls)]  # type: ignore[no-untyped-call]
        )
        treq = _FailingTreq(fail(refusal))
        jws = JWSClient(treq, EC_KEY, ES256, reactor=clock)
        failure = self.errorOf(jws.get("https://ca.test/directory"), NetworkError)
        self.assertFalse(failure.transient)
        self.assertIn("certificate verify failed", str(failure))
        self.assertEqual(failure.attempts, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_unusable_url_not_retried(self) -> None:
        """
        A URL without a scheme treq can request fails at once: no retry.
        """
        clock = Clock()
        treq = _FailingTreq(fail(SchemeNotSupported("Unsupported scheme: b''")))
        jws = JWSClient(treq, EC_KEY, ES256, reactor=clock)
        failure = self.errorOf(jws.get("/relative/directory"), NetworkError)
        self.assertFalse(failure.transient)
        self.assertEqual(failure.attempts, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """
        A request with no answer within the timeout is cancelled and fails
        with NetworkError.
        """
        clock = Clock()
        treq = _FailingTreq(None)
        jws = JWSClient(
            treq, EC_KEY, ES256, reactor=clock, timeout=30, retry_policy=_NO_RETRIES
        )
        result = jws.get("https://ca.test/directory")
        clock.advance(29)
        self.assertNoResult(result)
        clock.advance(1)
        failure = self.errorOf(result, NetworkError)
        self.assertIn("30 s", str(failure))
        self.assertEqual(treq.cancelled, 1)

    def test_cancel(self) -> None:
        """Cancelling a request is CancelledError, not a NetworkError."""
        clock = Clock()
        jws = JWSClient(_FailingTreq(None), EC_KEY, ES256, reactor=clock)
        result = jws.get("https://ca.test/directory")
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])


class RetryPolicyTests(AcmeTestCase):
    """Tests for :class:`RetryPolicy`."""

    def test_backoff(self) -> None:
        """Delays grow by the factor, up to the ceiling, within the jitter."""
        policy = RetryPolicy(
            first_delay=1, factor=2, max_delay=5, jitter=0.2, random=Random(3)
        )
        for retries, base in enumerate([1, 2, 4, 5, 5]):
            delay = policy.backoff(retries)
            self.assertTrue(base * 0.8 <= delay <= base * 1.2, (retries, delay))
