"""
Tests for the Pebble harness itself (:mod:`tests.integration.pebble`).
"""

from __future__ import annotations

import os
import unittest as pyunit
from typing import Any

import treq
from attrs import astuple
from cryptography import x509
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.trial.unittest import FailTest, SynchronousTestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.static import Data

from tests.integration.pebble import (
    PebbleOptions,
    PebbleServer,
    PebbleStartError,
    PebbleTestCase,
    ServedSite,
    TypedAssertions,
    expect_failure,
    expect_raises,
    resolve_a,
    resolve_aaaa,
)
from txacme.testing._processes import _ephemeral_range_start
from txacme.testing.pebble import free_ports


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class HarnessTests(PebbleTestCase):
    """
    A Pebble with the default options answers ACME, management and DNS
    requests the way the integration tests rely on.
    """

    def test_directory(self) -> Deferred[None]:
        """
        The ACME directory answers over HTTPS through the client that trusts
        the harness CA, with RFC 8555 directory keys.
        """

        async def test() -> None:
            http = self.http_client()
            response = await http.get(self.pebble.directory_url)
            self.assertEqual(response.code, 200)
            directory: dict[str, Any] = await treq.json_content(response)
            for key in (
                "newNonce",
                "newAccount",
                "newOrder",
                "revokeCert",
                "keyChange",
            ):
                self.assertIn(key, directory)
            self.assertTrue(directory["newOrder"].startswith("https://127.0.0.1:"))

        return Deferred.fromCoroutine(test())

    def test_untrusted_by_default(self) -> Deferred[None]:
        """
        A client with the platform's trust roots refuses Pebble's listener:
        trust comes from the harness CA only.
        """

        async def test() -> None:
            pool = HTTPConnectionPool(  # type: ignore[no-untyped-call]
                self.reactor, persistent=True
            )
            self.addCleanup(pool.closeCachedConnections)
            agent = Agent(self.reactor, pool=pool)  # type: ignore[no-untyped-call]
            http = HTTPClient(agent)
            await expect_failure(
                ResponseNeverReceived, http.get(self.pebble.directory_url)
            )

        return Deferred.fromCoroutine(test())

    def test_roots(self) -> Deferred[None]:
        """
        The management API gives Pebble's root and intermediate; the root is a
        CA certificate that issued the intermediate.
        """

        async def test() -> None:
            management = self.management()
            root = x509.load_pem_x509_certificate(await management.root_pem())
            intermediate = x509.load_pem_x509_certificate(
                await management.intermediate_pem()
            )
            constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
            self.assertTrue(constraints.value.ca)
            self.assertEqual(intermediate.issuer, root.subject)
            intermediate.verify_directly_issued_by(root)

        return Deferred.fromCoroutine(test())

    def test_cert_status_unknown(self) -> Deferred[None]:
        """
        The certificate status of an unknown serial is an error, not a
        status.
        """

        async def test() -> None:
            await expect_failure(ValueError, self.management().cert_status("abcdef"))

        return Deferred.fromCoroutine(test())

    def test_dns_default(self) -> None:
        """
        The DNS server Pebble uses answers any name with 127.0.0.1 and gives
        no IPv6 address, so Pebble's validator reaches the tests' responders.
        """
        port = self.pebble.dns_address[1]
        self.assertEqual(resolve_a("a.example.test", port), ["127.0.0.1"])
        self.assertEqual(resolve_a("x.y.example.test", port), ["127.0.0.1"])
        self.assertEqual(resolve_aaaa("a.example.test", port), [])

    def test_dns_add_a(self) -> Deferred[None]:
        """
        ``add_dns_a`` and ``clear_dns_a`` change and restore one name's
        addresses.
        """

        async def test() -> None:
            management = self.management()
            port = self.pebble.dns_address[1]
            await management.add_dns_a("other.example.test", ["127.0.0.2"])
            self.assertEqual(resolve_a("other.example.test", port), ["127.0.0.2"])
            await management.clear_dns_a("other.example.test")
            self.assertEqual(resolve_a("other.example.test", port), ["127.0.0.1"])

        return Deferred.fromCoroutine(test())

    def test_default_options_reach_pebble(self) -> None:
        """
        Pebble runs with the default options: no validation sleep, 5% nonce
        rejection, 50% authorization reuse.
        """
        logs = self.pebble_logs()
        self.assertIn("Disabling random VA sleeps", logs)
        self.assertIn("reject 5% of good nonces", logs)
        self.assertIn("50% of the time", logs)

    def test_served_site(self) -> Deferred[None]:
        """
        ``serve_http01`` serves a resource at ``/.well-known/acme-challenge``
        on Pebble's http-01 port; stopping the site frees the port.
        """

        async def test() -> None:
            challenges = Resource()  # type: ignore[no-untyped-call]
            token = Data(b"key-authorization", "text/plain")  # type: ignore[no-untyped-call]
            challenges.putChild(b"token", token)
            site = self.serve_http01(challenges)
            http = self.http_client()
            url = f"http://127.0.0.1:{self.pebble.http_port}/.well-known/acme-challenge"
            response = await http.get(url + "/token")
            self.assertEqual(await treq.content(response), b"key-authorization")
            missing = await http.get(url + "/other")
            self.assertEqual(missing.code, 404)
            await treq.content(missing)
            await site.stop()
            await expect_failure(ConnectionRefusedError, http.get(url + "/token"))
            empty = Resource()  # type: ignore[no-untyped-call]
            again = ServedSite.listen(self.reactor, self.pebble.http_port, empty)
            await again.stop()

        return Deferred.fromCoroutine(test())

    def test_start_and_stop(self) -> None:
        """
        Another server gets its own ports; ``stop`` ends both processes and
        removes the temporary directory, and may be called twice.
        """
        other = PebbleServer.start()
        self.addCleanup(other.stop)
        self.assertNotEqual(other.ports, self.pebble.ports)
        pids = other.pids
        self.assertEqual(len(pids), 2)
        self.assertTrue(all(_alive(pid) for pid in pids))
        self.assertTrue(other.running)
        other.stop()
        self.assertFalse(any(_alive(pid) for pid in pids))
        self.assertFalse(other.workdir.exists())
        self.assertFalse(other.running)
        other.stop()

    def test_failure_has_logs(self) -> Deferred[None]:
        """
        ``run_with_logs`` turns a failing test body into a test failure with
        the body's traceback and Pebble's logs.
        """

        async def failing() -> None:
            raise ValueError("the original problem")

        async def test() -> None:
            failure = await expect_failure(FailTest, self.run_with_logs(failing()))
            message = str(failure)
            self.assertIn("ValueError: the original problem", message)
            self.assertIn("in failing", message)
            self.assertIn("Starting Pebble ACME server", message)

        return Deferred.fromCoroutine(test())

    def test_free_ports(self) -> None:
        """
        The harness's ports are distinct and, where the kernel says which
        ports are ephemeral, below that range.
        """
        ports = free_ports(20)
        self.assertEqual(len(set(ports)), 20)
        ceiling = _ephemeral_range_start()
        if ceiling > 11000:
            used = [*ports, *astuple(self.pebble.ports)]
            self.assertTrue(all(port < ceiling for port in used), str(used))

    def test_start_failure_has_logs(self) -> None:
        """
        A server that is not ready in time fails to start with its logs in
        the message.
        """
        error = expect_raises(PebbleStartError, PebbleServer.start, timeout=0.0)
        self.assertIn("pebble.log", str(error))
        self.assertIn("challtestsrv.log", str(error))


