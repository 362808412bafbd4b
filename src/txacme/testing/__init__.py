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
answers (:meth:`MemoryAcmeServer.break_next`), drop connections before or
after the server acts (:meth:`MemoryAcmeServer.drop_next`), delay answers
(:meth:`MemoryAcmeServer.delay_next`), inject the network faults of
:data:`FaultKind` one at a time (:meth:`MemoryAcmeServer.inject_next`) or
at random from a seed (:meth:`MemoryAcmeServer.random_faults`), reject
nonces at random, and delay validation and issuance; its properties show
the accounts, orders, authorizations, certificates, the request log and
the injected faults.  The same faults in front of a real CA are
:class:`txacme.testing.faultproxy.FaultProxy`'s, an HTTPS proxy for
Pebble.

For code built on :class:`txacme.service.AcmeIssuingService` there are
also, as in txacme 0.9:

* :class:`FakeClient`, a fake of the client methods the service uses, with
  a certificate authority of its own and no server at all, and its
  :class:`FakeClientController`, which holds issuances back, fails them and
  counts them;
* :class:`NullResponder`, a responder that does nothing, for a CA that
  validates every challenge (the fake client, or the in-memory server's
  default validator);
* :class:`MemoryStore`, a certificate store in a dict
  (:class:`txacme.store.MemoryStore`).

::

    from josepy.jwk import JWKEC
    from twisted.internet.defer import succeed
    from txacme.service import AcmeIssuingService
    from txacme.testing import FakeClient, MemoryStore, NullResponder
    from txacme.util import generate_private_key

    client = FakeClient(JWKEC(key=generate_private_key("p256")), clock)
    service = AcmeIssuingService(
        cert_store=MemoryStore({"example.com": []}),
        client_creator=lambda: succeed(client),
        clock=clock,
        responders=[NullResponder("http-01")],
    )
"""

from txacme.store import MemoryStore
from txacme.testing import _faults, _server, _server_faults, _server_http
from txacme.testing._fakeclient import (
    FakeClient,
    FakeClientController,
    FakeOrder,
    NullResponder,
)
from txacme.testing._faults import FaultPlan
from txacme.testing._server import MemoryAcmeServer, always_valid
from txacme.testing._server_records import (
    InjectedFault,
    LoggedRequest,
    MemoryAccount,
    MemoryAuthorization,
    MemoryCertificate,
    MemoryChallenge,
    MemoryOrder,
)

__all__ = [
    "FAULT_KINDS",
    "BreakKind",
    "DropStage",
    "Endpoint",
    "FakeClient",
    "FakeClientController",
    "FakeOrder",
    "FaultKind",
    "FaultPlan",
    "InjectedFault",
    "LoggedRequest",
    "MemoryAccount",
    "MemoryAcmeServer",
    "MemoryAuthorization",
    "MemoryCertificate",
    "MemoryChallenge",
    "MemoryOrder",
    "MemoryStore",
    "NullResponder",
    "Validator",
    "always_valid",
]

Validator = _server.Validator
"""
The type of :attr:`MemoryAcmeServer.validator`, which decides challenges:
called with the authorization's identifier (for a wildcard, the base
domain), the challenge type (``"http-01"``, ``"dns-01"`` or
``"tls-alpn-01"``) and the key authorization the server expects (RFC 8555
§8.1; a dns-01 TXT record holds its SHA-256 digest, base64url), it returns,
or returns a Deferred firing with, whether the client's response is right.
"""

Endpoint = _server_faults.Endpoint
"""
The endpoint kinds :meth:`MemoryAcmeServer.fail_next` and
:meth:`MemoryAcmeServer.break_next` take, and :class:`LoggedRequest`
records: ``"directory"``, the directory entries (``"newNonce"``,
``"newAccount"``, ``"newOrder"``, ``"newAuthz"``, ``"revokeCert"``,
``"keyChange"``, ``"renewalInfo"``) and the kinds of resource
(``"account"``, ``"orders"`` -- an account's orders list --, ``"order"``,
``"finalize"``, ``"authorization"``, ``"challenge"``, ``"certificate"``).
"""

BreakKind = _server_http.BreakKind
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

DropStage = _server_faults.DropStage
"""
Where :meth:`MemoryAcmeServer.drop_next` loses a request: ``"before"`` it
reaches the server (nothing is acted on) or ``"after"`` the server acted on
it (only the answer is lost).
"""

FAULT_KINDS = _faults.FAULT_KINDS
"""Every :data:`FaultKind`, in the order below."""

FaultKind = _faults.FaultKind
"""
The network faults of issue 11 ("Issuance that survives the network"),
which :meth:`MemoryAcmeServer.inject_next`,
:meth:`MemoryAcmeServer.random_faults` and
:class:`txacme.testing.faultproxy.FaultProxy` inject, at most one per
request:

``"drop-before"``
    the connection closes before the request reaches the CA: nothing is
    acted on;
``"drop-after"``
    the CA acts on the request, and the connection closes before its
    answer arrives;
``"unavailable"``
    a device in front of the CA answers 503 with ``Retry-After: 1`` and an
    HTML page; the CA never sees the request;
``"truncated-error"``
    the CA answers 500 with an ``application/problem+json`` body cut in
    half, without acting on the request;
``"rate-limited"``
    the CA answers 429 with a ``rateLimited`` problem document and
    ``Retry-After: 1``, without acting on the request;
``"delay"``
    the CA acts at once, and its answer comes 2 seconds later (the delay is
    configurable);
``"captive-portal"``
    a device in between answers 200 with ``Content-Type: text/html`` and a
    login page; the CA never sees the request.

The answers of the CA (``"truncated-error"``, ``"rate-limited"``) carry a
``Replay-Nonce``; those of a device in between do not.  One difference
remains between the two: the in-memory server uses up the nonce of a
request it answers with ``"truncated-error"`` or ``"rate-limited"`` (as
:meth:`MemoryAcmeServer.fail_next` does), while the proxy answers those
without forwarding the request, with a nonce it fetched from Pebble's
newNonce, so that Pebble never sees the request's own nonce.
"""
