"""
The exceptions of the dns-01 responders (re-exported by
:mod:`txacme.challenges`), and the small helpers the responders share.
None of it needs dnspython.

The root of the family, :exc:`DNSError`, with :exc:`DNSLookupError`,
:exc:`ZoneNotFound` and :exc:`NotInZone`, is defined in
:mod:`txacme.errors` (txacme 0.9 had the last two there).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence

from acme import challenges
from josepy import b64

from txacme.errors import DNSError, DNSLookupError, NotInZone, ZoneNotFound

__all__ = [
    "DNSAuthenticationError",
    "DNSError",
    "DNSLookupError",
    "DNSProviderError",
    "DNSServerUnreachable",
    "DNSTimeout",
    "DNSUpdateError",
    "NotInZone",
    "PropagationTimeout",
    "ZoneNotFound",
]

#: Address of a DNS server: (IP address, port).
Address = tuple[str, int]


def parse_address(server: Sequence[object]) -> Address:
    """
    ``(host, port)`` with ``host`` an IP address: the responder sends
    datagrams to it and resolves no host name.

    :raises ValueError: If it is not.
    """
    host, port = server
    ipaddress.ip_address(str(host))
    return (str(host), int(str(port)))


def dns01_record(
    server_name: str, response: challenges.KeyAuthorizationChallengeResponse
) -> tuple[str, str]:
    """
    The TXT record that answers a dns-01 challenge (RFC 8555 §8.4).

    :param server_name: The identifier being validated; for a wildcard
        (``*.example.com``) the record is that of the base name.
    :param response: The challenge response (with ``key_authorization``).
    :returns: ``(record_name, value)``: the name without a final dot
        (``_acme-challenge.example.com``) and the base64url SHA-256 digest
        of the key authorization.
    """
    base_name = server_name.removeprefix("*.").rstrip(".")
    digest = hashlib.sha256(response.key_authorization.encode("utf-8")).digest()
    return (
        f"{challenges.DNS01.LABEL}.{base_name}",
        b64.b64encode(digest).decode("ascii"),
    )


def describe_address(address: Address) -> str:
    """
    ``host:port``, or ``[host]:port`` for an IPv6 address.
    """
    host, port = address
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


# DNS RCODEs (RFC 1035, RFC 2136) and TSIG errors (RFC 8945), by value;
# written out so that the errors need no DNS library.
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
YXDOMAIN = 6
YXRRSET = 7
NXRRSET = 8
NOTAUTH = 9
NOTZONE = 10
BADSIG = 16
BADKEY = 17
BADTIME = 18

_MNEMONICS: Mapping[int, str] = {
    NOERROR: "NOERROR",
    FORMERR: "FORMERR",
    SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN",
    NOTIMP: "NOTIMP",
    REFUSED: "REFUSED",
    YXDOMAIN: "YXDOMAIN",
    YXRRSET: "YXRRSET",
    NXRRSET: "NXRRSET",
    NOTAUTH: "NOTAUTH",
    NOTZONE: "NOTZONE",
    BADSIG: "BADSIG",
    BADKEY: "BADKEY",
    BADTIME: "BADTIME",
}


def rcode_text(rcode: int) -> str:
    """
    The mnemonic of a DNS RCODE or TSIG error (``REFUSED``, ``BADSIG``),
    or its number.
    """
    return _MNEMONICS.get(rcode, str(rcode))


class DNSServerUnreachable(DNSError):
    """
    A DNS server could not be reached: it refused the connection (or, over
    UDP, the host answered ICMP port unreachable), or closed it without an
    answer.

    :ivar server: The server, ``(address, port)``.
    :ivar reason: What happened, in words.
    """

    def __init__(self, server: Address, reason: str) -> None:
        super().__init__(f"DNS server {describe_address(server)}: {reason}")
        self.server = server
        self.reason = reason


class DNSTimeout(DNSServerUnreachable):
    """
    A DNS server did not answer within its time bound (every UDP
    retransmission included).

    :ivar seconds: How long the responder waited in all.
    """

    def __init__(self, server: Address, seconds: float) -> None:
        super().__init__(server, f"no answer within {seconds:g} s")
        self.seconds = seconds


_TSIG_HINTS: Mapping[int, str] = {
    BADSIG: (
        "the server rejected the TSIG signature: the secret (or the algorithm) "
        "differs from the server's key of that name"
    ),
    BADKEY: (
        "the server does not know this TSIG key: check the key name and "
        "algorithm against its configuration"
    ),
    BADTIME: (
        "the server rejected the TSIG time: the clocks of this host and the "
        "server differ by more than the allowed fudge"
    ),
}

_RCODE_HINTS: Mapping[int, str] = {
    REFUSED: (
        "the update was refused: the key's update-policy does not allow "
        "this name and type, or updates are not allowed for the zone"
    ),
    NOTAUTH: "the server is not authoritative for the zone",
    NOTZONE: "the record name is not within the zone",
    SERVFAIL: "the server failed to apply the update",
    NOTIMP: "the server does not implement dynamic updates",
    FORMERR: "the server could not parse the update",
    YXDOMAIN: "a prerequisite of the update failed",
    YXRRSET: "a prerequisite of the update failed",
    NXRRSET: "a prerequisite of the update failed",
    NXDOMAIN: "a prerequisite of the update failed",
}


class DNSUpdateError(DNSError):
    """
    The server answered an RFC 2136 update with an error RCODE.

    :ivar rcode: The RCODE (an ``int``; compare with ``dns.rcode``), for
        example ``REFUSED`` (5) when the key's update-policy does not allow
        the name, or ``NOTAUTH`` (9) when the TSIG key is wrong.
    :ivar tsig_error: The error of the answer's TSIG record (``BADSIG``
        16, ``BADKEY`` 17, ``BADTIME`` 18), ``0``, or ``None`` if the
        answer was not signed.
    :ivar zone: The zone updated.
    :ivar record_name: The TXT record's name.
    :ivar server: The server, ``(address, port)``.
    """

    def __init__(
        self,
        *,
        rcode: int,
        tsig_error: int | None,
        zone: str,
        record_name: str,
        server: Address,
        message: str | None = None,
    ) -> None:
        if message is None:
            message = _TSIG_HINTS.get(tsig_error or 0) or _RCODE_HINTS.get(
                rcode, "the update failed"
            )
        details = f"RCODE {rcode_text(rcode)}"
        if tsig_error:
            details += f", TSIG error {rcode_text(tsig_error)}"
        super().__init__(
            f"DNS update of TXT {record_name} in zone {zone} at "
            f"{describe_address(server)}: {details}: {message}"
        )
        self.rcode = rcode
        self.tsig_error = tsig_error
        self.zone = zone
        self.record_name = record_name
        self.server = server


class DNSAuthenticationError(DNSUpdateError):
    """
    TSIG failed: the server rejected the key (``NOTAUTH`` with ``BADSIG``,
    ``BADKEY`` or ``BADTIME``), or its successful answer was not signed
    with the key.
    """


class PropagationTimeout(DNSError):
    """
    Not every authoritative server of the zone answered the TXT value within
    the propagation timeout.

    :ivar record_name: The TXT record's name (after following CNAMEs).
    :ivar value: The TXT value waited for.
    :ivar missing: For each server still without the value, its name and
        address (``"ns1.example.com [192.0.2.1]:53"``) mapped to what it
        answered last.
    :ivar seconds: The propagation timeout.
    """

    def __init__(
        self,
        record_name: str,
        value: str,
        missing: Mapping[str, str],
        seconds: float,
    ) -> None:
        servers = "; ".join(f"{server}: {last}" for server, last in missing.items())
        super().__init__(
            f"TXT {record_name} = {value!r} not served by every authoritative "
            f"server after {seconds:g} s; missing at {servers}"
        )
        self.record_name = record_name
        self.value = value
        self.missing = dict(missing)
        self.seconds = seconds


class DNSProviderError(DNSError):
    """
    A DNS provider's API, called through an apache-libcloud driver, failed:
    it refused the credentials, answered with an error, could not be
    reached, or did not answer in time.  The driver's exception, if any, is
    ``__cause__``.

    :ivar provider: The driver's name (``"PowerDNS"``, ``"Route53 DNS"``).
    :ivar operation: What was being done: ``"list_zones"``,
        ``"list_records"``, ``"create_record"``, ``"delete_record"`` or
        ``"write_rrset"``.
    :ivar record_name: The TXT record's name, if the operation was for one.
    :ivar reason: What went wrong, in words.
    """

    def __init__(
        self,
        provider: str,
        operation: str,
        record_name: str | None,
        reason: str,
    ) -> None:
        subject = f" for TXT {record_name}" if record_name is not None else ""
        super().__init__(f"DNS provider {provider}: {operation}{subject}: {reason}")
        self.provider = provider
        self.operation = operation
        self.record_name = record_name
        self.reason = reason
