"""
The ``le:``, ``lets:`` and ``acme:`` server endpoint strings of txacme (see
:mod:`txacme.endpoint`), as a Twisted plugin.

Twisted imports every plugin module whenever it looks for plugins (every
``twistd`` run does), so this module imports nothing heavy: txacme, acme,
cryptography and treq are imported only when a description with one of
these prefixes is parsed.

This directory has no ``__init__.py``: ``twisted.plugins`` extends its own
path with every ``twisted/plugins`` directory on ``sys.path``.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorCore,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _LazyParser:
    """
    The parser of one prefix, importing :mod:`txacme.endpoint` when it
    first parses a description.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"<txacme endpoint parser {self.prefix}:>"

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        from txacme.endpoint import AcmeEndpointParser

        return AcmeEndpointParser(self.prefix).parseStreamServer(
            reactor, *args, **kwargs
        )


#: ``le:``: Let's Encrypt.
le = _LazyParser("le")
#: ``lets:``: Let's Encrypt's staging environment.
lets = _LazyParser("lets")
#: ``acme:``: any ACME CA, by ``directory=``.
acme = _LazyParser("acme")
