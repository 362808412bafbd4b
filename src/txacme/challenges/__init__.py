"""
Challenge responders: :class:`~txacme.interfaces.IResponder` implementations.

* :class:`HTTP01Responder`: http-01 (RFC 8555 §8.3), as a ``twisted.web``
  resource to mount at ``/.well-known/acme-challenge`` or on a port of its
  own; with a :class:`SelfCheck`, it fetches the token URL before the
  challenge is answered and fails with :exc:`SelfCheckFailed` if the key
  authorization does not come back.
* :class:`RFC2136Responder`, :class:`CallableDNS01Responder`,
  :class:`LibcloudDNSResponder`: dns-01 (RFC 8555 §8.4) through RFC 2136
  dynamic updates with TSIG, the application's own functions, or a DNS
  provider's API through apache-libcloud; their errors derive from
  :exc:`DNSError`.  :class:`LibcloudDNSResponder` and
  :class:`LibcloudRecordFormat` need apache-libcloud (``pip install
  'txacme[libcloud]'``), imported when one of them is first used; without
  it, using them raises :exc:`ImportError`, and they are not in
  ``__all__``.
* :class:`TLSALPN01Responder`: tls-alpn-01 (RFC 8737), in an application's own
  TLS server or on a port of its own; importing this package registers the
  :class:`TLSALPN01` challenge type with :mod:`acme.challenges`.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from txacme.challenges._dns import (
    CallableDNS01Responder,
    DNSAuthenticationError,
    DNSError,
    DNSLookupError,
    DNSServerUnreachable,
    DNSTimeout,
    DNSUpdateError,
    PropagationTimeout,
    RFC2136Responder,
    ZoneNotFound,
)
from txacme.challenges._dns_errors import DNSProviderError, NotInZone
from txacme.challenges._http import HTTP01Responder, SelfCheck, SelfCheckFailed
from txacme.challenges._tls_alpn import (
    TLSALPN01,
    TLSALPN01Responder,
    TLSALPN01Response,
    tls_alpn_01_certificate,
)

if TYPE_CHECKING:
    from txacme.challenges._libcloud import (
        LibcloudDNSResponder as LibcloudDNSResponder,
    )
    from txacme.challenges._libcloud import (
        LibcloudRecordFormat as LibcloudRecordFormat,
    )

__all__ = [
    "TLSALPN01",
    "CallableDNS01Responder",
    "DNSAuthenticationError",
    "DNSError",
    "DNSLookupError",
    "DNSProviderError",
    "DNSServerUnreachable",
    "DNSTimeout",
    "DNSUpdateError",
    "HTTP01Responder",
    "NotInZone",
    "PropagationTimeout",
    "RFC2136Responder",
    "SelfCheck",
    "SelfCheckFailed",
    "TLSALPN01Responder",
    "TLSALPN01Response",
    "ZoneNotFound",
    "tls_alpn_01_certificate",
]

#: The names that need apache-libcloud, imported on first use.
_LIBCLOUD_NAMES = ("LibcloudDNSResponder", "LibcloudRecordFormat")

_WITH_LIBCLOUD = importlib.util.find_spec("libcloud") is not None

if _WITH_LIBCLOUD:
    __all__ += _LIBCLOUD_NAMES


def __getattr__(name: str) -> object:
    """
    Import :class:`LibcloudDNSResponder` and :class:`LibcloudRecordFormat`
    (and apache-libcloud) when first used.

    :raises ImportError: For those names, without apache-libcloud.
    """
    if name in _LIBCLOUD_NAMES:
        try:
            from txacme.challenges import _libcloud
        except ImportError as error:
            raise ImportError(
                f"txacme.challenges.{name} needs apache-libcloud ({error}): "
                "pip install 'txacme[libcloud]'",
                name=name,
            ) from error
        found: object = getattr(_libcloud, name)
        globals()[name] = found
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, with the libcloud ones when libcloud is there."""
    return sorted({*globals(), *(_LIBCLOUD_NAMES if _WITH_LIBCLOUD else ())})
