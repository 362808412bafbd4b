"""
dns-01 (RFC 8555 §8.4) through the DNS drivers of apache-libcloud: Route 53,
Google Cloud DNS, DigitalOcean, Linode, Cloudflare, PowerDNS and many more,
behind one API.

:class:`LibcloudDNSResponder` is txacme 0.9's responder of that name, with
the same :meth:`~LibcloudDNSResponder.create`; it now knows how the drivers
differ (:class:`LibcloudRecordFormat`) and can wait for the zone's
nameservers instead of sleeping.

libcloud is synchronous: every call into a driver runs in a thread of the
responder's own (one thread, so that calls to the driver never overlap and
run in the order they were made), and its outcome is delivered to the
reactor thread with ``callFromThread``.

This module imports libcloud; :mod:`txacme.challenges` imports it only
when one of its names is first used (``pip install 'txacme[libcloud]'``).
The record formats live in :mod:`txacme.challenges._libcloud_records`, the
thread in :mod:`txacme.challenges._libcloud_thread`; what is left, a little
over the usual length, is the one responder class and its jobs.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from acme import challenges
from attrs import Factory, define, field
from libcloud.dns.base import DNSDriver, Record, Zone
from libcloud.dns.providers import get_driver
from libcloud.dns.types import Provider, RecordType, ZoneDoesNotExistError
from twisted._threads import IWorker
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import (
    IReactorFromThreads,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from txacme.challenges._dns_errors import (
    Address,
    DNSError,
    DNSProviderError,
    NotInZone,
    ZoneNotFound,
    describe_address,
    dns01_record,
    parse_address,
)
from txacme.challenges._libcloud_records import (
    POWERDNS_V1,
    LibcloudRecordFormat,
    normal_name,
    record_format_for,
    same_name,
    txt_value,
    within_zone,
    write_powerdns_rrset,
)
from txacme.challenges._libcloud_thread import (
    Progress,
    daemon_thread,
    in_worker,
    one_thread,
)
from txacme.interfaces import IResponder

__all__ = ["LibcloudDNSResponder", "LibcloudRecordFormat"]

_log = Logger()
_T = TypeVar("_T")

#: txacme 0.9's name, which its tests import from here.
_daemon_thread = daemon_thread


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    if type(error).__name__ == "InvalidCredsError":
        text += " (the provider refused the credentials)"
    return text


@define
class _Challenge:
    """
    A challenge being responded to: its start, while in progress, and
    whether the provider may hold its value (a write was attempted, or the
    value was found there), so that a stop after a start that failed
    before writing asks the provider nothing.
    """

    starting: Deferred[None] | None = None
    written: bool = False
    #: Whether the job that adds the value has run (in the thread).
    added: bool = False


# -- the responder -----------------------------------------------------------------


def _accepts_keyword(function: Callable[..., object], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        parameter.name == name or parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in parameters
    )


def _addresses(nameservers: Sequence[Sequence[object]] | None) -> list[Address] | None:
    if nameservers is None:
        return None
    return [parse_address(address) for address in nameservers]


@implementer(IResponder)
@define
class LibcloudDNSResponder:
    """
    A dns-01 responder that publishes the TXT record through an
    apache-libcloud DNS driver: any DNS provider libcloud has a driver for.

    :meth:`start_responding`, for ``_acme-challenge.<name>``:

    1. finds the zone: the configured ``zone_name`` (:exc:`NotInZone` if
       the record name is not in it, :exc:`ZoneNotFound` if the provider
       has no such zone), or, with ``zone_name=None``, the provider's most
       specific zone containing the name (:exc:`NotInZone` if none);
    2. lists the zone's records and, unless the value is already there,
       adds it as the driver wants (:attr:`record_format`), keeping the
       other values at the name: a wildcard and its base name are
       validated with two values at once;
    3. waits: with ``nameservers``, until each of them answers the value
       (the propagation check of :class:`RFC2136Responder`: a TXT query to
       each, every ``propagation_interval`` seconds, for at most
       ``propagation_timeout`` seconds, :exc:`PropagationTimeout` after
       that); without, ``settle_delay`` seconds (txacme 0.9's blind wait).

    :meth:`stop_responding` removes that value (every record at the name
    holding it), leaving the others.

    Steps 1 and 2, and the removal, run in the responder's thread pool
    (``_thread_pool``: one daemon thread, for libcloud blocks), one after
    another; each is bounded by ``api_timeout`` seconds when the reactor
    provides ``IReactorTime``.  A failure of the provider's API
    (refused credentials, an error answer, no connection, no answer in
    time) is a :exc:`DNSProviderError`.

    Make one with :meth:`create` (a driver by name, as in txacme 0.9) or
    :meth:`from_driver` (a driver already made).  The constructor takes
    the thread pool as well, as txacme 0.9's did.

    :ivar zone_name: The zone to respond in, or ``None`` to find the zone
        of each name among the provider's zones.
    :ivar settle_delay: Seconds to wait after adding a record when there
        are no ``nameservers`` to ask (``0`` for none).
    :ivar ttl: The TXT record's TTL in seconds.
    :ivar record_format: How the driver wants records written; by default
        the format of its ``type`` (see :class:`LibcloudRecordFormat`).
    :ivar nameservers: The zone's authoritative nameservers,
        ``(IP address, port)``, to wait for instead of ``settle_delay``
        (needs dnspython, the ``dns`` extra); ``None`` to sleep
        ``settle_delay`` seconds.
    :ivar propagation_interval: Seconds between two rounds of queries.
    :ivar propagation_timeout: Seconds to wait for every nameserver.
    :ivar query_timeout: Seconds to wait for each query's answer.
    :ivar api_timeout: Seconds to wait for each start's or stop's calls
        into the driver.

    :raises TypeError: If the reactor lacks ``callFromThread``, or
        ``IReactorTime`` (with a ``settle_delay`` or ``nameservers``), or
        UDP and TCP (with ``nameservers``).
    :raises ValueError: If an address of ``nameservers`` is not an IP
        address, or a PowerDNS driver does not use API ``v1``.
    :raises ImportError: With ``nameservers``, without dnspython.
    """

    challenge_type = "dns-01"

    _reactor: IReactorTime | IReactorFromThreads
    _thread_pool: IWorker
    _driver: DNSDriver
    zone_name: str | None = None
    settle_delay: float = 60.0
    ttl: int = field(default=60, kw_only=True)
    record_format: LibcloudRecordFormat = field(
        default=Factory(
            lambda self: record_format_for(self._driver),
            takes_self=True,
        ),
        kw_only=True,
    )
    nameservers: Sequence[Address] | None = field(
        default=None, converter=_addresses, kw_only=True
    )
    propagation_interval: float = field(default=2.0, kw_only=True)
    propagation_timeout: float = field(default=120.0, kw_only=True)
    query_timeout: float = field(default=3.0, kw_only=True)
    api_timeout: float = field(default=60.0, kw_only=True)
    _challenges: dict[tuple[str, str], _Challenge] = field(
        init=False, factory=dict, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if not callable(getattr(self._reactor, "callFromThread", None)):
            raise TypeError(
                "LibcloudDNSResponder needs a reactor providing "
                "IReactorFromThreads (callFromThread)"
            )
        waits = self.nameservers is not None or self.settle_delay > 0
        if waits and not IReactorTime.providedBy(self._reactor):
            raise TypeError(
                "LibcloudDNSResponder needs a reactor providing IReactorTime "
                "to wait for nameservers or a settle_delay"
            )
        if self.nameservers is not None:
            if not (
                IReactorUDP.providedBy(self._reactor)
                and IReactorTCP.providedBy(self._reactor)
            ):
                raise TypeError(
                    "LibcloudDNSResponder needs a reactor providing IReactorUDP "
                    "and IReactorTCP to ask nameservers"
                )
            try:
                import txacme.challenges._dns_propagation  # noqa: F401
            except ImportError as error:
                raise ImportError(
                    f"LibcloudDNSResponder(nameservers=...) needs dnspython "
                    f"({error}): pip install 'txacme[dns]'"
                ) from error
        if (
            self.record_format.write_rrset is write_powerdns_rrset
            and getattr(self._driver, "api_root", POWERDNS_V1) != POWERDNS_V1
        ):
            raise ValueError(
                "LibcloudDNSResponder needs the PowerDNS driver's API v1 "
                "(PowerDNS 4 and later): pass api_version='v1'"
            )

    @classmethod
    def create(
        cls,
        reactor: IReactorTime | IReactorFromThreads,
        driver_name: str,
        username: str,
        password: str | None,
        zone_name: str | None = None,
        settle_delay: float = 60.0,
        *,
        host: str | None = None,
        port: int | None = None,
        api_version: str | None = None,
        driver_kwargs: Mapping[str, Any] | None = None,
        ttl: int = 60,
        record_format: LibcloudRecordFormat | None = None,
        nameservers: Sequence[Address] | None = None,
        propagation_interval: float = 2.0,
        propagation_timeout: float = 120.0,
        query_timeout: float = 3.0,
        api_timeout: float = 60.0,
    ) -> LibcloudDNSResponder:
        """
        Make a responder with a driver made by name, as txacme 0.9 did:
        ``get_driver(driver_name)(username, password, **arguments)``.

        The arguments are ``host``, ``port`` and ``api_version`` when given,
        then ``driver_kwargs``; and ``timeout=api_timeout`` (libcloud's
        per-request timeout) if the driver takes a ``timeout`` and
        ``driver_kwargs`` has none.  For ``powerdns``, ``api_version``
        defaults to ``"v1"`` (PowerDNS 4 and later) rather than libcloud's
        ``"experimental"``::

            LibcloudDNSResponder.create(
                reactor, "powerdns", API_KEY, None,
                host="127.0.0.1", port=8081,
            )

        :param reactor: The reactor (every real reactor will do): its
            ``callFromThread`` (``IReactorFromThreads``) delivers the
            driver's results; ``IReactorTime`` is needed for the waits and
            ``api_timeout``, ``IReactorUDP`` and ``IReactorTCP`` for
            ``nameservers``.  The annotation accepts the global reactor as
            Twisted types it.
        :param driver_name: libcloud's name of the DNS driver
            (``"route53"``, ``"google"``, ``"digitalocean"``,
            ``"cloudflare"``, ``"powerdns"``, ``"dummy"``...).
        :param username: The first argument of the driver (a user name,
            key id or API key; its meaning is the driver's).
        :param password: The second argument of the driver (a secret;
            ``None`` for drivers that take a key only).
        :param zone_name: See :attr:`zone_name`.
        :param settle_delay: See :attr:`settle_delay`.
        :param host: The provider's API host, for drivers that take one.
        :param port: The provider's API port, for drivers that take one.
        :param api_version: The provider's API version, for drivers that
            take one.
        :param driver_kwargs: Further keyword arguments of the driver
            (``secure``, ``region``...).
        :param ttl: See :attr:`ttl`.  The other keyword arguments are
            the attributes of the same names.
        :raises ValueError: If libcloud has no DNS driver of that name.
        """
        try:
            driver_class = get_driver(driver_name)
        except (AttributeError, KeyError, ValueError) as error:
            raise ValueError(
                f"libcloud has no DNS driver named {driver_name!r} ({error})"
            ) from error
        arguments: dict[str, Any] = {}
        if driver_name == Provider.POWERDNS and api_version is None:
            api_version = "v1"
        for name, value in (
            ("host", host),
            ("port", port),
            ("api_version", api_version),
        ):
            if value is not None:
                arguments[name] = value
        arguments.update(driver_kwargs or {})
        if "timeout" not in arguments and _accepts_keyword(
            driver_class.__init__, "timeout"
        ):
            arguments["timeout"] = api_timeout
        driver = driver_class(username, password, **arguments)
        return cls.from_driver(
            reactor,
            driver,
            zone_name,
            settle_delay,
            ttl=ttl,
            record_format=record_format,
            nameservers=nameservers,
            propagation_interval=propagation_interval,
            propagation_timeout=propagation_timeout,
            query_timeout=query_timeout,
            api_timeout=api_timeout,
        )

    @classmethod
    def from_driver(
        cls,
        reactor: IReactorTime | IReactorFromThreads,
        driver: DNSDriver,
        zone_name: str | None = None,
        settle_delay: float = 60.0,
        *,
        ttl: int = 60,
        record_format: LibcloudRecordFormat | None = None,
        nameservers: Sequence[Address] | None = None,
        propagation_interval: float = 2.0,
        propagation_timeout: float = 120.0,
        query_timeout: float = 3.0,
        api_timeout: float = 60.0,
    ) -> LibcloudDNSResponder:
        """
        Make a responder for a driver already made, with a thread of its
        own (made when first needed, a daemon thread).

        :param driver: A libcloud DNS driver.
        :param record_format: See :attr:`record_format`; ``None`` for the
            driver's.  The other arguments are the attributes of the same
            names.
        """
        return cls(
            reactor,
            one_thread(),
            driver,
            zone_name,
            settle_delay,
            ttl=ttl,
            record_format=(
                record_format
                if record_format is not None
                else record_format_for(driver)
            ),
            nameservers=nameservers,
            propagation_interval=propagation_interval,
            propagation_timeout=propagation_timeout,
            query_timeout=query_timeout,
            api_timeout=api_timeout,
        )

    # -- IResponder ----------------------------------------------------------------

    def start_responding(
        self,
        server_name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        """
        Add the TXT value and wait (see the class docstring).

        :returns: A Deferred firing once the value is published and the
            wait is over.  Cancelling it stops the wait (a call into the
            driver already running goes on; :meth:`stop_responding` removes
            what it may have added).
        :raises NotInZone: If the record name is not in the configured zone
            (or, without one, in any zone of the provider).
        :raises ZoneNotFound: If the provider has no zone ``zone_name``.
        :raises DNSProviderError: If the provider's API failed.
        :raises PropagationTimeout: If some nameserver did not serve the
            value in time.
        """
        record_name, value = dns01_record(server_name, response)
        if self.zone_name is not None and not within_zone(record_name, self.zone_name):
            return fail(NotInZone(record_name, self.zone_name))
        challenge_state = self._challenges.setdefault(
            (normal_name(record_name), value), _Challenge()
        )
        starting = Deferred.fromCoroutine(
            self._start(challenge_state, record_name, value)
        )
        if not starting.called:
            challenge_state.starting = starting

            def done(result: object) -> object:
                if challenge_state.starting is starting:
                    challenge_state.starting = None
                return result

            starting.addBoth(done)
        return starting

    def stop_responding(
        self,
        server_name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        """
        Remove the TXT value; a start still in progress is cancelled first.
        Idempotent: for a challenge never started, or already stopped,
        nothing is done.  After a start that failed, the value is removed
        if it was added.

        :returns: A Deferred firing once the value is removed.
        :raises DNSProviderError: If the provider's API failed.
        """
        record_name, value = dns01_record(server_name, response)
        challenge_state = self._challenges.pop((normal_name(record_name), value), None)
        if challenge_state is None:
            return succeed(None)
        return Deferred.fromCoroutine(self._stop(challenge_state, record_name, value))

    # -- the steps -----------------------------------------------------------------

    async def _start(
        self, challenge_state: _Challenge, record_name: str, value: str
    ) -> None:
        def add(progress: Progress) -> None:
            try:
                self._add(record_name, value, progress, challenge_state)
            finally:
                challenge_state.added = True

        await self._call(record_name, add)
        await self._wait(record_name, value)

    async def _stop(
        self, challenge_state: _Challenge, record_name: str, value: str
    ) -> None:
        if challenge_state.starting is not None:
            starting = challenge_state.starting
            starting.cancel()
            # The start's own caller sees its failure.
            with contextlib.suppress(Exception):
                await starting
        if challenge_state.added and not challenge_state.written:
            # The start failed before writing anything (refused credentials,
            # no such zone): nothing to remove, and no second error.
            return
        # An adding job still queued or running may yet write (a thread
        # cannot be stopped): the removal, queued behind it in the one
        # thread, comes after it.
        await self._call(
            record_name, lambda progress: self._remove(record_name, value, progress)
        )

    async def _wait(self, record_name: str, value: str) -> None:
        """
        Wait for the nameservers, or ``settle_delay`` seconds.
        """
        if self.nameservers is not None:
            import dns.name

            from txacme.challenges._dns_propagation import wait_until_served

            await wait_until_served(
                IReactorTime(self._reactor),
                IReactorUDP(self._reactor),
                IReactorTCP(self._reactor),
                {describe_address(address): address for address in self.nameservers},
                dns.name.from_text(record_name),
                value,
                interval=self.propagation_interval,
                timeout=self.propagation_timeout,
                query_timeout=self.query_timeout,
            )
        elif self.settle_delay > 0:
            await deferLater(IReactorTime(self._reactor), self.settle_delay)

    async def _call(self, record_name: str, work: Callable[[Progress], _T]) -> _T:
        """
        Run ``work`` in the thread, within ``api_timeout`` when the reactor
        can tell time.

        :raises DNSProviderError: If it did not finish in time.
        """
        progress = Progress("list_zones")
        # Duck-typed: txacme 0.9.3's tests pass an object with only
        # callFromThread, declaring no interface.
        reactor: Any = self._reactor
        call_from_thread: Callable[..., object] = reactor.callFromThread
        waiting = in_worker(call_from_thread, self._thread_pool, lambda: work(progress))
        if not IReactorTime.providedBy(self._reactor):
            return await waiting
        clock = IReactorTime(self._reactor)
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            waiting.cancel()

        timer = clock.callLater(self.api_timeout, expire)
        try:
            return await waiting
        except CancelledError:
            if expired:
                raise DNSProviderError(
                    self._provider,
                    progress.operation,
                    record_name,
                    f"no answer within {self.api_timeout:g} s",
                ) from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    @property
    def _provider(self) -> str:
        return str(getattr(self._driver, "name", type(self._driver).__name__))

    # -- in the thread -------------------------------------------------------------

    def _driver_call(
        self,
        progress: Progress,
        operation: str,
        record_name: str | None,
        call: Callable[[], _T],
    ) -> _T:
        """
        One call into the driver; its failures become
        :exc:`DNSProviderError` (or :exc:`ZoneNotFound`).
        """
        progress.operation = operation
        try:
            return call()
        except DNSError:
            raise
        except ZoneDoesNotExistError as error:
            raise ZoneNotFound(
                self.zone_name,
                name=record_name,
                message=(
                    f"{operation} for {record_name}: the zone is gone at "
                    f"{self._provider} ({_describe(error)})"
                ),
            ) from error
        except Exception as error:
            raise DNSProviderError(
                self._provider, operation, record_name, _describe(error)
            ) from error

    def _find_zone(self, progress: Progress, record_name: str) -> Zone:
        zones: list[Zone] = list(
            self._driver_call(progress, "list_zones", None, self._driver.list_zones)
        )
        if self.zone_name is not None:
            for zone in zones:
                if normal_name(zone.domain) == normal_name(self.zone_name):
                    return zone
            known = ", ".join(sorted(str(zone.domain) for zone in zones)[:10])
            raise ZoneNotFound(
                self.zone_name,
                name=record_name,
                message=(
                    f"zone {self.zone_name} not found at {self._provider} "
                    f"(its zones: {known or 'none'})"
                ),
            )
        candidates = [zone for zone in zones if within_zone(record_name, zone.domain)]
        if not candidates:
            raise NotInZone(record_name, None)
        return max(candidates, key=lambda zone: len(normal_name(zone.domain)))

    def _txt_records(
        self, progress: Progress, zone: Zone, record_name: str
    ) -> list[Record]:
        records = self._driver_call(
            progress,
            "list_records",
            record_name,
            lambda: list(self._driver.list_records(zone)),
        )
        return [
            record
            for record in records
            if str(record.type).upper() == RecordType.TXT
            and same_name(str(record.name), record_name, str(zone.domain))
        ]

    def _add(
        self,
        record_name: str,
        value: str,
        progress: Progress,
        challenge_state: _Challenge,
    ) -> None:
        zone = self._find_zone(progress, record_name)
        existing = self._txt_records(progress, zone, record_name)
        # From here on the provider may hold the value.
        challenge_state.written = True
        if any(txt_value(str(record.data)) == value for record in existing):
            _log.info(
                "dns-01: TXT {record} already holds the value at {provider}",
                record=record_name,
                provider=self._provider,
            )
            return
        record_format = self.record_format
        name = record_format.record_name(record_name, str(zone.domain))
        data = record_format.data(value)
        write_rrset = record_format.write_rrset
        if write_rrset is not None:
            contents = [str(record.data) for record in existing] + [data]
            self._driver_call(
                progress,
                "write_rrset",
                record_name,
                lambda: write_rrset(self._driver, zone, name, contents, self.ttl),
            )
        else:
            self._driver_call(
                progress,
                "create_record",
                record_name,
                lambda: self._driver.create_record(
                    name,
                    zone,
                    # Annotated RecordType, whose members are str.
                    RecordType.TXT,  # type: ignore[arg-type]
                    data,
                    extra=record_format.extra(self.ttl),
                ),
            )
        _log.info(
            "dns-01: added TXT {record} (zone {zone}) at {provider}",
            record=record_name,
            zone=normal_name(str(zone.domain)),
            provider=self._provider,
        )

    def _remove(self, record_name: str, value: str, progress: Progress) -> None:
        try:
            zone = self._find_zone(progress, record_name)
        except (ZoneNotFound, NotInZone):
            # No zone, so no record to remove.
            return
        existing = self._txt_records(progress, zone, record_name)
        holding = [
            record for record in existing if txt_value(str(record.data)) == value
        ]
        if not holding:
            return
        write_rrset = self.record_format.write_rrset
        if write_rrset is not None:
            name = self.record_format.record_name(record_name, str(zone.domain))
            contents = [
                str(record.data) for record in existing if record not in holding
            ]
            self._driver_call(
                progress,
                "write_rrset",
                record_name,
                lambda: write_rrset(self._driver, zone, name, contents, self.ttl),
            )
        else:
            for record in holding:

                def delete(record: Record = record) -> bool:
                    return self._driver.delete_record(record)

                deleted = self._driver_call(
                    progress, "delete_record", record_name, delete
                )
                if deleted is False:
                    raise DNSProviderError(
                        self._provider,
                        "delete_record",
                        record_name,
                        "the driver reported that the record was not deleted",
                    )
        _log.info(
            "dns-01: removed TXT {record} value {value} (zone {zone}) at {provider}",
            record=record_name,
            value=value,
            zone=normal_name(str(zone.domain)),
            provider=self._provider,
        )
