"""
Challenge responders: :class:`~txacme.interfaces.IResponder` implementations.

* :class:`HTTP01Responder`: http-01 (RFC 8555 §8.3), as a ``twisted.web``
  resource to mount at ``/.well-known/acme-challenge``.
"""

from txacme.challenges._http import HTTP01Responder

__all__ = ["HTTP01Responder"]
