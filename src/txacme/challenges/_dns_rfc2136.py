"""
The work of :class:`~txacme.challenges.RFC2136Responder`: CNAME and zone
discovery, RFC 2136 updates signed with TSIG (RFC 8945), and the wait for
the authoritative servers.  dnspython builds and checks the messages;
:mod:`txacme.challenges._dns_transport` carries them.

Imported only when a responder is made, so that :mod:`txacme.challenges`
imports without dnspython (the ``dns`` extra).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.tsig
import dns.update
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IReactorUDP
from twisted.logger import Logger

from txacme.challenges._dns_errors import (
    Address,
    DNSAuthenticationError,
    DNSLookupError,
    DNSUpdateError,
    ZoneNotFound,
    describe_address,
    parse_address,
    rcode_text,
)
from txacme.challenges._dns_propagation import PAYLOAD, wait_until_served
from txacme.challenges._dns_transport import exchange_tcp, exchange_udp

if TYPE_CHECKING:
    from txacme.challenges._dns import RFC2136Responder

_log = Logger()

#: How many CNAMEs are followed from ``_acme-challenge.<name>``.
MAX_CNAME_HOPS = 8


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _rrset(
    section: Sequence[dns.rrset.RRset], name: dns.name.Name, rdtype: int
) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == rdtype:
            return rrset
    return None


def _tsig_key(name: str, secret: str | bytes, algorithm: str) -> dns.tsig.Key:
    """
    The TSIG key; ``secret`` is base64 text (as in BIND's configuration)
    or the raw bytes.

    :raises ValueError: For an unknown algorithm.
    """
    algorithm_name = dns.name.from_text(algorithm)
    if algorithm_name not in dns.tsig.mac_sizes:
        known = ", ".join(sorted(_text(known) for known in dns.tsig.mac_sizes))
        raise ValueError(f"unknown TSIG algorithm {algorithm!r} (known: {known})")
    return dns.tsig.Key(dns.name.from_text(name), secret, algorithm_name)


def _addresses(
    mapping: Mapping[str, Sequence[Address]] | None,
) -> dict[dns.name.Name, list[Address]]:
    if not mapping:
        return {}
    return {
        dns.name.from_text(name): [parse_address(address) for address in addresses]
        for name, addresses in mapping.items()
    }


@define
class _Record:
    """
    One value being responded with, keyed by (record name, value).

    :ivar zone: The zone updated, once the update may have been sent.
    :ivar owner: The name the TXT record was added at (the CNAME target).
    :ivar starting: The start in progress, if any.
    :ivar refused: Whether the server answered the update with an error
        (so that nothing was added and there is nothing to delete).
    """

    zone: dns.name.Name | None = None
    owner: dns.name.Name | None = None
    starting: Deferred[None] | None = None
    refused: bool = False


@define
class RFC2136Engine:
    """
    The work of :class:`~txacme.challenges.RFC2136Responder`, which holds
    the configuration (see its docstring for the steps).
    """

    config: RFC2136Responder
    reactor: IReactorTime = field(init=False, repr=False)
    server: Address = field(init=False)
    _key: dns.tsig.Key = field(init=False, repr=False)
    _overrides: dict[dns.name.Name, list[Address]] = field(init=False, repr=False)
    _udp: IReactorUDP = field(init=False, repr=False)
    _tcp: IReactorTCP = field(init=False, repr=False)
    _records: dict[tuple[str, str], _Record] = field(
        init=False, repr=False, factory=dict
    )

    def __attrs_post_init__(self) -> None:
        config = self.config
        self._key = _tsig_key(
            config.tsig_key_name, config.tsig_secret, config.tsig_algorithm
        )
        self._overrides = _addresses(config.nameserver_addresses)
        self._udp = IReactorUDP(config.reactor)
        self._tcp = IReactorTCP(config.reactor)
        self.reactor = config.reactor
        self.server = config.server

    def start(self, record_name: str, value: str) -> Deferred[None]:
        """
        Add ``value`` at ``record_name`` (following CNAMEs) and wait for
        the authoritative servers.
        """
        record = _Record()
        self._records[(record_name, value)] = record
        starting = Deferred.fromCoroutine(self._start(record, record_name, value))
        if not starting.called:
            record.starting = starting

            def done(result: object) -> object:
                record.starting = None
                return result

            starting.addBoth(done)
        return starting

    def stop(self, record_name: str, value: str) -> Deferred[None]:
        """
        Delete what :meth:`start` added for ``(record_name, value)``, once.
        """
        record = self._records.pop((record_name, value), None)
        return Deferred.fromCoroutine(self._stop(record, value))

    # -- the steps ------------------------------------------------------------

    async def _start(self, record: _Record, record_name: str, value: str) -> None:
        name = dns.name.from_text(record_name)
        owner = await self._follow_cnames(name)
        zone = await self._find_zone(owner)
        record.owner = owner
        record.zone = zone
        update = dns.update.UpdateMessage(zone, keyring=self._key)
        update.add(owner, self.config.ttl, _txt(value))
        try:
            await self._update(update, zone, owner)
        except DNSUpdateError:
            # An answer, refusing: the zone is as it was.
            record.refused = True
            raise
        _log.info(
            "dns-01: added TXT {record} (zone {zone}) at {server}",
            record=_text(owner),
            zone=_text(zone),
            server=describe_address(self.server),
        )
        if self.config.check_propagation:
            await self._wait_for_propagation(zone, owner, value)

    async def _stop(self, record: _Record | None, value: str) -> None:
        if record is None:
            return
        if record.starting is not None:
            starting = record.starting
            starting.cancel()
            # The start's own caller sees its failure.
            with contextlib.suppress(Exception):
                await starting
        if record.zone is None or record.owner is None or record.refused:
            # The update was never sent, or the server refused it.
            return
        update = dns.update.UpdateMessage(record.zone, keyring=self._key)
        update.delete(record.owner, _txt(value))
        await self._update(update, record.zone, record.owner)
        _log.info(
            "dns-01: deleted TXT {record} value {value} (zone {zone})",
            record=_text(record.owner),
            value=value,
            zone=_text(record.zone),
        )

    async def _query(
        self,
        server: Address,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        *,
        recursion: bool = False,
        attempts: int | None = None,
    ) -> dns.message.Message:
        request = dns.message.make_query(name, rdtype, use_edns=0, payload=PAYLOAD)
        if not recursion:
            request.flags &= ~dns.flags.RD
        answer = await exchange_udp(
            self._udp,
            self.reactor,
            self._tcp,
            server,
            request,
            timeout=self.config.query_timeout,
            attempts=self.config.query_attempts if attempts is None else attempts,
        )
        return answer.message

    async def _follow_cnames(self, name: dns.name.Name) -> dns.name.Name:
        """
        The name at the end of the CNAME chain starting at ``name``.
        """
        seen = [name]
        for _ in range(MAX_CNAME_HOPS + 1):
            answer = await self._query(self.server, name, dns.rdatatype.CNAME)
            _raise_for_lookup(answer, name, "CNAME", self.server)
            cname = _rrset(answer.answer, name, dns.rdatatype.CNAME)
            if cname is None:
                return name
            target: dns.name.Name = cname[0].target
            if target in seen:
                chain = " -> ".join(_text(each) for each in [*seen, target])
                raise DNSLookupError(_text(seen[0]), f"CNAME loop: {chain}")
            _log.debug(
                "dns-01: {name} is a CNAME for {target}",
                name=_text(name),
                target=_text(target),
            )
            seen.append(target)
            name = target
        raise DNSLookupError(
            _text(seen[0]), f"more than {MAX_CNAME_HOPS} CNAMEs from {_text(seen[0])}"
        )

    async def _find_zone(self, name: dns.name.Name) -> dns.name.Name:
        """
        The zone of ``name`` on ``server``: the closest enclosing name with
        an SOA record.  A negative answer's SOA (RFC 2308) names the zone
        at once.
        """
        candidate = name
        while candidate != dns.name.root:
            answer = await self._query(self.server, candidate, dns.rdatatype.SOA)
            rcode = answer.rcode()
            if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                if _rrset(answer.answer, candidate, dns.rdatatype.SOA) is not None:
                    return candidate
                if _rrset(answer.answer, candidate, dns.rdatatype.CNAME) is None:
                    for rrset in answer.authority:
                        if (
                            rrset.rdtype == dns.rdatatype.SOA
                            and candidate.is_subdomain(rrset.name)
                            and rrset.name != dns.name.root
                        ):
                            zone: dns.name.Name = rrset.name
                            return zone
            elif rcode != dns.rcode.REFUSED:
                raise DNSLookupError(
                    _text(candidate),
                    f"SOA lookup of {_text(candidate)} at "
                    f"{describe_address(self.server)}: RCODE {rcode_text(rcode)}",
                    rcode,
                )
            candidate = candidate.parent()
        raise ZoneNotFound(
            name=_text(name),
            message=(
                f"{describe_address(self.server)} is authoritative for no zone "
                f"containing {_text(name)} (no SOA found up to the root)"
            ),
        )

    async def _update(
        self,
        update: dns.update.UpdateMessage,
        zone: dns.name.Name,
        owner: dns.name.Name,
    ) -> None:
        """
        Send ``update`` over TCP and check its answer: NOERROR, signed with
        the key.
        """
        answer = await exchange_tcp(
            self._tcp,
            self.reactor,
            self.server,
            update,
            timeout=self.config.update_timeout,
        )
        rcode = answer.message.rcode()
        tsig_error = answer.message.tsig_error
        details: dict[str, Any] = {
            "rcode": rcode,
            "tsig_error": tsig_error,
            "zone": _text(zone),
            "record_name": _text(owner),
            "server": self.server,
        }
        if tsig_error:
            raise DNSAuthenticationError(**details)
        if rcode != dns.rcode.NOERROR:
            raise DNSUpdateError(**details)
        # Only a success needs proving: it must be signed with our key, for
        # the request's MAC (RFC 8945 §5.3).
        try:
            dns.message.from_wire(
                answer.wire,
                keyring=self._key,
                request_mac=update.mac,
            )
        except Exception as error:
            raise DNSAuthenticationError(
                **details,
                message=(
                    "the server's answer is not signed with the key "
                    f"({error.__class__.__name__}: {error})"
                ),
            ) from None

    async def _nameservers(self, zone: dns.name.Name) -> dict[str, Address]:
        """
        The authoritative servers of ``zone``: each address of each NS
        target, described as ``"ns1.example.com [192.0.2.1]:53"``.
        """
        answer = await self._query(self.server, zone, dns.rdatatype.NS)
        _raise_for_lookup(answer, zone, "NS", self.server)
        ns = _rrset(answer.answer, zone, dns.rdatatype.NS)
        if ns is None:
            raise DNSLookupError(
                _text(zone),
                f"no NS records for zone {_text(zone)} at "
                f"{describe_address(self.server)}",
            )
        servers: dict[str, Address] = {}
        for target in sorted(rdata.target for rdata in ns):
            addresses = self._overrides.get(target)
            if addresses is None:
                addresses = await self._nameserver_addresses(target, answer)
            for address in addresses:
                servers[f"{_text(target)} {describe_address(address)}"] = address
        return servers

    async def _nameserver_addresses(
        self, target: dns.name.Name, referral: dns.message.Message
    ) -> list[Address]:
        hosts: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            glue = _rrset(referral.additional, target, rdtype)
            if glue is None:
                lookup = await self._query(self.server, target, rdtype, recursion=True)
                glue = _rrset(lookup.answer, target, rdtype)
            if glue is not None:
                hosts.extend(rdata.address for rdata in glue)
        if not hosts:
            raise DNSLookupError(
                _text(target),
                f"no address for nameserver {_text(target)} at "
                f"{describe_address(self.server)}; give it in nameserver_addresses",
            )
        return [(host, self.config.nameserver_port) for host in hosts]

    async def _wait_for_propagation(
        self, zone: dns.name.Name, owner: dns.name.Name, value: str
    ) -> None:
        """
        Ask every authoritative server of ``zone`` for the TXT record until
        all of them answer ``value``.

        :raises PropagationTimeout: After ``propagation_timeout`` seconds.
        """
        servers = await self._nameservers(zone)
        await wait_until_served(
            self.reactor,
            self._udp,
            self._tcp,
            servers,
            owner,
            value,
            interval=self.config.propagation_interval,
            timeout=self.config.propagation_timeout,
            query_timeout=self.config.query_timeout,
        )


def _txt(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(
        dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode("ascii")]
    )


def _raise_for_lookup(
    answer: dns.message.Message, name: dns.name.Name, what: str, server: Address
) -> None:
    rcode = answer.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED):
        raise DNSLookupError(
            _text(name),
            f"{what} lookup of {_text(name)} at {describe_address(server)}: "
            f"RCODE {rcode_text(rcode)}",
            rcode,
        )
