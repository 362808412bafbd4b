"""
http-01 validated for real by Pebble through the standalone server.

:meth:`HTTP01Responder.listen <txacme.challenges.HTTP01Responder.listen>`
listens on Pebble's ``httpPort`` on 127.0.0.1 (every test name resolves
there through pebble-challtestsrv), with nothing else serving it: no
``twisted.web`` site of the test's own.  The responder runs its self-check
against that port before each challenge is answered.  Certificates are
issued through :mod:`txacme.client` and verified against Pebble's root;
afterwards the stopped tokens, and every other path, answer 404.  A
self-check that fails stops the challenge before Pebble is asked to
validate it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acme import challenges, messages
from twisted.internet.defer import Deferred
from zope.interface import implementer

from tests.integration.pebble import (
    PebbleOptions,
    PebbleTestCase,
    expect_failure,
)
from tests.support import LoopbackEndpoint
from tests.test_http01 import Loopback, closed_port, port_of
from txacme.challenges import HTTP01Responder, SelfCheck, SelfCheckFailed
from txacme.client import (
    answer_challenge,
    fqdn_identifier,
    issue_certificate,
    poll_until_valid,
)
from txacme.interfaces import IResponder
from txacme.testing.pebble import ConnectionTracker
from txacme.util import csr_for_names, generate_private_key

LOOPBACK = "127.0.0.1"


@implementer(IResponder)
class Recorded:
    """
    An http-01 responder that remembers the challenges it was asked to
    start, and passes every call on.
    """

    challenge_type = "http-01"

    def __init__(self, responder: HTTP01Responder) -> None:
        self.responder = responder
        self.started: list[tuple[str, challenges.HTTP01, Any]] = []

    def start_responding(
        self, server_name: str, challenge: challenges.HTTP01, response: Any
    ) -> Any:
        self.started.append((server_name, challenge, response))
        return self.responder.start_responding(server_name, challenge, response)

    def stop_responding(
        self, server_name: str, challenge: challenges.HTTP01, response: Any
    ) -> None:
        self.responder.stop_responding(server_name, challenge, response)


class HTTP01StandalonePebbleTests(PebbleTestCase):
    """
    Pebble validates http-01 through :meth:`HTTP01Responder.listen` on its
    http-01 port.  Authorizations are never reused, so every one is
    validated.
    """

    pebble_options = PebbleOptions(authz_reuse=0)
    timeout = 180

    def setUp(self) -> None:
        super().setUp()
        self.loopback = Loopback(self.reactor, self.addCleanup)

    async def listen(self, responder: HTTP01Responder) -> ConnectionTracker:
        """
        Run the standalone server on Pebble's http-01 port until the test
        ends; its connections are counted by the tracker returned.
        """
        endpoint = LoopbackEndpoint(
            self.reactor, self.loopback.trackers, port=self.pebble.http_port
        )
        listening = await responder.listen(endpoint, self.reactor)
        self.addCleanup(lambda: self.loopback.close(listening))
        self.assertEqual(port_of(listening), self.pebble.http_port)
        return self.loopback.trackers[-1]

    def responder(self, check_port: int | None = None) -> HTTP01Responder:
        """
        A responder whose self-check connects to 127.0.0.1:``check_port``
        (Pebble's http-01 port by default).
        """
        port = self.pebble.http_port if check_port is None else check_port
        return HTTP01Responder(
            self_check=SelfCheck(self.reactor, address=(LOOPBACK, port))
        )

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` from the standalone server: status and body."""
        code, body, _ = await self.loopback.fetch(self.pebble.http_port, path)
        return code, body

    async def assert_not_found(self, paths: Sequence[str]) -> None:
        for path in paths:
            code, _ = await self.get(path)
            self.assertEqual(code, 404, path)

    def test_issue_certificate(self) -> Deferred[None]:
        """
        ``issue_certificate`` gets a certificate for two names and an IP
        address (RFC 8738), each validated by Pebble through the standalone
        server after the self-check passed; it verifies up to Pebble's root.
        Afterwards each token, and every other path, answers 404.
        """

        async def run() -> None:
            responder = Recorded(self.responder())
            tracker = await self.listen(responder.responder)
            client = await self.registered_client()
            names = ["http.example.test", "www.http.example.test", LOOPBACK]
            key = generate_private_key("p256")
            chain = await issue_certificate(
                client, self.reactor, csr_for_names(names, key), [responder]
            )
            leaf = await self.verify_issued(chain, names)
            self.assertEqual(leaf.public_key(), key.public_key())
            self.assertEqual(
                sorted(server_name for server_name, _, _ in responder.started),
                sorted(names),
            )
            # One self-check and at least one validation by Pebble per name.
            self.assertTrue(
                tracker.connections >= 2 * len(names), str(tracker.connections)
            )
            await self.assert_not_found(
                [challenge.path for _, challenge, _ in responder.started]
            )
            await self.assert_not_found(
                [
                    "/",
                    "/.well-known/acme-challenge/",
                    "/.well-known/acme-challenge/not-a-token",
                    "/.well-known/",
                ]
            )

        return self.run_with_logs(run())

    def test_seed_flow(self) -> Deferred[None]:
        """
        With the seed API, the token answers the key authorization while the
        challenge is pending, Pebble validates it, and once stopped the
        token answers 404; a path below it never answers.
        """

        async def run() -> None:
            responder = Recorded(self.responder())
            await self.listen(responder.responder)
            client = await self.registered_client()
            name = "seed.http.example.test"
            authzr = await client.request_challenges(fqdn_identifier(name))
            stop = await answer_challenge(authzr, client, [responder])
            try:
                ((_, challenge, response),) = responder.started
                code, body = await self.get(challenge.path)
                self.assertEqual(
                    (code, body), (200, response.key_authorization.encode("ascii"))
                )
                await self.assert_not_found([challenge.path + "/more"])
                authzr = await poll_until_valid(authzr, self.reactor, client)
            finally:
                await stop()
            self.assertEqual(authzr.body.status, messages.STATUS_VALID)
            await self.assert_not_found([challenge.path])

        return self.run_with_logs(run())

    def test_failed_self_check_spares_the_ca(self) -> Deferred[None]:
        """
        When the self-check cannot fetch the token, ``answer_challenge``
        fails with :exc:`SelfCheckFailed` before telling Pebble to validate:
        the challenge and its authorization stay pending, and Pebble never
        connected to the http-01 port.
        """

        async def run() -> None:
            responder = self.responder(check_port=closed_port())
            tracker = await self.listen(responder)
            client = await self.registered_client()
            name = "broken.http.example.test"
            authzr = await client.request_challenges(fqdn_identifier(name))
            error = await expect_failure(
                SelfCheckFailed, answer_challenge(authzr, client, [responder])
            )
            self.assertEqual(error.server_name, name)
            authzr, _ = await client.poll(authzr)
            self.assertEqual(authzr.body.status, messages.STATUS_PENDING)
            (challb,) = [
                challb
                for challb in authzr.body.challenges
                if challb.chall.typ == "http-01"
            ]
            self.assertEqual(challb.status, messages.STATUS_PENDING)
            self.assertEqual(tracker.connections, 0)

        return self.run_with_logs(run())
