r"""
Server endpoints that serve TLS with certificates from an ACME CA: the
``le:``, ``lets:`` and ``acme:`` endpoint strings, as in txacme 0.9, so that
one option turns a Twisted server into an HTTPS server::

    twistd web --listen le:/srv/www/certs:tcp:443 --path /srv/www/root

The description, in Twisted's endpoint string syntax (``\:`` is a colon
inside a value, ``\=`` an equals sign, ``\\`` a backslash)::

    le:<directory>:<endpoint>[:option=value ...]      Let's Encrypt
    lets:<directory>:<endpoint>[:option=value ...]    Let's Encrypt staging
    acme:<directory>:<endpoint>:directory=<URL>[:option=value ...]

``<directory>`` is the certificate store (a :class:`~txacme.store.DirectoryStore`:
one ``<name>.pem`` file per certificate, and the account key ``client.key``).
``<endpoint>`` is the endpoint to listen on, for example ``tcp:443``: every
positional argument after the directory, joined by colons, and every keyword
argument that is not an option below (``tcp6:443:interface=\:\:1`` works
as is; ``tcp\:443`` is the same as ``tcp:443``).  The directory is created
(mode 0700) when the description is parsed, if it does not exist.  The
options:

``directory=<URL>``
    ``acme:`` only, and required there: the CA's ACME directory URL (https).
``ca=<path>``
    A PEM file of CA certificates to trust for the ACME server's HTTPS
    instead of the platform's (Pebble, a private CA).
``email=<address>``
    The account's contact address.
``domains=<names>``
    Certificates to keep issued besides the store's entries: names separated
    by commas share one certificate (the first names its file), certificates
    are separated by semicolons: ``domains=example.com,www.example.com;example.org``.
    Without it, as in txacme 0.9, the names are the store's entries: create
    an empty ``example.com.pem`` in the directory to ask for a certificate.
``challenge=<types>``
    ``tls-alpn-01`` (the default: answered on the TLS port itself),
    ``http-01``, or both separated by commas, in order of preference.
``http01=<endpoint>``
    Where the http-01 responder listens (default ``tcp:80``); implies
    ``challenge=http-01`` when ``challenge=`` is not given.
``reissue=<duration>``
    Renew a certificate when it expires within this time (default: when a
    third of its lifetime remains).  Durations are seconds, or numbers with
    units ``w``, ``d``, ``h``, ``m``, ``s``: ``30d``, ``1h30m``.
``check=<duration>``
    How often the store is checked and re-read (default ``1d``).

When the endpoint listens it serves TLS with, for each server name (SNI),
the certificate of the store that covers it, answers tls-alpn-01 challenges
on the same port (:class:`~txacme.challenges.TLSALPN01Responder`), and
starts an :class:`~txacme.service.AcmeIssuingService` that issues and renews
the certificates; stopping the port stops the service.  A client asking for
no name or an unknown one gets a default certificate: the first ``domains=``
entry's, else the first entry's by name, else a self-signed one made at
start (so that the port comes up before the first certificate is issued).
Certificates are reloaded as soon as the service stores them, and the whole
store every ``check`` interval (for files changed by hand).

The parts are public: :class:`AutoTLSEndpoint` (the endpoint, built from
Python), :class:`ServedCertificates` (SNI from a store, for any TLS
server), :class:`CertificateMapping` (what txacme 0.9's endpoint served
instead, still accepted), :func:`parse_endpoint_options` and
:func:`endpoint_from_options`.
:func:`~txacme.store.load_or_create_client_key` is importable from here too,
where txacme 0.9 had it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import pem
from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IReactorCore,
    IReactorThreads,
    IReactorTime,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    trustRootFromCertificates,
)
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.python.url import URL
from zope.interface import implementer

from txacme._deferred import deferred_async
from txacme.challenges import HTTP01Responder, TLSALPN01Responder
from txacme.client import Client, JWSClient, alg_for_key
from txacme.interfaces import ICertificateStore, IResponder
from txacme.service import AcmeIssuingService, IssuingClient, parse_server_names
from txacme.store import (
    CertificateSummary,
    DirectoryStore,
    ICertificateSummaries,
    check_server_name,
    load_or_create_client_key,
    summarize,
)
from txacme.urls import LETSENCRYPT_DIRECTORY, LETSENCRYPT_STAGING_DIRECTORY
from txacme.util import (
    KEY_TYPES,
    PrivateKey,
    check_directory_url_type,
    generate_private_key,
)

if TYPE_CHECKING:
    # The type of SSL.NO_OVERLAPPING_PROTOCOLS, for annotations only.
    from OpenSSL.SSL import _NoOverlappingProtocols

__all__ = [
    "CHALLENGE_TYPES",
    "AcmeEndpointParser",
    "AutoTLSEndpoint",
    "CertificateMapping",
    "EndpointOptions",
    "ServedCertificates",
    "acme_parser",
    "endpoint_from_options",
    "le_parser",
    "lets_parser",
    "load_or_create_client_key",
    "parse_duration",
    "parse_endpoint_options",
]

_log = Logger()

#: The challenge types the endpoints can answer, in the default order.
CHALLENGE_TYPES = ("tls-alpn-01", "http-01")

#: The prefixes and the directory each one uses (``None``: ``directory=``).
_DIRECTORIES: dict[str, URL | None] = {
    "le": LETSENCRYPT_DIRECTORY,
    "lets": LETSENCRYPT_STAGING_DIRECTORY,
    "acme": None,
}

#: The keyword options of the descriptions; other keywords go to the
#: endpoint listened on.
_OPTIONS = frozenset(
    {
        "directory",
        "ca",
        "email",
        "domains",
        "challenge",
        "http01",
        "reissue",
        "check",
        "key_type",
    }
)

_DEFAULT_HTTP01 = "tcp:80"
_DEFAULT_CHECK = timedelta(days=1)
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
#: The self-signed default certificate's name, which no client asks for.
_FALLBACK_NAME = "txacme-default.invalid"


# -- parsing ------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """
    Parse a duration: a number of seconds (``"90"``), or numbers with units
    ``w``, ``d``, ``h``, ``m``, ``s`` (``"30d"``, ``"1h30m"``, ``"1.5h"``).

    :param text: The duration.
    :returns: It, as a positive :class:`~datetime.timedelta`.
    :raises ValueError: If it is malformed, or not positive.
    """
    stripped = text.strip().lower()
    seconds: float
    if re.fullmatch(r"\d+(?:\.\d+)?", stripped):
        seconds = float(stripped)
    else:
        position = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(stripped):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            position = match.end()
        if position != len(stripped) or not stripped:
            raise ValueError(
                f"Not a duration: {text!r} (write seconds, or for example "
                "'30d', '12h', '1h30m')"
            )
    if seconds <= 0:
        raise ValueError(f"A duration must be positive, not {text!r}")
    return timedelta(seconds=seconds)


def _escape(text: str, colons: bool = True) -> str:
    """``text`` escaped for an endpoint description (backslash escapes)."""
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace(":", "\\:") if colons else text


@frozen
class EndpointOptions:
    """
    What an ``le:``, ``lets:`` or ``acme:`` description asks for (see the
    module's documentation), before anything is opened or read.

    :ivar prefix: ``"le"``, ``"lets"`` or ``"acme"``.
    :ivar path: The store's directory.
    :ivar endpoint: The description of the endpoint to listen on.
    :ivar directory: The ACME directory URL.
    :ivar ca: A PEM file of CA certificates to trust for the ACME server,
        or ``None`` for the platform's.
    :ivar email: The account's contact address, or ``None``.
    :ivar domains: Entries to keep issued: each a tuple of names, the first
        naming the entry.
    :ivar challenges: The challenge types, in order of preference.
    :ivar http01: The description of the http-01 listener, or ``None``
        without http-01.
    :ivar reissue: The reissue interval, or ``None`` for the default.
    :ivar check: The interval between two checks of the store.
    :ivar key_type: The type of the certificates' keys (``"rsa"``, as in
        txacme 0.9, or ``"p256"``...; see
        :func:`txacme.util.generate_private_key`).
    """

    prefix: str
    path: str
    endpoint: str
    directory: URL
    ca: str | None = None
    email: str | None = None
    domains: tuple[tuple[str, ...], ...] = ()
    challenges: tuple[str, ...] = ("tls-alpn-01",)
    http01: str | None = None
    reissue: timedelta | None = None
    check: timedelta = _DEFAULT_CHECK
    key_type: str = "rsa"


def _parse_domains(text: str) -> tuple[tuple[str, ...], ...]:
    entries: list[tuple[str, ...]] = []
    for group in text.split(";"):
        if not group.strip():
            raise ValueError(f"An empty certificate in domains={text!r}")
        names = parse_server_names(group)
        check_server_name(names[0])
        entries.append(names)
    return tuple(entries)


def _parse_challenges(text: str) -> tuple[str, ...]:
    challenges: list[str] = []
    for part in text.split(","):
        challenge = part.strip().lower()
        if challenge not in CHALLENGE_TYPES:
            raise ValueError(
                f"Unknown challenge type {part!r} in challenge={text!r}; "
                f"expected {' or '.join(CHALLENGE_TYPES)}"
            )
        if challenge in challenges:
            raise ValueError(f"{challenge} twice in challenge={text!r}")
        challenges.append(challenge)
    return tuple(challenges)


def _parse_directory_url(text: str) -> URL:
    try:
        url = URL.fromText(text)
    except Exception as error:
        raise ValueError(f"Not a URL: directory={text!r}: {error}") from error
    if url.scheme != "https" or not url.host:
        raise ValueError(
            f"The ACME directory must be an https URL, not {text!r} (escape "
            "its colons in the description: directory=https\\://...)"
        )
    return url


def parse_endpoint_options(
    prefix: str, args: Sequence[str], kwargs: Mapping[str, str]
) -> EndpointOptions:
    """
    Read an ``le:``, ``lets:`` or ``acme:`` description, split by Twisted's
    endpoint string parser into positional and keyword arguments.

    :param prefix: The description's prefix.
    :param args: Its positional arguments after the prefix: the store's
        directory, then the endpoint to listen on.
    :param kwargs: Its keyword arguments: the options, and those of the
        endpoint to listen on.
    :returns: The options.
    :raises ValueError: For a description that cannot work, with a message
        saying why.
    """
    prefix = prefix.lower()
    if prefix not in _DIRECTORIES:
        raise ValueError(f"Unknown endpoint type {prefix!r}")
    example = f"{prefix}:/srv/www/certs:tcp:443" + (
        ":directory=https\\://ca.example/directory" if prefix == "acme" else ""
    )
    if not args or not args[0]:
        raise ValueError(
            f"{prefix}: needs the certificate directory first, as in {example}"
        )
    path, listen_args = args[0], [arg for arg in args[1:] if arg]
    listen_kwargs = {
        name: value for name, value in kwargs.items() if name not in _OPTIONS
    }
    if not listen_args:
        raise ValueError(
            f"{prefix}: needs an endpoint to listen on after the directory, as "
            f"in {example}"
        )
    endpoint = ":".join(_escape(arg, colons=False) for arg in listen_args) + "".join(
        f":{_escape(name)}={_escape(value)}"
        for name, value in sorted(listen_kwargs.items())
    )

    fixed = _DIRECTORIES[prefix]
    if fixed is None:
        if "directory" not in kwargs:
            raise ValueError(
                f"acme: needs the CA's directory URL, as in {example} (or use "
                "le: for Let's Encrypt, lets: for its staging environment)"
            )
        directory = _parse_directory_url(kwargs["directory"])
    elif "directory" in kwargs:
        raise ValueError(
            f"{prefix}: uses Let's Encrypt's directory; for another CA use "
            "acme:...:directory=<URL>"
        )
    else:
        directory = fixed

    ca = kwargs.get("ca")
    if ca is not None and not ca:
        raise ValueError("ca= needs the path of a PEM file of CA certificates")
    email = kwargs.get("email")
    if email is not None and not email.strip():
        raise ValueError("email= needs an address")
    domains = _parse_domains(kwargs["domains"]) if "domains" in kwargs else ()

    http01 = kwargs.get("http01")
    if http01 is not None and not http01:
        raise ValueError("http01= needs an endpoint description, as http01=tcp\\:80")
    if "challenge" in kwargs:
        challenges = _parse_challenges(kwargs["challenge"])
    elif http01 is not None:
        challenges = ("http-01",)
    else:
        challenges = ("tls-alpn-01",)
    if "http-01" in challenges:
        http01 = http01 or _DEFAULT_HTTP01
    elif http01 is not None:
        raise ValueError(
            f"http01={http01!r} is set but challenge={kwargs['challenge']!r} "
            "leaves out http-01"
        )

    reissue = parse_duration(kwargs["reissue"]) if "reissue" in kwargs else None
    check = parse_duration(kwargs["check"]) if "check" in kwargs else _DEFAULT_CHECK
    key_type = kwargs.get("key_type", "rsa").strip().lower()
    if key_type not in KEY_TYPES:
        raise ValueError(
            f"Unknown key_type={kwargs['key_type']!r}; expected one of "
            f"{', '.join(sorted(KEY_TYPES))}"
        )
    return EndpointOptions(
        prefix=prefix,
        path=path,
        endpoint=endpoint,
        directory=directory,
        ca=ca,
        email=email.strip() if email is not None else None,
        domains=domains,
        challenges=challenges,
        http01=http01,
        reissue=reissue,
        check=check,
        key_type=key_type,
    )


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
class _MappedCertificates:
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


def _check_cert_mapping(instance: object, attribute: object, value: Any) -> None:
    if value is None or isinstance(value, ServedCertificates):
        return
    if not callable(getattr(type(value), "__getitem__", None)):
        raise TypeError(
            "cert_mapping must be a ServedCertificates, a mapping of server "
            f"names to TLS options (as txacme 0.9 took), or None; not {value!r}"
        )


def _address(port: IListeningPort) -> object:
    """The port's address, for a log line: never fails."""
    try:
        return port.getHost()
    except Exception:
        # A port double without getHost (txacme 0.9 never asked for it).
        return "an address the port does not tell"


