"""
Certificate stores: where :class:`~txacme.service.AcmeIssuingService` keeps
each entry's private key, certificate and issuer chain.

* :class:`DirectoryStore`: one ``<server name>.pem`` file per entry, the
  layout `txsni <https://github.com/glyph/txsni>`_ and Twisted's ``tls:``
  endpoint read.  Writes are atomic and durable; files are readable by their
  owner only.
* :class:`MemoryStore`: a dict, for tests (also in :mod:`txacme.testing`, as
  in txacme 0.9).
* :func:`load_or_create_client_key`: the ACME account key kept beside the
  certificates, as txacme 0.9's endpoints kept it.

Both stores also provide :class:`~txacme.interfaces.ICertificateSummaries`:
what the service needs to know of every entry (names and validity), without parsing or
holding the keys and chains, so that a store of 100,000 entries is checked
in seconds and in little memory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from typing import TypeVar

import pem
from attrs import field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwk import JWK, JWKEC, JWKRSA
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

from txacme._files import (
    create_exclusively,
    fsync_directory,
    is_stale_temporary,
    write_atomically,
)
from txacme._names import check_server_name
from txacme.interfaces import ICertificateStore, ICertificateSummaries, IOrderJournal
from txacme.util import generate_private_key

__all__ = [
    "CLIENT_KEY_NAME",
    "CertificateSummary",
    "DirectoryStore",
    "ICertificateSummaries",
    "MemoryStore",
    "OrderRecord",
    "check_server_name",
    "load_or_create_client_key",
    "summarize",
]

_log = Logger()
_T = TypeVar("_T")

#: The file name of the account key in a :class:`DirectoryStore`'s
#: directory (txacme 0.9's name).
CLIENT_KEY_NAME = "client.key"

_PEM_SUFFIX = ".pem"
#: Where a DirectoryStore keeps what is not an entry: a hidden directory,
#: which txsni, Twisted's ``tls:`` endpoint and the store's own listing pass
#: over.
_STATE_DIRECTORY = ".txacme"
_ORDERS = "orders"
_BEGIN_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_END_CERTIFICATE = b"-----END CERTIFICATE-----"
_READ_SIZE = 16384

PathLike = (
    FilePath[str]
    | FilePath[bytes]
    | str
    | bytes
    | os.PathLike[str]
    | os.PathLike[bytes]
)
"""
A directory: a :class:`~twisted.python.filepath.FilePath` or a path, text
or bytes (txacme 0.9 took ``FilePath(b"...")`` as well as text).
"""


@frozen
class CertificateSummary:
    """
    What :class:`~txacme.service.AcmeIssuingService` needs to know of an
    entry's certificate, the first certificate (the leaf) in the entry.

    :ivar names: The names the certificate is for: its subjectAltName DNS
        names (lower case) and IP addresses, in the certificate's order.
    :ivar not_before: The start of its validity (aware, UTC).
    :ivar not_after: The end of its validity (aware, UTC).
    :ivar expires: ``not_after`` in seconds since the epoch.
    :ivar lifetime: The validity period, in seconds.
    """

    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    expires: float = field(init=False, eq=False, repr=False)
    lifetime: float = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Read for every entry at every check: computed once.
        object.__setattr__(self, "expires", self.not_after.timestamp())
        object.__setattr__(
            self, "lifetime", (self.not_after - self.not_before).total_seconds()
        )

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> CertificateSummary:
        """
        Summarize a certificate.

        :param certificate: The certificate.
        :returns: Its summary.
        """
        names: list[str] = []
        try:
            san = certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value
        except x509.ExtensionNotFound:
            pass
        else:
            for general_name in san:
                value = general_name.value
                if type(general_name) is x509.DNSName:
                    names.append(value.lower())
                elif type(general_name) is x509.IPAddress:
                    names.append(str(value))
        return cls(
            names=tuple(names),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
        )


@frozen
class OrderRecord:
    """
    An order in flight, as an :class:`~txacme.interfaces.IOrderJournal`
    keeps it: enough to go on with it after a crash or a restart.

    :ivar order_url: The order's URL.
    :ivar names: The names ordered, the entry's key first.
    :ivar key_pem: The certificate's private key (PEM).
    :ivar directory: The directory URL of the CA, if known.
    """

    order_url: str
    names: tuple[str, ...]
    key_pem: bytes = field(repr=False)
    directory: str | None = None

    def to_json(self) -> bytes:
        """The record as JSON bytes."""
        return json.dumps(
            {
                "order_url": self.order_url,
                "names": list(self.names),
                "key": self.key_pem.decode("ascii"),
                "directory": self.directory,
            }
        ).encode("utf-8")

    @classmethod
    def from_json(cls, content: bytes) -> OrderRecord:
        """
        A record from :meth:`to_json`'s bytes.

        :raises ValueError: If they are not a record.
        """
        try:
            jobj = json.loads(content)
            names = jobj["names"]
            directory = jobj.get("directory")
            record = cls(
                order_url=str(jobj["order_url"]),
                names=tuple(str(name) for name in names),
                key_pem=str(jobj["key"]).encode("ascii"),
                directory=None if directory is None else str(directory),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"Not an order record: {error}") from error
        if not record.names or not isinstance(names, list):
            raise ValueError("Not an order record: no names")
        return record


def _leaf_certificate(objects: Iterable[pem.AbstractPEMObject]) -> bytes | None:
    for obj in objects:
        if isinstance(obj, pem.Certificate):
            return obj.as_bytes()
    return None


def summarize(
    pem_objects: Sequence[pem.AbstractPEMObject],
) -> CertificateSummary | None:
    """
    Summarize a store entry: its first certificate, which txacme writes
    right after the private key.

    :param pem_objects: The entry.
    :returns: The summary, or ``None`` if the entry has no certificate or
        the certificate cannot be parsed.
    """
    leaf = _leaf_certificate(pem_objects)
    if leaf is None:
        return None
    try:
        return CertificateSummary.from_certificate(x509.load_pem_x509_certificate(leaf))
    except ValueError:
        return None


def _first_certificate_block(content: bytes) -> bytes | None:
    """The first PEM certificate block of ``content``, if it is whole."""
    start = content.find(_BEGIN_CERTIFICATE)
    if start < 0:
        return None
    end = content.find(_END_CERTIFICATE, start)
    if end < 0:
        return None
    return content[start : end + len(_END_CERTIFICATE)]


def _read_first_certificate(path: str) -> bytes | None:
    """
    Read an entry's file up to the end of its first certificate (the key
    before it, but not the issuer chain after it, when it is short).
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        content = b""
        while True:
            chunk = os.read(descriptor, _READ_SIZE)
            if not chunk:
                return _first_certificate_block(content)
            content += chunk
            block = _first_certificate_block(content)
            if block is not None:
                return block
    finally:
        os.close(descriptor)


