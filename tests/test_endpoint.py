r"""
The ``le:``, ``lets:`` and ``acme:`` endpoints (:mod:`txacme.endpoint`) and
their plugin.

Descriptions are parsed as Twisted splits them, and end to end through
:func:`~twisted.internet.endpoints.serverFromString` on a
:class:`~twisted.internet.testing.MemoryReactor`.  Certificates are served
through TLS handshakes in memory: a pyOpenSSL client whose bytes the test
carries to the server's connection, or to the protocol the endpoint's
factory builds, over a :class:`~twisted.internet.testing.StringTransport`.
The endpoint's service issues from a :class:`~txacme.testing.FakeClient` on
a fake clock whose thread pool runs work at once.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pem
from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from josepy.jwk import JWKEC
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.plugin import IPlugin, getPlugins
from twisted.python.url import URL
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.support import TestCase
from tests.test_tls_alpn import (
    ACME_TLS_1,
    Handshake,
    InlineThreadsClock,
    client_connection,
    memory_handshake,
)
from txacme.client import PollingPolicy
from txacme.endpoint import (
    AcmeEndpointParser,
    AutoTLSEndpoint,
    EndpointOptions,
    ServedCertificates,
    acme_parser,
    endpoint_from_options,
    le_parser,
    lets_parser,
    parse_duration,
    parse_endpoint_options,
)
from txacme.interfaces import ICertificateStore
from txacme.store import DirectoryStore, MemoryStore
from txacme.testing import FakeClient
from txacme.urls import LETSENCRYPT_DIRECTORY, LETSENCRYPT_STAGING_DIRECTORY
from txacme.util import PrivateKey, generate_private_key

ROOT = Path(__file__).resolve().parent.parent
PEBBLE_DIRECTORY = "https://127.0.0.1:14000/dir"
ESCAPED_PEBBLE_DIRECTORY = r"https\://127.0.0.1\:14000/dir"
NOW = datetime(2026, 11, 1, tzinfo=UTC)

#: Keys made once: key generation is slow.
CA_KEY = generate_private_key("p256")
KEYS = [generate_private_key("p256") for _ in range(4)]


# -- certificates ----------------------------------------------------------------------


def ca_certificate() -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(CA_KEY, hashes.SHA256())
    )


CA = ca_certificate()


def issue(names: Sequence[str], key: PrivateKey, days: int = 90) -> x509.Certificate:
    """A certificate for ``names`` and ``key``, issued by :data:`CA`."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(CA.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), True
        )
        .sign(CA_KEY, hashes.SHA256())
    )


