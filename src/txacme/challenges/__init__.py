"""
Challenge responders: :class:`~txacme.interfaces.IResponder` implementations.

* :class:`HTTP01Responder`: http-01 (RFC 8555 §8.3), as a ``twisted.web``
  resource to mount at ``/.well-known/acme-challenge`` or on a port of its
  own; with a :class:`SelfCheck`, it fetches the token URL before the
  challenge is answered and fails with :exc:`SelfCheckFailed` if the key
  authorization does not come back.
* :class:`RFC2136Responder`, :class:`CallableDNS01Responder`: dns-01 (RFC 8555
  §8.4) through RFC 2136 dynamic updates with TSIG, or the application's own
  functions; their errors derive from :exc:`DNSError`.
* :class:`TLSALPN01Responder`: tls-alpn-01 (RFC 8737), in an application's own
  TLS server or on a port of its own; importing this package registers the
  :class:`TLSALPN01` challenge type with :mod:`acme.challenges`.
"""

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
from txacme.challenges._http import HTTP01Responder, SelfCheck, SelfCheckFailed
from txacme.challenges._tls_alpn import (
    TLSALPN01,
    TLSALPN01Responder,
    TLSALPN01Response,
    tls_alpn_01_certificate,
)

__all__ = [
    "TLSALPN01",
    "CallableDNS01Responder",
    "DNSAuthenticationError",
    "DNSError",
    "DNSLookupError",
    "DNSServerUnreachable",
    "DNSTimeout",
    "DNSUpdateError",
    "HTTP01Responder",
    "PropagationTimeout",
    "RFC2136Responder",
    "SelfCheck",
    "SelfCheckFailed",
    "TLSALPN01Responder",
    "TLSALPN01Response",
    "ZoneNotFound",
    "tls_alpn_01_certificate",
]