def _summarize_block(block: bytes | None) -> CertificateSummary | None:
    """Summarize a PEM certificate block; ``None`` if it cannot be parsed."""
    if block is None:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(block)
    except ValueError:
        return None
    return CertificateSummary.from_certificate(certificate)


def _as_directory(path: PathLike) -> str:
    """
    ``path`` as a text path; bytes are decoded as the file system encodes
    names (as ``os.fsdecode`` and ``FilePath.asTextMode`` do).
    """
    if isinstance(path, FilePath):
        return os.fsdecode(path.path)
    return os.fsdecode(path)


@implementer(ICertificateStore, ICertificateSummaries, IOrderJournal)
class DirectoryStore:
    """
    A certificate store in a directory: one ``<server_name>.pem`` file per
    entry, holding the private key, the certificate and its issuer chain in
    that order (what txsni's ``SNIMap``/``DirectoryCertificateAndKeyStore``
    and Twisted's ``tls:`` endpoint load).  Other files, such as the
    account key :data:`CLIENT_KEY_NAME`, are left alone.

    :meth:`store` replaces a file atomically and durably (a
    temporary file in the same directory, flushed and ``fsync``-ed, then
    ``os.replace``-d onto the name, and the directory ``fsync``-ed); the
    file is created with mode 0600, since it holds a private key.  An empty
    ``<name>.pem`` file is an entry without a certificate: txacme 0.9's way
    of asking the service to issue one.
    Temporary files a writer killed mid-write left behind are ignored, and
    removed after an hour.

    :param path: The directory (it must exist): a
        :class:`~twisted.python.filepath.FilePath` or a path, text or bytes.
        ``path`` is its text-mode ``FilePath``, as in txacme 0.9.
    :param reactor: If given, the file I/O (including ``fsync``) runs in
        its thread pool so that the reactor thread is not blocked; if
        ``None``, it runs synchronously, as in txacme 0.9.
    """

    def __init__(
        self, path: PathLike, *, reactor: IReactorThreads | None = None
    ) -> None:
        self.path: FilePath[str] = FilePath(_as_directory(path))
        self._directory = self.path.path
        self._reactor = reactor

    def __repr__(self) -> str:
        return f"<DirectoryStore {self._directory!r}>"

    def _run(self, function: Callable[..., _T], *arguments: object) -> Deferred[_T]:
        if self._reactor is None:
            return maybeDeferred(function, *arguments)
        return deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), function, *arguments
        )

    def _file(self, server_name: str) -> str:
        return os.path.join(
            self._directory, check_server_name(server_name) + _PEM_SUFFIX
        )

    def _get(self, server_name: str) -> list[pem.AbstractPEMObject]:
        try:
            with open(self._file(server_name), "rb") as entry:
                content = entry.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(server_name) from None
        return pem.parse(content)

    def get(self, server_name: str) -> Deferred[list[pem.AbstractPEMObject]]:
        """
        Read an entry.

        :param server_name: The entry's name.
        :returns: A Deferred firing with its PEM objects (an empty list for
            an empty file).
        :raises KeyError: (through the Deferred) if there is no entry.
        :raises ValueError: (through the Deferred) for a name that cannot
            be a file name in the directory.
        """
        return self._run(self._get, server_name)

    def _store(self, server_name: str, content: bytes) -> None:
        write_atomically(
            self._directory, check_server_name(server_name) + _PEM_SUFFIX, content
        )

    def store(
        self, server_name: str, pem_objects: Iterable[pem.AbstractPEMObject]
    ) -> Deferred[None]:
        """
        Replace an entry, atomically and durably.

        :param server_name: The entry's name.
        :param pem_objects: Its PEM objects: the private key first, then the
            certificate and its issuer chain.
        :returns: A Deferred firing once the entry is on disk.
        :raises ValueError: (through the Deferred) for a name that cannot
            be a file name in the directory.
        """
        try:
            check_server_name(server_name)
        except ValueError:
            return fail()
        content = b"".join(_with_newline(obj.as_bytes()) for obj in pem_objects)
        return self._run(self._store, server_name, content)

    def _entries(self) -> list[tuple[str, str]]:
        """The entries' names and paths; stale temporary files are removed."""
        now = time.time()
        found: list[tuple[str, str]] = []
        with os.scandir(self._directory) as listing:
            for entry in listing:
                name = entry.name
                if name.startswith("."):
                    if is_stale_temporary(entry, now):
                        with suppress(OSError):
                            os.unlink(entry.path)
                    continue
                if not name.endswith(_PEM_SUFFIX) or len(name) == len(_PEM_SUFFIX):
                    continue
                found.append((name[: -len(_PEM_SUFFIX)], entry.path))
        return found

    def _as_dict(self) -> dict[str, list[pem.AbstractPEMObject]]:
        result: dict[str, list[pem.AbstractPEMObject]] = {}
        for server_name, path in self._entries():
            try:
                with open(path, "rb") as entry:
                    result[server_name] = pem.parse(entry.read())
            except (FileNotFoundError, IsADirectoryError):
                continue
        return result

    def as_dict(self) -> Deferred[dict[str, list[pem.AbstractPEMObject]]]:
        """
        Read every entry.  This parses and holds every key and chain: for
        large stores, :meth:`summaries` is far cheaper.

        :returns: A Deferred firing with a dict mapping server names to
            their PEM objects.
        """
        return self._run(self._as_dict)

    def _summaries(self) -> dict[str, CertificateSummary | None]:
        result: dict[str, CertificateSummary | None] = {}
        for server_name, path in self._entries():
            try:
                block = _read_first_certificate(path)
            except (FileNotFoundError, IsADirectoryError):
                continue
            result[server_name] = _summarize_block(block)
        return result

    def summaries(self) -> Deferred[dict[str, CertificateSummary | None]]:
        """
        Summarize every entry, parsing only each file's first certificate
        (see :class:`~txacme.interfaces.ICertificateSummaries`).

        :returns: A Deferred firing with a dict mapping server names to
            summaries (``None`` for an entry without a certificate).
        """
        return self._run(self._summaries)

    # -- the order journal (IOrderJournal) ----------------------------------------

    def _orders_directory(self, create: bool) -> str:
        path = os.path.join(self._directory, _STATE_DIRECTORY, _ORDERS)
        if create:
            os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def _order_file(self, server_name: str) -> str:
        return check_server_name(server_name) + ".json"

    def _record_order(self, server_name: str, content: bytes) -> None:
        write_atomically(
            self._orders_directory(create=True), self._order_file(server_name), content
        )

    def record_order(self, server_name: str, record: OrderRecord) -> Deferred[None]:
        """
        Remember an entry's order in flight, in
        ``.txacme/orders/<name>.json`` (mode 0600: it holds the private key),
        atomically and durably (see
        :class:`~txacme.interfaces.IOrderJournal`).
        """
        try:
            self._order_file(server_name)
        except ValueError:
            return fail()
        return self._run(self._record_order, server_name, record.to_json())

    def _pending_order(self, server_name: str) -> OrderRecord | None:
        path = os.path.join(
            self._orders_directory(create=False), self._order_file(server_name)
        )
        try:
            with open(path, "rb") as file:
                content = file.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return OrderRecord.from_json(content)
        except ValueError as error:
            _log.warn(
                "Ignoring the unreadable order record {path}: {error}",
                path=path,
                error=str(error),
            )
            return None

    def pending_order(self, server_name: str) -> Deferred[OrderRecord | None]:
        """
        :returns: A Deferred firing with the entry's order in flight, or
            ``None`` (also for a record that cannot be read, which is
            logged).
        """
        return self._run(self._pending_order, server_name)

    def _forget_order(self, server_name: str) -> None:
        directory = self._orders_directory(create=False)
        with suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(os.path.join(directory, self._order_file(server_name)))
            fsync_directory(directory)
        # Leave no empty directories behind (another process may be
        # recording meanwhile: then they are not empty, and stay).
        with suppress(OSError):
            os.rmdir(directory)
            os.rmdir(os.path.dirname(directory))

    def forget_order(self, server_name: str) -> Deferred[None]:
        """
        Forget the entry's order in flight; no error if there is none.
        """
        return self._run(self._forget_order, server_name)