# -- telling the certificates when the service stores one ------------------------------


@implementer(ICertificateStore, ICertificateSummaries)
class _NotifyingStore:
    """
    A store that has the certificates reload an entry once it is stored,
    so that a new certificate is served before the service reports it.
    """

    def __init__(
        self, store: ICertificateStore, stored: Callable[[str], Deferred[None]]
    ) -> None:
        self._store = cast(Any, store)
        self._stored = stored

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


# -- the endpoint ---------------------------------------------------------------------


@implementer(IListeningPort)
class _AcmePort:
    """
    The TLS port, with what runs beside it: stopping it stops the service,
    the reloads and the http-01 listener too (those that were started).
    """

    def __init__(
        self,
        port: IListeningPort,
        http01_port: IListeningPort | None,
        service: AcmeIssuingService | None,
        reloads: LoopingCall | None,
    ) -> None:
        self.port = port
        self.http01_port = http01_port
        self.service = service
        self._reloads = reloads
        self._stopping: Deferred[None] | None = None
        self._outcome: Failure | bool = False
        self._waiting: list[Deferred[None]] = []

    def startListening(self) -> None:
        self.port.startListening()

    def stopListening(self) -> Deferred[None]:
        """
        Stop the service (cancelling issuances in flight), the reloads, the
        http-01 listener and the TLS port.  Idempotent.

        :returns: A Deferred firing once all of them have stopped.
        """
        if self._stopping is None:
            self._stopping = Deferred.fromCoroutine(self._stop())
            self._stopping.addBoth(self._stopped)
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        if self._outcome:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def _stopped(self, result: Failure | None) -> None:
        self._outcome = result if isinstance(result, Failure) else True
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    async def _stop(self) -> None:
        if self._reloads is not None and self._reloads.running:
            self._reloads.stop()
        stops: list[Callable[[], object]] = []
        if self.service is not None:
            stops.append(self.service.stopService)
        if self.http01_port is not None:
            stops.append(self.http01_port.stopListening)
        stops.append(self.port.stopListening)
        # Stop each, even if one before it failed; raise the first failure.
        failures: list[Failure] = []
        for stop in stops:
            try:
                await maybeDeferred(stop)
            except Exception:
                failures.append(Failure())  # type: ignore[no-untyped-call]
        for failure in failures[1:]:
            _log.failure("Stopping the endpoint failed", failure)
        if failures:
            failures[0].raiseException()

    def getHost(self) -> IAddress:
        return self.port.getHost()


