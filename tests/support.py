"""
Shared test support: typed trial assertions, an in-memory ACME set-up, and
loopback servers whose connections can all be closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from acme import messages
from attrs import frozen
from josepy.jwa import ES256, JWASignature
from josepy.jwk import JWK, JWKEC
from treq.testing import StringStubbingResource, StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from txacme.client import Client, JWSClient, PollingPolicy
from txacme.interfaces import IResponder
from txacme.testing import MemoryAcmeServer
from txacme.testing.pebble import ConnectionTracker
from txacme.util import generate_private_key

_T = TypeVar("_T")
_E = TypeVar("_E", bound=BaseException)

# Trial's unannotated assertions (public on SynchronousTestCase), called
# through Any.
_TRIAL: Any = SynchronousTestCase
_SYNC: Any = SynchronousTestCase

#: The loopback address the real-reactor servers listen on.
LOOPBACK = "127.0.0.1"

#: A realistic time for the fake clocks (2026-11-01T00:00:00Z).
NOW = 1_793_491_200.0

#: Account keys made once: key generation is slow.
EC_KEY = JWKEC(key=generate_private_key("p256"))
OTHER_EC_KEY = JWKEC(key=generate_private_key("p256"))


class TypedAssertions:
    """
    Annotated front-ends to trial's assertions, which are unannotated (and
    so refused by ``mypy --strict``).  Mixed in before the trial base class.
    """

    def assertFalse(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertFalse(self, *args, **kwargs)

    def assertTrue(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertTrue(self, *args, **kwargs)

    def assertRaises(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertRaises(self, *args, **kwargs)

    def assertEqual(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertEqual(self, *args, **kwargs)

    def assertIs(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertIs(self, *args, **kwargs)

    def assertIsNot(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertIsNot(self, *args, **kwargs)

    def assertNotEqual(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertNotEqual(self, *args, **kwargs)

    def assertIn(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertIn(self, *args, **kwargs)

    def assertNotIn(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertNotIn(self, *args, **kwargs)

    def assertAlmostEqual(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertAlmostEqual(self, *args, **kwargs)

    def assertApproximates(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertApproximates(self, *args, **kwargs)

    def assertSubstring(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertSubstring(self, *args, **kwargs)

    def assertNotSubstring(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertNotSubstring(self, *args, **kwargs)

    def assertIsInstance(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertIsInstance(self, *args, **kwargs)

    def assertNotIsInstance(self, *args: Any, **kwargs: Any) -> Any:
        return _TRIAL.assertNotIsInstance(self, *args, **kwargs)

    def failureResultOf(
        self, deferred: Deferred[Any], *expected: type[BaseException]
    ) -> Failure:
        failure: Failure = _TRIAL.failureResultOf(self, deferred, *expected)
        return failure

    def errorOf(self, deferred: Deferred[Any], expected: type[_E]) -> _E:
        """
        The exception ``deferred`` failed with, which must be an
        ``expected``: ``failureResultOf`` with a typed result.
        """
        failure = self.failureResultOf(deferred, expected)
        error = failure.value
        assert isinstance(error, expected)
        return error

    def assertNoResult(self, deferred: Deferred[Any]) -> None:
        _TRIAL.assertNoResult(self, deferred)

    def flushLoggedErrors(self, *error_types: type[BaseException]) -> list[Failure]:
        flushed: list[Failure] = _SYNC.flushLoggedErrors(self, *error_types)
        return flushed


class TestCase(TypedAssertions, SynchronousTestCase):
    """A ``SynchronousTestCase`` with typed assertions and a clock helper."""

    def settle(
        self,
        deferred: Deferred[_T],
        clock: Clock,
        step: float = 1.0,
        limit: float = 3600.0,
    ) -> Deferred[_T]:
        """
        Advance ``clock`` by ``step`` until ``deferred`` has a result (or
        ``limit`` seconds passed); return it for ``successResultOf`` and
        friends.
        """
        fired: list[bool] = []

        def note(result: object) -> object:
            fired.append(True)
            return result

        deferred.addBoth(note)
        waited = 0.0
        while not fired and waited < limit:
            clock.advance(step)
            waited += step
        return deferred


class AcmeTestCase(TestCase):
    """
    A test case with a clock at :data:`NOW` and a :class:`MemoryAcmeServer`
    on it; :meth:`make_client` builds a :class:`Client` talking to it.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.server = self.make_server()

    def make_server(self, **arguments: Any) -> MemoryAcmeServer:
        return MemoryAcmeServer(clock=self.clock, **arguments)

    def make_jws_client(
        self,
        server: MemoryAcmeServer | None = None,
        key: JWK = EC_KEY,
        alg: JWASignature = ES256,
        **arguments: Any,
    ) -> JWSClient:
        server = server if server is not None else self.server
        return JWSClient(
            server.treq_client(), key, alg, reactor=self.clock, **arguments
        )

    def make_client(
        self,
        server: MemoryAcmeServer | None = None,
        key: JWK = EC_KEY,
        alg: JWASignature = ES256,
        policy: PollingPolicy | None = None,
        **arguments: Any,
    ) -> Client:
        server = server if server is not None else self.server
        jws = self.make_jws_client(server, key, alg, **arguments)
        return self.successResultOf(
            Client.from_url(
                self.clock, server.directory_url, key, alg, jws, policy=policy
            )
        )

    def registered_client(self, **arguments: Any) -> Client:
        client = self.make_client(**arguments)
        self.successResultOf(
            client.register(
                messages.NewRegistration.from_data(terms_of_service_agreed=True)
            )
        )
        return client


@implementer(IResponder)
class RecordingResponder:
    """
    An IResponder that records the names it is asked to start and stop
    responding for; with ``fail_start``, every start fails.
    """

    def __init__(
        self, challenge_type: str = "http-01", fail_start: bool = False
    ) -> None:
        self.challenge_type = challenge_type
        self.fail_start = fail_start
        self.started: list[str] = []
        self.stopped: list[str] = []

    def start_responding(self, server_name: str, challenge: Any, response: Any) -> None:
        if self.fail_start:
            raise RuntimeError("cannot start")
        self.started.append(server_name)

    def stop_responding(self, server_name: str, challenge: Any, response: Any) -> None:
        self.stopped.append(server_name)


def stub_treq(
    respond: Callable[
        [bytes, str, Any, Any, bytes], tuple[int, dict[bytes, bytes], bytes]
    ],
) -> Any:
    """
    A ``StubTreq`` answering every request with ``respond(method, url,
    params, headers, body)`` -> ``(code, headers, body)``.
    """
    resource: Any = StringStubbingResource(respond)  # type: ignore[no-untyped-call]
    stub: Any = StubTreq(resource)  # type: ignore[no-untyped-call]
    return stub


# -- loopback servers whose connections can all be closed ------------------------------


@implementer(IStreamServerEndpoint)
@frozen
class LoopbackEndpoint:
    """
    A TCP server endpoint on 127.0.0.1 (a free port, or ``port``) whose
    connections are tracked: each :meth:`listen` appends its
    :class:`ConnectionTracker` to ``trackers``.
    """

    reactor: Any
    trackers: list[ConnectionTracker]
    port: int = 0

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:
        tracker = ConnectionTracker(protocolFactory)
        self.trackers.append(tracker)
        endpoint: Any = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            self.reactor, self.port, interface=LOOPBACK
        )
        listening: Deferred[IListeningPort] = endpoint.listen(tracker)
        return listening
