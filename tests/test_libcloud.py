"""
Tests for :class:`txacme.challenges.LibcloudDNSResponder`.

Most tests run without threads: the responder's worker is a
``createMemoryWorker`` whose jobs run when the test says so, and the
reactor is a :class:`ThreadlessClock` (``callFromThread`` calls at once,
time is a ``Clock``), as txacme 0.9.3's own tests did.  The drivers are
libcloud's ``dummy`` driver, :class:`PerValueDriver` (a dummy keeping one
record per value, as Cloudflare or DigitalOcean do, and recording what is
done to it), and libcloud's real PowerDNS driver talking to
:class:`FakePowerDNSConnection`, an in-memory PowerDNS HTTP API.  A few
tests use the real reactor: real threads, and the propagation check
against :class:`tests.test_dns.FakeDNSServer`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
from acme import challenges
from libcloud.common import exceptions as libcloud_exceptions
from libcloud.common import types as libcloud_types
from libcloud.dns import base as libcloud_dns
from libcloud.dns import types as libcloud_dns_types
from libcloud.dns.base import Record, Zone
from libcloud.dns.drivers import dummy, powerdns
from twisted._threads import IWorker, createMemoryWorker
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase as RealReactorTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import txacme.challenges
import txacme.errors
from tests.support import EC_KEY, TestCase, TypedAssertions
from tests.test_dns import _environment
from txacme.challenges import (
    DNSError,
    DNSLookupError,
    DNSProviderError,
    LibcloudDNSResponder,
    LibcloudRecordFormat,
    NotInZone,
    PropagationTimeout,
    ZoneNotFound,
)
from txacme.challenges._dns import dns01_record
from txacme.challenges._libcloud import _daemon_thread
from txacme.challenges._libcloud_records import DEFAULT, POWERDNS, txt_value
from txacme.interfaces import IResponder

# libcloud's classes, whose constructors are not annotated.
_Zone: Any = libcloud_dns.Zone
_Record: Any = libcloud_dns.Record
DummyDNSDriver: Any = dummy.DummyDNSDriver
PowerDNSDriver: Any = powerdns.PowerDNSDriver
BaseHTTPError: Any = libcloud_exceptions.BaseHTTPError
InvalidCredsError: Any = libcloud_types.InvalidCredsError
ZoneDoesNotExistError: Any = libcloud_dns_types.ZoneDoesNotExistError

ZONE = "example.test"
NAME = "www.example.test"
RECORD = "_acme-challenge.www.example.test"


def _challenge() -> tuple[challenges.DNS01, challenges.DNS01Response]:
    challenge = challenges.DNS01(token=os.urandom(32))
    response = challenge.response(EC_KEY)
    assert isinstance(response, challenges.DNS01Response)
    return challenge, response


def _value(response: challenges.DNS01Response, name: str = NAME) -> str:
    return dns01_record(name, response)[1]


@implementer(IReactorFromThreads)
class ThreadlessClock(Clock):
    """
    A ``Clock`` whose ``callFromThread`` calls at once: the reactor of
    tests whose "thread" is a memory worker run by the test.
    """

    def callFromThread(
        self, callable: Callable[..., object], *args: object, **kwargs: object
    ) -> None:
        callable(*args, **kwargs)


class PerValueDriver(libcloud_dns.DNSDriver):
    """
    A libcloud DNS driver in memory keeping one record per value (as
    Cloudflare, DigitalOcean or Linode do; libcloud's dummy driver keeps one
    per name), and recording the changes made to it.

    :ivar changes: ``("create", name, data)`` and ``("delete", name,
        data)``, in order.
    :ivar fail: Names of methods that raise :attr:`fail_with` when called.
    :ivar delete_returns: What ``delete_record`` returns (without deleting
        when ``False``, as some drivers report a failure).
    :ivar threads: The thread of each call.
    """

    name = "Per-value DNS"
    type = None

    def __init__(self) -> None:
        # No DNSDriver.__init__: there is no connection to make.
        self.zones: dict[str, Any] = {}
        self.records: dict[str, list[Any]] = {}
        self.changes: list[tuple[str, str, str]] = []
        self.fail: set[str] = set()
        self.fail_with: BaseException = RuntimeError("the provider is down")
        self.delete_returns = True
        self.threads: list[threading.Thread] = []
        self._ids = iter(range(1_000_000))

    def _called(self, method: str) -> None:
        self.threads.append(threading.current_thread())
        if method in self.fail:
            raise self.fail_with

    def create_zone(
        self,
        domain: str,
        type: str = "master",
        ttl: int | None = None,
        extra: dict[Any, Any] | None = None,
    ) -> Zone:
        zone: Zone = _Zone(
            id=f"zone-{domain}", domain=domain, type="master", ttl=None, driver=self
        )
        self.zones[str(zone.id)] = zone
        self.records[str(zone.id)] = []
        return zone

    def list_zones(self) -> list[Zone]:
        self._called("list_zones")
        return list(self.zones.values())

    def list_records(self, zone: Zone) -> list[Record]:
        self._called("list_records")
        return list(self.records[str(zone.id)])

    def create_record(
        self,
        name: str,
        zone: Zone,
        type: Any,
        data: str,
        extra: dict[Any, Any] | None = None,
    ) -> Record:
        self._called("create_record")
        record: Record = _Record(
            id=f"record-{next(self._ids)}",
            name=name,
            type=type,
            data=data,
            extra=extra,
            zone=zone,
            driver=self,
        )
        self.records[str(zone.id)].append(record)
        self.changes.append(("create", name, data))
        return record

    def delete_record(self, record: Record) -> bool:
        self._called("delete_record")
        if not self.delete_returns:
            return False
        self.records[str(record.zone.id)].remove(record)
        self.changes.append(("delete", record.name, record.data))
        return True

    def txt(self, name: str) -> list[str]:
        """The TXT values (unquoted) of records named ``name``, any zone."""
        return sorted(
            txt_value(record.data)
            for zone in self.zones.values()
            for record in self.records[zone.id]
            if record.type == "TXT"
            and (
                record.name.rstrip(".") == name
                or f"{record.name}.{zone.domain.rstrip('.')}" == name
            )
        )


class _Response:
    """What libcloud's connection returns: ``status`` and ``object``."""

    def __init__(self, status: int, body: object) -> None:
        self.status = status
        self.object = body
        self.body = json.dumps(body) if body is not None else ""