@deferred_async
async def _reload_logging_errors(certificates: ServedCertificates) -> None:
    """Reload, logging a failure: the next reload may work."""
    try:
        await certificates.reload()
    except Exception:
        _log.failure("Reloading the certificates from the store failed")


@implementer(IStreamServerEndpoint)
@define
class AutoTLSEndpoint:
    """
    A server endpoint serving TLS with certificates that an ACME CA issues
    and renews: txacme 0.9's ``AutoTLSEndpoint``, on RFC 8555.

    When it listens it loads the store's certificates into a
    :class:`ServedCertificates` (SNI), listens on ``sub_endpoint`` with
    them, answering tls-alpn-01 challenges on that port, and, with http-01,
    on ``http01_endpoint``; then it starts an
    :class:`~txacme.service.AcmeIssuingService`, which issues the missing
    certificates and renews them.  A certificate is served as soon as it is
    stored; the whole store is re-read every ``check_interval``.  Stopping
    the port stops all of that (see :attr:`service`).

    :param reactor: The reactor (time, threads and TCP).
    :param directory: The ACME directory URL.
    :param client_creator: Called as ``client_creator(reactor, directory)``;
        returns a Deferred (or awaitable) firing with a
        :class:`~txacme.client.Client` (any
        :class:`~txacme.service.IssuingClient`), such as
        ``partial(Client.from_url, key=key, alg=RS256)``.
    :param cert_store: The :class:`~txacme.interfaces.ICertificateStore`.
    :param cert_mapping: What to serve: ``None`` for a
        :class:`ServedCertificates` made from ``cert_store`` (the
        certificates are then served as soon as the service stores them,
        and the store re-read every ``check_interval``); a
        :class:`ServedCertificates`, likewise; or, as txacme 0.9 took, a
        :class:`CertificateMapping` (a ``dict``, or txsni's
        ``HostDirectoryMap`` of the store's directory), served as it is,
        looked up at each handshake.
    :param sub_endpoint: The endpoint to listen on.
    :param check_interval: As for the service; also how often the store is
        re-read for the certificates served.
    :param reissue_interval: As for the service.
    :param panic_interval: As for the service.
    :param panic: As for the service.
    :param generate_key: As for the service.
    :param key_type: As for the service: ``"rsa"`` (RSA-2048, txacme 0.9's,
        the default) or ``"p256"``...
    :param email: The account's contact address.
    :param names: Entries to keep issued besides the store's (see the
        service); the first is the default certificate.
    :param challenges: The challenge types to answer, among
        :data:`CHALLENGE_TYPES`, in order of preference.
    :param http01_endpoint: Where the http-01 responder listens; required
        with http-01.

    :ivar service: The service, once listening (``None`` before).
    """

    reactor: IReactorTime
    directory: URL = field(
        validator=lambda instance, attribute, value: check_directory_url_type(value)
    )
    client_creator: Callable[[IReactorTime, URL], Awaitable[IssuingClient]]
    cert_store: ICertificateStore
    cert_mapping: ServedCertificates | CertificateMapping | None = field(
        validator=_check_cert_mapping
    )
    sub_endpoint: IStreamServerEndpoint
    check_interval: timedelta = _DEFAULT_CHECK
    reissue_interval: timedelta | None = None
    panic_interval: timedelta | None = None
    panic: Callable[[Failure, str], object] | None = None
    generate_key: Callable[[], PrivateKey] | None = None
    key_type: str = field(default="rsa", kw_only=True)
    email: str | None = field(default=None, kw_only=True)
    names: Sequence[str | Sequence[str]] = field(default=(), kw_only=True)
    challenges: Sequence[str] = field(default=("tls-alpn-01",), kw_only=True)
    http01_endpoint: IStreamServerEndpoint | None = field(default=None, kw_only=True)
    service: AcmeIssuingService | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        unknown = [
            challenge
            for challenge in self.challenges
            if challenge not in CHALLENGE_TYPES
        ]
        if unknown or not self.challenges:
            raise ValueError(
                f"Unknown challenge types {unknown!r}; expected some of "
                f"{CHALLENGE_TYPES!r}"
            )
        if "http-01" in self.challenges and self.http01_endpoint is None:
            raise ValueError("http-01 needs an http01_endpoint to listen on")

    def _default_name(self) -> str | None:
        for entry in self.names:
            return parse_server_names(entry)[0]
        return None

    @deferred_async
    async def listen(self, protocolFactory: IProtocolFactory) -> IListeningPort:
        """
        Listen, serve the store's certificates, and start the service.

        If anything fails on the way (listening, reading the store, making
        or starting the service), what was started is stopped again and
        the Deferred fails.

        :param protocolFactory: The factory of the protocol spoken over TLS.
        :returns: A Deferred firing with the listening port; its
            ``stopListening`` stops the service as well.
        """
        served: ServedCertificates | None
        certificates: IOpenSSLServerConnectionCreator
        if self.cert_mapping is None:
            served = ServedCertificates(
                self.cert_store, default_name=self._default_name()
            )
            certificates = served
        elif isinstance(self.cert_mapping, ServedCertificates):
            served = certificates = self.cert_mapping
        else:
            served = None
            certificates = _MappedCertificates(self.cert_mapping)

        responders: list[IResponder] = []
        creator: IOpenSSLServerConnectionCreator = certificates
        http01: HTTP01Responder | None = None
        for challenge in self.challenges:
            if challenge == "tls-alpn-01":
                tls_alpn = TLSALPN01Responder(cast(IReactorThreads, self.reactor))
                creator = tls_alpn.wrap(certificates)
                responders.append(tls_alpn)
            else:
                http01 = HTTP01Responder()
                responders.append(http01)

        # Listen before anything else (twistd binds privileged ports before
        # it drops privileges, and runs the rest after); until the store is
        # read, clients get the self-signed default certificate.
        factory = TLSMemoryBIOFactory(
            creator, False, cast(Any, protocolFactory), clock=self.reactor
        )
        port: IListeningPort = await self.sub_endpoint.listen(factory)
        http01_port: IListeningPort | None = None
        service: AcmeIssuingService | None = None
        reloads: LoopingCall | None = None
        try:
            if http01 is not None:
                assert self.http01_endpoint is not None
                http01_port = await http01.listen(self.http01_endpoint, self.reactor)
            store = self.cert_store
            if served is not None:
                await served.reload()
                store = cast(
                    ICertificateStore, _NotifyingStore(store, served.reload_entry)
                )
            service = self._service(store, responders)
            self.service = service
            service.startService()
            if served is not None:
                reloads = LoopingCall(_reload_logging_errors, served)
                reloads.clock = self.reactor
                reloads.start(self.check_interval.total_seconds(), now=False)
            _log.info(
                "Serving TLS on {address} with certificates from {store}, issued "
                "by {directory}",
                address=_address(port),
                store=self.cert_store,
                directory=self.directory.asText(),
            )
            return _AcmePort(port, http01_port, service, reloads)
        except BaseException:
            try:
                await _AcmePort(port, http01_port, service, reloads).stopListening()
            except Exception:
                _log.failure("Stopping the endpoint after a failed listen failed")
            raise

    def _service(
        self, store: ICertificateStore, responders: Sequence[IResponder]
    ) -> AcmeIssuingService:
        reactor, directory = self.reactor, self.directory

        def create_client() -> Awaitable[IssuingClient]:
            return self.client_creator(reactor, directory)

        return AcmeIssuingService(
            cert_store=store,
            client_creator=create_client,
            clock=self.reactor,
            responders=responders,
            email=self.email,
            check_interval=self.check_interval,
            reissue_interval=self.reissue_interval,
            panic_interval=self.panic_interval,
            panic=self.panic,
            generate_key=self.generate_key,
            key_type=self.key_type,
            names=self.names,
        )


