"""
Tests for :mod:`txacme.store`: :class:`DirectoryStore` (layout, atomic and
durable writes, file modes, names, summaries), :class:`MemoryStore`, and
:func:`load_or_create_client_key`.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import stat
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from josepy.jwk import JWKEC, JWKRSA
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from zope.interface.verify import verifyObject

import txacme.store
import txacme.util
from tests.support import EC_KEY, NOW, TestCase
from tests.test_service import ThreadedClock, make_bundle
from txacme.interfaces import ICertificateStore
from txacme.service import AcmeIssuingService
from txacme.store import (
    CLIENT_KEY_NAME,
    CertificateSummary,
    DirectoryStore,
    ICertificateSummaries,
    MemoryStore,
    load_or_create_client_key,
    summarize,
)
from txacme.testing import FakeClient, NullResponder
from txacme.util import generate_private_key

DAY = 86400.0


def _content(objects: list[pem.AbstractPEMObject]) -> bytes:
    return b"".join(obj.as_bytes() for obj in objects)


class FileTestCase(TestCase):
    """Typed helpers for temporary directories and patching."""

    def temporary_directory(self) -> Path:
        """A new empty directory, removed after the test."""
        directory = Path(tempfile.mkdtemp(prefix="txacme-store-"))
        self.addCleanup(shutil.rmtree, directory, True)
        return directory

    def replace_attribute(self, owner: object, name: str, value: object) -> None:
        """Set ``owner.name`` to ``value`` for the rest of the test."""
        original = getattr(owner, name)
        setattr(owner, name, value)
        self.addCleanup(setattr, owner, name, original)


class StoreTestCase(FileTestCase):
    """A temporary directory and a DirectoryStore on it."""

    def setUp(self) -> None:
        self.directory = self.temporary_directory()
        self.store = DirectoryStore(FilePath(str(self.directory)))

    def result(self, deferred: Deferred[Any]) -> Any:
        return self.successResultOf(deferred)


class DirectoryStoreTests(StoreTestCase):
    """Tests for :class:`DirectoryStore`."""

    def test_interfaces(self) -> None:
        """Both stores provide ICertificateStore and ICertificateSummaries."""
        for store in (self.store, MemoryStore()):
            self.assertTrue(verifyObject(ICertificateStore, store))
            self.assertTrue(verifyObject(ICertificateSummaries, store))

    def test_get_missing(self) -> None:
        """Getting an entry that does not exist fails with KeyError."""
        self.failureResultOf(self.store.get("missing.example"), KeyError)

    def test_layout(self) -> None:
        """
        ``store`` writes ``<name>.pem`` holding the PEM objects in order,
        readable by its owner only; ``get`` reads them back.
        """
        bundle = make_bundle(["a.example"], NOW)
        self.assertIs(self.result(self.store.store("a.example", bundle)), None)
        path = self.directory / "a.example.pem"
        self.assertEqual(path.read_bytes(), _content(bundle))
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        got = self.result(self.store.get("a.example"))
        self.assertEqual(
            [obj.as_bytes() for obj in got], [o.as_bytes() for o in bundle]
        )
        self.assertEqual([type(obj) for obj in got], [pem.PrivateKey, pem.Certificate])

    def test_replace_tightens_mode(self) -> None:
        """
        Replacing an entry leaves a file of mode 0600 even if the old one
        was readable by others, and no temporary file behind.
        """
        path = self.directory / "a.example.pem"
        path.write_bytes(b"")
        path.chmod(0o644)
        bundle = make_bundle(["a.example"], NOW)
        self.result(self.store.store("a.example", bundle))
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(path.read_bytes(), _content(bundle))
        self.assertEqual(os.listdir(self.directory), ["a.example.pem"])

    def test_newline_between_objects(self) -> None:
        """PEM objects without a final newline are still separated."""
        self.result(
            self.store.store(
                "a.example",
                [
                    pem.PrivateKey(
                        b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----"
                    )
                ],
            )
        )
        content = (self.directory / "a.example.pem").read_bytes()
        self.assertTrue(content.endswith(b"-----\n"))

    def test_durable(self) -> None:
        """
        A store ``fsync``-s the new file before renaming it into place, and
        the directory after.
        """
        synced: list[str] = []
        real_fsync = os.fsync
        real_replace = os.replace

        def fsync(descriptor: int) -> None:
            synced.append(
                "directory" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file"
            )
            real_fsync(descriptor)

        def replace(source: Any, target: Any) -> None:
            synced.append("replace")
            real_replace(source, target)

        self.replace_attribute(os, "fsync", fsync)
        self.replace_attribute(os, "replace", replace)
        self.result(self.store.store("a.example", make_bundle(["a.example"], NOW)))
        self.assertEqual(synced, ["file", "replace", "directory"])

    def test_failed_write_leaves_old_entry(self) -> None:
        """
        If the write fails, the Deferred fails, the old entry is intact and
        the temporary file is removed.
        """
        old = make_bundle(["a.example"], NOW)
        self.result(self.store.store("a.example", old))

        def replace(source: Any, target: Any) -> None:
            raise OSError("disk full")

        self.replace_attribute(os, "replace", replace)
        self.failureResultOf(
            self.store.store("a.example", make_bundle(["a.example"], NOW)), OSError
        )
        self.assertEqual(os.listdir(self.directory), ["a.example.pem"])
        self.assertEqual((self.directory / "a.example.pem").read_bytes(), _content(old))

    def test_as_dict(self) -> None:
        """
        ``as_dict`` reads every ``<name>.pem`` (an empty one as no
        objects) and nothing else: not the account key, hidden or temporary
        files, other suffixes or directories.
        """
        a = make_bundle(["a.example"], NOW)
        self.result(self.store.store("a.example", a))
        (self.directory / "empty.example.pem").write_bytes(b"")
        (self.directory / CLIENT_KEY_NAME).write_bytes(b"key")
        (self.directory / ".hidden.pem").write_bytes(b"x")
        (self.directory / ".txacme-123.tmp").write_bytes(b"x")
        (self.directory / "notes.txt").write_bytes(b"x")
        (self.directory / "b.example.pem.bak").write_bytes(b"x")
        (self.directory / ".pem").write_bytes(b"x")
        (self.directory / "dir.pem").mkdir()
        entries = self.result(self.store.as_dict())
        self.assertEqual(sorted(entries), ["a.example", "empty.example"])
        self.assertEqual(entries["empty.example"], [])
        self.assertEqual(_content(entries["a.example"]), _content(a))
        self.assertEqual(sorted(self.result(self.store.summaries())), sorted(entries))

    def test_summaries(self) -> None:
        """
        ``summaries`` gives each entry's first certificate's names and
        validity, and ``None`` for an entry without a usable certificate.
        """
        bundle = make_bundle(["a.example", "www.a.example"], NOW, timedelta(days=6))
        self.result(self.store.store("a.example", bundle))
        (self.directory / "empty.example.pem").write_bytes(b"")
        (self.directory / "garbage.example.pem").write_bytes(
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
        )
        (self.directory / "cut.example.pem").write_bytes(
            _content(bundle)[: len(_content(bundle)) - 40]
        )
        summaries = self.result(self.store.summaries())
        expected = CertificateSummary(
            names=("a.example", "www.a.example"),
            not_before=datetime.fromtimestamp(NOW, UTC),
            not_after=datetime.fromtimestamp(NOW, UTC) + timedelta(days=6),
        )
        self.assertEqual(summaries["a.example"], expected)
        self.assertEqual(summaries["a.example"].lifetime, 6 * DAY)
        self.assertIs(summaries["empty.example"], None)
        self.assertIs(summaries["garbage.example"], None)
        self.assertIs(summaries["cut.example"], None)

    def test_summary_of_long_file(self) -> None:
        """
        The first certificate is found however far into the file it is, and
        certificates after it (the chain) do not count.
        """
        leaf = make_bundle(["a.example"], NOW)
        issuer = make_bundle(["issuer.example"], NOW - 10 * DAY)
        padding = pem.PrivateKey(
            b"-----BEGIN PRIVATE KEY-----\n"
            + b"A" * 64 * 1000
            + b"\n-----END PRIVATE KEY-----\n"
        )
        self.result(self.store.store("a.example", [padding, leaf[1], issuer[1]]))
        summary = self.result(self.store.summaries())["a.example"]
        self.assertEqual(summary.names, ("a.example",))

    def test_unusable_names(self) -> None:
        """
        Names that are empty, hidden, or hold a path separator are refused
        (through the Deferred) by every method, and nothing is written.
        """
        for name in ("", ".hidden", "..", "../escape", "a/b", "a\\b", "a\0b"):
            self.failureResultOf(self.store.store(name, []), ValueError)
            self.failureResultOf(self.store.get(name), ValueError)
        self.assertEqual(os.listdir(self.directory), [])

    def test_stale_temporaries_removed(self) -> None:
        """
        Temporary files a killed writer left behind are removed once they
        are an hour old; younger ones (a writer at work) are kept.
        """
        old = self.directory / ".txacme-old.tmp"
        young = self.directory / ".txacme-young.tmp"
        other = self.directory / ".other-old.tmp"
        for path in (old, young, other):
            path.write_bytes(b"partial")
        long_ago = time.time() - 7200
        os.utime(old, (long_ago, long_ago))
        os.utime(other, (long_ago, long_ago))
        self.result(self.store.summaries())
        self.assertEqual(
            sorted(os.listdir(self.directory)), [".other-old.tmp", ".txacme-young.tmp"]
        )

    def test_path_types(self) -> None:
        """The directory may be a FilePath, a str or a pathlib.Path."""
        self.result(self.store.store("a.example", []))
        for path in (
            str(self.directory),
            self.directory,
            FilePath(str(self.directory)),
        ):
            store = DirectoryStore(path)
            self.assertEqual(self.result(store.as_dict()), {"a.example": []})
            self.assertEqual(store.path, FilePath(str(self.directory)))

    def test_bytes_paths(self) -> None:
        """
        The directory may be given as bytes, a ``FilePath`` of bytes
        included (as txacme 0.9 allowed): the store reads and writes the
        same files as with text, and its ``path`` is in text mode.
        """
        self.result(self.store.store("a.example", []))
        directory = os.fsencode(self.directory)
        for path, name in (
            (directory, "b.example"),
            (FilePath(directory), "c.example"),
        ):
            store = DirectoryStore(path)
            self.assertEqual(store.path, FilePath(str(self.directory)))
            self.assertIsInstance(store.path.path, str)
            self.assertEqual(self.result(store.as_dict())["a.example"], [])
            bundle = make_bundle([name], NOW)
            self.result(store.store(name, bundle))
            got = self.result(store.get(name))
            self.assertEqual(
                [obj.as_bytes() for obj in got], [obj.as_bytes() for obj in bundle]
            )
            self.assertIn(name, self.result(self.store.as_dict()))
            self.assertIn(name, self.result(store.summaries()))

    def test_bytes_path_not_utf8(self) -> None:
        """
        A bytes directory name that is not UTF-8 is used as is (decoded
        the way the file system encodes names).
        """
        directory = os.fsencode(self.directory) + b"/caf\xe9"
        os.mkdir(directory)
        store = DirectoryStore(FilePath(directory))
        self.result(store.store("a.example", []))
        self.assertEqual(os.listdir(directory), [b"a.example.pem"])
        self.assertEqual(self.result(store.as_dict()), {"a.example": []})

    def test_thread_pool(self) -> None:
        """
        Given a reactor, the store does its file I/O in its thread pool.
        """
        reactor = ThreadedClock()
        store = DirectoryStore(self.directory, reactor=reactor)
        self.result(store.store("a.example", make_bundle(["a.example"], NOW)))
        self.result(store.get("a.example"))
        self.result(store.as_dict())
        self.result(store.summaries())
        self.assertEqual(len(reactor.pool.calls), 4)
        self.failureResultOf(store.get("missing"), KeyError)


class SummarizeTests(TestCase):
    """Tests for :func:`summarize`."""

    def test_first_certificate(self) -> None:
        """An entry is summarized by its first certificate."""
        first = make_bundle(["a.example"], NOW)
        second = make_bundle(["b.example"], NOW)
        summary = summarize([first[0], first[1], second[1]])
        assert summary is not None
        self.assertEqual(summary.names, ("a.example",))

    def test_no_certificate(self) -> None:
        """An entry without a certificate has no summary."""
        self.assertIs(summarize([]), None)
        self.assertIs(summarize(make_bundle(["a.example"], NOW)[:1]), None)
        self.assertIs(
            summarize(
                [
                    pem.Certificate(
                        b"-----BEGIN CERTIFICATE-----\nAA==\n"
                        b"-----END CERTIFICATE-----\n"
                    )
                ]
            ),
            None,
        )

    def test_names(self) -> None:
        """DNS names come lower-cased, IP addresses in canonical form."""
        key = generate_private_key("p256")
        start = datetime.fromtimestamp(NOW, UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name([]))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("WWW.Example.COM"),
                        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
                        x509.RFC822Name("someone@example.com"),
                    ]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        summary = CertificateSummary.from_certificate(certificate)
        self.assertEqual(summary.names, ("www.example.com", "2001:db8::1"))


class MemoryStoreTests(TestCase):
    """Tests for :class:`MemoryStore`."""

    def test_get_store(self) -> None:
        """
        Entries are stored and read back as copies; a missing one is a
        KeyError.
        """
        bundle = make_bundle(["a.example"], NOW)
        store = MemoryStore({"b.example": []})
        self.failureResultOf(store.get("a.example"), KeyError)
        self.successResultOf(store.store("a.example", bundle))
        got = self.successResultOf(store.get("a.example"))
        self.assertEqual(got, bundle)
        got.append(bundle[0])
        self.assertEqual(self.successResultOf(store.get("a.example")), bundle)
        everything: dict[str, Any] = self.successResultOf(store.as_dict())
        self.assertEqual(everything, {"a.example": bundle, "b.example": []})
        everything["c.example"] = []
        again: dict[str, Any] = self.successResultOf(store.as_dict())
        self.assertEqual(sorted(again), ["a.example", "b.example"])
        summaries = self.successResultOf(store.summaries())
        self.assertIs(summaries["b.example"], None)
        self.assertEqual(summaries["a.example"], summarize(bundle))


class ClientKeyTests(FileTestCase):
    """Tests for :func:`load_or_create_client_key`."""

    def setUp(self) -> None:
        self.directory = self.temporary_directory()
        self.path = self.directory / CLIENT_KEY_NAME

    def test_create_then_load(self) -> None:
        """
        The first call creates ``client.key``: an RSA 2048 key (txacme
        0.9's), PEM, mode 0600; the next call loads the same key without
        rewriting the file.
        """
        created = load_or_create_client_key(FilePath(str(self.directory)))
        self.assertIsInstance(created, JWKRSA)
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)
        content = self.path.read_bytes()
        self.assertTrue(content.startswith(b"-----BEGIN RSA PRIVATE KEY-----"))
        key = serialization.load_pem_private_key(content, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.assertEqual(key.key_size, 2048)
        before = self.path.stat()
        loaded = load_or_create_client_key(str(self.directory))
        self.assertEqual(loaded.thumbprint(), created.thumbprint())
        after = self.path.stat()
        self.assertEqual(
            (after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns)
        )
        self.assertEqual(os.listdir(self.directory), [CLIENT_KEY_NAME])

    def test_bytes_path(self) -> None:
        """
        The directory may be bytes, or a ``FilePath`` of bytes: the key is
        created in it and loaded from it.
        """
        created = load_or_create_client_key(FilePath(os.fsencode(self.directory)))
        self.assertTrue(self.path.exists())
        loaded = load_or_create_client_key(os.fsencode(self.directory))
        self.assertEqual(loaded.thumbprint(), created.thumbprint())

    def test_creates_directory(self) -> None:
        """A missing directory is created, readable by its owner only."""
        directory = self.directory / "new"
        load_or_create_client_key(directory)
        self.assertEqual(stat.S_IMODE(directory.stat().st_mode) & 0o077, 0)
        self.assertTrue((directory / CLIENT_KEY_NAME).exists())

    def test_ec_key(self) -> None:
        """An ECDSA key put there is loaded as such."""
        key = generate_private_key("p256")
        self.path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        loaded = load_or_create_client_key(self.directory)
        self.assertIsInstance(loaded, JWKEC)

    def test_corrupt_key_is_an_error(self) -> None:
        """
        A key file that is not a key (empty, truncated, garbage, or of an
        unsupported type) is an error, never silently replaced by a new
        account key.
        """
        good = generate_private_key("rsa").private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        for content in (b"", good[: len(good) // 2], b"garbage", ed):
            self.path.write_bytes(content)
            error = self.assertRaises(
                ValueError, load_or_create_client_key, self.directory
            )
            self.assertIn(str(self.path), str(error))
            self.assertEqual(self.path.read_bytes(), content)

    def test_never_overwrites(self) -> None:
        """
        If another process creates the key while this one generates its
        own, the other's key is kept and returned.
        """
        theirs = generate_private_key("rsa")
        theirs_pem = theirs.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        real = txacme.util.generate_private_key

        def racing(key_type: str) -> Any:
            self.path.write_bytes(theirs_pem)
            return real(key_type)

        self.replace_attribute(txacme.store, "generate_private_key", racing)
        loaded = load_or_create_client_key(self.directory)
        self.assertEqual(loaded.thumbprint(), JWKRSA(key=theirs).thumbprint())
        self.assertEqual(self.path.read_bytes(), theirs_pem)
        self.assertEqual(os.listdir(self.directory), [CLIENT_KEY_NAME])


class ScaleTests(FileTestCase):
    """The service checks a large directory store through its summaries."""

    def test_many_entries_use_summaries(self) -> None:
        """
        A service on a DirectoryStore of 3,000 valid entries becomes ready
        without issuing and without reading whole entries (``as_dict``),
        letting the reactor run between parts of its check.
        """
        directory = self.temporary_directory()
        template = make_bundle(["template.example"], NOW)
        key = template[0]
        for index in range(3000):
            name = f"host{index}.example"
            (directory / f"{name}.pem").write_bytes(
                _content([key, make_bundle([name], NOW)[1]])
            )

        class NoWholeReads(DirectoryStore):
            def as_dict(self) -> Any:
                raise AssertionError("as_dict read every entry whole")

        clock = Clock()
        clock.advance(NOW)
        fake = FakeClient(EC_KEY, clock)
        service = AcmeIssuingService(
            NoWholeReads(directory),
            lambda: succeed(fake),
            clock,
            [NullResponder("http-01")],
        )
        started = time.perf_counter()
        service.startService()
        self.addCleanup(service.stopService)
        # The check lets the reactor run every thousand entries: it is not
        # done in one go.
        self.assertNoResult(service.when_certs_valid())
        for _ in range(5):
            clock.advance(0)
        self.successResultOf(service.when_certs_valid())
        elapsed = time.perf_counter() - started
        self.assertEqual(fake.orders, [])
        self.assertTrue(elapsed < 10.0, f"{elapsed:.1f} s to check 3,000 entries")
