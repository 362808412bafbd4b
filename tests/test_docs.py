"""
The documentation's examples run and do what the pages say they do, and the
API reference covers every public module.

Each example in ``docs/examples`` is run as a script, as a reader would run
it, and its output checked.  The quickstart's code, which needs a real CA,
is imported and run against :class:`txacme.testing.MemoryAcmeServer`
instead.
"""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from docs.examples import get_certificate, memory_server
from josepy.jwa import ES256
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

import txacme
import txacme.errors
from tests.support import TestCase
from txacme.challenges import HTTP01Responder
from txacme.client import Client, JWSClient
from txacme.testing import MemoryAcmeServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
SRC = Path(txacme.__file__).resolve().parent.parent

#: Seconds an example may run.  The slowest makes TLS connections on the
#: loopback; the others finish in well under a second.
TIMEOUT = 120

_T = TypeVar("_T")


class DocsTestCase(TestCase):
    """A test case that can make temporary directories."""

    def temporary_directory(self) -> Path:
        """A new directory, removed after the test."""
        directory = Path(tempfile.mkdtemp(prefix="txacme-docs-"))
        self.addCleanup(shutil.rmtree, directory)
        return directory


async def _result(deferred: Deferred[_T]) -> _T:
    return await deferred


def run(clock: Clock, awaitable: Deferred[_T] | Coroutine[Any, Any, _T]) -> _T:
    """
    The result of a Deferred or coroutine, advancing ``clock`` to each
    timer it waits for (with the examples' own ``run``).
    """
    if isinstance(awaitable, Deferred):
        awaitable = _result(awaitable)
    return memory_server.run(clock, awaitable)


def run_example(name: str, *arguments: str) -> str:
    """
    Run ``docs/examples/<name>`` as a script and return what it printed.

    :raises AssertionError: If it fails, with its output.
    """
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), *filter(None, [environment.get("PYTHONPATH")])]
    )
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
        cwd=ROOT,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"{name} exited with {completed.returncode}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return completed.stdout


#: The random label in the names of the in-memory server's CA certificates.
_CA_LABEL = re.compile(r"(txacme memory (?:alternate )?root(?: \d+)?) [0-9a-f]{6}\b")


def _without_ca_label(text: str) -> str:
    """``text`` with the in-memory CA's random label replaced by ``LABEL``."""
    return _CA_LABEL.sub(r"\1 LABEL", text)