# -- from a description to an endpoint ----------------------------------------------


def _trust_root(path: str) -> Any:
    """Twisted's trust root for the CA certificates of a PEM file."""
    try:
        with open(path, "rb") as bundle:
            certificates = x509.load_pem_x509_certificates(bundle.read())
    except (OSError, ValueError) as error:
        raise ValueError(f"ca={path}: no CA certificates read: {error}") from error
    return trustRootFromCertificates(  # type: ignore[no-untyped-call]
        [
            Certificate.loadPEM(certificate.public_bytes(serialization.Encoding.PEM))
            for certificate in certificates
        ]
    )


@frozen
class _ClientCreator:
    """
    Creates the ACME client of a store's directory: its account key is the
    directory's ``client.key`` (created on first use, in a thread).
    """

    path: str
    trust_root: Any = None

    def __call__(self, reactor: IReactorTime, directory: URL) -> Deferred[Client]:
        return Deferred.fromCoroutine(self._create(reactor, directory))

    async def _create(self, reactor: IReactorTime, directory: URL) -> Client:
        threads: Any = reactor
        key = await deferToThreadPool(
            threads, threads.getThreadPool(), load_or_create_client_key, self.path
        )
        alg = alg_for_key(key)
        if self.trust_root is None:
            client: Client = await Client.from_url(reactor, directory, key=key, alg=alg)
            return client
        from treq.client import HTTPClient
        from twisted.web.client import (
            Agent,
            BrowserLikePolicyForHTTPS,
            HTTPConnectionPool,
        )

        pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
        agent = Agent(  # type: ignore[no-untyped-call]
            reactor,
            contextFactory=BrowserLikePolicyForHTTPS(  # type: ignore[no-untyped-call]
                trustRoot=self.trust_root
            ),
            pool=pool,
        )
        jws_client = JWSClient(HTTPClient(agent), key, alg, reactor=reactor)
        pooled = await _PooledClient.from_url(
            reactor, directory, key=key, alg=alg, jws_client=jws_client
        )
        assert isinstance(pooled, _PooledClient)
        pooled.pool = pool
        return pooled


