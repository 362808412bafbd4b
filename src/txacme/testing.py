"""
Test doubles for applications' own tests.

:class:`MemoryAcmeServer` is an RFC 8555 ACME server in memory: a strict
one, which verifies JWS signatures, nonces and URLs, runs the order and
authorization state machines, checks CSRs and issues real certificates from
its own CA, all on an injected clock.  A trial test can point a client at
it::

    from twisted.internet.task import Clock
    from txacme.testing import MemoryAcmeServer

    clock = Clock()
    server = MemoryAcmeServer(clock=clock)
    http_client = server.treq_client()  # a treq.testing.StubTreq
    directory_url = server.directory_url

Its switches inject errors (:meth:`MemoryAcmeServer.fail_next`), spoil
answers (:meth:`MemoryAcmeServer.break_next`), reject nonces at random, and
delay validation and issuance; its properties show the accounts, orders,
authorizations, certificates and the request log.
"""

from txacme import _memoryserver, _memoryserver_http
from txacme._memoryserver import MemoryAcmeServer, always_valid
from txacme._memoryserver_records import (
    LoggedRequest,
    MemoryAccount,
    MemoryAuthorization,
    MemoryCertificate,
    MemoryChallenge,
    MemoryOrder,
)

__all__ = [
    "BreakKind",
    "Endpoint",
    "LoggedRequest",
    "MemoryAccount",
    "MemoryAcmeServer",
    "MemoryAuthorization",
    "MemoryCertificate",
    "MemoryChallenge",
    "MemoryOrder",
    "Validator",
    "always_valid",
]

Validator = _memoryserver.Validator
"""
The type of :attr:`MemoryAcmeServer.validator`, which decides challenges:
called with the authorization's identifier (for a wildcard, the base
domain), the challenge type (``"http-01"``, ``"dns-01"`` or
``"tls-alpn-01"``) and the key authorization the server expects (RFC 8555
§8.1; a dns-01 TXT record holds its SHA-256 digest, base64url), it returns,
or returns a Deferred firing with, whether the client's response is right.
"""

Endpoint = _memoryserver.Endpoint
"""
The endpoint kinds :meth:`MemoryAcmeServer.fail_next` and
:meth:`MemoryAcmeServer.break_next` take, and :class:`LoggedRequest`
records: ``"directory"``, the directory entries (``"newNonce"``,
``"newAccount"``, ``"newOrder"``, ``"newAuthz"``, ``"revokeCert"``,
``"keyChange"``, ``"renewalInfo"``) and the kinds of resource
(``"account"``, ``"orders"`` -- an account's orders list --, ``"order"``,
``"finalize"``, ``"authorization"``, ``"challenge"``, ``"certificate"``).
"""

BreakKind = _memoryserver_http.BreakKind
"""
The ways :meth:`MemoryAcmeServer.break_next` spoils an answer, keeping its
status code:

``"html"``
    the body is replaced by an HTML page, ``Content-Type: text/html``;
``"truncated-json"``
    the body is cut in half;
``"wrong-content-type"``
    ``Content-Type`` becomes ``text/plain``;
``"no-location"``
    the ``Location`` header is dropped;
``"no-replay-nonce"``
    the ``Replay-Nonce`` header is dropped;
``"not-pem"``
    the body is replaced by text that is not a PEM certificate chain;
``"empty-body"``
    the body is empty.
"""