class FakePowerDNSConnection:
    """
    PowerDNS's HTTP API (v1), in memory, in place of the PowerDNS driver's
    connection: zones, their record sets, and ``PATCH`` with
    ``REPLACE``/``DELETE``, refusing what PowerDNS 4.7 refuses (a name not
    fully qualified, TXT content not quoted: HTTP 422).

    :ivar rrsets: By zone id, ``{(name, type): (ttl, [content, ...])}``.
    :ivar patches: The rrsets of every ``PATCH`` received.
    """

    def __init__(self, zones: list[str]) -> None:
        self.rrsets: dict[str, dict[tuple[str, str], tuple[int, list[str]]]] = {
            zone + ".": {(zone + ".", "SOA"): (3600, ["ns1 hostmaster 1 1 1 1 1"])}
            for zone in zones
        }
        self.patches: list[dict[str, Any]] = []

    def request(
        self,
        action: str,
        params: object = None,
        data: str | None = None,
        headers: object = None,
        method: str = "GET",
        **ignored: object,
    ) -> _Response:
        prefix = "/api/v1/servers/localhost/zones"
        assert action.startswith(prefix), action
        zone_id = action[len(prefix) :].lstrip("/")
        if not zone_id:
            return _Response(200, [self._zone(zone) for zone in self.rrsets])
        if zone_id not in self.rrsets:
            raise BaseHTTPError(422, "Could not find domain")
        if method == "GET":
            body = self._zone(zone_id)
            body["rrsets"] = [
                {
                    "name": name,
                    "type": rdtype,
                    "ttl": ttl,
                    "records": [{"content": content} for content in contents],
                }
                for (name, rdtype), (ttl, contents) in self.rrsets[zone_id].items()
            ]
            return _Response(200, body)
        assert method == "PATCH" and data is not None
        for rrset in json.loads(data)["rrsets"]:
            self.patches.append(rrset)
            name = rrset["name"]
            if not name.endswith("."):
                raise BaseHTTPError(422, f"DNS Name '{name}' is not canonical")
            key = (name, rrset["type"])
            if rrset["changetype"] == "DELETE":
                self.rrsets[zone_id].pop(key, None)
                continue
            contents = [record["content"] for record in rrset["records"]]
            for content in contents:
                if rrset["type"] == "TXT" and not content.startswith('"'):
                    raise BaseHTTPError(422, "Not in expected format")
            self.rrsets[zone_id][key] = (rrset["ttl"], contents)
        return _Response(204, None)

    def _zone(self, zone_id: str) -> dict[str, Any]:
        return {
            "id": zone_id,
            "name": zone_id,
            "kind": "Native",
            "dnssec": False,
            "account": "",
            "masters": [],
            "serial": 1,
            "notified_serial": 0,
            "last_check": 0,
        }

    def txt(self, name: str) -> list[str]:
        """The TXT contents (as stored, quoted) at ``name``."""
        for rrsets in self.rrsets.values():
            if (name + ".", "TXT") in rrsets:
                return sorted(rrsets[(name + ".", "TXT")][1])
        return []


def _powerdns_driver(zones: list[str]) -> tuple[Any, FakePowerDNSConnection]:
    driver = PowerDNSDriver("api-key", host="127.0.0.1", port=8081, api_version="v1")
    connection = FakePowerDNSConnection(zones)
    driver.connection = connection
    return driver, connection


