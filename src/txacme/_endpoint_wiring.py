"""
The wiring of the ``le:``, ``lets:`` and ``acme:`` endpoints (documented in
:mod:`txacme.endpoint`): :class:`AutoTLSEndpoint`, which listens with the
certificates served (:mod:`txacme._endpoint_serving`), answers the
challenges and runs an :class:`~txacme.service.AcmeIssuingService`; and
from a description (:mod:`txacme._endpoint_options`) to such an endpoint,
with its store, its account key and its ACME client.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorCore,
    IReactorThreads,
    IReactorTime,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.url import URL
from zope.interface import implementer

from txacme._deferred import deferred_async
from txacme._endpoint_options import (
    CHALLENGE_TYPES,
    DEFAULT_CHECK,
    DIRECTORIES,
    OPTIONS,
    EndpointOptions,
    parse_endpoint_options,
)
from txacme._endpoint_serving import (
    CertificateMapping,
    MappedCertificates,
    NotifyingStore,
    ServedCertificates,
    check_cert_mapping,
)
from txacme._shared import Shared
from txacme.challenges import HTTP01Responder, TLSALPN01Responder
from txacme.client import Client, alg_for_key
from txacme.interfaces import ICertificateStore, IResponder
from txacme.service import AcmeIssuingService, IssuingClient, parse_server_names
from txacme.store import DirectoryStore, load_or_create_client_key
from txacme.util import PrivateKey, check_directory_url_type

if TYPE_CHECKING:
    # Annotations only: Twisted exports this interface from a private module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot

__all__ = [
    "AcmeEndpointParser",
    "AutoTLSEndpoint",
    "endpoint_from_options",
]

# The namespace of txacme.endpoint, whose log events these were before it
# was split.
_log = Logger(namespace="txacme.endpoint")


def _address(port: IListeningPort) -> object:
    """The port's address, for a log line: never fails."""
    try:
        return port.getHost()
    except Exception:
        # A port double without getHost (txacme 0.9 never asked for it).
        return "an address the port does not tell"


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
        self._stopping: Shared[None] | None = None

    def startListening(self) -> None:
        self.port.startListening()

    def stopListening(self) -> Deferred[None]:
        """
        Stop the service (cancelling issuances in flight), the reloads, the
        http-01 listener and the TLS port.  Idempotent: every call waits for
        the one stop.  Cancelling the Deferred stops waiting, not the stop.

        :returns: A Deferred firing once all of them have stopped.
        """
        if self._stopping is None:
            self._stopping = Shared(
                Deferred.fromCoroutine(self._stop()), cancel_when_abandoned=False
            )
        return self._stopping.subscribe()

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
        validator=check_cert_mapping
    )
    sub_endpoint: IStreamServerEndpoint
    check_interval: timedelta = DEFAULT_CHECK
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
            certificates = MappedCertificates(self.cert_mapping)

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
                    ICertificateStore, NotifyingStore(store, served.reload_entry)
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


def _trust_root(path: str) -> IOpenSSLTrustRoot:
    """Twisted's trust root for the CA certificates of a PEM file."""
    try:
        with open(path, "rb") as bundle:
            certificates = x509.load_pem_x509_certificates(bundle.read())
    except (OSError, ValueError) as error:
        raise ValueError(f"ca={path}: no CA certificates read: {error}") from error
    trust_root: IOpenSSLTrustRoot = trustRootFromCertificates(  # type: ignore[no-untyped-call]
        [
            Certificate.loadPEM(certificate.public_bytes(serialization.Encoding.PEM))
            for certificate in certificates
        ]
    )
    return trust_root


@frozen
class _ClientCreator:
    """
    Creates the ACME client of a store's directory: its account key is the
    directory's ``client.key`` (created on first use, in a thread), signing
    with the algorithm of its type; the client is
    :meth:`Client.from_url <txacme.client.Client.from_url>`'s, on the pooled
    transport it builds (trusting ``trust_root``, or the platform's
    certificate authorities), which :meth:`~txacme.client.Client.close`
    closes.
    """

    path: str
    trust_root: IOpenSSLTrustRoot | None = None

    def __call__(self, reactor: IReactorTime, directory: URL) -> Deferred[Client]:
        return Deferred.fromCoroutine(self._create(reactor, directory))

    async def _create(self, reactor: IReactorTime, directory: URL) -> Client:
        threads: Any = reactor
        key = await deferToThreadPool(
            threads, threads.getThreadPool(), load_or_create_client_key, self.path
        )
        client: Client = await Client.from_url(
            reactor,
            directory,
            key=key,
            alg=alg_for_key(key),
            trust_root=self.trust_root,
        )
        return client


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
            f"{', '.join(sorted(OPTIONS))})"
        ) from error
    return endpoint


@implementer(IPlugin, IStreamServerEndpointStringParser)
@frozen
class AcmeEndpointParser:
    """
    The endpoint string parser of one prefix (``le``, ``lets`` or
    ``acme``); see :mod:`txacme.endpoint` for the syntax.  The plugin
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
        return DIRECTORIES.get(self.prefix.lower())

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