def _with_newline(block: bytes) -> bytes:
    return block if block.endswith(b"\n") else block + b"\n"


@implementer(ICertificateStore, ICertificateSummaries, IOrderJournal)
class MemoryStore:
    """
    A certificate store in memory, for tests (txacme 0.9's
    ``txacme.testing.MemoryStore``).

    :param certs: The initial entries (copied).
    """

    def __init__(
        self, certs: Mapping[str, Sequence[pem.AbstractPEMObject]] | None = None
    ) -> None:
        self._store: dict[str, list[pem.AbstractPEMObject]] = {
            server_name: list(objects) for server_name, objects in (certs or {}).items()
        }
        #: The orders in flight (:class:`~txacme.interfaces.IOrderJournal`).
        self.orders: dict[str, OrderRecord] = {}

    def record_order(self, server_name: str, record: OrderRecord) -> Deferred[None]:
        """Remember an entry's order in flight."""
        self.orders[server_name] = record
        return succeed(None)

    def pending_order(self, server_name: str) -> Deferred[OrderRecord | None]:
        """:returns: A Deferred firing with the entry's order in flight."""
        return succeed(self.orders.get(server_name))

    def forget_order(self, server_name: str) -> Deferred[None]:
        """Forget the entry's order in flight."""
        self.orders.pop(server_name, None)
        return succeed(None)

    def get(self, server_name: str) -> Deferred[list[pem.AbstractPEMObject]]:
        """
        :returns: A Deferred firing with the entry's PEM objects.
        :raises KeyError: (through the Deferred) if there is no entry.
        """
        try:
            return succeed(list(self._store[server_name]))
        except KeyError:
            return fail()

    def store(
        self, server_name: str, pem_objects: Iterable[pem.AbstractPEMObject]
    ) -> Deferred[None]:
        """
        Replace an entry.

        :returns: A Deferred that has fired.
        """
        self._store[server_name] = list(pem_objects)
        return succeed(None)

    def as_dict(self) -> Deferred[dict[str, list[pem.AbstractPEMObject]]]:
        """
        :returns: A Deferred firing with a copy of every entry.
        """
        return succeed(
            {server_name: list(objects) for server_name, objects in self._store.items()}
        )

    def summaries(self) -> Deferred[dict[str, CertificateSummary | None]]:
        """
        :returns: A Deferred firing with every entry's summary.
        """
        return succeed(
            {
                server_name: summarize(objects)
                for server_name, objects in self._store.items()
            }
        )


