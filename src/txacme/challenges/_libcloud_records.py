"""
How libcloud's DNS drivers want a dns-01 TXT record written
(:class:`LibcloudRecordFormat`), and the names and values compared
whatever the format.  Part of :mod:`txacme.challenges._libcloud`; imports
libcloud.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from attrs import frozen
from libcloud.dns.base import DNSDriver, Zone
from libcloud.dns.types import Provider

__all__ = [
    "DEFAULT",
    "POWERDNS",
    "POWERDNS_V1",
    "RECORD_FORMATS",
    "LibcloudRecordFormat",
    "RRsetWriter",
    "normal_name",
    "record_format_for",
    "same_name",
    "txt_value",
    "within_zone",
    "write_powerdns_rrset",
]

#: The PowerDNS HTTP API root libcloud's driver uses for ``api_version="v1"``.
POWERDNS_V1 = "/api/v1"


# -- names and values --------------------------------------------------------------


def normal_name(name: str) -> str:
    """A DNS name compared: lower case, without the final dot."""
    return name.rstrip(".").lower()


def within_zone(name: str, zone: str) -> bool:
    """Whether ``name`` is ``zone`` or below it."""
    name, zone = normal_name(name), normal_name(zone)
    return name == zone or name.endswith("." + zone)


_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def txt_value(data: str) -> str:
    """
    The value of TXT record data as a driver gives it: bare (``abc``), in
    double quotes (``"abc"``), or as several quoted strings (``"ab" "c"``),
    which a validator reads joined.
    """
    data = data.strip()
    if data.startswith('"') and data.endswith('"') and len(data) >= 2:
        strings = _QUOTED_STRING.findall(data)
        if strings:
            return "".join(re.sub(r"\\(.)", r"\1", string) for string in strings)
    return data


def same_name(provider_name: str, record_name: str, zone_domain: str) -> bool:
    """
    Whether a record name as the driver gives it, fully qualified or
    relative to the zone, is ``record_name``.
    """
    name = normal_name(provider_name)
    wanted = normal_name(record_name)
    return name == wanted or f"{name}.{normal_name(zone_domain)}" == wanted


# -- how drivers differ ------------------------------------------------------------

#: ``write_rrset(driver, zone, name, contents, ttl)``: see
#: :attr:`LibcloudRecordFormat.write_rrset`.
RRsetWriter = Callable[[DNSDriver, Zone, str, Sequence[str], int], object]


@frozen
class LibcloudRecordFormat:
    """
    How one libcloud DNS driver wants a dns-01 TXT record written.

    libcloud's drivers pass names and data through to their provider's API,
    and the APIs differ.  :class:`LibcloudDNSResponder` picks the format of
    a driver by the driver's ``type`` (:meth:`for_driver`); give your own as
    ``record_format`` for another.

    * :attr:`DEFAULT` (every driver but PowerDNS): names relative to
      the zone (``_acme-challenge.www`` in ``example.com``), bare values,
      ``extra={"ttl": ttl}``, one ``create_record`` per value and one
      ``delete_record`` per value.  This is libcloud's documented
      convention, and what the ``dummy`` driver and drivers keeping one
      record per value (Cloudflare, DigitalOcean, Linode...) take.
    * :attr:`POWERDNS` (``powerdns``, API ``v1``): fully qualified names
      with the final dot, values in double quotes, ``extra={"ttl": ttl}``;
      and since PowerDNS keeps one record set per name and type (the
      driver's ``create_record`` replaces the whole set and its
      ``delete_record`` deletes it), the whole set is written through
      PowerDNS's API (a ``PATCH`` with ``changetype`` ``REPLACE``, or
      ``DELETE`` for an empty set), through the driver's connection.

    Existing records are matched whatever the format: a name fully
    qualified or relative, with or without the final dot, in any case; a
    value bare or quoted.

    :ivar fully_qualified: Name records ``_acme-challenge.www.example.com.``
        (with the final dot) rather than relative to the zone.
    :ivar quoted: Write the value in double quotes, as the zone file
        syntax of TXT data has it.
    :ivar ttl_extra: Pass ``extra={"ttl": ttl}``.
    :ivar write_rrset: For drivers holding one record set per name and
        type: a function ``write_rrset(driver, zone, name, contents, ttl)``
        that makes ``contents`` (record data, formatted) the whole TXT set
        at ``name`` (the name as formatted here), deleting the set when
        ``contents`` is empty.  It runs in the responder's thread and may
        block.  ``None``: records are created and deleted one by one.
    """

    #: libcloud's convention: relative names, bare values, a TTL in
    #: ``extra``, one record per value.
    DEFAULT: ClassVar[LibcloudRecordFormat]

    #: PowerDNS (API v1): fully qualified names, quoted values, a TTL in
    #: ``extra``, whole record sets.
    POWERDNS: ClassVar[LibcloudRecordFormat]

    fully_qualified: bool = False
    quoted: bool = False
    ttl_extra: bool = True
    write_rrset: RRsetWriter | None = None

    @classmethod
    def for_driver(cls, driver: DNSDriver) -> LibcloudRecordFormat:
        """
        The format of ``driver``, by its ``type`` (libcloud's ``Provider``
        constant, the name ``get_driver`` takes): :attr:`POWERDNS` for
        ``powerdns``, :attr:`DEFAULT` for any other.
        """
        return record_format_for(driver)

    def record_name(self, record_name: str, zone_domain: str) -> str:
        """
        The name to give the driver for ``record_name`` (``_acme-challenge.
        www.example.com``) in the zone ``zone_domain``.
        """
        record_name = record_name.rstrip(".")
        if self.fully_qualified:
            return record_name + "."
        zone_length = len(normal_name(zone_domain))
        if len(record_name) == zone_length:
            return ""
        return record_name[: -zone_length - 1]

    def data(self, value: str) -> str:
        """The record data to give the driver for the TXT value."""
        return f'"{value}"' if self.quoted else value

    def extra(self, ttl: int) -> dict[str, object] | None:
        """The ``extra`` argument of ``create_record``."""
        return {"ttl": ttl} if self.ttl_extra else None


def write_powerdns_rrset(
    driver: DNSDriver, zone: Zone, name: str, contents: Sequence[str], ttl: int
) -> None:
    """
    Make ``contents`` the TXT record set at ``name`` in PowerDNS (API v1):
    one ``PATCH`` of the zone through the driver's connection, with
    ``changetype`` ``REPLACE`` (or ``DELETE`` when ``contents`` is empty).

    :raises ValueError: If the driver does not use API v1.
    """
    if getattr(driver, "api_root", None) != POWERDNS_V1:
        raise ValueError("the PowerDNS driver must use api_version='v1'")
    rrset: dict[str, object] = {"name": name, "type": "TXT"}
    if contents:
        rrset["changetype"] = "REPLACE"
        rrset["ttl"] = ttl
        rrset["records"] = [
            {"content": content, "disabled": False} for content in contents
        ]
    else:
        rrset["changetype"] = "DELETE"
    # libcloud's connection is not annotated.
    powerdns: Any = driver
    powerdns.connection.request(
        action=f"{POWERDNS_V1}/servers/{powerdns.ex_server}/zones/{zone.id}",
        data=json.dumps({"rrsets": [rrset]}),
        method="PATCH",
    )


DEFAULT = LibcloudRecordFormat.DEFAULT = LibcloudRecordFormat()
POWERDNS = LibcloudRecordFormat.POWERDNS = LibcloudRecordFormat(
    fully_qualified=True, quoted=True, write_rrset=write_powerdns_rrset
)

#: The formats of the drivers known to differ from ``DEFAULT``, by
#: ``driver.type``.
RECORD_FORMATS: Mapping[str, LibcloudRecordFormat] = {
    Provider.POWERDNS: POWERDNS,
}


def record_format_for(driver: DNSDriver) -> LibcloudRecordFormat:
    """
    The format of ``driver``: from ``RECORD_FORMATS`` by its ``type``, or
    ``DEFAULT``.
    """
    return RECORD_FORMATS.get(str(getattr(driver, "type", None)), DEFAULT)
