"""
dns-01 validated for real: :class:`~txacme.challenges.RFC2136Responder`
updates a real BIND 9 (:mod:`tests.integration.bind`) with TSIG, and Pebble,
whose DNS server is that BIND, validates the TXT records.

Certificates are issued through :func:`txacme.client.issue_certificate`:
for a wildcard and its base name (two TXT values at one name at once), and
for a name whose ``_acme-challenge`` record is a CNAME into another zone.
Afterwards BIND must serve none of the values.  A wrong TSIG key, an update
outside the key's update-policy and an unreachable server must each fail
the issuance with the responder's documented error, within its bounds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import dns.rcode
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface import implementer

from tests.integration.bind import BindServer, bind_for
from tests.integration.pebble import (
    PebbleOptions,
    PebbleTestCase,
    expect_failure,
    verify_chain,
)
from txacme.challenges import (
    DNSAuthenticationError,
    DNSServerUnreachable,
    DNSTimeout,
    DNSUpdateError,
    RFC2136Responder,
)
from txacme.client import issue_certificate
from txacme.interfaces import IResponder
from txacme.util import csr_for_names, generate_private_key

ROOT = Path(__file__).resolve().parent.parent.parent
WRONG_SECRET = "d3Jvbmcgc2VjcmV0IGZvciB0eGFjbWUncyB0ZXN0cyE="


class DNS01Tests(PebbleTestCase):
    """
    Issuance with dns-01 against Pebble and BIND, and the failures.
    """

    # The BIND port goes in here before Pebble starts (setUp).
    pebble_options = PebbleOptions(authz_reuse=0)
    timeout = 180

    bind: BindServer

    def setUp(self) -> None:
        self.bind = bind_for(type(self))
        type(self).pebble_options = PebbleOptions(
            authz_reuse=0, dns_server=f"127.0.0.1:{self.bind.port}"
        )
        super().setUp()
        self.assertEqual(self.pebble.dns_address, self.bind.address)

    def responder(self, **arguments: Any) -> RFC2136Responder:
        """
        A responder for this BIND, with short bounds.
        """
        options: dict[str, Any] = {
            "query_timeout": 1.0,
            "query_attempts": 2,
            "update_timeout": 5.0,
            "propagation_interval": 0.2,
            "propagation_timeout": 10.0,
            "nameserver_addresses": self.bind.nameserver_addresses(),
        }
        options.update(arguments)
        server = options.pop("server", self.bind.address)
        secret = options.pop("secret", self.bind.secret)
        key_name = options.pop("key_name", self.bind.key_name)
        return RFC2136Responder(self.reactor, server, key_name, secret, **options)

    async def issue(
        self, names: Sequence[str], responder: IResponder
    ) -> list[x509.Certificate]:
        """
        Issue a certificate for ``names`` through ``issue_certificate``.

        :returns: The chain, leaf first.
        """
        client = await self.registered_client()
        key = generate_private_key("p256")
        chain_pem: str = await issue_certificate(
            client, self.reactor, csr_for_names(list(names), key), [responder]
        )
        chain = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))
        self.assertEqual(chain[0].public_key(), key.public_key())
        return chain

    async def verify(self, chain: list[x509.Certificate], names: list[str]) -> None:
        """
        Verify ``chain`` up to Pebble's root for every name.
        """
        root_pem = await self.management().root_pem()
        der = [certificate.public_bytes(Encoding.DER) for certificate in chain]
        verify_chain(der[0], der[1:], root_pem, names)

    def run_test(self, body: Coroutine[Any, Any, None]) -> Deferred[None]:
        """The async test body, with Pebble's and BIND's logs on failure."""

        async def with_bind_logs() -> None:
            try:
                await body
            except Exception as error:
                raise AssertionError(f"{error}\n{self.bind.logs()}") from error

        return self.run_with_logs(with_bind_logs())

    def test_wildcard_and_base_name(self) -> Deferred[None]:
        """
        A certificate for ``*.example.test`` and ``example.test``: both
        authorizations are validated at once from two TXT values at
        ``_acme-challenge.example.test``; afterwards BIND serves neither.
        """

        async def test() -> None:
            chain = await self.issue(
                ["*.example.test", "example.test"], self.responder()
            )
            san = chain[0].extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            )
            self.assertEqual(
                sorted(san.value.get_values_for_type(x509.DNSName)),
                ["*.example.test", "example.test"],
            )
            await self.verify(chain, ["www.example.test", "example.test"])
            self.assertEqual(self.bind.txt("_acme-challenge.example.test"), set())

        return self.run_test(test())

    def test_cname_into_delegated_zone(self) -> Deferred[None]:
        """
        For ``alias.example.test``, whose ``_acme-challenge`` record is a
        CNAME for ``alias.delegated.test``, the TXT record is added in zone
        ``delegated.test``; Pebble follows the CNAME (BIND recursing for
        loopback) and validates; afterwards the record is gone and the
        CNAME is still there.
        """

        async def test() -> None:
            seen: list[set[str]] = []
            responder = _Watching(
                self.responder(),
                lambda: seen.append(self.bind.txt("alias.delegated.test")),
            )
            chain = await self.issue(["alias.example.test"], responder)
            await self.verify(chain, ["alias.example.test"])
            self.assertEqual(len(seen), 1)
            self.assertEqual(len(seen[0]), 1)
            self.assertEqual(self.bind.txt("alias.delegated.test"), set())
            self.assertEqual(
                self.bind.txt("_acme-challenge.alias.example.test", recursion=True),
                set(),
            )
            cname = self.bind.query("_acme-challenge.alias.example.test", "CNAME")
            self.assertEqual(len(cname.answer), 1)

        return self.run_test(test())

    def test_wrong_secret(self) -> Deferred[None]:
        """
        A wrong TSIG secret fails the issuance with
        ``DNSAuthenticationError`` (NOTAUTH, BADSIG) well within the update
        bound, and adds nothing.
        """

        async def test() -> None:
            started = time.monotonic()
            error = await expect_failure(
                DNSAuthenticationError,
                self.issue(
                    ["wrong-key.example.test"], self.responder(secret=WRONG_SECRET)
                ),
            )
            self.assertTrue(time.monotonic() - started < 5.0)
            self.assertEqual(error.rcode, dns.rcode.NOTAUTH)
            self.assertEqual(error.tsig_error, dns.rcode.BADSIG)
            self.assertEqual(
                self.bind.txt("_acme-challenge.wrong-key.example.test"), set()
            )

        return self.run_test(test())

    def test_unknown_key_name(self) -> Deferred[None]:
        """
        A key name BIND does not know fails with ``DNSAuthenticationError``
        (NOTAUTH, BADKEY).
        """

        async def test() -> None:
            error = await expect_failure(
                DNSAuthenticationError,
                self.issue(["no-key.example.test"], self.responder(key_name="nobody")),
            )
            self.assertEqual(error.rcode, dns.rcode.NOTAUTH)
            self.assertEqual(error.tsig_error, dns.rcode.BADKEY)

        return self.run_test(test())

    def test_refused_by_policy(self) -> Deferred[None]:
        """
        A name under ``locked.example.test``, outside the key's
        update-policy, fails with ``DNSUpdateError`` REFUSED.
        """

        async def test() -> None:
            started = time.monotonic()
            error = await expect_failure(
                DNSUpdateError, self.issue(["locked.example.test"], self.responder())
            )
            self.assertTrue(time.monotonic() - started < 5.0)
            self.assertFalse(isinstance(error, DNSAuthenticationError))
            self.assertEqual(error.rcode, dns.rcode.REFUSED)
            self.assertEqual(error.record_name, "_acme-challenge.locked.example.test")
            self.assertIn("update-policy", str(error))

        return self.run_test(test())

    def test_unreachable_server(self) -> Deferred[None]:
        """
        A server port where nothing listens fails with
        ``DNSServerUnreachable`` at once.
        """

        async def test() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            started = time.monotonic()
            error = await expect_failure(
                DNSServerUnreachable,
                self.issue(
                    ["unreachable.example.test"],
                    self.responder(server=("127.0.0.1", port)),
                ),
            )
            self.assertTrue(time.monotonic() - started < 2.0)
            self.assertEqual(error.server, ("127.0.0.1", port))

        return self.run_test(test())

    def test_silent_server(self) -> Deferred[None]:
        """
        A server that takes datagrams and never answers fails with
        ``DNSTimeout`` after ``query_attempts * query_timeout`` seconds.
        """

        async def test() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
                silent.bind(("127.0.0.1", 0))
                port = silent.getsockname()[1]
                started = time.monotonic()
                error = await expect_failure(
                    DNSTimeout,
                    self.issue(
                        ["silent.example.test"],
                        self.responder(
                            server=("127.0.0.1", port),
                            query_timeout=0.5,
                            query_attempts=2,
                        ),
                    ),
                )
                elapsed = time.monotonic() - started
            self.assertTrue(0.9 <= elapsed < 3.0, f"{elapsed} s")
            self.assertEqual(error.seconds, 1.0)

        return self.run_test(test())

    def test_example_check(self) -> None:
        """
        ``docs/examples/dns_01.py check`` publishes a test value through
        BIND, sees every nameserver serve it, and deletes it.
        """

        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), environment.get("PYTHONPATH", "")]
        )
        host, port = self.bind.address
        completed = subprocess.run(
            [
                sys.executable,
                str(ROOT / "docs" / "examples" / "dns_01.py"),
                "check",
                f"{host}:{port}",
                self.bind.key_name,
                self.bind.secret,
                "check.example.test",
                "--nameserver",
                f"ns1.example.test={host}:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
            check=False,
        )
        self.assertEqual(completed.returncode, 0, completed.stdout + completed.stderr)
        self.assertIn(
            "served by every nameserver: _acme-challenge.check.example.test",
            completed.stdout,
        )
        self.assertIn("deleted", completed.stdout)
        self.assertEqual(self.bind.txt("_acme-challenge.check.example.test"), set())


@implementer(IResponder)
class _Watching:
    """
    A responder wrapper that calls ``look`` each time a start completed.
    """

    challenge_type = "dns-01"

    def __init__(self, responder: IResponder, look: Callable[[], None]) -> None:
        self._responder = responder
        self._look = look

    def start_responding(
        self, server_name: str, challenge: Any, response: Any
    ) -> Deferred[None]:
        started: Deferred[None] = maybeDeferred(
            self._responder.start_responding, server_name, challenge, response
        )

        def look(result: None) -> None:
            self._look()

        return started.addCallback(look)

    def stop_responding(
        self, server_name: str, challenge: Any, response: Any
    ) -> Deferred[None]:
        return maybeDeferred(
            self._responder.stop_responding, server_name, challenge, response
        )