def _jwk_from_pem(content: bytes, path: str) -> JWK:
    try:
        key = serialization.load_pem_private_key(content, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{path} is not a usable account key (refusing to create a new "
            f"account in its place; restore it or remove it): {error}"
        ) from error
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return JWKEC(key=key)
    raise ValueError(f"{path} holds a {type(key).__name__}, not an RSA or ECDSA key")


def load_or_create_client_key(pem_path: PathLike) -> JWK:
    """
    Load the ACME account key from ``client.key`` in a directory, or create
    it (RSA 2048, txacme 0.9's choice; PEM, mode 0600) if there is none.

    The key file is created atomically (it appears whole or not at all) and
    an existing one is never replaced, not even by a concurrent caller: each
    gets the key that won.  This blocks (RSA key generation takes tens of
    milliseconds); call it before starting the reactor, or in a thread.

    :param pem_path: The directory (a :class:`~twisted.python.filepath.FilePath`
        or a path, text or bytes); it is created (mode 0700) if missing.
    :returns: The key, as a :class:`josepy.jwk.JWKRSA` (or
        :class:`josepy.jwk.JWKEC` for an ECDSA key someone put there).
    :raises ValueError: If the file exists but is not a PEM RSA or ECDSA
        private key: a corrupt key is not silently replaced by a new account.
    """
    directory = _as_directory(pem_path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, CLIENT_KEY_NAME)
    try:
        with open(path, "rb") as key_file:
            return _jwk_from_pem(key_file.read(), path)
    except FileNotFoundError:
        pass
    key = generate_private_key("rsa")
    content = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    if create_exclusively(directory, CLIENT_KEY_NAME, content):
        _log.info("Created a new ACME account key in {path}", path=path)
        return JWKRSA(key=key)
    with open(path, "rb") as key_file:
        return _jwk_from_pem(key_file.read(), path)