class OptionsTests(PebbleTestCase):
    """
    A test class's options reach its own Pebble.
    """

    pebble_options = PebbleOptions(nonce_reject=50, authz_reuse=100, chain_length=2)

    def test_options_reach_pebble(self) -> None:
        """
        Pebble runs with this class's nonce rejection and reuse rates.
        """
        logs = self.pebble_logs()
        self.assertIn("reject 50% of good nonces", logs)
        self.assertIn("100% of the time", logs)

    def test_environment(self) -> None:
        """
        The options map to Pebble's environment variables.
        """
        environment = self.pebble_options.environment()
        self.assertEqual(environment["PEBBLE_WFE_NONCEREJECT"], "50")
        self.assertEqual(environment["PEBBLE_AUTHZREUSE"], "100")
        self.assertEqual(environment["PEBBLE_CHAIN_LENGTH"], "2")
        self.assertEqual(environment["PEBBLE_VA_NOSLEEP"], "1")
        self.assertNotIn("PEBBLE_VA_ALWAYS_VALID", environment)


class MissingPebbleTests(TypedAssertions, SynchronousTestCase):
    """
    Without the Pebble binaries, harness tests skip, except in CI where they
    fail.
    """

    def setUp(self) -> None:
        saved = dict(os.environ)
        self.addCleanup(os.environ.update, saved)
        self.addCleanup(os.environ.clear)
        os.environ["PATH"] = "/nonexistent"

    def run_inner(self) -> pyunit.TestResult:
        class Inner(PebbleTestCase):
            def test_nothing(self) -> None:
                """Never runs: there is no Pebble."""

        result = pyunit.TestResult()
        Inner("test_nothing").run(result)  # type: ignore[no-untyped-call]
        return result

    def test_skip_outside_ci(self) -> None:
        """
        Outside CI a missing ``pebble`` skips the test, saying why.
        """
        os.environ.pop("CI", None)
        result = self.run_inner()
        self.assertEqual(len(result.skipped), 1)
        self.assertIn("apt-get install pebble", result.skipped[0][1])
        self.assertEqual(result.errors + result.failures, [])

    def test_fail_in_ci(self) -> None:
        """
        With ``CI`` set a missing ``pebble`` fails the test.
        """
        os.environ["CI"] = "true"
        result = self.run_inner()
        self.assertEqual(result.skipped, [])
        self.assertEqual(len(result.errors + result.failures), 1)
        self.assertFalse(result.wasSuccessful())
