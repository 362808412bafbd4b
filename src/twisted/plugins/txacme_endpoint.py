"""
The ``le:``, ``lets:`` and ``acme:`` server endpoint strings of txacme (see
:mod:`txacme.endpoint`), as a Twisted plugin.

Twisted imports every plugin module whenever it looks for plugins (every
``twistd`` run does), so this module imports nothing heavy: txacme, acme,
cryptography and treq are imported only when a description with one of
these prefixes is parsed, and :mod:`txacme.urls` only when a parser's
``directory`` is read.

The parsers have txacme 0.9's names, ``le_parser`` and ``lets_parser``, and
``acme_parser`` for any CA.

This directory has no ``__init__.py``: ``twisted.plugins`` extends its own
path with every ``twisted/plugins`` directory on ``sys.path``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import (
    IReactorCore,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.python.url import URL


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _LazyParser:
    """
    The parser of one prefix, importing :mod:`txacme.endpoint` when it
    first parses a description.

    :ivar prefix: The prefix.
    """

    def __init__(self, prefix: str, directory_name: str | None) -> None:
        self.prefix = prefix
        self._directory_name = directory_name

    def __repr__(self) -> str:
        return f"<txacme endpoint parser {self.prefix}:>"

    @property
    def directory(self) -> URL | None:
        """
        The ACME directory of the prefix, from :mod:`txacme.urls`, or
        ``None`` for ``acme:`` (whose descriptions name it).
        """
        if self._directory_name is None:
            return None
        from txacme import urls

        directory: URL = getattr(urls, self._directory_name)
        return directory

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        from txacme.endpoint import AcmeEndpointParser

        return AcmeEndpointParser(self.prefix).parseStreamServer(
            reactor, *args, **kwargs
        )


#: ``le:``: Let's Encrypt.
le_parser = _LazyParser("le", "LETSENCRYPT_DIRECTORY")
#: ``lets:``: Let's Encrypt's staging environment.
lets_parser = _LazyParser("lets", "LETSENCRYPT_STAGING_DIRECTORY")
#: ``acme:``: any ACME CA, by ``directory=``.
acme_parser = _LazyParser("acme", None)
