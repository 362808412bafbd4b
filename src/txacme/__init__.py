"""
txacme: an ACME (RFC 8555) client for Twisted.

The public API lives in the submodules: :mod:`txacme.client` (the protocol
client), :mod:`txacme.challenges` (challenge responders),
:mod:`txacme.interfaces`, :mod:`txacme.messages`, :mod:`txacme.util` and
:mod:`txacme.urls`.  Importing :mod:`txacme` itself is cheap.
"""

__version__ = "1.0.0.dev0"

__all__ = ["__version__"]
