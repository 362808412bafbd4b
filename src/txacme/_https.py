"""
The HTTPS transport :meth:`txacme.client.Client.from_url` builds: a
:class:`~txacme.jws.JWSClient` on treq with a persistent connection pool
of its own, and an HTTPS policy that makes each host's TLS connection
creator once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from josepy.jwa import JWASignature
from josepy.jwk import JWK
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from txacme.jws import JWSClient, RetryPolicy

if TYPE_CHECKING:
    # Annotations only: Twisted exports this interface from a private module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot
    from twisted.internet.ssl import Certificate

__all__ = ["CachedTLSPolicy", "default_jws_client"]


def default_jws_client(
    reactor: IReactorTime,
    key: JWK,
    alg: JWASignature,
    trust_root: IOpenSSLTrustRoot | Certificate | None = None,
    timeout: float = 60.0,
    retry_policy: RetryPolicy | None = None,
) -> tuple[JWSClient, Any]:
    """
    A JWSClient on treq with a persistent pool of its own, trusting
    ``trust_root`` or the platform's certificate authorities; and the pool,
    for the caller to close.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
    pool.maxPersistentPerHost = 8
    agent = Agent(  # type: ignore[no-untyped-call]
        reactor,
        contextFactory=CachedTLSPolicy(
            BrowserLikePolicyForHTTPS(trust_root)  # type: ignore[no-untyped-call]
        ),
        pool=pool,
    )
    transport = JWSClient(
        HTTPClient(agent),
        key,
        alg,
        reactor=reactor,
        timeout=timeout,
        retry_policy=retry_policy,
    )
    return transport, pool


@implementer(IPolicyForHTTPS)
class CachedTLSPolicy:
    """
    An HTTPS policy that makes the TLS connection creator of each host and
    port once, and then reuses it.

    ``Agent`` asks its policy for a creator on every request, also one sent
    over a pooled connection, and ``BrowserLikePolicyForHTTPS`` makes a new
    one each time: certificate options, an OpenSSL context, the cipher
    list and the IDNA form of the name.  A creator serves any number of
    connections; each is still verified for the creator's host name.
    """

    #: The most creators kept (an ACME client talks to a host or two).
    MAX_CREATORS = 32

    def __init__(self, policy: IPolicyForHTTPS) -> None:
        self._policy = policy
        self._creators: dict[tuple[bytes, int], Any] = {}

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        key = (hostname, port)
        creator = self._creators.get(key)
        if creator is None:
            if len(self._creators) >= self.MAX_CREATORS:
                self._creators.clear()
            creator = self._policy.creatorForNetloc(hostname, port)
            self._creators[key] = creator
        return creator
