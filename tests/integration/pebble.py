"""
txacme's trial fixture for integration tests against Pebble.

The harness itself (:class:`~txacme.testing.pebble.PebbleServer` and its
helpers) is :mod:`txacme.testing.pebble`, re-exported here.
:class:`PebbleTestCase` is the trial fixture: each test class gets its own
Pebble, started for the class's first test and stopped when a test of
another class needs its own, or when the process exits.  (Trial has no
``setUpClass``.)  Without the ``pebble`` binaries the tests are skipped,
except when the ``CI`` environment variable is set: there they fail, since a
skipped integration test in CI is a hole in the run.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.url import URL
from twisted.trial.unittest import FailTest, SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource

from txacme.client import Client, JWSClient
from txacme.testing.pebble import (
    CHALLTESTSRV,
    LOOPBACK,
    PEBBLE,
    PebbleManagement,
    PebbleOptions,
    PebblePorts,
    PebbleServer,
    PebbleStartError,
    ServedSite,
    http01_site_root,
    pebble_unavailable_reason,
    resolve_a,
    resolve_aaaa,
    stop_process,
    verify_chain,
)
from txacme.util import generate_private_key

__all__ = [
    "CHALLTESTSRV",
    "LOOPBACK",
    "PEBBLE",
    "PebbleManagement",
    "PebbleOptions",
    "PebblePorts",
    "PebbleServer",
    "PebbleStartError",
    "PebbleTestCase",
    "ServedSite",
    "TypedAssertions",
    "expect_failure",
    "expect_raises",
    "http01_site_root",
    "pebble_unavailable_reason",
    "require_pebble",
    "resolve_a",
    "resolve_aaaa",
    "stop_process",
    "verify_chain",
]


def require_pebble() -> None:
    """
    Skip the calling test if Pebble cannot run here, or fail it when the
    ``CI`` environment variable is set (a skipped Pebble test in CI is a
    test that did not run).

    :raises twisted.trial.unittest.SkipTest: Outside CI, without Pebble.
    :raises twisted.trial.unittest.FailTest: In CI, without Pebble.
    """
    reason = pebble_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise FailTest(f"CI is set and Pebble cannot run: {reason}")
    raise SkipTest(reason)


# Trial fixture.

_E = TypeVar("_E", bound=BaseException)


def expect_raises(
    exception_type: type[_E],
    function: Callable[..., object],
    *args: object,
    **kwargs: object,
) -> _E:
    """
    Call ``function(*args, **kwargs)`` and return the ``exception_type``
    exception it raises; fail the test if it raises none.  (A typed
    stand-in for trial's unannotated ``assertRaises``.)
    """
    try:
        function(*args, **kwargs)
    except exception_type as error:
        return error
    raise FailTest(f"{function!r} did not raise {exception_type.__name__}")


async def expect_failure(exception_type: type[_E], awaitable: Awaitable[object]) -> _E:
    """
    Await ``awaitable`` and return the ``exception_type`` exception it fails
    with; fail the test if it succeeds.
    """
    try:
        await awaitable
    except exception_type as error:
        return error
    raise FailTest(f"{awaitable!r} did not fail with {exception_type.__name__}")


class TypedAssertions:
    """
    Annotated signatures for the trial assertions these tests use.

    Trial's assertion methods are unannotated, so under mypy strict every
    call would be an untyped call.  Mixed in before a trial test case, this
    class adds nothing at run time.
    """

    if TYPE_CHECKING:

        def assertEqual(
            self, first: object, second: object, msg: str | None = None
        ) -> None: ...

        def assertNotEqual(
            self, first: object, second: object, msg: str | None = None
        ) -> None: ...

        def assertIn(
            self, containee: object, container: object, msg: str | None = None
        ) -> None: ...

        def assertNotIn(
            self, containee: object, container: object, msg: str | None = None
        ) -> None: ...

        def assertTrue(self, condition: object, msg: str | None = None) -> None: ...

        def assertFalse(self, condition: object, msg: str | None = None) -> None: ...


_class_servers: dict[type[PebbleTestCase], PebbleServer] = {}


def _stop_class_servers() -> None:
    """
    Stop the servers of every test class.
    """
    while _class_servers:
        _class_servers.popitem()[1].stop()


atexit.register(_stop_class_servers)


class PebbleTestCase(TypedAssertions, TestCase):
    """
    A trial test case on the real reactor with a Pebble for its class.

    Subclasses set :attr:`pebble_options`.  Each test sees the class's
    server as :attr:`pebble`; only one class's server runs at a time.

    :ivar pebble: The running Pebble of this test's class.
    """

    pebble_options: ClassVar[PebbleOptions] = PebbleOptions()
    pebble: PebbleServer

    def setUp(self) -> None:
        from twisted.internet import reactor

        # The global reactor: TCP, time, threads and the rest.
        self.reactor = reactor
        require_pebble()
        owner = type(self)
        server = _class_servers.get(owner)
        if server is not None and not server.running:
            # It died: keep its logs in this test's failure, start anew.
            logs = server.logs()
            _class_servers.pop(owner).stop()
            self.fail(f"Pebble of {owner.__name__} died\n{logs}")
        if server is None:
            _stop_class_servers()
            server = _class_servers[owner] = PebbleServer.start(self.pebble_options)
        self.pebble = server

    def run_with_logs(self, body: Coroutine[Any, Any, None]) -> Deferred[None]:
        """
        Run an async test body; if it fails, fail the test with the body's
        traceback followed by the end of Pebble's logs.

        :returns: What the test method returns.
        """

        async def run() -> None:
            try:
                await body
            except (CancelledError, SkipTest):
                raise
            except Exception as error:
                report = "".join(traceback.format_exception(error))
                raise FailTest(f"{report}\n{self.pebble.logs()}") from error

        return Deferred.fromCoroutine(run())

    def http_client(self) -> HTTPClient:
        """
        A treq client trusting Pebble's HTTPS CA, whose connections are
        closed when the test ends.
        """
        pool = HTTPConnectionPool(  # type: ignore[no-untyped-call]
            self.reactor, persistent=True
        )
        self.addCleanup(pool.closeCachedConnections)
        return self.pebble.http_client(self.reactor, pool)

    def management(self) -> PebbleManagement:
        """
        The management APIs of this test's Pebble, through a fresh client.
        """
        return self.pebble.management(self.http_client())

    def serve_http01(self, challenge_resource: Resource) -> ServedSite:
        """
        Serve ``challenge_resource`` at ``/.well-known/acme-challenge`` on
        Pebble's http-01 port until the test ends.
        """
        site = ServedSite.listen(
            self.reactor, self.pebble.http_port, http01_site_root(challenge_resource)
        )
        self.addCleanup(site.stop)
        return site

    def pebble_logs(self) -> str:
        """
        The end of this Pebble's logs, for failure messages.
        """
        return self.pebble.logs()

    async def registered_client(self) -> Client:
        """
        A client of this Pebble with a new account (a new P-256 key, ES256),
        registered and agreeing to the terms.
        """
        key = JWKEC(key=generate_private_key("p256"))
        jws = JWSClient(self.http_client(), key=key, alg=ES256)
        client = await Client.from_url(
            self.reactor,
            URL.fromText(self.pebble.directory_url),
            key=key,
            alg=ES256,
            jws_client=jws,
        )
        await client.register(
            messages.NewRegistration.from_data(terms_of_service_agreed=True)
        )
        return client

    async def verify_issued(
        self, chain_pem: str, names: Sequence[str]
    ) -> x509.Certificate:
        """
        Verify an issued chain (PEM, leaf first) against this Pebble's root
        for every one of ``names``, DNS names and IP addresses alike; return
        the leaf.
        """
        certificates = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))
        leaf, issuers = certificates[0], certificates[1:]
        root_pem = await self.management().root_pem()
        dns_names = [name for name in names if not _is_ip(name)]
        if dns_names:
            verify_chain(
                leaf.public_bytes(serialization.Encoding.DER),
                [issuer.public_bytes(serialization.Encoding.DER) for issuer in issuers],
                root_pem,
                dns_names,
            )
        store = Store([x509.load_pem_x509_certificate(root_pem)])
        for name in names:
            if _is_ip(name):
                PolicyBuilder().store(store).build_server_verifier(
                    x509.IPAddress(ipaddress.ip_address(name))
                ).verify(leaf, issuers)
        return leaf


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