class _PooledClient(Client):
    """
    A client whose :meth:`close` also closes the connection pool of the
    transport made for it (:meth:`Client.close` closes only the pools
    :meth:`Client.from_url` made itself).
    """

    pool: Any = None

    @deferred_async
    async def close(self) -> None:
        await super().close()
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.closeCachedConnections()


def endpoint_from_options(reactor: Any, options: EndpointOptions) -> AutoTLSEndpoint:
    """
    Make the endpoint a description asks for: a
    :class:`~txacme.store.DirectoryStore` in ``options.path`` (created if
    missing, mode 0700), whose ``client.key`` is the account key (as
    txacme 0.9), and the endpoints to listen on.

    :param reactor: The reactor.
    :param options: The parsed description.
    :returns: The endpoint.
    :raises ValueError: If an endpoint description, the CA file or the
        directory is not usable.
    """
    path = os.path.abspath(options.path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{options.path} is not a directory")
    os.makedirs(path, mode=0o700, exist_ok=True)
    sub_endpoint = _server_endpoint(reactor, options.endpoint, "the endpoint")
    http01_endpoint = (
        _server_endpoint(reactor, options.http01, "http01=")
        if options.http01 is not None
        else None
    )
    trust_root = _trust_root(options.ca) if options.ca is not None else None
    return AutoTLSEndpoint(
        reactor,
        options.directory,
        _ClientCreator(path, trust_root),
        DirectoryStore(path, reactor=reactor),
        None,
        sub_endpoint,
        check_interval=options.check,
        reissue_interval=options.reissue,
        key_type=options.key_type,
        email=options.email,
        names=options.domains,
        challenges=options.challenges,
        http01_endpoint=http01_endpoint,
    )


def _server_endpoint(
    reactor: Any, description: str, what: str
) -> IStreamServerEndpoint:
    try:
        endpoint: IStreamServerEndpoint = serverFromString(  # type: ignore[no-untyped-call]
            reactor, description
        )
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(
            f"{what} {description!r} is not a usable endpoint description: "
            f"{error} (txacme's own options are "
            f"{', '.join(sorted(_OPTIONS))})"
        ) from error
    return endpoint


@implementer(IPlugin, IStreamServerEndpointStringParser)
@frozen
class AcmeEndpointParser:
    """
    The endpoint string parser of one prefix (``le``, ``lets`` or
    ``acme``); see the module's documentation for the syntax.  The plugin
    in ``twisted.plugins.txacme_endpoint`` hands descriptions to these.

    :ivar prefix: The prefix.
    """

    prefix: str

    @property
    def directory(self) -> URL | None:
        """
        The prefix's ACME directory (txacme 0.9's parsers had one), or
        ``None`` for ``acme:``, whose descriptions name it.
        """
        return _DIRECTORIES.get(self.prefix.lower())

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        """
        Make the endpoint of a description.

        :param reactor: The reactor.
        :param args: The description's positional arguments after the
            prefix.
        :param kwargs: Its keyword arguments.
        :returns: An :class:`AutoTLSEndpoint`.
        :raises ValueError: If the description cannot work.
        """
        options = parse_endpoint_options(
            self.prefix,
            [str(arg) for arg in args],
            {name: str(value) for name, value in kwargs.items()},
        )
        return endpoint_from_options(reactor, options)


#: ``le:``: Let's Encrypt.
le_parser = AcmeEndpointParser("le")
#: ``lets:``: Let's Encrypt's staging environment.
lets_parser = AcmeEndpointParser("lets")
#: ``acme:``: any ACME CA, by ``directory=``.
acme_parser = AcmeEndpointParser("acme")
