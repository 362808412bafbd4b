"""
The :class:`~txacme.interfaces.IResponder` contract, one test suite applied
to every responder of :mod:`txacme.challenges`.

:class:`ContractTests` states the contract as tests; each responder joins
through a :class:`Kind`, which makes the responder, its challenges, and a
way to see from outside whether a challenge is being answered, as a CA
would (an HTTP fetch, a TLS handshake, the DNS server's zone, the
provider's records).  The tests run on the real reactor, on the loopback
interface.

The kinds:

* ``http-01``: :class:`HTTP01Responder`'s resource in a site (fetched in
  memory), and its standalone server with the self-check on (fetched over
  loopback);
* ``tls-alpn-01``: :class:`TLSALPN01Responder`'s standalone listener
  (handshakes over loopback);
* ``dns-01``: :class:`RFC2136Responder` against ``tests.test_dns``'s
  :class:`FakeDNSServer`, :class:`CallableDNS01Responder` with
  functions keeping records in memory, and :class:`LibcloudDNSResponder`
  (in its own thread) with ``tests.test_libcloud``'s in-memory driver
  keeping one record per value.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any, ClassVar

from acme import challenges
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from zope.interface.verify import verifyObject

import txacme.challenges
from tests import test_http01 as http_support
from tests import test_tls_alpn as tls_support
from tests.support import EC_KEY, TypedAssertions
from txacme.challenges import (
    TLSALPN01,
    CallableDNS01Responder,
    HTTP01Responder,
    PropagationTimeout,
    SelfCheck,
    SelfCheckFailed,
    TLSALPN01Responder,
)
from txacme.challenges._dns import dns01_record
from txacme.interfaces import IResponder

#: Why RFC2136Responder cannot be tested here (dnspython is an extra).
WITHOUT_DNSPYTHON = (
    None if importlib.util.find_spec("dns") else "needs dnspython (txacme[dns])"
)

#: Why LibcloudDNSResponder cannot be tested here (apache-libcloud, and
#: dnspython for its failing case, are extras).
WITHOUT_LIBCLOUD = (
    None
    if importlib.util.find_spec("libcloud") and importlib.util.find_spec("dns")
    else "needs apache-libcloud and dnspython (txacme[libcloud,dns])"
)

NAME = "www.example.test"
OTHER_NAME = "other.example.test"


class Kind:
    """
    One kind of responder, as the contract tests see it.

    :ivar responder: The responder under test, made by :meth:`set_up`.
    :cvar responder_class: Its class.
    :cvar challenge_class: The class of the challenges it answers.
    """

    responder_class: ClassVar[type]
    challenge_class: ClassVar[type[challenges.KeyAuthorizationChallenge]]
    responder: Any

    def __init__(self, test: ContractTestCase) -> None:
        self.test = test
        self.reactor = test.reactor

    async def set_up(self) -> None:
        """Make :attr:`responder`, and any server it needs."""
        raise NotImplementedError

    def challenge(self) -> tuple[Any, Any]:
        """A new challenge of this kind (a random token) and its response."""
        challenge = self.challenge_class(token=os.urandom(16))
        return challenge, challenge.response(EC_KEY)

    async def answering(self, name: str, challenge: Any, response: Any) -> bool:
        """Whether a validator sees the challenge answered for ``name``."""
        raise NotImplementedError

    async def failing(self) -> tuple[Any, str, type[Exception]]:
        """
        A responder (perhaps :attr:`responder`) and a name for which
        starting any challenge fails, and the exception it fails with.  The
        responder acts on the same world (:meth:`answering` sees what it
        serves).
        """
        raise NotImplementedError

    def side_effects(self) -> list[object]:
        """The actions on the outside world so far (updates, calls)."""
        return []


# -- http-01 ---------------------------------------------------------------------------


class HTTP01ResourceKind(Kind):
    """:attr:`HTTP01Responder.resource` mounted in a site, fetched in memory."""

    responder_class = HTTP01Responder
    challenge_class = challenges.HTTP01

    async def set_up(self) -> None:
        self.responder = HTTP01Responder()
        root: Any = Resource()  # type: ignore[no-untyped-call]
        well_known: Any = Resource()  # type: ignore[no-untyped-call]
        root.putChild(b".well-known", well_known)
        well_known.putChild(b"acme-challenge", self.responder.resource)
        self.http: Any = StubTreq(root)  # type: ignore[no-untyped-call]

    async def answering(self, name: str, challenge: Any, response: Any) -> bool:
        answer = await self.http.get(f"http://{name}{challenge.path}")
        body: bytes = await answer.content()
        return bool(
            answer.code == 200 and body == response.key_authorization.encode("ascii")
        )

    async def failing(self) -> tuple[Any, str, type[Exception]]:
        # The same resource, with a self-check that cannot connect.
        check = SelfCheck(
            self.reactor,
            timeout=5.0,
            address=(http_support.LOOPBACK, http_support.closed_port()),
        )
        return (
            HTTP01Responder(self.responder.resource, self_check=check),
            NAME,
            SelfCheckFailed,
        )


class HTTP01StandaloneKind(Kind):
    """
    :meth:`HTTP01Responder.listen` on a loopback port, with the self-check
    on (connecting to that port), fetched over loopback.
    """

    responder_class = HTTP01Responder
    challenge_class = challenges.HTTP01

    async def set_up(self) -> None:
        server = HTTP01Responder()
        self.port = await self.test.loopback.serve_standalone(server)
        self.responder = HTTP01Responder(
            server.resource,
            self_check=SelfCheck(
                self.reactor, timeout=5.0, address=(http_support.LOOPBACK, self.port)
            ),
        )

    async def answering(self, name: str, challenge: Any, response: Any) -> bool:
        code, body, _ = await self.test.loopback.fetch(self.port, challenge.path)
        return code == 200 and body == response.key_authorization.encode("ascii")

    async def failing(self) -> tuple[Any, str, type[Exception]]:
        # The same resource, with a self-check that gets 404s from a
        # standalone server of another responder.
        elsewhere = await self.test.loopback.serve_standalone(HTTP01Responder())
        check = SelfCheck(
            self.reactor, timeout=5.0, address=(http_support.LOOPBACK, elsewhere)
        )
        return (
            HTTP01Responder(self.responder.resource, self_check=check),
            NAME,
            SelfCheckFailed,
        )


# -- tls-alpn-01 -----------------------------------------------------------------------


class TLSALPN01Kind(Kind):
    """
    :meth:`TLSALPN01Responder.listen` on a loopback port; a challenge is
    answered when a handshake offering ``acme-tls/1`` for the name gets a
    certificate whose acmeIdentifier holds the challenge's digest.
    """

    responder_class = TLSALPN01Responder
    challenge_class = TLSALPN01

    async def set_up(self) -> None:
        self.responder = TLSALPN01Responder(self.reactor)
        listening = await self.responder.listen(self.test.loopback.endpoint)
        self.test.addCleanup(self.test.loopback.close, listening)
        self.port = http_support.port_of(listening)

    async def answering(self, name: str, challenge: Any, response: Any) -> bool:
        handshake = await tls_support.loopback_handshake(
            self.reactor,
            self.port,
            name.encode("idna"),
            [tls_support.ACME_TLS_1],
            "1.3",
        )
        if handshake.certificate is None:
            return False
        digest = tls_support.acme_identifier(handshake.certificate).value.value
        return bool(digest == tls_support.der_digest(response.key_authorization))

    async def failing(self) -> tuple[Any, str, type[Exception]]:
        # A name no certificate can hold (not an A-label).
        return self.responder, "bücher.example.test", ValueError


# -- dns-01 ----------------------------------------------------------------------------


class RFC2136Kind(Kind):
    """
    :class:`RFC2136Responder` updating a :class:`FakeDNSServer` primary;
    a challenge is answered while its value is in the primary's zone.
    """

    responder_class = txacme.challenges.RFC2136Responder
    challenge_class = challenges.DNS01

    async def set_up(self) -> None:
        from tests import test_dns as dns_support

        zones = {"example.test.": dns_support.EXAMPLE_ZONE}
        self.primary = dns_support.FakeDNSServer(zones).listen(self.reactor)
        self.test.addCleanup(lambda: Deferred.fromCoroutine(self.primary.stop()))
        # A secondary that never gets the updates: the propagation wait of
        # the failing responder times out.
        self.secondary = dns_support.FakeDNSServer(zones).listen(self.reactor)
        self.test.addCleanup(lambda: Deferred.fromCoroutine(self.secondary.stop()))
        self.responder = self.make(check_propagation=False)

    def make(self, **options: Any) -> Any:
        from tests import test_dns as dns_support

        return txacme.challenges.RFC2136Responder(
            self.reactor,
            self.primary.address,
            dns_support.KEY_NAME,
            dns_support.SECRET,
            query_timeout=0.5,
            query_attempts=2,
            update_timeout=2.0,
            propagation_interval=0.05,
            propagation_timeout=0.3,
            nameserver_addresses={
                "ns1.example.test": [self.primary.address],
                "ns2.example.test": [self.secondary.address],
            },
            **options,
        )

    async def answering(self, name: str, challenge: Any, response: Any) -> bool:
        record_name, value = dns01_record(name, response)
        return value in self.primary.txt(record_name + ".")

    async def failing(self) -> tuple[Any, str, type[Exception]]:
        # The update is applied, then the wait for ns2 times out.
        return self.make(check_propagation=True), NAME, PropagationTimeout

    def side_effects(self) -> list[object]:
        return list(self.primary.updates())


class CallableDNS01Kind(Kind):
    """
    :class:`CallableDNS01Responder` whose functions keep TXT records in
    memory; a challenge is answered while its value is there.
    """

    responder_class = CallableDNS01Responder
    challenge_class = challenges.DNS01

    async def set_up(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.calls: list[object] = []
        self.responder = CallableDNS01Responder(self.set_txt, self.remove_txt)

    def set_txt(self, record_name: str, value: str) -> None:
        self.calls.append(("set", record_name, value))
        self.records.setdefault(record_name, []).append(value)

    def remove_txt(self, record_name: str, value: str) -> None:
        self.calls.append(("remove", record_name, value))
        values = self.records.get(record_name, [])
        if value in values:
            values.remove(value)

    async def answering(self, name: str, challenge: Any, response: Any) -> bool:
        record_name, value = dns01_record(name, response)
        return value in self.records.get(record_name, [])

    async def failing(self) -> tuple[Any, str, type[Exception]]:
        # The record is set, then the propagation check fails.
        def never_propagates(record_name: str, value: str) -> None:
            raise RuntimeError("the provider's servers never answered the value")

        return (
            CallableDNS01Responder(
                self.set_txt, self.remove_txt, propagation_check=never_propagates
            ),
            NAME,
            RuntimeError,
        )

    def side_effects(self) -> list[object]:
        return list(self.calls)


class LibcloudKind(Kind):
    """
    :class:`LibcloudDNSResponder` with its own thread, on an in-memory
    driver keeping one record per value; a challenge is answered while its
    value is among the driver's records.
    """

    challenge_class = challenges.DNS01

    async def set_up(self) -> None:
        from tests import test_libcloud as libcloud_support

        self.driver = libcloud_support.PerValueDriver()
        self.driver.create_zone("example.test")
        self.responder = self.make()

    def make(self, **options: Any) -> Any:
        responder = txacme.challenges.LibcloudDNSResponder.from_driver(
            self.reactor, self.driver, None, 0.0, api_timeout=5.0, **options
        )
        self.test.addCleanup(responder._thread_pool.quit)
        return responder

    async def answering(self, name: str, challenge: Any, response: Any) -> bool:
        record_name, value = dns01_record(name, response)
        return value in self.driver.txt(record_name)

    async def failing(self) -> tuple[Any, str, type[Exception]]:
        # The record is added, then a nameserver that never gets it times
        # the propagation wait out.
        from tests import test_dns as dns_support

        silent = dns_support.FakeDNSServer(
            {"example.test.": dns_support.EXAMPLE_ZONE}
        ).listen(self.reactor)
        self.test.addCleanup(lambda: Deferred.fromCoroutine(silent.stop()))
        responder = self.make(
            nameservers=[silent.address],
            propagation_interval=0.05,
            propagation_timeout=0.3,
            query_timeout=0.5,
        )
        return responder, NAME, PropagationTimeout

    def side_effects(self) -> list[object]:
        return list(self.driver.changes)


if WITHOUT_LIBCLOUD is None:
    LibcloudKind.responder_class = txacme.challenges.LibcloudDNSResponder

KINDS: list[type[Kind]] = [
    HTTP01ResourceKind,
    HTTP01StandaloneKind,
    TLSALPN01Kind,
    RFC2136Kind,
    CallableDNS01Kind,
    *([LibcloudKind] if WITHOUT_LIBCLOUD is None else []),
]


# -- the contract ----------------------------------------------------------------------


class ContractTestCase(TypedAssertions, TestCase):
    """
    The base of the contract tests: the real reactor, loopback servers
    closed after each test, and :attr:`kind` set up.
    """

    timeout = 30
    kind_class: ClassVar[type[Kind]]

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        from twisted.internet import reactor

        self.reactor: Any = reactor
        # test_http01's loopback servers and client.
        self.loopback = http_support.Loopback(reactor, self.addCleanup)
        self.kind = self.kind_class(self)
        return Deferred.fromCoroutine(self.kind.set_up())

    async def start(
        self, responder: Any, name: str, challenge: Any, response: Any
    ) -> None:
        """Start responding; the result must be ``None`` or fire with it."""
        result = await maybeDeferred(
            responder.start_responding, name, challenge, response
        )
        self.assertIs(result, None)

    async def stop(
        self, responder: Any, name: str, challenge: Any, response: Any
    ) -> None:
        """Stop responding; the result must be ``None`` or fire with it."""
        result = await maybeDeferred(
            responder.stop_responding, name, challenge, response
        )
        self.assertIs(result, None)

    async def assertAnswering(
        self, expected: bool, name: str, challenge: Any, response: Any
    ) -> None:
        answering = await self.kind.answering(name, challenge, response)
        self.assertEqual(
            answering,
            expected,
            f"{challenge.typ} for {name} {'not ' if expected else ''}answered",
        )


if TYPE_CHECKING:
    _ContractBase = ContractTestCase
else:
    _ContractBase = object


class ContractTests(_ContractBase):
    """
    The contract of :class:`~txacme.interfaces.IResponder`, as tests mixed
    into a :class:`ContractTestCase` that names the kind of responder.
    """

    async def test_provides_interface(self) -> None:
        """The responder provides ``IResponder`` (``verifyObject``)."""
        self.assertTrue(verifyObject(IResponder, self.kind.responder))

    async def test_challenge_type(self) -> None:
        """
        ``challenge_type`` is the type string of the challenges the
        responder answers, the one acme parses into their class.
        """
        challenge, response = self.kind.challenge()
        challenge_type = self.kind.responder.challenge_type
        self.assertIsInstance(challenge_type, str)
        self.assertEqual(challenge.typ, challenge_type)
        self.assertEqual(response.typ, challenge_type)
        self.assertIs(challenges.Challenge.TYPES[challenge_type], type(challenge))

    async def test_start_then_stop(self) -> None:
        """
        Once start has returned (or fired), the challenge is answered, again
        and again; once stop has, it is not.
        """
        responder = self.kind.responder
        challenge, response = self.kind.challenge()
        await self.assertAnswering(False, NAME, challenge, response)
        await self.start(responder, NAME, challenge, response)
        for _ in range(3):
            await self.assertAnswering(True, NAME, challenge, response)
        await self.stop(responder, NAME, challenge, response)
        await self.assertAnswering(False, NAME, challenge, response)

    async def test_stop_without_start(self) -> None:
        """
        Stopping a challenge never started is a no-op: nothing is done to
        the outside world, and a pending challenge for the same name keeps
        being answered.
        """
        responder = self.kind.responder
        pending, pending_response = self.kind.challenge()
        never, never_response = self.kind.challenge()
        await self.start(responder, NAME, pending, pending_response)
        before = self.kind.side_effects()
        await self.stop(responder, NAME, never, never_response)
        self.assertEqual(self.kind.side_effects(), before)
        await self.assertAnswering(True, NAME, pending, pending_response)
        await self.assertAnswering(False, NAME, never, never_response)

    async def test_stop_twice(self) -> None:
        """
        Stopping twice is the same as stopping once: the second stop does
        nothing.
        """
        responder = self.kind.responder
        challenge, response = self.kind.challenge()
        await self.start(responder, NAME, challenge, response)
        await self.stop(responder, NAME, challenge, response)
        after_first = self.kind.side_effects()
        await self.stop(responder, NAME, challenge, response)
        self.assertEqual(self.kind.side_effects(), after_first)
        await self.assertAnswering(False, NAME, challenge, response)

    async def test_other_challenge_same_name(self) -> None:
        """
        Two challenges for one name (two orders, or a wildcard and its base
        name): stopping either leaves the other answered.
        """
        responder = self.kind.responder
        for stopped_index in (0, 1):
            both = [self.kind.challenge(), self.kind.challenge()]
            for challenge, response in both:
                await self.start(responder, NAME, challenge, response)
            stopped = both[stopped_index]
            kept = both[1 - stopped_index]
            await self.stop(responder, NAME, *stopped)
            await self.assertAnswering(True, NAME, *kept)
            await self.assertAnswering(False, NAME, *stopped)
            await self.stop(responder, NAME, *kept)
            await self.assertAnswering(False, NAME, *kept)

    async def test_other_name(self) -> None:
        """
        Stopping a challenge for one name leaves a challenge for another
        name answered.
        """
        responder = self.kind.responder
        challenge, response = self.kind.challenge()
        other, other_response = self.kind.challenge()
        await self.start(responder, NAME, challenge, response)
        await self.start(responder, OTHER_NAME, other, other_response)
        await self.stop(responder, NAME, challenge, response)
        await self.assertAnswering(True, OTHER_NAME, other, other_response)
        await self.assertAnswering(False, NAME, challenge, response)

    async def test_failed_start_then_stop(self) -> None:
        """
        A start that fails is reported as a failure; stopping that challenge
        afterwards (twice) works, leaves it unanswered, and leaves another
        pending challenge for the same name answered.
        """
        pending, pending_response = self.kind.challenge()
        await self.start(self.kind.responder, NAME, pending, pending_response)
        responder, name, expected = await self.kind.failing()
        challenge, response = self.kind.challenge()
        with self.assertRaises(expected):
            await self.start(responder, name, challenge, response)
        for _ in range(2):
            await self.stop(responder, name, challenge, response)
        await self.assertAnswering(False, name, challenge, response)
        await self.assertAnswering(True, NAME, pending, pending_response)


class HTTP01ResourceContractTests(ContractTests, ContractTestCase):
    """:class:`HTTP01Responder`, its resource mounted in a site."""

    kind_class = HTTP01ResourceKind


class HTTP01StandaloneContractTests(ContractTests, ContractTestCase):
    """:class:`HTTP01Responder`, standalone, with the self-check."""

    kind_class = HTTP01StandaloneKind


class TLSALPN01ContractTests(ContractTests, ContractTestCase):
    """:class:`TLSALPN01Responder`, standalone."""

    kind_class = TLSALPN01Kind


class RFC2136ContractTests(ContractTests, ContractTestCase):
    """:class:`RFC2136Responder` against a fake DNS server."""

    kind_class = RFC2136Kind
    skip = WITHOUT_DNSPYTHON


class CallableDNS01ContractTests(ContractTests, ContractTestCase):
    """:class:`CallableDNS01Responder` with in-memory records."""

    kind_class = CallableDNS01Kind


class LibcloudContractTests(ContractTests, ContractTestCase):
    """:class:`LibcloudDNSResponder` with an in-memory driver."""

    kind_class = LibcloudKind
    skip = WITHOUT_LIBCLOUD


class CoverageTests(TypedAssertions, TestCase):
    """The contract tests cover every responder txacme has."""

    def test_every_responder_has_a_kind(self) -> None:
        """
        Every class exported by :mod:`txacme.challenges` that implements
        ``IResponder`` is tested by a kind here, so a new responder cannot
        skip the contract.
        """
        exported = {
            getattr(txacme.challenges, name)
            for name in txacme.challenges.__all__
            if isinstance(getattr(txacme.challenges, name), type)
            and IResponder.implementedBy(getattr(txacme.challenges, name))
        }
        with_libcloud = importlib.util.find_spec("libcloud") is not None
        self.assertEqual(len(exported), 5 if with_libcloud else 4)
        self.assertEqual({kind.responder_class for kind in KINDS}, exported)