class ResponderTestCase(TestCase):
    """
    A memory worker and a :class:`ThreadlessClock`; :meth:`responder`
    makes a responder using them.
    """

    def setUp(self) -> None:
        self.clock = ThreadlessClock()
        self.worker, self.perform = createMemoryWorker()
        self.driver = PerValueDriver()
        self.driver.create_zone(ZONE)

    def responder(self, driver: Any = None, **options: Any) -> LibcloudDNSResponder:
        """
        A responder for ``driver`` (by default :attr:`driver`) on the
        memory worker; ``settle_delay`` 0 unless given.
        """
        options.setdefault("settle_delay", 0.0)
        zone_name = options.pop("zone_name", None)
        settle_delay = options.pop("settle_delay")
        return LibcloudDNSResponder(
            self.clock,
            self.worker,
            self.driver if driver is None else driver,
            zone_name,
            settle_delay,
            **options,
        )

    def run_jobs(self) -> int:
        """Run every queued job of the worker; how many there were."""
        count = 0
        while self.perform():
            count += 1
        return count

    def start(
        self,
        responder: LibcloudDNSResponder,
        name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        started = responder.start_responding(name, challenge, response)
        self.run_jobs()
        return started

    def stop(
        self,
        responder: LibcloudDNSResponder,
        name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        stopped = responder.stop_responding(name, challenge, response)
        self.run_jobs()
        return stopped


class MakingTests(ResponderTestCase):
    """
    ``create``, ``from_driver`` and the constructor.
    """

    def test_create_dummy(self) -> None:
        """
        ``create(reactor, "dummy", username, password, zone_name,
        settle_delay)`` makes the dummy driver, a worker of the responder's
        own, and keeps the zone and the delay (txacme 0.9.3's signature).
        """
        responder = LibcloudDNSResponder.create(
            self.clock, "dummy", "user", "secret", ZONE, 0.0
        )
        self.assertIsInstance(responder._driver, DummyDNSDriver)
        self.assertTrue(verifyObject(IWorker, responder._thread_pool))
        self.assertIs(responder._reactor, self.clock)
        self.assertEqual(responder.zone_name, ZONE)
        self.assertEqual(responder.settle_delay, 0.0)
        self.assertIs(responder.record_format, DEFAULT)
        self.assertTrue(verifyObject(IResponder, responder))
        self.assertEqual(responder.challenge_type, "dns-01")

    def test_defaults(self) -> None:
        """
        ``zone_name`` defaults to ``None`` and ``settle_delay`` to 60
        seconds, as in txacme 0.9.3.
        """
        responder = LibcloudDNSResponder.create(self.clock, "dummy", "u", "p")
        self.assertIs(responder.zone_name, None)
        self.assertEqual(responder.settle_delay, 60.0)

    def test_create_powerdns(self) -> None:
        """
        ``host``, ``port``, ``api_version`` and ``driver_kwargs`` reach the
        driver; for PowerDNS, ``api_version`` defaults to ``v1``, the
        record format is PowerDNS's, and libcloud's request timeout is
        ``api_timeout``.
        """
        responder = LibcloudDNSResponder.create(
            self.clock,
            "powerdns",
            "api-key",
            None,
            host="127.0.0.2",
            port=8081,
            driver_kwargs={"secure": False},
            api_timeout=7.0,
        )
        driver: Any = responder._driver
        self.assertIsInstance(driver, PowerDNSDriver)
        self.assertEqual(driver.key, "api-key")
        self.assertEqual(driver.connection.host, "127.0.0.2")
        self.assertEqual(driver.connection.port, 8081)
        self.assertEqual(driver.api_root, "/api/v1")
        self.assertEqual(driver.connection.timeout, 7.0)
        self.assertIs(responder.record_format, POWERDNS)

    def test_driver_kwargs_timeout_wins(self) -> None:
        """
        A ``timeout`` in ``driver_kwargs`` is the one the driver gets.
        """
        responder = LibcloudDNSResponder.create(
            self.clock,
            "powerdns",
            "api-key",
            None,
            host="127.0.0.1",
            driver_kwargs={"timeout": 3},
        )
        self.assertEqual(responder._driver.connection.timeout, 3)

    def test_powerdns_experimental_api_refused(self) -> None:
        """
        The PowerDNS driver on the ``experimental`` API (PowerDNS 3) is
        refused when the responder is made: the record sets are written
        with API v1.
        """
        with self.assertRaises(ValueError) as raised:
            LibcloudDNSResponder.create(
                self.clock,
                "powerdns",
                "api-key",
                None,
                host="127.0.0.1",
                api_version="experimental",
            )
        self.assertIn("api_version='v1'", str(raised.exception))

    def test_unknown_driver(self) -> None:
        """
        A driver name libcloud does not know is a ``ValueError`` naming it.
        """
        with self.assertRaises(ValueError) as raised:
            LibcloudDNSResponder.create(self.clock, "no-such-provider", "u", "p")
        self.assertIn("no-such-provider", str(raised.exception))

    def test_from_driver(self) -> None:
        """
        ``from_driver`` takes a driver already made and makes a worker of
        its own; the record format follows the driver.
        """
        driver, _ = _powerdns_driver([ZONE])
        responder = LibcloudDNSResponder.from_driver(self.clock, driver, ZONE, 0.0)
        self.assertIs(responder._driver, driver)
        self.assertTrue(verifyObject(IWorker, responder._thread_pool))
        self.assertIs(responder.record_format, POWERDNS)
        custom = LibcloudRecordFormat(quoted=True)
        responder = LibcloudDNSResponder.from_driver(
            self.clock, driver, record_format=custom
        )
        self.assertIs(responder.record_format, custom)

    def test_daemon_thread(self) -> None:
        """
        ``_daemon_thread`` makes daemon threads (txacme 0.9.3's tests import
        it).
        """
        thread = _daemon_thread(target=lambda: None)
        self.assertIsInstance(thread, threading.Thread)
        self.assertTrue(thread.daemon)

    def test_settle_delay_needs_time(self) -> None:
        """
        A ``settle_delay`` with a reactor that cannot tell time is a
        ``TypeError`` at once, not a failure at the first challenge.
        """

        @implementer(IReactorFromThreads)
        class ThreadsOnly:
            def callFromThread(
                self, callable: Callable[..., object], *args: object, **kwargs: object
            ) -> None:
                callable(*args, **kwargs)

        with self.assertRaises(TypeError):
            LibcloudDNSResponder(ThreadsOnly(), self.worker, self.driver, None, 5.0)
        # No delay: no clock needed (txacme 0.9.3's tests).
        LibcloudDNSResponder(ThreadsOnly(), self.worker, self.driver, None, 0.0)

    def test_needs_call_from_thread(self) -> None:
        """
        A reactor without ``callFromThread`` is a ``TypeError`` at once.
        """
        with self.assertRaises(TypeError) as raised:
            LibcloudDNSResponder(Clock(), self.worker, self.driver, None, 0.0)
        self.assertIn("callFromThread", str(raised.exception))

    def test_nameservers_need_udp(self) -> None:
        """
        ``nameservers`` with a reactor without UDP and TCP is a
        ``TypeError``; an address that is not an IP address a
        ``ValueError``.
        """
        with self.assertRaises(TypeError):
            self.responder(nameservers=[("127.0.0.1", 53)])
        from twisted.internet import reactor as global_reactor

        reactor: Any = global_reactor
        with self.assertRaises(ValueError):
            LibcloudDNSResponder(
                reactor, self.worker, self.driver, nameservers=[("ns1.example", 53)]
            )


class RecordTests(ResponderTestCase):
    """
    What start and stop do to the provider's records.
    """

    def test_off_the_reactor_thread(self) -> None:
        """
        Start and stop only queue a job each: the driver is called when
        the worker runs it, and the Deferred fires then.
        """
        responder = self.responder()
        challenge, response = _challenge()
        started = responder.start_responding(NAME, challenge, response)
        self.assertNoResult(started)
        self.assertEqual(self.driver.changes, [])
        self.assertEqual(self.run_jobs(), 1)
        self.successResultOf(started)
        self.assertEqual(self.driver.txt(RECORD), [_value(response)])
        stopped = responder.stop_responding(NAME, challenge, response)
        self.assertNoResult(stopped)
        self.assertEqual(self.run_jobs(), 1)
        self.successResultOf(stopped)
        self.assertEqual(self.driver.txt(RECORD), [])

    def test_dummy_format(self) -> None:
        """
        For libcloud's convention (the dummy driver): a name relative to
        the zone, the bare value, the TTL in ``extra``.
        """
        driver = DummyDNSDriver("u", "p")
        zone = driver.create_zone(ZONE)
        responder = self.responder(driver, ttl=120)
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        (record,) = zone.list_records()
        self.assertEqual(record.name, "_acme-challenge.www")
        self.assertEqual(record.type, "TXT")
        self.assertEqual(record.data, _value(response))
        self.assertEqual(record.extra, {"ttl": 120})
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.assertEqual(list(zone.list_records()), [])

    def test_wildcard(self) -> None:
        """
        A wildcard's record is its base name's.
        """
        responder = self.responder()
        challenge, response = _challenge()
        self.successResultOf(
            self.start(responder, "*.example.test", challenge, response)
        )
        self.assertEqual(
            self.driver.changes,
            [("create", "_acme-challenge", _value(response, "example.test"))],
        )

    def test_start_twice(self) -> None:
        """
        Starting twice adds one record; one stop removes it.
        """
        responder = self.responder()
        challenge, response = _challenge()
        for _ in range(2):
            self.successResultOf(self.start(responder, NAME, challenge, response))
        self.assertEqual(len(self.driver.changes), 1)
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.assertEqual(self.driver.txt(RECORD), [])

    def test_wildcard_and_base_name(self) -> None:
        """
        A wildcard and its base name: two values at one name at once, and
        stopping either leaves the other, in both orders.
        """
        for first in (0, 1):
            responder = self.responder()
            both = [_challenge(), _challenge()]
            names = ["*.example.test", "example.test"]
            for name, (challenge, response) in zip(names, both, strict=True):
                self.successResultOf(self.start(responder, name, challenge, response))
            values = [_value(response, "example.test") for _, response in both]
            self.assertEqual(
                self.driver.txt("_acme-challenge.example.test"), sorted(values)
            )
            self.successResultOf(self.stop(responder, names[first], *both[first]))
            self.assertEqual(
                self.driver.txt("_acme-challenge.example.test"), [values[1 - first]]
            )
            self.successResultOf(
                self.stop(responder, names[1 - first], *both[1 - first])
            )
            self.assertEqual(self.driver.txt("_acme-challenge.example.test"), [])

    def test_quoted_existing_value(self) -> None:
        """
        A record holding the value in quotes (as some providers give TXT
        data back) is the value: start adds nothing, stop removes it.
        """
        zone = self.driver.list_zones()[0]
        responder = self.responder()
        challenge, response = _challenge()
        self.driver.create_record(
            "_acme-challenge.www", zone, "TXT", f'"{_value(response)}"'
        )
        self.driver.changes.clear()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.assertEqual(self.driver.changes, [])
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.assertEqual(self.driver.txt(RECORD), [])

    def test_fully_qualified_existing_value(self) -> None:
        """
        A record named with the fully qualified name is matched too.
        """
        zone = self.driver.list_zones()[0]
        responder = self.responder()
        challenge, response = _challenge()
        self.driver.create_record(RECORD + ".", zone, "TXT", _value(response))
        self.driver.changes.clear()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.assertEqual(self.driver.changes, [])

    def test_other_records_untouched(self) -> None:
        """
        Other TXT values at the name, and records of other types, stay.
        """
        zone = self.driver.list_zones()[0]
        self.driver.create_record("_acme-challenge.www", zone, "TXT", "someone else's")
        self.driver.create_record("_acme-challenge.www", zone, "A", "192.0.2.1")
        responder = self.responder()
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.assertEqual(self.driver.txt(RECORD), ["someone else's"])
        self.assertEqual(len(list(self.driver.list_records(zone))), 2)

    def test_stop_without_start(self) -> None:
        """
        Stopping a challenge never started does nothing: no job, no
        change, and it fires at once.
        """
        responder = self.responder()
        challenge, response = _challenge()
        self.successResultOf(responder.stop_responding(NAME, challenge, response))
        self.assertEqual(self.run_jobs(), 0)

    def test_stop_twice(self) -> None:
        """
        The second stop does nothing.
        """
        responder = self.responder()
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.successResultOf(responder.stop_responding(NAME, challenge, response))
        self.assertEqual(self.run_jobs(), 0)

    def test_most_specific_zone(self) -> None:
        """
        Without ``zone_name``, the record goes in the most specific zone
        containing it, whatever the zones' final dots.
        """
        self.driver.create_zone("www.example.test.")
        self.driver.create_zone("other.test")
        responder = self.responder()
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.assertEqual(
            self.driver.changes, [("create", "_acme-challenge", _value(response))]
        )
        (record,) = self.driver.records["zone-www.example.test."]
        self.assertEqual(record.data, _value(response))

    def test_configured_zone(self) -> None:
        """
        With ``zone_name``, that zone is used even if a more specific one
        exists, whatever its final dot and case.
        """
        self.driver.create_zone("www.example.test")
        responder = self.responder(zone_name="Example.Test.")
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.assertEqual(
            self.driver.changes, [("create", "_acme-challenge.www", _value(response))]
        )


class WaitTests(ResponderTestCase):
    """
    ``settle_delay`` and ``api_timeout``, on the clock.
    """

    def test_settle_delay(self) -> None:
        """
        Without nameservers, start fires ``settle_delay`` seconds after the
        record was added.
        """
        responder = self.responder(settle_delay=30.0)
        challenge, response = _challenge()
        started = self.start(responder, NAME, challenge, response)
        self.assertEqual(self.driver.txt(RECORD), [_value(response)])
        self.clock.advance(29.9)
        self.assertNoResult(started)
        self.clock.advance(0.1)
        self.successResultOf(started)

    def test_stop_during_settle_delay(self) -> None:
        """
        Stop during the wait cancels the start and removes the record.
        """
        responder = self.responder(settle_delay=30.0)
        challenge, response = _challenge()
        started = self.start(responder, NAME, challenge, response)
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.failureResultOf(started, CancelledError)
        self.assertEqual(self.driver.txt(RECORD), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_while_in_thread(self) -> None:
        """
        A start cancelled while its job waits for the thread fails with
        ``CancelledError``; the job's late outcome is dropped, and stop
        (queued after it) removes what it added.
        """
        responder = self.responder()
        challenge, response = _challenge()
        started = responder.start_responding(NAME, challenge, response)
        started.cancel()
        self.failureResultOf(started, CancelledError)
        stopped = responder.stop_responding(NAME, challenge, response)
        self.assertEqual(self.run_jobs(), 2)
        self.successResultOf(stopped)
        self.assertEqual(
            [change for change, _, _ in self.driver.changes], ["create", "delete"]
        )
        self.assertEqual(self.driver.txt(RECORD), [])

    def test_api_timeout(self) -> None:
        """
        A job that does not finish within ``api_timeout`` seconds fails the
        start with ``DNSProviderError``; when it finishes later, nothing
        breaks.
        """
        responder = self.responder(api_timeout=10.0)
        challenge, response = _challenge()
        started = responder.start_responding(NAME, challenge, response)
        self.clock.advance(10.0)
        error = self.errorOf(started, DNSProviderError)
        self.assertIn("no answer within 10 s", str(error))
        self.assertEqual(error.operation, "list_zones")
        self.assertEqual(error.record_name, RECORD)
        self.assertEqual(self.run_jobs(), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.assertEqual(self.driver.txt(RECORD), [])


class ErrorTests(ResponderTestCase):
    """
    Every failure is a documented exception.
    """

    def test_not_in_configured_zone(self) -> None:
        """
        A name outside ``zone_name`` fails with ``NotInZone`` (a
        ``ValueError`` and a ``DNSError``) before any job, and stop then
        does nothing.
        """
        responder = self.responder(zone_name=ZONE)
        challenge, response = _challenge()
        started = responder.start_responding("www.example.other", challenge, response)
        error = self.errorOf(started, NotInZone)
        self.assertEqual(error.server_name, "_acme-challenge.www.example.other")
        self.assertEqual(error.zone_name, ZONE)
        self.assertIsInstance(error, ValueError)
        self.assertIsInstance(error, DNSError)
        self.assertIs(txacme.errors.NotInZone, NotInZone)
        self.assertEqual(self.run_jobs(), 0)
        self.successResultOf(
            responder.stop_responding("www.example.other", challenge, response)
        )
        self.assertEqual(self.run_jobs(), 0)

    def test_in_no_zone(self) -> None:
        """
        Without ``zone_name``, a name in no zone of the provider fails
        with ``NotInZone`` whose ``zone_name`` is ``None``; stop then
        succeeds and changes nothing.
        """
        responder = self.responder()
        challenge, response = _challenge()
        error = self.errorOf(
            self.start(responder, "www.example.other", challenge, response), NotInZone
        )
        self.assertEqual(error.server_name, "_acme-challenge.www.example.other")
        self.assertIs(error.zone_name, None)
        self.successResultOf(
            self.stop(responder, "www.example.other", challenge, response)
        )
        self.assertEqual(self.driver.changes, [])

    def test_zone_not_found(self) -> None:
        """
        A configured zone the provider does not have fails with
        ``ZoneNotFound``: one class, ``txacme.errors.ZoneNotFound`` (a
        ``ValueError``) and ``txacme.challenges.ZoneNotFound`` (a
        ``DNSLookupError``), with ``zone_name``.
        """
        responder = self.responder(zone_name="missing.test")
        challenge, response = _challenge()
        error = self.errorOf(
            self.start(responder, "www.missing.test", challenge, response),
            ZoneNotFound,
        )
        self.assertIs(txacme.errors.ZoneNotFound, ZoneNotFound)
        self.assertIsInstance(error, ValueError)
        self.assertIsInstance(error, DNSLookupError)
        self.assertEqual(error.zone_name, "missing.test")
        self.assertEqual(error.name, "_acme-challenge.www.missing.test")
        self.assertIn("example.test", str(error))

    def test_zone_gone(self) -> None:
        """
        libcloud's ``ZoneDoesNotExistError`` (the zone deleted meanwhile)
        is ``ZoneNotFound``.
        """
        self.driver.fail.add("list_records")
        self.driver.fail_with = ZoneDoesNotExistError(
            value="gone", driver=self.driver, zone_id="id-example.test"
        )
        responder = self.responder(zone_name=ZONE)
        challenge, response = _challenge()
        error = self.errorOf(
            self.start(responder, NAME, challenge, response), ZoneNotFound
        )
        self.assertEqual(error.zone_name, ZONE)
        self.assertIsInstance(error.__cause__, ZoneDoesNotExistError)

    def test_driver_raises(self) -> None:
        """
        An exception of the driver in any call of a start becomes
        ``DNSProviderError`` naming the provider and the call, with the
        driver's exception as ``__cause__``; nothing is left behind.
        """
        for method in ("list_zones", "list_records", "create_record"):
            driver = PerValueDriver()
            driver.create_zone(ZONE)
            driver.fail.add(method)
            responder = self.responder(driver)
            challenge, response = _challenge()
            error = self.errorOf(
                self.start(responder, NAME, challenge, response), DNSProviderError
            )
            self.assertEqual(error.operation, method)
            self.assertEqual(error.provider, "Per-value DNS")
            self.assertIn("RuntimeError: the provider is down", str(error))
            self.assertIsInstance(error.__cause__, RuntimeError)
            self.assertEqual(driver.txt(RECORD), [])

    def test_refused_credentials(self) -> None:
        """
        libcloud's ``InvalidCredsError`` says the credentials were refused.
        """
        self.driver.fail.add("list_zones")
        self.driver.fail_with = InvalidCredsError("Invalid provider credentials")
        responder = self.responder()
        challenge, response = _challenge()
        error = self.errorOf(
            self.start(responder, NAME, challenge, response), DNSProviderError
        )
        self.assertIn("refused the credentials", str(error))

    def test_stop_after_start_refused_before_writing(self) -> None:
        """
        Stop after a start that failed before writing (refused credentials)
        asks the provider nothing, so that its error does not come twice.
        """
        self.driver.fail.add("list_zones")
        self.driver.fail_with = InvalidCredsError("Invalid provider credentials")
        responder = self.responder()
        challenge, response = _challenge()
        self.errorOf(self.start(responder, NAME, challenge, response), DNSProviderError)
        stopped = responder.stop_responding(NAME, challenge, response)
        self.assertEqual(self.run_jobs(), 0)
        self.successResultOf(stopped)

    def test_delete_fails(self) -> None:
        """
        A ``delete_record`` that raises, or returns ``False`` (as some
        drivers do instead of raising), fails the stop with
        ``DNSProviderError``.
        """
        responder = self.responder()
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.driver.delete_returns = False
        error = self.errorOf(
            self.stop(responder, NAME, challenge, response), DNSProviderError
        )
        self.assertEqual(error.operation, "delete_record")
        self.assertIn("not deleted", str(error))

        other, other_response = _challenge()
        self.successResultOf(self.start(responder, NAME, other, other_response))
        self.driver.fail.add("delete_record")
        error = self.errorOf(
            self.stop(responder, NAME, other, other_response), DNSProviderError
        )
        self.assertIsInstance(error.__cause__, RuntimeError)

    def test_base_exception_in_thread(self) -> None:
        """
        Even a ``BaseException`` in the thread ends the start (no hang).
        """

        class Stop(BaseException):
            pass

        self.driver.fail.add("list_zones")
        self.driver.fail_with = Stop()
        responder = self.responder()
        challenge, response = _challenge()
        self.failureResultOf(self.start(responder, NAME, challenge, response), Stop)


class ErrorClassTests(TestCase):
    """
    ``txacme.errors.ZoneNotFound`` and ``NotInZone`` as txacme 0.9 made
    them, and as the dns-01 error family.
    """

    def test_zone_not_found_093(self) -> None:
        """
        ``ZoneNotFound(zone_name=...)`` (0.9's keyword, or positional) is a
        ``ValueError`` with ``zone_name``, and a ``DNSLookupError``: the
        same class as ``txacme.challenges.ZoneNotFound``.
        """
        for error in (
            txacme.errors.ZoneNotFound(zone_name="example.com"),
            txacme.errors.ZoneNotFound("example.com"),
        ):
            self.assertEqual(error.zone_name, "example.com")
            self.assertIsInstance(error, ValueError)
            self.assertIsInstance(error, txacme.challenges.DNSLookupError)
            self.assertIn("example.com", str(error))
        self.assertIs(txacme.challenges.ZoneNotFound, txacme.errors.ZoneNotFound)
        self.assertIs(txacme.challenges.DNSError, txacme.errors.DNSError)

    def test_not_in_zone_093(self) -> None:
        """
        ``NotInZone(server_name=..., zone_name=...)`` is a ``ValueError``
        and a ``DNSError`` with both attributes.
        """
        error = txacme.errors.NotInZone(
            server_name="_acme-challenge.www.example.org", zone_name="example.com"
        )
        self.assertEqual(error.server_name, "_acme-challenge.www.example.org")
        self.assertEqual(error.zone_name, "example.com")
        self.assertIsInstance(error, ValueError)
        self.assertIsInstance(error, DNSError)
        self.assertIn("not in zone example.com", str(error))
        self.assertIs(txacme.challenges.NotInZone, txacme.errors.NotInZone)


class PowerDNSTests(ResponderTestCase):
    """
    libcloud's PowerDNS driver, with :class:`FakePowerDNSConnection`: the
    PowerDNS record format and whole record sets.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pdns_driver, self.api = _powerdns_driver([ZONE])

    def test_format(self) -> None:
        """
        One ``PATCH`` replacing the TXT set at the fully qualified name
        (final dot), with the value quoted and the TTL.
        """
        responder = self.responder(self.pdns_driver, ttl=90)
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.assertEqual(
            self.api.patches,
            [
                {
                    "name": RECORD + ".",
                    "type": "TXT",
                    "changetype": "REPLACE",
                    "ttl": 90,
                    "records": [
                        {"content": f'"{_value(response)}"', "disabled": False}
                    ],
                }
            ],
        )

    def test_default_format_refused(self) -> None:
        """
        With libcloud's convention instead (relative name, bare value),
        PowerDNS refuses the record (as PowerDNS 4.7 does: HTTP 422), and
        the start fails with ``DNSProviderError`` saying why.
        """
        responder = self.responder(self.pdns_driver, record_format=DEFAULT)
        challenge, response = _challenge()
        error = self.errorOf(
            self.start(responder, NAME, challenge, response), DNSProviderError
        )
        self.assertEqual(error.operation, "create_record")
        self.assertIn("not canonical", str(error))

    def test_wildcard_and_base_name(self) -> None:
        """
        Two values at one name: the set holds both; stopping one rewrites
        the set with the other; stopping the last deletes the set.
        """
        responder = self.responder(self.pdns_driver)
        first, first_response = _challenge()
        second, second_response = _challenge()
        self.successResultOf(
            self.start(responder, "*.example.test", first, first_response)
        )
        self.successResultOf(
            self.start(responder, "example.test", second, second_response)
        )
        values = [
            f'"{_value(first_response, ZONE)}"',
            f'"{_value(second_response, ZONE)}"',
        ]
        self.assertEqual(self.api.txt("_acme-challenge.example.test"), sorted(values))
        self.successResultOf(
            self.stop(responder, "*.example.test", first, first_response)
        )
        self.assertEqual(self.api.txt("_acme-challenge.example.test"), [values[1]])
        self.successResultOf(
            self.stop(responder, "example.test", second, second_response)
        )
        self.assertEqual(self.api.txt("_acme-challenge.example.test"), [])
        self.assertEqual(self.api.patches[-1]["changetype"], "DELETE")

    def test_others_values_kept(self) -> None:
        """
        A value already in the set (someone else's) stays through start
        and stop.
        """
        self.api.rrsets[ZONE + "."][(RECORD + ".", "TXT")] = (60, ['"theirs"'])
        responder = self.responder(self.pdns_driver)
        challenge, response = _challenge()
        self.successResultOf(self.start(responder, NAME, challenge, response))
        self.assertEqual(
            self.api.txt(RECORD), sorted(['"theirs"', f'"{_value(response)}"'])
        )
        self.successResultOf(self.stop(responder, NAME, challenge, response))
        self.assertEqual(self.api.txt(RECORD), ['"theirs"'])

    def test_api_error(self) -> None:
        """
        An HTTP error of the API is ``DNSProviderError`` with its message.
        """
        del self.api.rrsets[ZONE + "."]
        self.api.rrsets["other.test."] = {}
        responder = self.responder(self.pdns_driver, zone_name="other.test")
        challenge, response = _challenge()

        def refuse(*args: object, **kwargs: object) -> None:
            raise BaseHTTPError(500, "Internal Server Error")

        self.pdns_driver.connection.request = refuse
        error = self.errorOf(
            self.start(responder, "www.other.test", challenge, response),
            DNSProviderError,
        )
        self.assertEqual(error.provider, "PowerDNS")
        self.assertIn("Internal Server Error", str(error))


class FormatTests(TypedAssertions, RealReactorTestCase):
    """
    :class:`LibcloudRecordFormat` and TXT data.
    """

    def test_known_formats(self) -> None:
        """
        PowerDNS has its format; any other driver libcloud's convention.
        """
        driver, _ = _powerdns_driver([ZONE])
        self.assertIs(LibcloudRecordFormat.for_driver(driver), POWERDNS)
        self.assertIs(LibcloudRecordFormat.POWERDNS, POWERDNS)
        self.assertIs(
            LibcloudRecordFormat.for_driver(DummyDNSDriver("u", "p")), DEFAULT
        )
        self.assertIs(LibcloudRecordFormat.DEFAULT, DEFAULT)

    def test_names(self) -> None:
        """
        Relative to the zone (whatever its final dot), or fully qualified
        with the final dot.
        """
        self.assertEqual(
            DEFAULT.record_name(RECORD, "example.test."), "_acme-challenge.www"
        )
        self.assertEqual(
            DEFAULT.record_name(RECORD, "EXAMPLE.test"), "_acme-challenge.www"
        )
        self.assertEqual(POWERDNS.record_name(RECORD, "example.test"), RECORD + ".")

    def test_data(self) -> None:
        """
        Bare or quoted data; ``extra`` with the TTL, or none.
        """
        self.assertEqual(DEFAULT.data("abc"), "abc")
        self.assertEqual(POWERDNS.data("abc"), '"abc"')
        self.assertEqual(DEFAULT.extra(60), {"ttl": 60})
        self.assertIs(LibcloudRecordFormat(ttl_extra=False).extra(60), None)

    def test_txt_value(self) -> None:
        """
        Data bare, quoted, in several quoted strings, or with escapes, is
        read as the value a validator sees.
        """
        self.assertEqual(txt_value("abc"), "abc")
        self.assertEqual(txt_value('"abc"'), "abc")
        self.assertEqual(txt_value(' "ab" "c" '), "abc")
        self.assertEqual(txt_value('"a\\"b"'), 'a"b')
        self.assertEqual(txt_value('"'), '"')


class ThreadTests(TypedAssertions, RealReactorTestCase):
    """
    With the responder's own thread, on the real reactor.
    """

    timeout = 20

    def test_calls_in_a_daemon_thread(self) -> Deferred[None]:
        """
        ``create`` makes a responder whose driver calls run in one daemon
        thread other than the reactor's, the same for every call; the
        outcome arrives in the reactor thread.
        """
        from twisted.internet import reactor as global_reactor

        reactor: Any = global_reactor
        driver = PerValueDriver()
        driver.create_zone(ZONE)
        responder = LibcloudDNSResponder.from_driver(reactor, driver, ZONE, 0.0)
        self.addCleanup(responder._thread_pool.quit)
        challenge, response = _challenge()
        main = threading.current_thread()

        async def test() -> None:
            await responder.start_responding(NAME, challenge, response)
            self.assertIs(threading.current_thread(), main)
            await responder.stop_responding(NAME, challenge, response)
            self.assertEqual(driver.txt(RECORD), [])
            threads = set(driver.threads)
            self.assertEqual(len(threads), 1)
            (thread,) = threads
            self.assertIsNot(thread, main)
            self.assertTrue(thread.daemon)

        return Deferred.fromCoroutine(test())


class PropagationTests(TypedAssertions, RealReactorTestCase):
    """
    With ``nameservers``, start waits until each serves the value (a
    :class:`FakeDNSServer` here, fed by the driver as a provider's
    nameservers would be).
    """

    timeout = 20

    def setUp(self) -> None:
        from twisted.internet import reactor

        from tests import test_dns as dns_support

        self.reactor: Any = reactor
        self.server = dns_support.FakeDNSServer(
            {"example.test.": dns_support.EXAMPLE_ZONE}
        ).listen(reactor)
        self.addCleanup(lambda: Deferred.fromCoroutine(self.server.stop()))
        self.driver = PerValueDriver()
        self.driver.create_zone(ZONE)

    def publish(self, name: str, value: str) -> None:
        """Serve ``value`` at ``name`` on the fake nameserver."""
        zone = self.server.zones[dns.name.from_text(ZONE)]
        rdataset = zone.find_rdataset(
            dns.name.from_text(name), dns.rdatatype.TXT, create=True
        )
        rdataset.add(
            dns.rdtypes.ANY.TXT.TXT(
                dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode("ascii")]
            ),
            60,
        )

    def responder(self, **options: Any) -> LibcloudDNSResponder:
        responder = LibcloudDNSResponder.from_driver(
            self.reactor,
            self.driver,
            ZONE,
            3600.0,
            nameservers=[self.server.address],
            propagation_interval=0.05,
            query_timeout=0.5,
            **options,
        )
        self.addCleanup(responder._thread_pool.quit)
        return responder

    def test_waits_until_served(self) -> Deferred[None]:
        """
        Start fires once the nameserver serves the value, not before, and
        without waiting ``settle_delay`` (an hour here).
        """
        from twisted.internet.task import deferLater

        responder = self.responder(propagation_timeout=10.0)
        challenge, response = _challenge()
        value = _value(response)

        async def test() -> None:
            started = responder.start_responding(NAME, challenge, response)
            await deferLater(self.reactor, 0.3)
            self.assertFalse(started.called)
            self.assertEqual(self.driver.txt(RECORD), [value])
            self.publish(RECORD, value)
            await started
            queries = [
                message
                for _, message in self.server.requests
                if message.question and message.question[0].rdtype == dns.rdatatype.TXT
            ]
            self.assertTrue(len(queries) > 1)
            await responder.stop_responding(NAME, challenge, response)

        return Deferred.fromCoroutine(test())

    def test_propagation_timeout(self) -> Deferred[None]:
        """
        A nameserver that never serves the value fails the start with
        ``PropagationTimeout`` after ``propagation_timeout``; stop removes
        the record.
        """
        responder = self.responder(propagation_timeout=0.3)
        challenge, response = _challenge()

        async def test() -> None:
            try:
                await responder.start_responding(NAME, challenge, response)
            except PropagationTimeout as error:
                self.assertEqual(error.record_name, RECORD)
                self.assertIn("127.0.0.1:", str(error))
            else:
                self.fail("no PropagationTimeout")
            await responder.stop_responding(NAME, challenge, response)
            self.assertEqual(self.driver.txt(RECORD), [])

        return Deferred.fromCoroutine(test())


class LazyImportTests(TypedAssertions, RealReactorTestCase):
    """
    :mod:`txacme.challenges` imports libcloud only when its names are
    used, and works without it.
    """

    def test_names_exported(self) -> None:
        """
        With libcloud, both names are in ``__all__`` and are the classes of
        ``txacme.challenges._libcloud``.
        """
        from txacme.challenges import _libcloud

        self.assertIn("LibcloudDNSResponder", txacme.challenges.__all__)
        self.assertIn("LibcloudRecordFormat", txacme.challenges.__all__)
        self.assertIs(
            txacme.challenges.LibcloudDNSResponder, _libcloud.LibcloudDNSResponder
        )

    def test_unknown_name(self) -> None:
        """
        Another missing name is still an ``AttributeError``.
        """
        with self.assertRaises(AttributeError):
            txacme.challenges.NoSuchResponder  # noqa: B018

    def test_without_libcloud(self) -> None:
        """
        With libcloud unimportable, ``txacme.challenges`` imports, leaves
        the names out of ``__all__``, and ``from txacme.challenges import
        LibcloudDNSResponder`` raises ``ImportError`` naming the extra (so
        that txacme 0.9.3's tests skip).
        """
        code = (
            "import sys\n"
            "sys.modules['libcloud'] = None\n"
            "import txacme.challenges as c\n"
            "assert 'LibcloudDNSResponder' not in c.__all__\n"
            "try:\n"
            "    from txacme.challenges import LibcloudDNSResponder\n"
            "except ImportError as error:\n"
            "    print(error)\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env=_environment(),
            check=False,
        )
        self.assertEqual(completed.returncode, 0, completed.stderr)
        self.assertIn("pip install 'txacme[libcloud]'", completed.stdout)
