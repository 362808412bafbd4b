"""
The propagation check of the dns-01 responders: ask each authoritative
server of a zone for a TXT record until every one of them answers the
value, within a time bound.

:class:`~txacme.challenges.RFC2136Responder` finds the servers from the
zone's NS records; :class:`~txacme.challenges.LibcloudDNSResponder` is
given their addresses.  Needs dnspython (the ``dns`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TXT
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IReactorUDP
from twisted.internet.task import deferLater
from twisted.logger import Logger

from txacme.challenges._dns_errors import (
    Address,
    DNSServerUnreachable,
    PropagationTimeout,
    rcode_text,
)
from txacme.challenges._dns_transport import exchange_udp

__all__ = ["PAYLOAD", "txt_values", "wait_until_served"]

_log = Logger()

#: The EDNS payload size of lookups (the DNS Flag Day 2020 value).
PAYLOAD = 1232


def txt_values(answer: dns.message.Message, name: dns.name.Name) -> set[str]:
    """
    The TXT values at ``name`` in an answer section (each record's strings
    joined, as RFC 8555 validators read them).
    """
    values: set[str] = set()
    for rrset in answer.answer:
        if rrset.name == name and rrset.rdtype == dns.rdatatype.TXT:
            for rdata in rrset:
                assert isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
                values.add(b"".join(rdata.strings).decode("utf-8", "replace"))
    return values


async def wait_until_served(
    reactor: IReactorTime,
    udp: IReactorUDP,
    tcp: IReactorTCP,
    servers: Mapping[str, Address],
    owner: dns.name.Name,
    value: str,
    *,
    interval: float,
    timeout: float,
    query_timeout: float,
) -> None:
    """
    Ask every server of ``servers`` for the TXT records at ``owner`` until
    all of them answer ``value`` among them.

    Each round asks every server still missing the value once (UDP, no
    recursion, one transmission of ``query_timeout`` seconds); rounds are
    ``interval`` seconds apart.

    :param servers: The authoritative servers, by description (shown in
        :exc:`PropagationTimeout`), e.g. ``"ns1.example.com
        [192.0.2.1]:53"``.
    :raises PropagationTimeout: If some server did not answer the value
        within ``timeout`` seconds (the wait ends by ``timeout`` plus one
        ``query_timeout``).
    """
    missing = dict(servers)
    started = reactor.seconds()
    last: dict[str, str] = {}
    while True:
        checks = [
            Deferred.fromCoroutine(
                _serves(reactor, udp, tcp, address, owner, value, query_timeout)
            )
            for address in missing.values()
        ]
        outcomes: list[str | None] = await gatherResults(checks)
        for description, outcome in zip(list(missing), outcomes, strict=True):
            if outcome is None:
                del missing[description]
                last.pop(description, None)
            else:
                last[description] = outcome
        if not missing:
            _log.info(
                "dns-01: TXT {record} served by every authoritative server",
                record=owner.to_text(omit_final_dot=True),
            )
            return
        waited = reactor.seconds() - started
        if waited + interval > timeout:
            raise PropagationTimeout(
                owner.to_text(omit_final_dot=True), value, last, timeout
            )
        await deferLater(reactor, interval)


async def _serves(
    reactor: IReactorTime,
    udp: IReactorUDP,
    tcp: IReactorTCP,
    server: Address,
    owner: dns.name.Name,
    value: str,
    query_timeout: float,
) -> str | None:
    """
    ``None`` if ``server`` answers ``value`` among the TXT records at
    ``owner``, else what it answered.
    """
    request = dns.message.make_query(
        owner, dns.rdatatype.TXT, use_edns=0, payload=PAYLOAD
    )
    request.flags &= ~dns.flags.RD
    try:
        answer = (
            await exchange_udp(
                udp, reactor, tcp, server, request, timeout=query_timeout, attempts=1
            )
        ).message
    except DNSServerUnreachable as error:
        return error.reason
    if answer.rcode() != dns.rcode.NOERROR:
        return f"RCODE {rcode_text(answer.rcode())}"
    values = txt_values(answer, owner)
    if value in values:
        return None
    return f"TXT values {sorted(values)}"