def entry(
    certificate: x509.Certificate, key: PrivateKey
) -> list[pem.AbstractPEMObject]:
    """A store entry: the key, the certificate, the CA."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return [
        pem.PrivateKey(key_pem),
        pem.Certificate(certificate.public_bytes(serialization.Encoding.PEM)),
        pem.Certificate(CA.public_bytes(serialization.Encoding.PEM)),
    ]


def handshake(
    served: ServedCertificates,
    server_name: str | None,
    version: str = "1.3",
) -> Handshake:
    """A TLS handshake in memory with a connection of ``served``."""
    return memory_handshake(
        served.serverConnectionForTLS(None),  # type: ignore[arg-type]
        None if server_name is None else server_name.encode("ascii"),
        version=version,
    )


def names_of(certificate: x509.Certificate | None) -> list[str]:
    assert certificate is not None
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return san.value.get_values_for_type(x509.DNSName)


# -- parsing ---------------------------------------------------------------------------


class ParseTests(TestCase):
    """
    :func:`parse_endpoint_options` reads descriptions as Twisted's endpoint
    string parser splits them (positional arguments after the prefix, and
    keyword arguments).
    """

    def test_le_as_in_0_9(self) -> None:
        """
        ``le:/srv/www/certs:tcp:443`` (txacme 0.9's form): the store's
        directory, the endpoint ``tcp:443``, Let's Encrypt, tls-alpn-01
        only, no http-01 listener, a daily check.
        """
        options = parse_endpoint_options("le", ["/srv/www/certs", "tcp", "443"], {})
        self.assertEqual(
            options,
            EndpointOptions(
                prefix="le",
                path="/srv/www/certs",
                endpoint="tcp:443",
                directory=LETSENCRYPT_DIRECTORY,
            ),
        )
        self.assertEqual(options.challenges, ("tls-alpn-01",))
        self.assertEqual(options.http01, None)
        self.assertEqual(options.check, timedelta(days=1))
        self.assertEqual(options.key_type, "rsa")

    def test_lets_is_staging(self) -> None:
        """``lets:`` uses Let's Encrypt's staging directory."""
        options = parse_endpoint_options("LETS", ["/c", "tcp", "443"], {})
        self.assertEqual(options.directory, LETSENCRYPT_STAGING_DIRECTORY)
        self.assertEqual(options.prefix, "lets")

    def test_acme_options(self) -> None:
        """
        ``acme:`` takes every option: the directory URL, the CA file, the
        e-mail address, the domains (commas within a certificate,
        semicolons between certificates), the challenges in order, the
        http-01 listener, and the durations.
        """
        options = parse_endpoint_options(
            "acme",
            ["/srv/certs", "tcp:443"],
            {
                "directory": PEBBLE_DIRECTORY,
                "ca": "/etc/pebble-ca.pem",
                "email": "admin@example.com",
                "domains": "Example.COM,www.example.com.;example.org",
                "challenge": "http-01,tls-alpn-01",
                "http01": "tcp:8080",
                "reissue": "30d",
                "check": "1h30m",
                "key_type": "P256",
            },
        )
        self.assertEqual(options.directory, URL.fromText(PEBBLE_DIRECTORY))
        self.assertEqual(options.endpoint, "tcp:443")
        self.assertEqual(options.ca, "/etc/pebble-ca.pem")
        self.assertEqual(options.email, "admin@example.com")
        self.assertEqual(
            options.domains,
            (("example.com", "www.example.com"), ("example.org",)),
        )
        self.assertEqual(options.challenges, ("http-01", "tls-alpn-01"))
        self.assertEqual(options.http01, "tcp:8080")
        self.assertEqual(options.reissue, timedelta(days=30))
        self.assertEqual(options.check, timedelta(hours=1, minutes=30))
        self.assertEqual(options.key_type, "p256")

    def test_unknown_key_type(self) -> None:
        """An unknown ``key_type=`` is refused, naming the known ones."""
        error = self.assertRaises(
            ValueError,
            parse_endpoint_options,
            "le",
            ["/c", "tcp:443"],
            {"key_type": "dsa"},
        )
        self.assertIn("p256", str(error))

    def test_endpoint_keywords_pass_through(self) -> None:
        """
        Keywords that are not options belong to the endpoint listened on,
        and are escaped again in its description; positional arguments
        after the directory are joined by colons.
        """
        options = parse_endpoint_options(
            "le",
            ["/c", "tcp6", "443"],
            {"interface": "::1", "backlog": "10", "email": "a@example.com"},
        )
        self.assertEqual(options.endpoint, r"tcp6:443:backlog=10:interface=\:\:1")
        self.assertEqual(options.email, "a@example.com")

    def test_http01_defaults(self) -> None:
        """
        ``challenge=http-01`` listens for http-01 on ``tcp:80``;
        ``http01=`` alone means http-01.
        """
        options = parse_endpoint_options(
            "le", ["/c", "tcp:443"], {"challenge": "http-01"}
        )
        self.assertEqual((options.challenges, options.http01), (("http-01",), "tcp:80"))
        options = parse_endpoint_options("le", ["/c", "tcp:443"], {"http01": "tcp:81"})
        self.assertEqual((options.challenges, options.http01), (("http-01",), "tcp:81"))

    def assert_refused(
        self, message: str, prefix: str, args: list[str], kwargs: dict[str, str]
    ) -> None:
        """The description is refused with a ValueError saying ``message``."""
        error = self.assertRaises(
            ValueError, parse_endpoint_options, prefix, args, kwargs
        )
        self.assertIn(message, str(error))

    def test_errors(self) -> None:
        """
        Descriptions that cannot work are refused with a message saying
        what is wrong.
        """
        pebble = {"directory": PEBBLE_DIRECTORY}
        cases: list[tuple[str, str, list[str], dict[str, str]]] = [
            ("needs the certificate directory", "le", [], {}),
            ("needs the certificate directory", "le", ["", "tcp:443"], {}),
            ("needs an endpoint to listen on", "le", ["/c"], {}),
            ("needs the CA's directory URL", "acme", ["/c", "tcp:443"], {}),
            ("uses Let's Encrypt's directory", "le", ["/c", "tcp:443"], pebble),
            (
                "must be an https URL",
                "acme",
                ["/c", "tcp:443"],
                {"directory": "http://ca.example/dir"},
            ),
            (
                "must be an https URL",
                "acme",
                ["/c", "tcp:443"],
                {"directory": "https"},
            ),
            (
                "Unknown challenge type",
                "le",
                ["/c", "tcp:443"],
                {"challenge": "dns-01"},
            ),
            (
                "twice",
                "le",
                ["/c", "tcp:443"],
                {"challenge": "http-01,http-01"},
            ),
            (
                "leaves out http-01",
                "le",
                ["/c", "tcp:443"],
                {"challenge": "tls-alpn-01", "http01": "tcp:80"},
            ),
            ("http01= needs", "le", ["/c", "tcp:443"], {"http01": ""}),
            ("ca= needs", "le", ["/c", "tcp:443"], {"ca": ""}),
            ("email= needs", "le", ["/c", "tcp:443"], {"email": " "}),
            ("An empty certificate", "le", ["/c", "tcp:443"], {"domains": "a;;b"}),
            ("An empty server name", "le", ["/c", "tcp:443"], {"domains": "a,,b"}),
            ("Not usable", "le", ["/c", "tcp:443"], {"domains": "../etc"}),
            ("Not a duration", "le", ["/c", "tcp:443"], {"reissue": "soon"}),
            ("must be positive", "le", ["/c", "tcp:443"], {"check": "0"}),
            ("Unknown endpoint type", "ssl", ["/c", "tcp:443"], {}),
        ]
        for message, prefix, args, kwargs in cases:
            self.assert_refused(message, prefix, args, kwargs)


class DurationTests(TestCase):
    """:func:`parse_duration` reads seconds and unit sums."""

    def test_examples(self) -> None:
        """Seconds, units, sums of units and fractions."""
        for text, seconds in [
            ("90", 90),
            ("1.5", 1.5),
            ("90s", 90),
            ("2m", 120),
            ("1h30m", 5400),
            ("1.5h", 5400),
            ("30d", 30 * 86400),
            ("2w", 14 * 86400),
            (" 1D ", 86400),
        ]:
            self.assertEqual(parse_duration(text), timedelta(seconds=seconds), text)

    def test_malformed(self) -> None:
        """Anything else is refused."""
        for text in ["", "d", "1x", "1h 30m", "h1", "-5", "1h-30m", "0s", "0"]:
            self.assertRaises(ValueError, parse_duration, text)

    @given(
        st.lists(
            st.tuples(st.integers(0, 1000), st.sampled_from("wdhms")),
            min_size=1,
            max_size=5,
        )
    )
    def test_sums(self, parts: list[tuple[int, str]]) -> None:
        """Any sequence of numbers with units is their sum, if positive."""
        text = "".join(f"{number}{unit}" for number, unit in parts)
        units = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
        total = sum(number * units[unit] for number, unit in parts)
        if total == 0:
            self.assertRaises(ValueError, parse_duration, text)
        else:
            self.assertEqual(parse_duration(text), timedelta(seconds=total))


class StringEndpointTests(TestCase):
    """
    Descriptions given to :func:`~twisted.internet.endpoints.serverFromString`
    (Twisted's tokenizer and escaping, the plugin, the endpoint made).
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactor()  # type: ignore[no-untyped-call]
        self.directory = Path(tempfile.mkdtemp(prefix="txacme-endpoint-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.store = self.directory / "certs"

    def endpoint(self, description: str) -> AutoTLSEndpoint:
        endpoint = serverFromString(self.reactor, description)  # type: ignore[no-untyped-call]
        assert isinstance(endpoint, AutoTLSEndpoint)
        return endpoint

    def listened_tcp(self, endpoint: IStreamServerEndpoint) -> tuple[int, str]:
        """The port and interface ``endpoint`` listens on (TCP)."""
        endpoint.listen(Factory.forProtocol(Protocol))
        port, _, _, interface = self.reactor.tcpServers[-1]
        return port, interface

    def test_plugin_finds_the_parsers(self) -> None:
        """
        Twisted's plugin system finds a parser for each prefix, providing
        the interface.
        """
        parsers = {
            parser.prefix: parser
            for parser in getPlugins(IStreamServerEndpointStringParser)
        }
        for prefix in ("le", "lets", "acme"):
            self.assertIn(prefix, parsers)
            verifyObject(IStreamServerEndpointStringParser, parsers[prefix])
        for parser in (le_parser, lets_parser, acme_parser):
            verifyObject(IStreamServerEndpointStringParser, parser)

    def test_plugin_0_9_names(self) -> None:
        """
        The plugin module has txacme 0.9's ``le_parser`` and
        ``lets_parser`` (and ``acme_parser``): plugins and endpoint string
        parsers, with their prefix and ACME directory; Twisted finds each
        prefix once.
        """
        from twisted.plugins import txacme_endpoint

        expected = {
            "le": (txacme_endpoint.le_parser, LETSENCRYPT_DIRECTORY),
            "lets": (txacme_endpoint.lets_parser, LETSENCRYPT_STAGING_DIRECTORY),
            "acme": (txacme_endpoint.acme_parser, None),
        }
        for prefix, (parser, directory) in expected.items():
            verifyObject(IPlugin, parser)
            verifyObject(IStreamServerEndpointStringParser, parser)
            self.assertEqual((parser.prefix, parser.directory), (prefix, directory))
        self.assertEqual(le_parser.directory, LETSENCRYPT_DIRECTORY)
        self.assertEqual(lets_parser.directory, LETSENCRYPT_STAGING_DIRECTORY)
        self.assertIsNone(acme_parser.directory)
        prefixes = [
            parser.prefix
            for parser in getPlugins(IStreamServerEndpointStringParser)
            if parser.prefix in expected
        ]
        self.assertEqual(sorted(prefixes), sorted(expected))

    def test_plugin_imports_lazily(self) -> None:
        """
        Importing the plugin module (as every ``twistd`` run does) imports
        neither txacme nor its heavy dependencies; reading a parser's
        ``directory`` imports only :mod:`txacme.urls`.
        """
        script = (
            "import sys, twisted.plugins.txacme_endpoint as plugin\n"
            "def loaded():\n"
            "    return sorted(m for m in sys.modules if m.split('.')[0] in "
            "('txacme', 'acme', 'josepy', 'treq'))\n"
            "print(loaded())\n"
            "plugin.le_parser.directory\n"
            "print(loaded())\n"
        )
        environment = dict(os.environ)
        environment["PYTHONPATH"] = str(ROOT / "src")
        completed = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
            check=True,
        )
        self.assertEqual(
            completed.stdout.splitlines(), ["[]", "['txacme', 'txacme.urls']"]
        )

    def test_le_0_9_description(self) -> None:
        """
        ``le:<dir>:tcp:<port>``: Let's Encrypt, a directory store there
        (created, mode 0700), listening on that port.
        """
        endpoint = self.endpoint(f"le:{self.store}:tcp:8443:interface=127.0.0.1")
        self.assertEqual(endpoint.directory, LETSENCRYPT_DIRECTORY)
        self.assertEqual(self.store.stat().st_mode & 0o777, 0o700)
        assert isinstance(endpoint.cert_store, DirectoryStore)
        self.assertEqual(endpoint.cert_store.path.path, str(self.store))
        self.assertEqual(self.listened_tcp(endpoint.sub_endpoint), (8443, "127.0.0.1"))
        self.assertEqual(endpoint.challenges, ("tls-alpn-01",))
        self.assertEqual(endpoint.http01_endpoint, None)

    def test_acme_escaped(self) -> None:
        """
        ``acme:`` with the endpoint escaped as one argument, keyword
        options first or last, colons escaped in the directory URL.
        """
        for description in [
            rf"acme:{self.store}:tcp\:8443:directory={ESCAPED_PEBBLE_DIRECTORY}",
            rf"acme:directory={ESCAPED_PEBBLE_DIRECTORY}:{self.store}:tcp:8443",
        ]:
            endpoint = self.endpoint(description)
            self.assertEqual(endpoint.directory, URL.fromText(PEBBLE_DIRECTORY))
            self.assertEqual(self.listened_tcp(endpoint.sub_endpoint)[0], 8443)

    def test_endpoint_keyword_escaping(self) -> None:
        """
        A keyword of the endpoint listened on keeps its colons, equals
        signs and backslashes.
        """
        address = r"/run/a:b=c\d"
        escaped = address.replace("\\", "\\\\").replace(":", r"\:").replace("=", r"\=")
        endpoint = self.endpoint(f"le:{self.store}:unix:address={escaped}:mode=600")
        endpoint.sub_endpoint.listen(Factory.forProtocol(Protocol))
        self.assertEqual(self.reactor.unixServers[-1][0], address)

    def test_options(self) -> None:
        """
        The options reach the endpoint: e-mail, domains (the first entry
        the default certificate), durations and the http-01 listener.
        """
        endpoint = self.endpoint(
            rf"acme:{self.store}:tcp:443:directory={ESCAPED_PEBBLE_DIRECTORY}"
            r":email=admin@example.com:domains=a.example,www.a.example;b.example"
            r":reissue=10d:check=6h:challenge=tls-alpn-01,http-01"
            r":http01=tcp\:8080\:interface\=127.0.0.1"
        )
        self.assertEqual(endpoint.email, "admin@example.com")
        self.assertEqual(
            endpoint.names, (("a.example", "www.a.example"), ("b.example",))
        )
        self.assertEqual(endpoint.reissue_interval, timedelta(days=10))
        self.assertEqual(endpoint.check_interval, timedelta(hours=6))
        self.assertEqual(endpoint.challenges, ("tls-alpn-01", "http-01"))
        assert endpoint.http01_endpoint is not None
        self.assertEqual(
            self.listened_tcp(endpoint.http01_endpoint), (8080, "127.0.0.1")
        )

    def test_unknown_keyword(self) -> None:
        """
        A misspelt option reaches the endpoint listened on, which refuses
        it: the error names the endpoint and txacme's options.
        """
        error = self.assertRaises(
            ValueError,
            serverFromString,
            self.reactor,
            f"le:{self.store}:tcp:443:emial=a@example.com",
        )
        self.assertIn("emial", str(error))
        self.assertIn("challenge, check, directory, domains", str(error))

    def test_ca_file(self) -> None:
        """
        ``ca=`` must name a PEM file holding certificates; a missing or
        empty one is refused when the description is parsed.
        """
        bundle = self.directory / "ca.pem"
        bundle.write_bytes(CA.public_bytes(serialization.Encoding.PEM))
        endpoint = self.endpoint(f"le:{self.store}:tcp:443:ca={bundle}")
        creator: Any = endpoint.client_creator
        self.assertNotEqual(creator.trust_root, None)
        for path in (self.directory / "missing.pem", self.store):
            error = self.assertRaises(
                ValueError,
                serverFromString,
                self.reactor,
                f"le:{self.store}:tcp:443:ca={path}",
            )
            self.assertIn("no CA certificates", str(error))

    def test_store_path_is_a_file(self) -> None:
        """A store path naming a file is refused."""
        path = self.directory / "file"
        path.write_bytes(b"")
        error = self.assertRaises(
            ValueError, serverFromString, self.reactor, f"le:{path}:tcp:443"
        )
        self.assertIn("is not a directory", str(error))


# -- serving by server name ------------------------------------------------------------


class ServedCertificatesTests(TestCase):
    """
    :class:`ServedCertificates` serves each store entry for the names of
    its certificate, and a default certificate otherwise.
    """

    def setUp(self) -> None:
        self.a = issue(["a.example", "www.a.example"], KEYS[0])
        self.b = issue(["b.example"], KEYS[1])
        self.wildcard = issue(["*.w.example"], KEYS[2])
        self.store = MemoryStore(
            {
                "a.example": entry(self.a, KEYS[0]),
                "b.example": entry(self.b, KEYS[1]),
                "w.example": entry(self.wildcard, KEYS[2]),
                "pending.example": [],
            }
        )

    def served(self, default_name: str | None = None) -> ServedCertificates:
        served = ServedCertificates(self.store, default_name=default_name)
        self.successResultOf(served.reload())
        return served

    def test_interface(self) -> None:
        """It is a server connection creator."""
        from twisted.internet.interfaces import IOpenSSLServerConnectionCreator

        verifyObject(IOpenSSLServerConnectionCreator, self.served())

    def test_by_name(self) -> None:
        """
        Each name of a certificate's subjectAltName gets it, in any case
        and with a trailing dot, over TLS 1.2 and 1.3; a wildcard covers
        the names one label below.
        """
        served = self.served()
        for version in ("1.2", "1.3"):
            for name, certificate in [
                ("a.example", self.a),
                ("WWW.A.example.", self.a),
                ("b.example", self.b),
                ("x.w.example", self.wildcard),
            ]:
                self.assertEqual(
                    handshake(served, name, version).certificate, certificate, name
                )
        self.assertEqual(
            served.names,
            {
                "*.w.example": "w.example",
                "a.example": "a.example",
                "b.example": "b.example",
                "www.a.example": "a.example",
            },
        )

    def test_default(self) -> None:
        """
        A client sending no name, or an unknown one (also two labels below
        a wildcard), gets the ``default_name`` entry's certificate, or
        without it the first entry's by name.
        """
        for default_name, expected in [("b.example", self.b), (None, self.a)]:
            served = self.served(default_name)
            for name in [None, "unknown.example", "y.x.w.example", "w.example"]:
                self.assertEqual(handshake(served, name).certificate, expected, name)

    def test_empty_store(self) -> None:
        """
        With nothing to serve yet (an empty entry only), handshakes get a
        self-signed certificate, the same each time, so that the port
        works before the first issuance.
        """
        self.store = MemoryStore({"pending.example": []})
        served = self.served("pending.example")
        first = handshake(served, "pending.example").certificate
        assert first is not None
        self.assertEqual(first.issuer, first.subject)
        self.assertEqual(names_of(first), ["txacme-default.invalid"])
        self.assertEqual(handshake(served, None).certificate, first)
        self.assertEqual(served.names, {})

    def test_unusable_entries(self) -> None:
        """
        An entry whose key is not its certificate's, or without a key, is
        not served; the others are.
        """
        self.store = MemoryStore(
            {
                "a.example": entry(self.a, KEYS[0]),
                "b.example": entry(self.b, KEYS[3]),
                "c.example": entry(issue(["c.example"], KEYS[2]), KEYS[2])[1:],
            }
        )
        served = self.served()
        self.assertEqual(
            served.names, {"a.example": "a.example", "www.a.example": "a.example"}
        )
        self.assertEqual(handshake(served, "b.example").certificate, self.a)

    def test_overlapping_entries(self) -> None:
        """
        When two entries cover a name, the entry named after it wins;
        otherwise the certificate that expires last.
        """
        short = issue(["a.example", "c.example"], KEYS[1], days=10)
        long = issue(["c.example", "z.example"], KEYS[2], days=80)
        self.store = MemoryStore(
            {
                "a.example": entry(self.a, KEYS[0]),
                "x.example": entry(short, KEYS[1]),
                "z.example": entry(long, KEYS[2]),
            }
        )
        served = self.served()
        self.assertEqual(handshake(served, "a.example").certificate, self.a)
        self.assertEqual(handshake(served, "c.example").certificate, long)

    def test_reload(self) -> None:
        """
        After the store changes, :meth:`reload` serves the new certificates
        and stops serving removed entries and names.
        """
        served = self.served()
        renewed = issue(["a.example"], KEYS[3])
        self.successResultOf(self.store.store("a.example", entry(renewed, KEYS[3])))
        entries = self.successResultOf(self.store.as_dict())
        del entries["b.example"]
        self.store = MemoryStore(entries)
        served.cert_store = self.store
        self.assertEqual(handshake(served, "a.example").certificate, self.a)
        self.successResultOf(served.reload())
        self.assertEqual(handshake(served, "a.example").certificate, renewed)
        self.assertNotIn("www.a.example", served.names)
        self.assertNotIn("b.example", served.names)

    def test_reload_entry(self) -> None:
        """
        :meth:`reload_entry` serves one entry's new certificate, and stops
        serving an entry that is gone.
        """
        served = self.served()
        renewed = issue(["b.example", "b2.example"], KEYS[3])
        self.successResultOf(self.store.store("b.example", entry(renewed, KEYS[3])))
        self.successResultOf(served.reload_entry("b.example"))
        self.assertEqual(handshake(served, "b2.example").certificate, renewed)
        self.successResultOf(served.reload_entry("gone.example"))
        self.assertEqual(served.names["b.example"], "b.example")

    def test_slow_full_reload_keeps_newer_entry(self) -> None:
        """
        A full reload that started before an entry was reloaded, and
        finishes after, does not put the entry's older content back.
        """
        served = self.served()
        store = SlowStore(self.store)
        served.cert_store = cast(ICertificateStore, store)
        reloading = served.reload()
        renewed = issue(["a.example"], KEYS[3])
        self.successResultOf(self.store.store("a.example", entry(renewed, KEYS[3])))
        served.cert_store = self.store
        self.successResultOf(served.reload_entry("a.example"))
        store.release()
        self.successResultOf(reloading)
        self.assertEqual(handshake(served, "a.example").certificate, renewed)


@define
class SlowStore:
    """A store whose ``as_dict`` answers, with what it read at first, later."""

    wrapped: MemoryStore
    waiting: list[tuple[Deferred[Any], Any]] = field(factory=list)

    def as_dict(self) -> Deferred[Any]:
        snapshot = self.wrapped.as_dict()
        waiter: Deferred[Any] = Deferred()
        self.waiting.append((waiter, snapshot))
        return waiter

    def release(self) -> None:
        for waiter, snapshot in self.waiting:
            snapshot.chainDeferred(waiter)

    def get(self, server_name: str) -> Deferred[Any]:
        return self.wrapped.get(server_name)

    def store(self, server_name: str, objects: Any) -> Deferred[None]:
        return self.wrapped.store(server_name, objects)


@define
class FlakyStore:
    """A store whose ``as_dict`` fails while ``failing``."""

    wrapped: MemoryStore
    failing: bool = False

    def as_dict(self) -> Deferred[Any]:
        if self.failing:
            return fail(OSError("the disk is gone"))
        return self.wrapped.as_dict()

    def get(self, server_name: str) -> Deferred[Any]:
        return self.wrapped.get(server_name)

    def store(self, server_name: str, objects: Any) -> Deferred[None]:
        return self.wrapped.store(server_name, objects)


# -- the endpoint ----------------------------------------------------------------------


@implementer(IListeningPort)
@define
class FakePort:
    """A listening port that records whether it was stopped."""

    factory: Any
    stopped: bool = False

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        self.stopped = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 443)


@implementer(IStreamServerEndpoint)
@define
class FakeEndpoint:
    """A server endpoint that records its ports, or fails to listen."""

    ports: list[FakePort] = field(factory=list)
    error: Exception | None = None

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        if self.error is not None:
            return fail(self.error)
        port = FakePort(factory)
        self.ports.append(port)
        return succeed(port)


@implementer(IListeningPort)
@define
class AddresslessPort(FakePort):
    """A port double without a working ``getHost`` (as txacme 0.9's tests had)."""

    def getHost(self) -> IPv4Address:
        raise AttributeError("getHost")


@define
class AddresslessEndpoint(FakeEndpoint):
    """A server endpoint whose ports cannot tell their address."""

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        port = AddresslessPort(factory)
        self.ports.append(port)
        return succeed(port)


@implementer(IListeningPort)
@define
class SlowPort(FakePort):
    """A port whose stop takes until ``stopping`` fires."""

    stopping: Deferred[None] = field(factory=Deferred)

    def stopListening(self) -> Deferred[None]:  # type: ignore[override]
        self.stopped = True
        return self.stopping


@define
class SlowEndpoint(FakeEndpoint):
    """A server endpoint whose ports take time to stop."""

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        port = SlowPort(factory)
        self.ports.append(port)
        return succeed(port)


class NoTimersClock(InlineThreadsClock):
    """A clock that cannot schedule calls."""

    def callLater(self, delay: float, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no timers here")


@frozen
class ContextOptions:
    """TLS options for one certificate: what txsni's maps hold."""

    certificate: x509.Certificate
    key: PrivateKey

    def getContext(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate(self.certificate)
        context.use_privatekey(self.key)
        return context


class DirectoryLikeMap:
    """
    A mapping like txsni's ``HostDirectoryMap``: ``__getitem__`` only,
    reading what it holds now, ``KeyError`` for a missing name; one name
    fails otherwise.
    """

    def __init__(self) -> None:
        self.entries: dict[str, ContextOptions] = {}
        self.asked: list[object] = []

    def __getitem__(self, server_name: object) -> ContextOptions:
        self.asked.append(server_name)
        if server_name == "broken.example":
            raise OSError("cannot read broken.example.pem")
        if not isinstance(server_name, str) or server_name not in self.entries:
            raise KeyError(server_name)
        return self.entries[server_name]


class TCPStringTransport(StringTransport):
    """A string transport with the TCP options ``twisted.web`` sets."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def factory_handshake(
    factory: Any, server_name: str | None, protocols: Sequence[bytes] = ()
) -> Handshake:
    """
    A TLS handshake in memory with a protocol that ``factory`` (the
    endpoint's TLS factory) builds, over a string transport; the client
    sends ``server_name`` (SNI), if not ``None``.
    """
    protocol = factory.buildProtocol(None)
    transport = TCPStringTransport()  # type: ignore[no-untyped-call]
    protocol.makeConnection(transport)
    client = client_connection(
        None if server_name is None else server_name.encode("ascii"), protocols, "1.3"
    )
    client.set_connect_state()
    for _ in range(10):
        try:
            client.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error as error:
            return Handshake(error=str(error))
        else:
            return Handshake.of(client)
        try:
            outgoing = client.bio_read(65536)
        except SSL.WantReadError:
            outgoing = b""
        if outgoing:
            protocol.dataReceived(outgoing)
        incoming: bytes = transport.value()  # type: ignore[no-untyped-call]
        transport.clear()  # type: ignore[no-untyped-call]
        if incoming:
            client.bio_write(incoming)
    raise AssertionError("the handshake did not finish")


class AutoTLSEndpointTests(TestCase):
    """
    :class:`AutoTLSEndpoint` serves the store's certificates on its port,
    answers challenges, and runs the issuing service while it listens.
    """

    def setUp(self) -> None:
        self.clock = InlineThreadsClock()
        self.store = MemoryStore({"pending.example": []})
        self.client = FakeClient(JWKEC(key=KEYS[0]), self.clock)
        self.tls = FakeEndpoint()
        self.http = FakeEndpoint()
        self.created: list[tuple[Any, URL]] = []

    def client_creator(self, reactor: Any, directory: URL) -> Deferred[Any]:
        self.created.append((reactor, directory))
        return succeed(self.client)

    def listen(self, endpoint: AutoTLSEndpoint, factory: Any = None) -> IListeningPort:
        """Listen with ``endpoint``; the port is stopped after the test."""
        port = self.successResultOf(
            endpoint.listen(factory or Factory.forProtocol(Protocol))
        )
        self.addCleanup(port.stopListening)
        return port

    def endpoint(self, **arguments: Any) -> AutoTLSEndpoint:
        return AutoTLSEndpoint(
            self.clock,
            URL.fromText(PEBBLE_DIRECTORY),
            self.client_creator,
            self.store,
            None,
            self.tls,
            **arguments,
        )

    def test_interface(self) -> None:
        """It is a server endpoint."""
        verifyObject(IStreamServerEndpoint, self.endpoint())

    def test_key_type(self) -> None:
        """
        The certificates' keys are RSA-2048 in the traditional format by
        default (txacme 0.9's), and of ``key_type`` when given.
        """
        for key_type, marker in [
            (None, b"-----BEGIN RSA PRIVATE KEY-----"),
            ("p256", b"-----BEGIN EC PRIVATE KEY-----"),
        ]:
            self.store = MemoryStore()
            arguments = {} if key_type is None else {"key_type": key_type}
            endpoint = self.endpoint(names=["a.example"], **arguments)
            port = self.listen(endpoint)
            self.successResultOf(self.store.get("a.example"))
            [key_object] = [
                obj
                for obj in self.successResultOf(self.store.get("a.example"))
                if isinstance(obj, pem.Key)
            ]
            self.assertTrue(key_object.as_bytes().startswith(marker))
            self.successResultOf(maybeDeferred(port.stopListening))

    def test_issues_and_serves(self) -> None:
        """
        Listening comes up at once with the self-signed certificate, starts
        the service, which issues for the store's empty entry and the
        ``names`` (through the client made from the directory); each new
        certificate is served as soon as it is stored.
        """
        endpoint = self.endpoint(names=[("a.example", "www.a.example")])
        self.client.controller.pause()
        self.listen(endpoint)
        (tls_port,) = self.tls.ports
        before = factory_handshake(tls_port.factory, "a.example").certificate
        self.assertEqual(names_of(before), ["txacme-default.invalid"])
        assert endpoint.service is not None
        self.assertTrue(endpoint.service.running)
        self.assertEqual(self.created, [(self.clock, URL.fromText(PEBBLE_DIRECTORY))])

        self.client.controller.resume()
        self.successResultOf(
            self.settle(endpoint.service.when_certs_valid(), self.clock)
        )
        for name in ("a.example", "www.a.example"):
            served = factory_handshake(tls_port.factory, name).certificate
            self.assertEqual(names_of(served), ["a.example", "www.a.example"])
        pending = factory_handshake(tls_port.factory, "pending.example").certificate
        self.assertEqual(names_of(pending), ["pending.example"])
        # The first names= entry is the default certificate.
        other = factory_handshake(tls_port.factory, "other.example").certificate
        self.assertEqual(names_of(other), ["a.example", "www.a.example"])

    def test_answers_tls_alpn_01(self) -> None:
        """
        While an issuance is answering its tls-alpn-01 challenge, a client
        offering ``acme-tls/1`` for the name gets the challenge certificate
        on the endpoint's port; other clients get the served certificate.
        """
        endpoint = self.endpoint(names=["a.example"])
        # Poll a while after answering: the challenge is answered meanwhile.
        self.client.policy = PollingPolicy()
        self.listen(endpoint)
        (tls_port,) = self.tls.ports
        validation = factory_handshake(tls_port.factory, "a.example", [ACME_TLS_1])
        self.assertEqual(validation.protocol, ACME_TLS_1)
        assert validation.certificate is not None
        validation.certificate.extensions.get_extension_for_oid(
            x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
        )
        plain = factory_handshake(tls_port.factory, "a.example", [b"http/1.1"])
        self.assertEqual(names_of(plain.certificate), ["txacme-default.invalid"])

    def test_alpn(self) -> None:
        """
        A factory that negotiates protocols (a ``twisted.web`` site) gets
        the first of its protocols the client offers; with a factory that
        does not, a client offering protocols gets none, and its handshake
        succeeds.
        """
        # The site's idle timer runs on the test's clock, not the reactor.
        site = Site(Resource(), reactor=self.clock)  # type: ignore[no-untyped-call]
        self.listen(self.endpoint(), site)
        self.listen(self.endpoint())
        negotiating, plain = self.tls.ports
        offered = [b"h2", b"http/1.1"]
        expected = site.acceptableProtocols()[0]  # type: ignore[no-untyped-call]
        self.assertEqual(
            factory_handshake(negotiating.factory, "a.example", offered).protocol,
            expected,
        )
        handshake = factory_handshake(plain.factory, "a.example", offered)
        self.assertEqual((handshake.protocol, handshake.error), (None, None))

    def test_stop_listening(self) -> None:
        """
        Stopping the port stops the service (cancelling the issuance in
        flight), the http-01 listener and the TLS port; stopping again is
        harmless.
        """
        endpoint = self.endpoint(
            challenges=["http-01"], http01_endpoint=self.http, names=["a.example"]
        )
        self.client.controller.pause()
        port = self.listen(endpoint)
        assert endpoint.service is not None
        for _ in range(10):
            if self.client.controller.count() == 2:
                break
            self.clock.advance(1)
        # a.example, and pending.example (the store's empty entry).
        self.assertEqual(self.client.controller.count(), 2)
        self.successResultOf(maybeDeferred(port.stopListening))
        self.assertFalse(endpoint.service.running)
        self.assertEqual(self.client.controller.count(), 0)
        self.assertTrue(self.tls.ports[0].stopped)
        self.assertTrue(self.http.ports[0].stopped)
        self.assertEqual(self.client.closed, 1)
        self.successResultOf(maybeDeferred(port.stopListening))

    def test_stop_outlives_its_callers(self) -> None:
        """
        Cancelling the Deferred of ``stopListening``, even the only one,
        stops waiting, not the stop: the TLS port's stop goes on, and a
        later call, before and after it is done, gets its outcome.
        """
        self.tls = SlowEndpoint()
        endpoint = self.endpoint()
        port = self.successResultOf(endpoint.listen(Factory.forProtocol(Protocol)))
        [tls_port] = cast(list[SlowPort], self.tls.ports)
        abandoned = maybeDeferred(port.stopListening)
        abandoned.cancel()
        self.failureResultOf(abandoned, CancelledError)
        self.assertTrue(tls_port.stopped)
        self.assertNoResult(tls_port.stopping)
        waiting = maybeDeferred(port.stopListening)
        self.assertNoResult(waiting)
        assert endpoint.service is not None
        self.assertFalse(endpoint.service.running)
        tls_port.stopping.callback(None)
        self.successResultOf(waiting)
        self.successResultOf(maybeDeferred(port.stopListening))

    def test_stop_failure_for_every_caller(self) -> None:
        """
        A stop that fails (here: the TLS port's) fails for every caller of
        ``stopListening``, also one that comes after it.
        """
        self.tls = SlowEndpoint()
        endpoint = self.endpoint()
        port = self.successResultOf(endpoint.listen(Factory.forProtocol(Protocol)))
        [tls_port] = cast(list[SlowPort], self.tls.ports)
        first = maybeDeferred(port.stopListening)
        second = maybeDeferred(port.stopListening)
        tls_port.stopping.errback(OSError("the port is stuck"))
        for stopping in (first, second, maybeDeferred(port.stopListening)):
            self.failureResultOf(stopping, OSError)

    def test_http01_listener(self) -> None:
        """
        With http-01, the responder's resource is served at
        ``/.well-known/acme-challenge`` on the http-01 endpoint.
        """
        endpoint = self.endpoint(challenges=["http-01"], http01_endpoint=self.http)
        self.listen(endpoint)
        (http_port,) = self.http.ports
        root = http_port.factory.resource
        well_known = root.children[b".well-known"]
        self.assertIn(b"acme-challenge", well_known.children)

    def test_http01_listen_fails(self) -> None:
        """
        If the http-01 endpoint cannot listen, the TLS port is stopped,
        no service starts, and listening fails with the error.
        """
        self.http.error = OSError("port 80 in use")
        endpoint = self.endpoint(challenges=["http-01"], http01_endpoint=self.http)
        failure = self.failureResultOf(
            endpoint.listen(Factory.forProtocol(Protocol)), OSError
        )
        self.assertIn("port 80", str(failure.value))
        self.assertTrue(self.tls.ports[0].stopped)
        self.assertEqual(endpoint.service, None)

    def test_reloads_every_check(self) -> None:
        """
        A certificate put in the store by hand is served after the next
        ``check_interval``.
        """
        endpoint = self.endpoint(check_interval=timedelta(hours=1))
        self.listen(endpoint)
        self.clock.advance(10)
        by_hand = issue(["hand.example"], KEYS[2])
        self.successResultOf(self.store.store("hand.example", entry(by_hand, KEYS[2])))
        (tls_port,) = self.tls.ports
        self.assertNotEqual(
            factory_handshake(tls_port.factory, "hand.example").certificate, by_hand
        )
        self.clock.advance(3600)
        self.assertEqual(
            factory_handshake(tls_port.factory, "hand.example").certificate, by_hand
        )

    def test_listens_before_reading_the_store(self) -> None:
        """
        The port listens before the store is read (twistd binds privileged
        ports before dropping privileges); if the store cannot be read,
        the ports are closed and listening fails.
        """
        store = SlowStore(self.store)
        self.store = cast(Any, store)
        endpoint = self.endpoint(challenges=["http-01"], http01_endpoint=self.http)
        listening = endpoint.listen(Factory.forProtocol(Protocol))
        self.assertNoResult(listening)
        self.assertEqual((len(self.tls.ports), len(self.http.ports)), (1, 1))
        store.waiting[0][0].errback(PermissionError("certs: permission denied"))
        self.failureResultOf(listening, PermissionError)
        self.assertTrue(self.tls.ports[0].stopped)
        self.assertTrue(self.http.ports[0].stopped)
        self.assertEqual(endpoint.service, None)

    def test_reload_failure_is_not_fatal(self) -> None:
        """
        A periodic reload that fails is logged, and the next one still
        runs.
        """
        store = FlakyStore(self.store)
        self.store = cast(Any, store)
        endpoint = self.endpoint(check_interval=timedelta(hours=1))
        self.listen(endpoint)
        by_hand = issue(["hand.example"], KEYS[2])
        self.successResultOf(
            store.wrapped.store("hand.example", entry(by_hand, KEYS[2]))
        )
        store.failing = True
        self.clock.advance(3600)
        # Logged by the reload and by the service's hourly check.
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        store.failing = False
        self.clock.advance(3600)
        (tls_port,) = self.tls.ports
        self.assertEqual(
            factory_handshake(tls_port.factory, "hand.example").certificate, by_hand
        )

    def mapped_endpoint(self, mapping: Any, **arguments: Any) -> AutoTLSEndpoint:
        return AutoTLSEndpoint(
            self.clock,
            URL.fromText(PEBBLE_DIRECTORY),
            self.client_creator,
            self.store,
            mapping,
            self.tls,
            **arguments,
        )

    def test_empty_mapping_as_in_0_9(self) -> None:
        """
        A plain mapping as ``cert_mapping`` (txacme 0.9's tests passed
        ``{}``): listening starts the service, clients get the self-signed
        default certificate, and stopping the port stops the service.
        """
        endpoint = self.mapped_endpoint({})
        port = self.listen(endpoint)
        assert endpoint.service is not None
        self.assertTrue(endpoint.service.running)
        (tls_port,) = self.tls.ports
        served = factory_handshake(tls_port.factory, "a.example").certificate
        self.assertEqual(names_of(served), ["txacme-default.invalid"])
        self.successResultOf(maybeDeferred(port.stopListening))
        self.assertFalse(endpoint.service.running)
        self.assertTrue(tls_port.stopped)

    def test_mapping_by_name(self) -> None:
        """
        A mapping's entries are served by server name, text or bytes keys
        (txsni's); its ``"DEFAULT"`` entry serves clients sending no name
        or one it does not hold.
        """
        mapping = {
            "a.example": ContextOptions(issue(["a.example"], KEYS[0]), KEYS[0]),
            b"b.example": ContextOptions(issue(["b.example"], KEYS[1]), KEYS[1]),
            "DEFAULT": ContextOptions(issue(["default.example"], KEYS[2]), KEYS[2]),
        }
        self.listen(self.mapped_endpoint(mapping))
        (tls_port,) = self.tls.ports
        for name, expected in [
            ("a.example", ["a.example"]),
            ("b.example", ["b.example"]),
            ("other.example", ["default.example"]),
            (None, ["default.example"]),
        ]:
            handshake = factory_handshake(tls_port.factory, name)
            self.assertEqual(names_of(handshake.certificate), expected, name)

    def test_mapping_read_at_each_handshake(self) -> None:
        """
        A mapping is looked up at each handshake, so that one reading the
        store's files (txsni's ``HostDirectoryMap``) serves what they hold
        now; a lookup that fails otherwise than with ``KeyError`` is
        logged and the default certificate served.
        """
        mapping = DirectoryLikeMap()
        endpoint = self.mapped_endpoint(mapping)
        self.listen(endpoint)
        (tls_port,) = self.tls.ports
        before = factory_handshake(tls_port.factory, "a.example").certificate
        self.assertEqual(names_of(before), ["txacme-default.invalid"])
        certificate = issue(["a.example"], KEYS[0])
        mapping.entries["a.example"] = ContextOptions(certificate, KEYS[0])
        after = factory_handshake(tls_port.factory, "a.example").certificate
        self.assertEqual(after, certificate)
        self.assertIn("a.example", mapping.asked)
        broken = factory_handshake(tls_port.factory, "broken.example")
        self.assertEqual(names_of(broken.certificate), ["txacme-default.invalid"])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        # The service still stores into cert_store; the mapping is the
        # application's to keep in step with it.
        assert endpoint.service is not None
        self.assertTrue(endpoint.service.running)

    def test_mapping_answers_tls_alpn_01(self) -> None:
        """
        With a mapping, tls-alpn-01 validations get the challenge
        certificate, other clients the mapping's.
        """
        certificate = issue(["a.example"], KEYS[0])
        endpoint = self.mapped_endpoint(
            {"a.example": ContextOptions(certificate, KEYS[0])}, names=["a.example"]
        )
        # Poll a while after answering: the challenge is answered meanwhile.
        self.client.policy = PollingPolicy()
        self.listen(endpoint)
        (tls_port,) = self.tls.ports
        validation = factory_handshake(tls_port.factory, "a.example", [ACME_TLS_1])
        self.assertEqual(validation.protocol, ACME_TLS_1)
        self.assertNotEqual(validation.certificate, certificate)
        plain = factory_handshake(tls_port.factory, "a.example", [b"http/1.1"])
        self.assertEqual(plain.certificate, certificate)

    def test_mapping_type(self) -> None:
        """
        ``cert_mapping`` is a ``ServedCertificates``, something indexable
        by server name, or ``None``.
        """
        self.assertRaises(TypeError, self.mapped_endpoint, 42)
        self.assertRaises(TypeError, self.mapped_endpoint, object())
        served = ServedCertificates(self.store)
        self.assertIs(self.mapped_endpoint(served).cert_mapping, served)

    def test_port_without_address(self) -> None:
        """
        A port that cannot tell its address (a test double of txacme 0.9's
        era) does not make listening fail: the address is only logged.
        """
        self.tls = AddresslessEndpoint()
        endpoint = self.endpoint()
        port = self.listen(endpoint)
        assert endpoint.service is not None
        self.assertTrue(endpoint.service.running)
        self.successResultOf(maybeDeferred(port.stopListening))
        self.assertTrue(self.tls.ports[0].stopped)

    def test_service_not_made(self) -> None:
        """
        If the service cannot be made (an interval that is not positive),
        the ports are stopped and listening fails with the error.
        """
        endpoint = self.endpoint(
            panic_interval=timedelta(0),
            challenges=["http-01"],
            http01_endpoint=self.http,
        )
        self.failureResultOf(endpoint.listen(Factory.forProtocol(Protocol)), ValueError)
        self.assertTrue(self.tls.ports[0].stopped)
        self.assertTrue(self.http.ports[0].stopped)
        self.assertIsNone(endpoint.service)

    def test_failure_after_start(self) -> None:
        """
        If anything fails once the service has started (here: the reactor
        cannot schedule the reloads), the service is stopped again, no
        timer is left, the ports are stopped, and listening fails.
        """
        self.clock = NoTimersClock()
        self.store = MemoryStore()
        endpoint = self.endpoint(challenges=["http-01"], http01_endpoint=self.http)
        self.failureResultOf(
            endpoint.listen(Factory.forProtocol(Protocol)), RuntimeError
        )
        # The service's own check could not schedule its next run either.
        gc.collect()
        self.flushLoggedErrors(RuntimeError)
        assert endpoint.service is not None
        self.assertFalse(endpoint.service.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(self.tls.ports[0].stopped)
        self.assertTrue(self.http.ports[0].stopped)

    def test_bad_arguments(self) -> None:
        """
        Unknown challenge types, http-01 without a listener and a directory
        that is not a URL are refused.
        """
        self.assertRaises(ValueError, self.endpoint, challenges=["dns-01"])
        self.assertRaises(ValueError, self.endpoint, challenges=[])
        self.assertRaises(ValueError, self.endpoint, challenges=["http-01"])
        self.assertRaises(
            TypeError,
            AutoTLSEndpoint,
            self.clock,
            PEBBLE_DIRECTORY,
            self.client_creator,
            self.store,
            None,
            self.tls,
        )

    def test_from_options(self) -> None:
        """
        :func:`endpoint_from_options` makes the endpoint of parsed options;
        a parser for one prefix does the same from a description's parts.
        """
        directory = tempfile.mkdtemp(prefix="txacme-endpoint-")
        self.addCleanup(shutil.rmtree, directory, True)
        reactor = MemoryReactor()  # type: ignore[no-untyped-call]
        options = parse_endpoint_options("lets", [directory, "tcp", "443"], {})
        endpoint = endpoint_from_options(reactor, options)
        self.assertEqual(endpoint.directory, LETSENCRYPT_STAGING_DIRECTORY)
        self.assertEqual(endpoint.key_type, "rsa")
        parsed = AcmeEndpointParser("le").parseStreamServer(
            reactor, directory, "tcp", "443", email="a@example.com", key_type="p256"
        )
        assert isinstance(parsed, AutoTLSEndpoint)
        self.assertEqual(parsed.email, "a@example.com")
        self.assertEqual(parsed.directory, LETSENCRYPT_DIRECTORY)
        self.assertEqual(parsed.key_type, "p256")