class ExampleScriptTests(DocsTestCase):
    """
    Every example runs as a script and prints what the documentation shows.
    """

    def test_every_example_is_tested_and_included(self) -> None:
        """
        Every file in ``docs/examples`` is run by a test (a test module
        names it) and included in a page, so none can rot unseen.
        """
        tests = "".join(
            path.read_text() for path in (ROOT / "tests").rglob("test_*.py")
        )
        pages = "".join(path.read_text() for path in DOCS.rglob("*.rst"))
        examples = sorted(path.name for path in EXAMPLES.glob("*.py"))
        self.assertIn("memory_server.py", examples)
        for name in examples:
            self.assertIn(f'"{name}"', tests, f"no test runs {name}")
            self.assertRegex(
                pages,
                rf"literalinclude:: (/|(\.\./)*)examples/{re.escape(name)}",
                f"no page includes {name}",
            )

    def test_memory_server(self) -> None:
        """
        ``memory_server.py`` gets a certificate for both names from the
        in-memory server with the seed API, and verifies its chain.
        """
        output = run_example("memory_server.py")
        self.assertRegex(output, r"(?m)^account: https://acme\.example/\S+/account/")
        self.assertRegex(output, r"(?m)^example\.com: valid$")
        self.assertRegex(output, r"(?m)^www\.example\.com: valid$")
        self.assertRegex(output, r"(?m)^names: example\.com, www\.example\.com$")
        self.assertRegex(output, r"(?m)^chain: .+ <- .+$")
        self.assertRegex(output, r"(?m)^verified up to the server's root")

    def test_orders(self) -> None:
        """
        ``orders.py`` goes through the order API against the in-memory
        server (EAB, a DNS name, a wildcard and an IP address in one order,
        an alternate chain, ARI and ``replaces``, key change, revocation,
        deactivation), and the orders page shows its output, but for the
        random label of the server's CA.
        """
        output = run_example("orders.py")
        self.assertRegex(
            output,
            r"(?m)^without EAB: ExternalAccountRequired \(externalAccountRequired\)$",
        )
        self.assertRegex(output, r"(?m)^account: valid, bound to EAB key id kid-1$")
        # The rateLimited answer's Retry-After was waited for, and no more.
        self.assertRegex(output, r"(?m)^order: pending, 3 authorizations, after 5 s$")
        self.assertRegex(
            output,
            r"(?m)^  example\.com: offers http-01, dns-01, tls-alpn-01 -> valid$",
        )
        self.assertRegex(output, r"(?m)^  \*\.example\.com: offers dns-01 -> valid$")
        self.assertRegex(
            output, r"(?m)^  192\.0\.2\.10: offers http-01, tls-alpn-01 -> valid$"
        )
        self.assertRegex(
            output,
            r"(?m)^finalized: valid, 2 chains\n"
            r"  up to txacme memory root (\w+)\n"
            r"  up to txacme memory alternate root 1 \1$",
        )
        self.assertRegex(
            output,
            r"(?m)^issued for example\.com, \*\.example\.com, 192\.0\.2\.10\n"
            r"  up to txacme memory alternate root 1 \w+\n"
            r"  profile sent: classic$",
        )
        self.assertRegex(output, r"(?m)^NotOffered: the CA offers no profile ")
        self.assertRegex(
            output,
            r"(?m)^renewal window: 2026-03-02 to 2026-03-17, ask again in 21600 s$",
        )
        self.assertRegex(output, r"(?m)^  replaces= sent: True$")
        self.assertRegex(
            output, r"(?m)^new account key; find_registration finds it: True$"
        )
        self.assertRegex(output, r"(?m)^revoking again: alreadyRevoked$")
        self.assertRegex(
            output, r"(?m)^account: deactivated\nordering again: unauthorized$"
        )
        # The page shows the whole output, in order.
        page = _without_ca_label((DOCS / "orders.rst").read_text())
        shown = "".join(
            f"   {line}\n" for line in _without_ca_label(output).splitlines()
        )
        self.assertIn(shown, page)

    def test_handling_errors(self) -> None:
        """
        ``handling_errors.py`` meets each error its comments announce, with
        the messages the migration guide quotes.
        """
        output = run_example("handling_errors.py")
        self.assertRegex(
            output,
            r"(?m)^no account yet \(uri=None\), terms: https://acme\.example/terms$",
        )
        self.assertRegex(
            output,
            r"(?m)^TermsOfServiceNotAgreed: No account yet: .* Call "
            r"Client\.agree_to_tos\(regr\) .*pass new_reg=NewRegistration"
            r"\.from_data\(\.\.\., terms_of_service_agreed=True\)",
        )
        self.assertRegex(output, r"(?m)^registered, terms: https://acme\.example/")
        self.assertRegex(
            output, r"(?m)^RateLimited: code=rateLimited retry_after=3600$"
        )
        self.assertRegex(
            output,
            r"(?m)^AuthorizationFailed: Authorization for dns:broken\.example\.com"
            r" failed with status 'invalid'",
        )
        self.assertRegex(
            output, r"(?m)^AuthorizationsNotValid: never-authorized\.example\.com$"
        )
        self.assertRegex(output, r"(?m)^MalformedResponse: .*text/html")
        # The migration guide shows this output verbatim.
        migration = (DOCS / "migration.rst").read_text()
        for line in output.splitlines():
            self.assertIn(f"   {line}\n", migration)

    def test_keys_and_csr(self) -> None:
        """
        ``keys_and_csr.py`` makes each key type, and a CSR whose identifiers
        include an IP address and a name too long to be a common name.
        """
        output = run_example("keys_and_csr.py")
        self.assertIn("rsa: RSA 2048 bits\n", output)
        self.assertIn("rsa3072: RSA 3072 bits\n", output)
        self.assertIn("p256: ECDSA secp256r1\n", output)
        self.assertIn("p384: ECDSA secp384r1\n", output)
        self.assertIn("subject: CN=example.com\n", output)
        self.assertIn("identifier: ip 192.0.2.10\n", output)
        self.assertRegex(output, r"(?m)^identifier: dns \S{65,}$")
        self.assertIn("subject with a long first name: (empty)\n", output)
        self.assertIn("finalize payload keys: ['csr']\n", output)
        self.assertIn("-----BEGIN PRIVATE KEY-----", output)

    def test_private_ca(self) -> None:
        """
        ``private_ca.py`` fails to connect with the platform's trust store
        and connects, over real TLS, with a client trusting the private CA.
        """
        output = run_example("private_ca.py")
        self.assertRegex(output, r"(?m)^platform trust: .*certificate verify failed")
        self.assertRegex(
            output,
            r"(?m)^trusting the CA: registered https://localhost:\d+/\S+/account/",
        )

    def test_get_certificate_help(self) -> None:
        """
        ``get_certificate.py`` runs as a script (its ``--help`` at least:
        the rest needs a real CA and port 80).
        """
        output = run_example("get_certificate.py", "--help")
        self.assertIn("--email", output)
        self.assertIn("--directory", output)


