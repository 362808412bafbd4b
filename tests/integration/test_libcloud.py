"""
dns-01 through apache-libcloud, validated for real:
:class:`~txacme.challenges.LibcloudDNSResponder` with libcloud's PowerDNS
driver updates a real PowerDNS (:mod:`tests.integration.powerdns`) through
its HTTP API, and Pebble, whose DNS server is that PowerDNS, validates the
TXT records.

Certificates are issued through :func:`txacme.client.issue_certificate`
for a wildcard and its base name (two TXT values at one name at once),
checked against Pebble's root, and afterwards the zone must hold no
``_acme-challenge`` record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.trial.unittest import FailTest, SkipTest

from tests.integration import powerdns
from tests.integration.pebble import PebbleOptions, PebbleTestCase, expect_failure
from tests.integration.powerdns import PowerDNSServer, powerdns_for
from tests.integration.test_dns01 import _Watching
from tests.support import TestCase
from txacme.challenges import DNSProviderError, LibcloudDNSResponder
from txacme.client import issue_certificate
from txacme.interfaces import IResponder
from txacme.util import csr_for_names, generate_private_key

WILD = ["*.wild.example.test", "wild.example.test"]
CHALLENGE_NAME = "_acme-challenge.wild.example.test"


class LibcloudPowerDNSTests(PebbleTestCase):
    """
    Issuance with dns-01 through libcloud's PowerDNS driver, against
    Pebble and PowerDNS.
    """

    # The PowerDNS port goes in here before Pebble starts (setUp).
    pebble_options = PebbleOptions(authz_reuse=0)
    timeout = 180

    powerdns: PowerDNSServer

    def setUp(self) -> None:
        self.powerdns = powerdns_for(type(self))
        type(self).pebble_options = PebbleOptions(
            authz_reuse=0, dns_server=f"127.0.0.1:{self.powerdns.dns_port}"
        )
        super().setUp()
        self.assertEqual(self.pebble.dns_address, self.powerdns.dns_address)

    def responder(self, api_key: str | None = None, **options: Any) -> Any:
        """
        A responder through libcloud's PowerDNS driver for this PowerDNS,
        checking propagation on its DNS port, with short bounds.
        """
        arguments: dict[str, Any] = {
            "nameservers": [self.powerdns.dns_address],
            "propagation_interval": 0.2,
            "propagation_timeout": 10.0,
            "query_timeout": 1.0,
            "api_timeout": 10.0,
        }
        arguments.update(options)
        responder = LibcloudDNSResponder.create(
            self.reactor,
            "powerdns",
            api_key if api_key is not None else self.powerdns.api_key,
            None,
            host="127.0.0.1",
            port=self.powerdns.api_port,
            api_version="v1",
            **arguments,
        )
        self.addCleanup(responder._thread_pool.quit)
        return responder

    async def issue(
        self, names: Sequence[str], responder: IResponder
    ) -> list[x509.Certificate]:
        """
        Issue a certificate for ``names`` through ``issue_certificate``,
        and verify it against Pebble's root.

        :returns: The chain, leaf first.
        """
        client = await self.registered_client()
        key = generate_private_key("p256")
        chain_pem: str = await issue_certificate(
            client, self.reactor, csr_for_names(list(names), key), [responder]
        )
        check_names = [name.replace("*.", "www.") for name in names]
        leaf = await self.verify_issued(chain_pem, check_names)
        self.assertEqual(leaf.public_key(), key.public_key())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertEqual(
            sorted(san.value.get_values_for_type(x509.DNSName)), sorted(names)
        )
        return x509.load_pem_x509_certificates(chain_pem.encode("ascii"))

    def assertNoChallengeRecords(self) -> None:
        """
        The zone holds no ``_acme-challenge`` record (as the API lists it,
        and as PowerDNS answers).
        """
        left = {
            name: contents
            for rdtype in ("TXT", "CNAME")
            for name, contents in self.powerdns.rrsets(rdtype).items()
            if name.startswith("_acme-challenge")
        }
        self.assertEqual(left, {})
        self.assertEqual(self.powerdns.txt(CHALLENGE_NAME), set())

    def run_test(self, body: Coroutine[Any, Any, None]) -> Deferred[None]:
        """The async test body, with Pebble's and PowerDNS's logs on failure."""

        async def with_powerdns_logs() -> None:
            try:
                await body
            except Exception as error:
                raise AssertionError(f"{error}\n{self.powerdns.logs()}") from error

        return self.run_with_logs(with_powerdns_logs())

    def test_wildcard_and_base_name(self) -> Deferred[None]:
        """
        A certificate for ``*.wild.example.test`` and ``wild.example.test``:
        both authorizations are validated at once from two TXT values at
        ``_acme-challenge.wild.example.test`` (both served when the second
        start completes); the chain verifies against Pebble's root, and
        afterwards the zone holds no ``_acme-challenge`` record.
        """

        async def test() -> None:
            seen: list[set[str]] = []
            responder = _Watching(
                self.responder(), lambda: seen.append(self.powerdns.txt(CHALLENGE_NAME))
            )
            await self.issue(WILD, responder)
            # The stops come after both authorizations are valid.
            self.assertEqual(len(seen), 2)
            self.assertEqual(len(seen[-1]), 2)
            self.assertNoChallengeRecords()

        return self.run_test(test())

    def test_settle_delay_without_nameservers(self) -> Deferred[None]:
        """
        Without nameservers to ask, the responder waits ``settle_delay``
        seconds after adding each record (txacme 0.9's way), and issuance
        works the same.
        """

        async def test() -> None:
            started = time.monotonic()
            await self.issue(
                ["settle.example.test"],
                self.responder(nameservers=None, settle_delay=1.0),
            )
            self.assertTrue(time.monotonic() - started >= 1.0)
            self.assertNoChallengeRecords()
            self.assertEqual(
                self.powerdns.txt("_acme-challenge.settle.example.test"), set()
            )

        return self.run_test(test())

    def test_wrong_api_key(self) -> Deferred[None]:
        """
        An API key PowerDNS does not accept fails the issuance with
        ``DNSProviderError`` at once, saying the credentials were refused,
        and adds nothing.
        """

        async def test() -> None:
            started = time.monotonic()
            error = await expect_failure(
                DNSProviderError,
                self.issue(["wrong-key.example.test"], self.responder("wrong-key")),
            )
            self.assertTrue(time.monotonic() - started < 5.0)
            self.assertEqual(error.provider, "PowerDNS")
            self.assertEqual(error.operation, "list_zones")
            self.assertIn("refused the credentials", str(error))
            self.assertNoChallengeRecords()

        return self.run_test(test())


class MissingPowerDNSTests(TestCase):
    """
    Without PowerDNS, the tests skip, except in CI where they fail.
    """

    def setUp(self) -> None:
        saved = dict(os.environ)
        self.addCleanup(os.environ.update, saved)
        self.addCleanup(os.environ.clear)

        def nowhere(name: str) -> str | None:
            return None

        self.addCleanup(setattr, powerdns, "_program", powerdns._program)
        powerdns._program = nowhere

    def test_skip_outside_ci(self) -> None:
        """
        Outside CI a missing ``pdns_server`` skips, saying what to install.
        """
        os.environ.pop("CI", None)
        with self.assertRaises(SkipTest) as raised:
            powerdns.require_powerdns()
        self.assertIn("apt-get install pdns-server", str(raised.exception))

    def test_fail_in_ci(self) -> None:
        """
        With ``CI`` set a missing ``pdns_server`` fails the test.
        """
        os.environ["CI"] = "true"
        with self.assertRaises(FailTest):
            powerdns.require_powerdns()
        with self.assertRaises(FailTest):
            powerdns_for(MissingPowerDNSTests)
