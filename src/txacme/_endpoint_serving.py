"""
The certificates the endpoints serve, by server name (SNI): from a
certificate store (:class:`ServedCertificates`, reloaded as the service
stores certificates through a :class:`NotifyingStore`), or from what txacme
0.9's endpoint took instead (a :class:`CertificateMapping`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import pem
from attrs import field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IProtocolNegotiationFactory,
)
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import alsoProvides, implementer

from txacme.interfaces import ICertificateStore, ICertificateSummaries, IOrderJournal
from txacme.store import CertificateSummary, OrderRecord, summarize
from txacme.util import PrivateKey, generate_private_key

if TYPE_CHECKING:
    # The type of SSL.NO_OVERLAPPING_PROTOCOLS, for annotations only.
    from OpenSSL.SSL import _NoOverlappingProtocols

__all__ = [
    "CertificateMapping",
    "MappedCertificates",
    "NotifyingStore",
    "ServedCertificates",
    "check_cert_mapping",
]

# The namespace of txacme.endpoint, whose log events these were before it
# was split.
_log = Logger(namespace="txacme.endpoint")

#: The self-signed default certificate's name, which no client asks for.
_FALLBACK_NAME = "txacme-default.invalid"

# -- the certificates served ---------------------------------------------------------


@frozen
class _Served:
    """One store entry, ready to serve."""

    key: str
    names: tuple[str, ...]
    not_after: datetime
    context: SSL.Context = field(eq=False)


def _load_private_key(objects: Iterable[pem.AbstractPEMObject]) -> PrivateKey | None:
    for obj in objects:
        if isinstance(obj, pem.PrivateKey):
            try:
                key = serialization.load_pem_private_key(obj.as_bytes(), password=None)
            except (ValueError, TypeError):
                continue
            return cast(PrivateKey, key)
    return None


def _self_signed(name: str) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed certificate for ``name``, valid for ten years."""
    key = generate_private_key("p256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


@implementer(IOpenSSLServerConnectionCreator)
class ServedCertificates:
    """
    The certificates of a store, served by server name (SNI): TLS options
    for a Twisted server, reloaded from the store on demand.

    Each entry with a private key and a certificate is served for every
    name of the certificate's subjectAltName; a wildcard name
    (``*.example.com``) serves the names one label below it.  When several
    entries cover a name, the entry named after it wins, then the one that
    expires last.  A client sending no name, or a name no entry covers,
    gets the default certificate: the entry ``default_name`` if it has a
    certificate, else the first entry by name, else a self-signed
    certificate made when first needed.

    It is an :class:`~twisted.internet.interfaces.IOpenSSLServerConnectionCreator`:
    listen with it, for example through
    :class:`~twisted.protocols.tls.TLSMemoryBIOFactory` or a
    :class:`~txacme.challenges.TLSALPN01Responder`'s ``wrap``.  The TLS
    settings are Twisted's defaults (:class:`~twisted.internet.ssl.CertificateOptions`).

    :param cert_store: The :class:`~txacme.interfaces.ICertificateStore`.
    :param default_name: The entry to serve by default, if it has a
        certificate.
    """

    def __init__(
        self, cert_store: ICertificateStore, default_name: str | None = None
    ) -> None:
        self.cert_store = cert_store
        self.default_name = default_name
        self._entries: dict[str, _Served] = {}
        self._by_name: dict[str, set[str]] = {}
        self._fallback: SSL.Context | None = None
        # Each read of the store is numbered; an entry takes the result of a
        # read only if no later-started read has set it already.
        self._reads = 0
        self._applied: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<ServedCertificates {sorted(self._by_name)!r}>"

    @property
    def names(self) -> dict[str, str]:
        """
        The names served, each with the entry that serves it.
        """
        result: dict[str, str] = {}
        for name in sorted(self._by_name):
            served = self._lookup(name)
            if served is not None:
                result[name] = served.key
        return result

    # Loading.

    def reload(self) -> Deferred[None]:
        """
        Read the whole store and serve what it holds now: new and changed
        entries are served, removed ones no longer.  An entry that cannot be
        served (no key, no certificate, a key that is not the certificate's)
        is left out, with a warning.

        :returns: A Deferred firing once done.
        """
        return Deferred.fromCoroutine(self._reload())

    async def _reload(self) -> None:
        read = self._next_read()
        store = cast(Any, self.cert_store)
        entries: dict[str, list[pem.AbstractPEMObject]] = await store.as_dict()
        for key in set(self._entries) | set(entries):
            objects = entries.get(key)
            self._apply(
                key, read, None if objects is None else self._build(key, objects)
            )
        _log.debug("Serving certificates for {count} names", count=len(self._by_name))

    def reload_entry(self, server_name: str) -> Deferred[None]:
        """
        Read one entry of the store and serve what it holds now (nothing,
        if it is gone or cannot be served).

        :param server_name: The entry's name.
        :returns: A Deferred firing once done.
        """
        return Deferred.fromCoroutine(self._reload_entry(server_name))

    async def _reload_entry(self, server_name: str) -> None:
        read = self._next_read()
        store = cast(Any, self.cert_store)
        try:
            objects: list[pem.AbstractPEMObject] = await store.get(server_name)
        except KeyError:
            self._apply(server_name, read, None)
            return
        self._apply(server_name, read, self._build(server_name, objects))

    def _next_read(self) -> int:
        self._reads += 1
        return self._reads

    def _apply(self, key: str, read: int, served: _Served | None) -> None:
        if self._applied.get(key, 0) > read:
            return
        self._applied[key] = read
        old = self._entries.pop(key, None)
        if old is not None:
            for name in old.names:
                keys = self._by_name.get(name)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_name[name]
        if served is not None:
            self._entries[key] = served
            for name in served.names:
                self._by_name.setdefault(name, set()).add(key)
            if old is None or old.not_after != served.not_after:
                _log.info(
                    "Serving the certificate of {server_name} for {names}, valid "
                    "until {not_after}",
                    server_name=key,
                    names=", ".join(served.names),
                    not_after=served.not_after.isoformat(),
                )

    def _build(
        self, key: str, objects: Sequence[pem.AbstractPEMObject]
    ) -> _Served | None:
        """An entry's context, or ``None`` if it cannot be served."""
        certificates = [obj for obj in objects if isinstance(obj, pem.Certificate)]
        if not certificates:
            # An empty entry: a certificate asked for and not issued yet.
            return None
        private_key = _load_private_key(objects)
        summary = summarize(objects)
        try:
            if private_key is None or summary is None:
                raise ValueError("no usable private key and certificate")
            leaf = x509.load_pem_x509_certificate(certificates[0].as_bytes())
            chain = [
                x509.load_pem_x509_certificate(obj.as_bytes())
                for obj in certificates[1:]
            ]
            context = self._context(leaf, private_key, chain)
        except (ValueError, SSL.Error) as error:
            _log.warn(
                "Not serving the store entry {server_name}: {error}",
                server_name=key,
                error=str(error) or type(error).__name__,
            )
            return None
        return _Served(
            key=key,
            names=_served_names(summary),
            not_after=summary.not_after,
            context=context,
        )

    def _context(
        self,
        leaf: x509.Certificate,
        private_key: PrivateKey,
        chain: Sequence[x509.Certificate] = (),
    ) -> SSL.Context:
        context = CertificateOptions().getContext()
        context.use_certificate(leaf)
        context.use_privatekey(private_key)
        for issuer in chain:
            context.add_extra_chain_cert(issuer)
        context.check_privatekey()
        context.set_tlsext_servername_callback(self._server_name_received)
        context.set_alpn_select_callback(_select_protocol)
        return context

    # Serving.

    def _lookup(self, server_name: str) -> _Served | None:
        name = server_name.lower().rstrip(".")
        keys = self._by_name.get(name)
        if not keys and "." in name:
            keys = self._by_name.get("*." + name.split(".", 1)[1])
        if not keys:
            return None
        if name in keys:
            return self._entries[name]
        return max(
            (self._entries[key] for key in keys), key=lambda served: served.not_after
        )

    def context_for(self, server_name: str | None) -> SSL.Context:
        """
        The OpenSSL context serving ``server_name``.

        :param server_name: The name a client asked for (SNI), or ``None``.
        :returns: The context of the entry covering it, or the default one.
        """
        if server_name:
            served = self._lookup(server_name)
            if served is not None:
                return served.context
        return self.default_context()

    def default_context(self) -> SSL.Context:
        """
        The context for clients that ask for no name or an unknown one.
        """
        if self.default_name is not None and self.default_name in self._entries:
            return self._entries[self.default_name].context
        if self._entries:
            return self._entries[min(self._entries)].context
        if self._fallback is None:
            certificate, key = _self_signed(_FALLBACK_NAME)
            self._fallback = self._context(certificate, key)
        return self._fallback

    def _server_name_received(self, connection: SSL.Connection) -> None:
        raw = connection.get_servername()
        if not raw:
            return
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            return
        served = self._lookup(name)
        if served is not None and served.context is not connection.get_context():
            connection.set_context(served.context)

    def serverConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        """
        A server connection, on the default context until the client's
        server name selects another.
        """
        return SSL.Connection(self.default_context())


def _select_protocol(
    connection: SSL.Connection, offered: list[bytes]
) -> bytes | _NoOverlappingProtocols:
    """
    Select the first protocol of the server's factory (an
    :class:`~twisted.internet.interfaces.IProtocolNegotiationFactory`, such
    as a ``twisted.web`` site) that the client offers; without one, go on
    without ALPN rather than fail the handshake as Twisted's own ALPN
    selection does.
    """
    tls_protocol = connection.get_app_data()
    factory = getattr(getattr(tls_protocol, "factory", None), "wrappedFactory", None)
    negotiating = IProtocolNegotiationFactory(factory, None)
    acceptable: list[bytes] = (
        list(negotiating.acceptableProtocols()) if negotiating is not None else []
    )
    for protocol in acceptable:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _served_names(summary: CertificateSummary) -> tuple[str, ...]:
    return tuple(name.lower().rstrip(".") for name in summary.names)


# -- txacme 0.9's certificate mappings ------------------------------------------------


class CertificateMapping(Protocol):
    """
    What txacme 0.9's ``AutoTLSEndpoint`` took as ``cert_mapping``, and
    still takes: a mapping (a ``dict``, or txsni's ``HostDirectoryMap``)
    from a server name to TLS options, anything with a ``getContext()``
    returning an :class:`OpenSSL.SSL.Context` (such as
    :class:`~twisted.internet.ssl.CertificateOptions`).  A missing name
    raises :class:`KeyError`.
    """

    def __getitem__(self, server_name: Any, /) -> Any: ...


#: The key of the default TLS options in a :class:`CertificateMapping`
#: (txsni's).
_DEFAULT_KEY = "DEFAULT"


@implementer(IOpenSSLServerConnectionCreator)
class MappedCertificates:
    """
    TLS by server name (SNI) from a :class:`CertificateMapping`, as txacme
    0.9 served it through txsni's ``SNIMap``: the ``"DEFAULT"`` entry's
    context (or else a self-signed one) until the client's server name
    selects the entry of that name, looked up at each handshake, so that a
    mapping reading files (``HostDirectoryMap``) serves what they hold now.
    A name with no entry keeps the default context (txsni failed the
    handshake).  Names are looked up as text, then as bytes (txsni's
    keys).
    """

    def __init__(self, mapping: CertificateMapping) -> None:
        self.mapping = mapping
        default = self._lookup(_DEFAULT_KEY)
        if default is None:
            certificate, key = _self_signed(_FALLBACK_NAME)
            default = CertificateOptions().getContext()
            default.use_certificate(certificate)
            default.use_privatekey(key)
        default.set_tlsext_servername_callback(self._server_name_received)
        self._default = default

    def __repr__(self) -> str:
        return f"<certificates of {self.mapping!r}>"

    def _lookup(self, server_name: str) -> SSL.Context | None:
        for key in (server_name, server_name.encode("utf-8")):
            try:
                options = self.mapping[key]
            except (LookupError, TypeError, ValueError):
                continue
            context: SSL.Context = options.getContext()
            return context
        return None

    def _server_name_received(self, connection: SSL.Connection) -> None:
        raw = connection.get_servername()
        if not raw:
            return
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            return
        try:
            context = self._lookup(name)
        except Exception:
            # A failure here would fail the handshake; serve the default.
            _log.failure(
                "Looking up the TLS options of {server_name} failed",
                server_name=name,
            )
            return
        if context is not None and context is not connection.get_context():
            connection.set_context(context)

    def serverConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        """
        A server connection, on the default context until the client's
        server name selects another.
        """
        return SSL.Connection(self._default)


def check_cert_mapping(instance: object, attribute: object, value: Any) -> None:
    """
    Validate ``AutoTLSEndpoint.cert_mapping`` (an attrs validator): a
    :class:`ServedCertificates`, a :class:`CertificateMapping` or ``None``.

    :raises TypeError: For anything else.
    """
    if value is None or isinstance(value, ServedCertificates):
        return
    if not callable(getattr(type(value), "__getitem__", None)):
        raise TypeError(
            "cert_mapping must be a ServedCertificates, a mapping of server "
            f"names to TLS options (as txacme 0.9 took), or None; not {value!r}"
        )


# -- telling the certificates when the service stores one ------------------------------


@implementer(ICertificateStore, ICertificateSummaries)
class NotifyingStore:
    """
    A store that has the certificates reload an entry once it is stored,
    so that a new certificate is served before the service reports it.

    It keeps the store's order journal too
    (:class:`~txacme.interfaces.IOrderJournal`) when the store has one.

    :param store: The store written to and read from.
    :param stored: Called with an entry's name once it is stored (a
        :class:`ServedCertificates`'s ``reload_entry``); a failure is
        logged, not raised to the service.
    """

    def __init__(
        self, store: ICertificateStore, stored: Callable[[str], Deferred[None]]
    ) -> None:
        self._store = cast(Any, store)
        self._stored = stored
        if IOrderJournal.providedBy(store):
            alsoProvides(self, IOrderJournal)

    def record_order(self, server_name: str, record: OrderRecord) -> Deferred[None]:
        """The store's :meth:`~txacme.interfaces.IOrderJournal.record_order`."""
        return IOrderJournal(self._store).record_order(server_name, record)

    def pending_order(self, server_name: str) -> Deferred[OrderRecord | None]:
        """The store's :meth:`~txacme.interfaces.IOrderJournal.pending_order`."""
        return IOrderJournal(self._store).pending_order(server_name)

    def forget_order(self, server_name: str) -> Deferred[None]:
        """The store's :meth:`~txacme.interfaces.IOrderJournal.forget_order`."""
        return IOrderJournal(self._store).forget_order(server_name)

    def get(self, server_name: str) -> Deferred[list[pem.AbstractPEMObject]]:
        result: Deferred[list[pem.AbstractPEMObject]] = self._store.get(server_name)
        return result

    def as_dict(self) -> Deferred[dict[str, list[pem.AbstractPEMObject]]]:
        result: Deferred[dict[str, list[pem.AbstractPEMObject]]] = self._store.as_dict()
        return result

    def summaries(self) -> Deferred[dict[str, CertificateSummary | None]]:
        if ICertificateSummaries.providedBy(self._store):
            summarizing: Any = self._store
            result: Deferred[dict[str, CertificateSummary | None]] = (
                summarizing.summaries()
            )
            return result
        return Deferred.fromCoroutine(self._summaries())

    async def _summaries(self) -> dict[str, CertificateSummary | None]:
        entries = await self.as_dict()
        return {key: summarize(objects) for key, objects in entries.items()}

    def store(
        self, server_name: str, pem_objects: list[pem.AbstractPEMObject]
    ) -> Deferred[None]:
        return Deferred.fromCoroutine(self._store_and_reload(server_name, pem_objects))

    async def _store_and_reload(
        self, server_name: str, pem_objects: list[pem.AbstractPEMObject]
    ) -> None:
        await self._store.store(server_name, pem_objects)
        try:
            await self._stored(server_name)
        except Exception:
            _log.failure(
                "Reloading the certificate of {server_name} failed",
                server_name=server_name,
            )