class QuickstartTests(DocsTestCase):
    """
    The quickstart's functions, from ``get_certificate.py``, work against
    the in-memory server as they would against a CA.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.responder = HTTP01Responder()
        # The server validates http-01 by fetching from the quickstart's own
        # site layout, so a token served at the wrong path fails the test.
        site = get_certificate.http01_site(self.responder)
        self.server = MemoryAcmeServer(
            clock=self.clock,
            validator=memory_server.http01_validator(site.resource),
        )
        self.directory = self.temporary_directory()

    def client(self) -> Client:
        key = get_certificate.load_account_key(self.directory / "account.pem")
        jws_client = JWSClient(self.server.treq_client(), key=key, alg=ES256)
        return run(
            self.clock,
            Client.from_url(
                self.clock,
                self.server.directory_url,
                key=key,
                alg=ES256,
                jws_client=jws_client,
            ),
        )

    def test_get_and_save_certificate(self) -> None:
        """
        ``get_certificate`` authorizes every name and gets one certificate
        for its new key; ``save_certificate`` writes the key (readable by
        its owner only) and the chain, leaf first, as PEM.
        """
        names = ["example.com", "www.example.com"]
        client = self.client()
        key, certr = run(
            self.clock,
            get_certificate.get_certificate(
                self.clock, client, self.responder, names, "admin@example.com"
            ),
        )
        key_path, chain_path = run(
            self.clock,
            get_certificate.save_certificate(
                client, key, certr, self.directory, names[0]
            ),
        )
        self.assertEqual(key_path.name, "example.com.key.pem")
        self.assertEqual(stat.S_IMODE(key_path.stat().st_mode), 0o600)
        saved_key = serialization.load_pem_private_key(
            key_path.read_bytes(), password=None
        )
        certificates = x509.load_pem_x509_certificates(chain_path.read_bytes())
        self.assertEqual(len(certificates), 2)
        leaf, issuer = certificates
        self.assertEqual(leaf.public_key(), saved_key.public_key())
        leaf.verify_directly_issued_by(issuer)
        self.assertEqual(
            leaf.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName),
            names,
        )
        (account,) = self.server.accounts
        self.assertEqual(account.contact, ("mailto:admin@example.com",))
        self.assertTrue(account.terms_of_service_agreed)
        self.assertEqual(
            {authorization.status for authorization in self.server.authorizations},
            {"valid"},
        )

    def test_account_key_is_kept(self) -> None:
        """
        ``load_account_key`` creates the account key once, readable by its
        owner only, and loads the same key afterwards.
        """
        path = self.directory / "account.pem"
        first = get_certificate.load_account_key(path)
        second = get_certificate.load_account_key(path)
        self.assertEqual(first.thumbprint(), second.thumbprint())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)


class ReferenceTests(DocsTestCase):
    """
    The API reference and the migration guide cover what txacme exports.
    """

    def test_every_public_module_has_a_page(self) -> None:
        """
        Each public module of txacme (no leading underscore) has a page in
        ``docs/api`` that documents it with ``automodule``, and the page is
        in the API index.
        """
        modules = sorted(
            module.name
            for module in pkgutil.iter_modules(txacme.__path__)
            if not module.name.startswith("_")
        )
        self.assertIn("client", modules)
        index = (DOCS / "api" / "index.rst").read_text()
        for name in modules:
            page = DOCS / "api" / f"{name}.rst"
            self.assertTrue(page.exists(), f"no API page for txacme.{name}")
            self.assertIn(f".. automodule:: txacme.{name}", page.read_text())
            self.assertRegex(index, rf"(?m)^\s+{name}$")

    def test_every_error_in_the_migration_table(self) -> None:
        """
        The migration guide's table of errors names every exception of
        :mod:`txacme.errors`.
        """
        migration = (DOCS / "migration.rst").read_text()
        table = migration[migration.index(".. list-table:: txacme.errors") :]
        for name in txacme.errors.__all__:
            self.assertRegex(table, rf":exc:`~?txacme\.errors\.{re.escape(name)}`")
