"""
dns-01 responders (RFC 8555 §8.4): a TXT record
``_acme-challenge.<name>`` holding the base64url SHA-256 digest of the key
authorization.

* :class:`RFC2136Responder` adds and deletes the record with RFC 2136
  dynamic updates signed with TSIG (RFC 8945), as BIND, Knot DNS, PowerDNS
  and others accept, and waits until every authoritative server of the
  zone serves it.  It needs dnspython (``pip install 'txacme[dns]'``),
  imported when a responder is made.
* :class:`CallableDNS01Responder` calls two functions of the application's
  (a DNS provider's API, for instance) to set and remove the record.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from acme import challenges
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from txacme.challenges._dns_errors import (
    Address,
    DNSAuthenticationError,
    DNSError,
    DNSLookupError,
    DNSServerUnreachable,
    DNSTimeout,
    DNSUpdateError,
    PropagationTimeout,
    ZoneNotFound,
    dns01_record,
    parse_address,
)
from txacme.interfaces import IResponder

if TYPE_CHECKING:
    from txacme.challenges._dns_rfc2136 import RFC2136Engine

__all__ = [
    "CallableDNS01Responder",
    "DNSAuthenticationError",
    "DNSError",
    "DNSLookupError",
    "DNSServerUnreachable",
    "DNSTimeout",
    "DNSUpdateError",
    "PropagationTimeout",
    "RFC2136Responder",
    "ZoneNotFound",
    "dns01_record",
]


def _engine(responder: RFC2136Responder) -> RFC2136Engine:
    try:
        from txacme.challenges._dns_rfc2136 import RFC2136Engine
    except ImportError as error:
        raise ImportError(
            f"RFC2136Responder needs dnspython ({error}): pip install 'txacme[dns]'"
        ) from error
    return RFC2136Engine(responder)


@implementer(IResponder)
@define
class RFC2136Responder:
    """
    A dns-01 responder that publishes the TXT record with RFC 2136 dynamic
    updates signed with TSIG (RFC 8945): the protocol BIND, Knot DNS,
    PowerDNS and others accept.

    :meth:`start_responding`:

    1. follows CNAMEs from ``_acme-challenge.<name>`` (at most eight), so
       that the record can live in a zone delegated for the purpose;
    2. finds the zone of the name it ends at: the closest enclosing name
       with an SOA record on ``server`` (SOA lookups walking up from the
       name; a negative answer's SOA names the zone at once);
    3. sends ``server`` one update adding one TXT record (the value, with
       ``ttl``) to the name's TXT records, signed with the key, and checks
       that the answer is NOERROR and signed with the key;
    4. waits until every authoritative server of the zone (the targets of
       its NS records, at the addresses of ``nameserver_addresses`` or of
       their A and AAAA records, asked of ``server``) answers the value,
       asking every ``propagation_interval`` seconds for at most
       ``propagation_timeout`` seconds.  This is also the self-check
       before the challenge is answered: a set-up that cannot work fails
       here, not at the CA.

    :meth:`stop_responding` sends one update deleting exactly that record
    (RFC 2136 §2.5.4), leaving the other values at the name (a wildcard
    and its base name share it) in place.

    Lookups go over UDP from a new ephemeral port each (``query_timeout``
    seconds per attempt, ``query_attempts`` attempts, repeated over TCP
    when the answer is truncated) and do not ask for recursion: they read
    ``server``'s own zones.  Updates go over TCP, within
    ``update_timeout`` seconds: a connection delivers the update and its
    signed answer or fails, so an update is never resent blind and a
    refused connection shows at once.

    The time bounds: a failing lookup takes at most ``query_timeout *
    query_attempts`` seconds, an update at most ``update_timeout``, and
    the propagation wait at most ``propagation_timeout`` plus one
    ``query_timeout``.

    :ivar reactor: The reactor: ``IReactorTime``, ``IReactorUDP`` and
        ``IReactorTCP``.
    :ivar server: The primary server that takes updates and answers the
        lookups, as ``(IP address, port)``.
    :ivar tsig_key_name: The TSIG key's name, as configured on the server.
    :ivar tsig_secret: The key's secret: base64 text as in BIND's ``key``
        statement (``tsig-keygen`` prints it), or the raw bytes.
    :ivar tsig_algorithm: ``hmac-sha256`` (the default), ``hmac-sha512``,
        ``hmac-sha384``, ``hmac-sha224``, ``hmac-sha1`` or ``hmac-md5``.
    :ivar ttl: The TXT record's TTL in seconds.
    :ivar query_timeout: Seconds to wait for each lookup answer.
    :ivar query_attempts: Transmissions of each lookup.
    :ivar update_timeout: Seconds for each update, connection included.
    :ivar propagation_interval: Seconds between two rounds of checks.
    :ivar propagation_timeout: Seconds to wait for every authoritative
        server to serve the value.
    :ivar nameserver_addresses: Addresses, ``(IP address, port)``, of
        nameservers by name (an NS target such as ``"ns1.example.com"``),
        used instead of looking them up: for servers on other ports, or
        not reachable at their public addresses from here.
    :ivar nameserver_port: The port of the nameservers whose addresses are
        looked up.
    :ivar check_propagation: Whether to wait for the authoritative servers
        at all (``False``: start fires once the update is applied).

    :raises ValueError: If ``server`` (or an address of
        ``nameserver_addresses``) is not an IP address, or the TSIG
        algorithm is unknown.
    :raises TypeError: If ``reactor`` lacks UDP or TCP.
    :raises ImportError: Without dnspython.
    """

    challenge_type = "dns-01"

    reactor: IReactorTime
    server: Address = field(converter=parse_address)
    tsig_key_name: str
    tsig_secret: str | bytes = field(repr=False)
    tsig_algorithm: str = "hmac-sha256"
    ttl: int = field(default=60, kw_only=True)
    query_timeout: float = field(default=3.0, kw_only=True)
    query_attempts: int = field(default=3, kw_only=True)
    update_timeout: float = field(default=10.0, kw_only=True)
    propagation_interval: float = field(default=2.0, kw_only=True)
    propagation_timeout: float = field(default=120.0, kw_only=True)
    nameserver_addresses: Mapping[str, Sequence[Address]] | None = field(
        default=None, kw_only=True
    )
    nameserver_port: int = field(default=53, kw_only=True)
    check_propagation: bool = field(default=True, kw_only=True)
    _engine: RFC2136Engine = field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._engine = _engine(self)

    def start_responding(
        self,
        server_name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        """
        Add the TXT record and wait until the zone's authoritative servers
        serve it (see the class docstring).

        :returns: A Deferred firing once every authoritative server answers
            the value.  Cancelling it stops the lookups, the update or the
            wait; :meth:`stop_responding` deletes a record that may have
            been added.
        :raises DNSServerUnreachable: If ``server`` could not be reached
            (:exc:`DNSTimeout`: it did not answer in time).
        :raises DNSLookupError: If the zone cannot be found on ``server``
            (:exc:`ZoneNotFound`), a lookup failed, or a CNAME chain loops
            or is too long.
        :raises DNSUpdateError: If the update was not applied
            (:exc:`DNSAuthenticationError`: the TSIG key was rejected, or
            the answer was not signed with it).
        :raises PropagationTimeout: If some authoritative server did not
            serve the value in time.
        """
        return self._engine.start(*dns01_record(server_name, response))

    def stop_responding(
        self,
        server_name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        """
        Delete the one TXT record :meth:`start_responding` added; a start
        still in progress is cancelled first.  Idempotent: for a challenge
        never started, or already stopped, nothing is sent.  After a start
        that failed once its update may have been sent, the delete is sent
        (deleting a record that is not there is no error in RFC 2136).

        :returns: A Deferred firing once the server confirmed the deletion.
        :raises DNSError: If the deletion failed (the kinds of
            :meth:`start_responding`).
        """
        return self._engine.stop(*dns01_record(server_name, response))


#: What :class:`CallableDNS01Responder`'s functions may return.
TXTFunction = Callable[[str, str], Awaitable[object] | None]


async def _maybe_await(result: Awaitable[object] | None) -> None:
    if result is not None and inspect.isawaitable(result):
        await result


@implementer(IResponder)
@define
class CallableDNS01Responder:
    """
    A dns-01 responder that calls the application's functions to set and
    remove the TXT record, for any DNS provider with an API.

    Each function is called as ``function(record_name, value)`` with the
    record's name without a final dot (``_acme-challenge.example.com``;
    the same for ``*.example.com``) and the TXT value, and may return
    ``None``, a :class:`~twisted.internet.defer.Deferred` or another
    awaitable (``async def`` functions work).

    * ``set_txt`` MUST add the value to the name's TXT records, keeping the
      others: a wildcard and its base name are validated with two values at
      one name, at the same time.
    * ``remove_txt`` MUST remove that value only, and SHOULD succeed if it
      is not there (it is called after a failed ``set_txt`` too).
    * ``propagation_check``, if given, is awaited after ``set_txt``; it
      should wait until the provider's authoritative servers serve the
      value, and fail if they do not in time.

    :ivar set_txt: Adds a TXT value.
    :ivar remove_txt: Removes a TXT value.
    :ivar propagation_check: Waits for the value to be served, or ``None``.
    """

    challenge_type = "dns-01"

    set_txt: TXTFunction
    remove_txt: TXTFunction
    propagation_check: TXTFunction | None = None
    _started: set[tuple[str, str]] = field(init=False, factory=set, repr=False)

    def start_responding(
        self,
        server_name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        """
        Call ``set_txt``, then ``propagation_check``.

        :returns: A Deferred firing once both are done; it fails with their
            failure.
        """
        record_name, value = dns01_record(server_name, response)
        self._started.add((record_name, value))

        async def start() -> None:
            await _maybe_await(self.set_txt(record_name, value))
            if self.propagation_check is not None:
                await _maybe_await(self.propagation_check(record_name, value))

        return Deferred.fromCoroutine(start())

    def stop_responding(
        self,
        server_name: str,
        challenge: challenges.DNS01,
        response: challenges.DNS01Response,
    ) -> Deferred[None]:
        """
        Call ``remove_txt`` once for a started challenge; do nothing for a
        challenge never started or already stopped.
        """
        record_name, value = dns01_record(server_name, response)
        if (record_name, value) not in self._started:
            return Deferred.fromCoroutine(_maybe_await(None))
        self._started.discard((record_name, value))
        return Deferred.fromCoroutine(_maybe_await(self.remove_txt(record_name, value)))
