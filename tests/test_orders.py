"""
Tests for the native RFC 8555 API of :mod:`txacme.client` against the
in-memory ACME server: ``new_order``, ``finalize``, the account methods
(``find_registration``, ``deactivate_registration``, ``change_key``,
External Account Binding), ``deactivate_authorization``, ``revoke``,
``renewal_info``, :func:`~txacme.client.issue_certificate` and
:func:`~txacme.client.select_chain`, the polling and retry policies, and
what each does with the server's error answers and with answers from a
newer server (unknown fields and challenge types).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from acme import challenges as acme_challenges
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from josepy.b64 import b64encode
from josepy.jwa import ES256, ES384, RS256
from josepy.jwk import JWK, JWKEC, JWKRSA
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.web.resource import IResource
from twisted.web.server import Request
from zope.interface import implementer

from tests.support import EC_KEY, OTHER_EC_KEY, AcmeTestCase, RecordingResponder
from txacme._polling import PollTiming
from txacme.challenges import HTTP01Responder
from txacme.client import (
    Client,
    EABCredentials,
    JWSClient,
    PollingPolicy,
    alg_for_key,
    answer_challenge,
    issue_certificate,
    poll_until_valid,
    renewal_certificate_id,
    select_chain,
)
from txacme.errors import (
    AccountDoesNotExist,
    AuthorizationFailed,
    AuthorizationsNotValid,
    ExternalAccountRequired,
    MalformedResponse,
    NoSupportedChallenges,
    NotOffered,
    OrderFailed,
    PollTimeout,
    RateLimited,
    ServerError,
    UserActionRequired,
)
from txacme.interfaces import IResponder
from txacme.jws import RetryPolicy
from txacme.messages import CertificateRequest, RenewalWindow
from txacme.testing import MemoryAcmeServer
from txacme.util import csr_for_names, generate_private_key

# Keys made once: key generation is slow.
_CERT_KEY = generate_private_key("p256")
_OTHER_CERT_KEY = generate_private_key("p256")
_NEW_EC_KEY = generate_private_key("p256")
_NEW_P384_KEY = generate_private_key("p384")
_NEW_RSA_KEY = generate_private_key("rsa")
_EAB_KEY_ID = "kid-1"
_EAB_HMAC = b"an external account MAC key of 32"
_NO_JITTER = RetryPolicy(jitter=0.0, first_delay=1.0)
_PROFILES = {
    "classic": "The profile of old",
    "shortlived": "Six-day certificates",
}


def _names_of(certificate: x509.Certificate) -> list[str]:
    """The SAN entries of a certificate, DNS names and IP addresses, as text."""
    san = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    return [str(name) for name in san.get_values_for_type(x509.DNSName)] + [
        str(address) for address in san.get_values_for_type(x509.IPAddress)
    ]


def _chain(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode("ascii"))


def _common_name(name: x509.Name) -> str:
    [attribute] = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attribute.value
    return value if isinstance(value, str) else value.decode("utf-8")


def _general_name(name: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _certificate_without_aki() -> x509.Certificate:
    """A self-signed certificate with no Authority Key Identifier."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-aki.example")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_CERT_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(_CERT_KEY, hashes.SHA256())
    )


@implementer(IResource)
class RewritingResource:
    """
    A resource in front of :meth:`MemoryAcmeServer.resource` that edits its
    answers, as a newer CA (or a proxy) would: JSON bodies go through
    ``edit_json`` and problem documents through ``edit_problem``,
    ``drop_headers`` are removed from every answer, and
    ``error_headers`` are added to every error answer.
    """

    isLeaf = True

    def __init__(
        self,
        inner: IResource,
        edit_json: Callable[[Any], Any] | None = None,
        drop_headers: Sequence[bytes] = (),
        error_headers: Mapping[bytes, bytes] | None = None,
        edit_problem: Callable[[Any], Any] | None = None,
    ) -> None:
        self._inner = inner
        self._edit_json = edit_json
        self._edit_problem = edit_problem
        self._drop_headers = drop_headers
        self._error_headers = dict(error_headers or {})

    def getChildWithDefault(self, name: bytes, request: Request) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("no children")

    def render(self, request: Request) -> bytes:
        body = self._inner.render(request)  # type: ignore[no-untyped-call]
        assert isinstance(body, bytes)
        headers = request.responseHeaders
        content_type = (headers.getRawHeaders(b"content-type") or [b""])[0]
        if (
            self._edit_json is not None
            and content_type.split(b";")[0].strip() == b"application/json"
        ):
            body = json.dumps(self._edit_json(json.loads(body))).encode("utf-8")
        if (
            self._edit_problem is not None
            and content_type.split(b";")[0].strip() == b"application/problem+json"
        ):
            body = json.dumps(self._edit_problem(json.loads(body))).encode("utf-8")
        for name in self._drop_headers:
            headers.removeHeader(name)
        if request.code >= 400:
            for name, value in self._error_headers.items():
                headers.addRawHeader(name, value)
        return body


_FUTURE_CHALLENGE = {
    "type": "txacme-future-01",
    "url": "https://acme.example/future-challenge",
    "status": "pending",
    "token": "c29tZSB0b2tlbiBmcm9tIHRoZSBmdXR1cmU",
    "futureField": {"depth": [1, 2]},
}


def _only_future(document: Any) -> Any:
    """Offer only a challenge of an unknown type in every authorization."""
    if isinstance(document, dict) and "challenges" in document:
        document["challenges"] = [dict(_FUTURE_CHALLENGE)]
    return document


def _with_unknown_fields(document: Any) -> Any:
    """
    Add fields this client has never heard of to a JSON answer: at the top
    of every object, in the directory's ``meta`` and in every challenge, an
    unknown directory entry, and a challenge of an unknown type (first, so
    that a client that trips on it shows).
    """
    if not isinstance(document, dict):
        return document
    document["txacmeUnknown"] = {"nested": [1, "two", None]}
    meta = document.get("meta")
    if isinstance(meta, dict):
        meta["txacmeUnknownMeta"] = True
    if "newNonce" in document:
        document["txacmeFutureEndpoint"] = "https://acme.example/future"
    found = document.get("challenges")
    if isinstance(found, list):
        for challenge in found:
            challenge["txacmeUnknown"] = 42
        found.insert(0, dict(_FUTURE_CHALLENGE))
    return document


class _NativeTestCase(AcmeTestCase):
    """Helpers shared by the tests of the native API."""

    def client_over(
        self,
        resource: IResource,
        key: JWK = EC_KEY,
        register: bool = True,
        **arguments: Any,
    ) -> Client:
        """A client whose requests go through ``resource``."""
        http: Any = StubTreq(resource)  # type: ignore[no-untyped-call]
        jws = JWSClient(http, key, alg_for_key(key), reactor=self.clock, **arguments)
        client = self.successResultOf(
            Client.from_url(
                self.clock, self.server.directory_url, key, alg_for_key(key), jws
            )
        )
        if register:
            self.successResultOf(
                client.register(
                    messages.NewRegistration.from_data(terms_of_service_agreed=True)
                )
            )
        return client

    def authorize(
        self, client: Client, orderr: messages.OrderResource
    ) -> messages.OrderResource:
        """Answer every authorization of an order; return the order."""
        responders = [HTTP01Responder(), RecordingResponder("dns-01")]
        for authzr in orderr.authorizations:
            stop = self.successResultOf(answer_challenge(authzr, client, responders))
            valid = self.successResultOf(
                self.settle(poll_until_valid(authzr, self.clock, client), self.clock)
            )
            self.assertEqual(valid.body.status, messages.STATUS_VALID)
            self.successResultOf(stop())
        return orderr

    def ordered(
        self, client: Client, names: Sequence[str], **arguments: Any
    ) -> messages.OrderResource:
        """A new order for ``names`` whose authorizations are valid."""
        return self.authorize(
            client, self.successResultOf(client.new_order(names, **arguments))
        )

    def finalized(
        self,
        client: Client,
        names: Sequence[str],
        key: Any = _CERT_KEY,
        **arguments: Any,
    ) -> messages.OrderResource:
        """An order for ``names``, authorized and finalized."""
        orderr = self.ordered(client, names, **arguments)
        return self.successResultOf(
            self.settle(client.finalize(orderr, csr_for_names(names, key)), self.clock)
        )

    def leaf(self, orderr: messages.OrderResource) -> x509.Certificate:
        assert orderr.fullchain_pem is not None
        return _chain(orderr.fullchain_pem)[0]

    def verify(self, pem: str, root: x509.Certificate, name: str) -> None:
        """Verify a PEM chain for ``name`` up to ``root``, at the clock's time."""
        [leaf, *issuers] = _chain(pem)
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store([root]))
            .time(datetime.fromtimestamp(self.clock.seconds(), UTC))
            .build_server_verifier(_general_name(name))
        )
        verifier.verify(leaf, issuers)

    def server_order(self) -> Any:
        """The server's newest order."""
        return self.server.orders[-1]


class NewOrderTests(_NativeTestCase):
    """Tests for :meth:`Client.new_order`."""

    def test_identifier_objects(self) -> None:
        """
        Identifier objects are ordered as given; the order comes back with
        its URL and every authorization fetched.
        """
        client = self.registered_client()
        identifiers = [
            messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.example"),
            messages.Identifier(typ=messages.IDENTIFIER_IP, value="192.0.2.7"),
        ]
        orderr = self.successResultOf(client.new_order(identifiers))
        order = self.server_order()
        self.assertEqual(orderr.uri, order.url)
        self.assertEqual(list(orderr.body.identifiers), identifiers)
        self.assertEqual(
            [authzr.uri for authzr in orderr.authorizations],
            [authorization.url for authorization in order.authorizations],
        )
        self.assertEqual(
            [authzr.body.identifier for authzr in orderr.authorizations], identifiers
        )
        self.assertEqual(self.server.request_counts()["authorization"], 2)

    def test_plain_strings(self) -> None:
        """
        Plain strings become DNS identifiers (wildcards included) or IP
        identifiers (RFC 8738) in canonical form, IPv4 and IPv6 alike.
        """
        client = self.registered_client()
        orderr = self.successResultOf(
            client.new_order(
                ["a.example", "*.b.example", "192.0.2.1", "2001:DB8:0:0::1"]
            )
        )
        self.assertEqual(
            [(i.typ.name, i.value) for i in self.server_order().identifiers],
            [
                ("dns", "a.example"),
                ("dns", "*.b.example"),
                ("ip", "192.0.2.1"),
                ("ip", "2001:db8::1"),
            ],
        )
        wildcard, address = orderr.authorizations[1], orderr.authorizations[3]
        self.assertEqual(wildcard.body.identifier.value, "b.example")
        self.assertTrue(wildcard.body.wildcard)
        self.assertEqual(
            [challb.chall.typ for challb in wildcard.body.challenges], ["dns-01"]
        )
        self.assertEqual(address.body.identifier.typ, messages.IDENTIFIER_IP)
        self.assertNotIn(
            "dns-01", [challb.chall.typ for challb in address.body.challenges]
        )

    def test_ip_and_wildcard_issued(self) -> None:
        """
        Orders for wildcard, IPv4 and IPv6 identifiers are finalized into a
        certificate naming each of them, which verifies for each.
        """
        client = self.registered_client()
        names = ["*.b.example", "192.0.2.1", "2001:db8::1"]
        orderr = self.finalized(client, names)
        self.assertEqual(sorted(_names_of(self.leaf(orderr))), sorted(names))
        assert orderr.fullchain_pem is not None
        for name in ("192.0.2.1", "2001:db8::1", "x.b.example"):
            self.verify(orderr.fullchain_pem, self.server.root_certificates()[0], name)

    def test_no_identifiers(self) -> None:
        """An order for nothing is a ValueError; nothing is sent."""
        client = self.registered_client()
        before = len(self.server.requests)
        self.failureResultOf(client.new_order([]), ValueError)
        self.assertEqual(len(self.server.requests), before)

    def test_rejected_identifier(self) -> None:
        """
        The CA's refusal of an identifier is a ServerError with its code,
        and no authorization is fetched.
        """
        client = self.registered_client()
        failure = self.errorOf(client.new_order(["not a name!"]), ServerError)
        self.assertEqual(failure.code, "rejectedIdentifier")
        self.assertEqual(self.server.request_counts()["authorization"], 0)

    def test_no_location(self) -> None:
        """A newOrder answer without Location is a MalformedResponse."""
        client = self.registered_client()
        self.server.break_next("newOrder", "no-location")
        failure = self.errorOf(client.new_order(["a.example"]), MalformedResponse)
        self.assertIn("Location", str(failure))

    def test_profile_sent_and_echoed(self) -> None:
        """
        A profile from ``meta.profiles`` is sent; the server records it and
        the order echoes it.
        """
        self.server = self.make_server(profiles=_PROFILES)
        client = self.registered_client()
        orderr = self.successResultOf(
            client.new_order(["a.example"], profile="shortlived")
        )
        self.assertEqual(self.server_order().profile, "shortlived")
        self.assertEqual(orderr.body.profile, "shortlived")

    def test_no_profile_sent(self) -> None:
        """Without ``profile`` the order has none."""
        self.server = self.make_server(profiles=_PROFILES)
        client = self.registered_client()
        orderr = self.successResultOf(client.new_order(["a.example"]))
        self.assertIsNone(self.server_order().profile)
        self.assertIsNone(orderr.body.profile)

    def test_profile_not_offered(self) -> None:
        """
        A profile missing from ``meta.profiles`` is NotOffered, naming the
        offered ones, and no request is made.
        """
        self.server = self.make_server(profiles=_PROFILES)
        client = self.registered_client()
        before = len(self.server.requests)
        failure = self.errorOf(
            client.new_order(["a.example"], profile="tlsserver"), NotOffered
        )
        self.assertEqual(failure.feature, "profile")
        self.assertIn("classic", str(failure))
        self.assertIn("shortlived", str(failure))
        self.assertEqual(len(self.server.requests), before)

    def test_no_profiles_at_all(self) -> None:
        """
        A directory without ``meta.profiles`` makes every profile
        NotOffered; no request is made.
        """
        client = self.registered_client()
        before = len(self.server.requests)
        failure = self.errorOf(
            client.new_order(["a.example"], profile="classic"), NotOffered
        )
        self.assertIn("none", str(failure))
        self.assertEqual(len(self.server.requests), before)

    def test_profile_refused_by_ca(self) -> None:
        """
        A CA refusing an offered profile (its directory changed) answers
        ``invalidProfile``, raised as a ServerError.
        """
        self.server = self.make_server(profiles=_PROFILES)
        client = self.registered_client()
        self.server.fail_next("newOrder", "invalidProfile", status=400)
        failure = self.errorOf(
            client.new_order(["a.example"], profile="classic"), ServerError
        )
        self.assertEqual(failure.code, "invalidProfile")
        self.assertEqual(self.server.request_counts()["newOrder"], 1)

    def test_replaces_sent_with_ari(self) -> None:
        """
        With ``renewalInfo`` in the directory, ``replaces`` is sent as the
        replaced certificate's ARI certID, given a certificate or the
        certID itself.
        """
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        old = self.leaf(self.finalized(client, ["a.example"]))
        certificate_id = renewal_certificate_id(old)
        self.successResultOf(client.new_order(["a.example"], replaces=old))
        self.assertEqual(self.server_order().replaces, certificate_id)
        self.successResultOf(client.new_order(["a.example"], replaces=certificate_id))
        self.assertEqual(self.server_order().replaces, certificate_id)

    def test_replaces_not_sent_without_ari(self) -> None:
        """
        Without ``renewalInfo`` in the directory, ``replaces`` is not sent
        (a CA without ARI may refuse the field): one request, no replaces.
        """
        client = self.registered_client()
        old = self.leaf(self.finalized(client, ["a.example"]))
        before = self.server.request_counts()["newOrder"]
        self.successResultOf(client.new_order(["a.example"], replaces=old))
        self.assertIsNone(self.server_order().replaces)
        self.assertEqual(self.server.request_counts()["newOrder"], before + 1)

    def test_already_replaced_retried_without(self) -> None:
        """
        When the CA answers ``alreadyReplaced``, the order is made again
        without ``replaces``.
        """
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        old = self.leaf(self.finalized(client, ["a.example"]))
        self.finalized(client, ["a.example"], replaces=old)
        replaced = self.server.certificate_by_serial(old.serial_number)
        self.assertIsNotNone(replaced.replaced_by)
        before = self.server.request_counts()["newOrder"]
        orderr = self.successResultOf(client.new_order(["a.example"], replaces=old))
        self.assertEqual(self.server.request_counts()["newOrder"], before + 2)
        refused = [r for r in self.server.requests if r.endpoint == "newOrder"][-2]
        self.assertEqual(refused.status, 409)
        self.assertEqual(orderr.uri, self.server_order().url)
        self.assertIsNone(self.server_order().replaces)

    def test_unknown_replaces_retried_without(self) -> None:
        """
        A ``malformed`` refusal that is about ``replaces`` (a certID the CA
        does not know) is also retried without it.
        """
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        self.successResultOf(client.new_order(["a.example"], replaces="AAAA.AAAA"))
        self.assertEqual(self.server.request_counts()["newOrder"], 2)
        self.assertIsNone(self.server_order().replaces)

    def test_other_error_with_replaces_raised(self) -> None:
        """
        An error unrelated to ``replaces`` is raised, not retried without
        it.
        """
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        old = self.leaf(self.finalized(client, ["a.example"]))
        self.server.fail_next("newOrder", "rejectedIdentifier", detail="policy")
        failure = self.errorOf(
            client.new_order(["a.example"], replaces=old), ServerError
        )
        self.assertEqual(failure.code, "rejectedIdentifier")
        self.assertEqual(self.server.request_counts()["newOrder"], 2)


class FinalizeTests(_NativeTestCase):
    """Tests for :meth:`Client.finalize`."""

    def test_finalize(self) -> None:
        """
        An authorized order is finalized: the result is ``valid``, with the
        chain (leaf first, for the CSR's key and names), the CSR, and no
        alternates.
        """
        client = self.registered_client()
        orderr = self.finalized(client, ["a.example", "b.example"])
        self.assertEqual(orderr.body.status, messages.STATUS_VALID)
        [certificate] = self.server.certificates
        self.assertEqual(orderr.body.certificate, certificate.url)
        self.assertEqual(orderr.fullchain_pem, certificate.pem_chain())
        leaf = self.leaf(orderr)
        self.assertEqual(leaf.public_key(), _CERT_KEY.public_key())
        self.assertEqual(sorted(_names_of(leaf)), ["a.example", "b.example"])
        assert orderr.csr_pem is not None
        self.assertIn(b"CERTIFICATE REQUEST", orderr.csr_pem)
        self.assertEqual(orderr.alternative_fullchains_pem, [])
        assert orderr.fullchain_pem is not None
        self.verify(
            orderr.fullchain_pem, self.server.root_certificates()[0], "b.example"
        )

    def test_csr_forms(self) -> None:
        """
        The CSR may be a ``cryptography`` CSR, PEM bytes or a certificate
        request message.
        """
        client = self.registered_client()
        csr = csr_for_names(["a.example"], _CERT_KEY)
        for form in (
            csr,
            csr.public_bytes(serialization.Encoding.PEM),
            CertificateRequest(csr=csr),
        ):
            orderr = self.ordered(client, ["a.example"])
            finalized = self.successResultOf(
                self.settle(client.finalize(orderr, form), self.clock)
            )
            self.assertEqual(finalized.body.status, messages.STATUS_VALID)
        self.assertEqual(len(self.server.certificates), 3)

    def test_processing_retry_after(self) -> None:
        """
        An order that stays ``processing`` is polled when the server's
        Retry-After says, not before.
        """
        self.server = self.make_server(processing_delay=40)
        client = self.registered_client()
        orderr = self.ordered(client, ["a.example"])
        before = self.server.request_counts()["order"]
        result = client.finalize(orderr, csr_for_names(["a.example"], _CERT_KEY))
        self.clock.advance(39.9)
        self.assertNoResult(result)
        # One refresh before finalizing, none while waiting.
        self.assertEqual(self.server.request_counts()["order"], before + 1)
        self.clock.advance(0.1)
        finalized = self.successResultOf(result)
        self.assertEqual(finalized.body.status, messages.STATUS_VALID)
        self.assertEqual(self.server.request_counts()["order"], before + 2)

    def test_alternate_chains(self) -> None:
        """
        Alternate chains (``Link: rel="alternate"``) are downloaded: each
        has the same leaf and verifies to its own root.
        """
        self.server = self.make_server(alternate_chains=2)
        client = self.registered_client()
        orderr = self.finalized(client, ["a.example"])
        assert orderr.fullchain_pem is not None
        alternates = orderr.alternative_fullchains_pem
        self.assertEqual(len(alternates), 2)
        self.assertEqual(self.server.request_counts()["certificate"], 3)
        roots = self.server.root_certificates()
        self.verify(orderr.fullchain_pem, roots[0], "a.example")
        for alternate in alternates:
            self.assertEqual(_chain(alternate)[0], self.leaf(orderr))
        certificate = self.server.certificates[0]
        self.assertEqual(
            sorted(alternates), sorted(certificate.pem_chain(i) for i in (1, 2))
        )
        for index, root in enumerate(roots[1:], start=1):
            self.verify(certificate.pem_chain(index), root, "a.example")

    def test_fullchain_matches_fetch_chain(self) -> None:
        """
        ``fullchain_pem`` holds the leaf and the same issuers, in the same
        order, as ``fetch_chain`` gives for the certificate URL.
        """
        for length in (1, 3, 4):
            self.server = self.make_server(chain_length=length)
            client = self.registered_client()
            orderr = self.finalized(client, ["a.example"])
            assert orderr.fullchain_pem is not None
            assert orderr.body.certificate is not None
            [leaf, *issuers] = _chain(orderr.fullchain_pem)
            self.assertEqual(len(issuers), length)
            der = leaf.public_bytes(serialization.Encoding.DER)
            fetched = self.successResultOf(
                client.fetch_chain(
                    messages.CertificateResource(
                        uri=orderr.body.certificate,
                        cert_chain_uri=orderr.body.certificate,
                        body=der,
                        authzrs=(),
                    )
                )
            )
            self.assertEqual(
                [certificate.body for certificate in fetched],
                [c.public_bytes(serialization.Encoding.DER) for c in issuers],
            )

    def test_not_authorized(self) -> None:
        """
        An order whose authorizations were never answered is
        AuthorizationsNotValid naming them; nothing is finalized.
        """
        client = self.registered_client()
        orderr = self.successResultOf(client.new_order(["a.example", "b.example"]))
        failure = self.errorOf(
            client.finalize(
                orderr, csr_for_names(["a.example", "b.example"], _CERT_KEY)
            ),
            AuthorizationsNotValid,
        )
        self.assertEqual(
            sorted(a.body.identifier.value for a in failure.authorizations),
            ["a.example", "b.example"],
        )
        self.assertEqual(self.server.request_counts()["finalize"], 0)

    def test_invalid_order(self) -> None:
        """
        An order whose authorization failed is invalid: OrderFailed,
        carrying the server's error; nothing is finalized.
        """
        self.server = self.make_server(invalid_identifiers={"bad.example"})
        client = self.registered_client()
        orderr = self.successResultOf(client.new_order(["bad.example"]))
        self.successResultOf(
            answer_challenge(orderr.authorizations[0], client, [HTTP01Responder()])
        )
        failure = self.errorOf(
            client.finalize(orderr, csr_for_names(["bad.example"], _CERT_KEY)),
            OrderFailed,
        )
        self.assertEqual(failure.orderr.body.status, messages.STATUS_INVALID)
        self.assertIn(orderr.uri, str(failure))
        self.assertEqual(self.server.request_counts()["finalize"], 0)

    def test_bad_csr(self) -> None:
        """A CSR for other names is refused by the CA: ``badCSR``."""
        client = self.registered_client()
        orderr = self.ordered(client, ["a.example"])
        failure = self.errorOf(
            client.finalize(orderr, csr_for_names(["z.example"], _CERT_KEY)),
            ServerError,
        )
        self.assertEqual(failure.code, "badCSR")

    def test_not_a_chain(self) -> None:
        """A certificate body that is not a PEM chain is a MalformedResponse."""
        client = self.registered_client()
        orderr = self.ordered(client, ["a.example"])
        self.server.break_next("certificate", "not-pem")
        self.failureResultOf(
            client.finalize(orderr, csr_for_names(["a.example"], _CERT_KEY)),
            MalformedResponse,
        )

    def test_cancel_while_processing(self) -> None:
        """
        Cancelling ``finalize`` while the order is processing stops the
        polling: CancelledError, and nothing is left on the clock.
        """
        self.server = self.make_server(processing_delay=100)
        client = self.registered_client()
        orderr = self.ordered(client, ["a.example"])
        result = client.finalize(orderr, csr_for_names(["a.example"], _CERT_KEY))
        self.clock.advance(10)
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PollingPolicyTests(_NativeTestCase):
    """Tests for :class:`PollingPolicy` and :class:`PollTimeout`."""

    def test_delays(self) -> None:
        """
        Delays grow by the factor up to the ceiling; a Retry-After wins,
        negative ones counting as zero.
        """
        policy = PollingPolicy(first_delay=1, factor=2, max_delay=5)
        self.assertEqual([policy.delay(n) for n in range(5)], [1, 2, 4, 5, 5])
        self.assertEqual(policy.delay(3, retry_after=0.5), 0.5)
        self.assertEqual(policy.delay(0, retry_after=-3), 0)

    def test_authorization_delay(self) -> None:
        """
        The first wait for an authorization is ``initial_delay`` when set
        (0 polls at once), else the first delay; a Retry-After wins; later
        waits follow the delays.
        """
        default = PollingPolicy(first_delay=2, factor=2)
        self.assertEqual(default.authorization_delay(0, None), 2)
        immediate = PollingPolicy(first_delay=2, factor=2, initial_delay=0)
        self.assertEqual(immediate.authorization_delay(0, None), 0)
        self.assertEqual(immediate.authorization_delay(0, 7.0), 7.0)
        self.assertEqual(immediate.authorization_delay(1, None), 4)

    def test_validation(self) -> None:
        """Non-positive delays and timeouts, and factors below 1, are refused."""
        for arguments in (
            {"first_delay": 0},
            {"factor": 0.5},
            {"max_delay": 0},
            {"timeout": 0},
            {"initial_delay": -1},
        ):
            self.assertRaises(ValueError, PollingPolicy, **arguments)

    def test_policy_without_retry_after(self) -> None:
        """
        Without Retry-After a processing order is polled after the policy's
        delays: 1, 2, 4, then 4 (the ceiling) seconds.
        """
        self.server = self.make_server(processing_delay=10)
        client = self.client_over(
            RewritingResource(self.server.resource(), drop_headers=[b"retry-after"]),
        )
        client.policy = PollingPolicy(first_delay=1, factor=2, max_delay=4)
        orderr = self.ordered(client, ["a.example"])
        result = client.finalize(orderr, csr_for_names(["a.example"], _CERT_KEY))
        polls: list[int] = []
        for _ in range(11):
            polls.append(self.server.request_counts()["order"])
            self.assertNoResult(result)
            self.clock.advance(1)
        self.successResultOf(result)
        first = polls[0]
        # Polled at 1, 3 and 7 seconds, and last at 11.
        self.assertEqual(
            [count - first for count in polls], [0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
        )

    def test_poll_timeout(self) -> None:
        """
        An order that never finishes processing is PollTimeout after the
        policy's timeout, naming the order and its status; nothing is left
        on the clock.
        """
        self.server = self.make_server(processing_delay=10_000)
        client = self.registered_client(policy=PollingPolicy(timeout=60))
        orderr = self.ordered(client, ["a.example"])
        result = client.finalize(orderr, csr_for_names(["a.example"], _CERT_KEY))
        self.clock.advance(59)
        self.assertNoResult(result)
        self.clock.advance(1)
        failure = self.errorOf(result, PollTimeout)
        self.assertEqual(failure.url, orderr.uri)
        self.assertEqual(failure.status, "processing")
        self.assertEqual(failure.waited, 60)
        self.assertIn(orderr.uri, str(failure))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AccountTests(_NativeTestCase):
    """
    Tests for ``find_registration``, ``deactivate_registration`` and
    ``change_key``.
    """

    def test_find_registration(self) -> None:
        """
        ``find_registration`` finds the key's account without creating one,
        and later requests are signed for it.
        """
        self.registered_client()
        client = self.make_client()
        regr = self.successResultOf(client.find_registration())
        [account] = self.server.accounts
        self.assertEqual(regr.uri, account.url)
        # acme.messages.Registration keeps its status as text.
        self.assertEqual(regr.body.status, "valid")
        self.successResultOf(client.new_order(["a.example"]))
        self.assertEqual(self.server_order().account_url, account.url)

    def test_find_registration_none(self) -> None:
        """A key without account is AccountDoesNotExist; none is created."""
        client = self.make_client()
        failure = self.errorOf(client.find_registration(), AccountDoesNotExist)
        self.assertEqual(failure.code, "accountDoesNotExist")
        self.assertEqual(self.server.accounts, [])
        self.assertIsNone(client.account_url)

    def test_deactivate_registration(self) -> None:
        """
        A deactivated account says so, and the CA refuses every later
        request for it, a lookup included.
        """
        client = self.registered_client()
        regr = self.successResultOf(client.find_registration())
        deactivated = self.successResultOf(client.deactivate_registration(regr))
        self.assertEqual(deactivated.body.status, "deactivated")
        self.assertEqual(deactivated.uri, regr.uri)
        self.assertEqual(self.server.accounts[0].status, "deactivated")
        failure = self.errorOf(client.new_order(["a.example"]), ServerError)
        self.assertEqual(failure.code, "unauthorized")
        self.assertEqual(self.server.orders, [])
        self.failureResultOf(client.find_registration(), ServerError)

    def test_deactivate_twice(self) -> None:
        """Deactivating a deactivated account is a ServerError."""
        client = self.registered_client()
        regr = self.successResultOf(client.find_registration())
        self.successResultOf(client.deactivate_registration(regr))
        self.failureResultOf(client.deactivate_registration(regr), ServerError)

    def test_change_key(self) -> None:
        """
        After ``change_key`` the account has the new key, a new order signed
        with it works, and the old key no longer finds the account.
        """
        client = self.registered_client()
        [account] = self.server.accounts
        self.successResultOf(client.change_key(_NEW_EC_KEY))
        new_jwk = JWKEC(key=_NEW_EC_KEY)
        self.assertEqual(client.key, new_jwk)
        self.assertEqual(account.key.thumbprint(), new_jwk.public_key().thumbprint())
        orderr = self.finalized(client, ["a.example"])
        self.assertEqual(self.server_order().account_url, account.url)
        self.assertEqual(orderr.body.status, messages.STATUS_VALID)
        old = self.make_client(key=EC_KEY)
        self.failureResultOf(old.find_registration(), AccountDoesNotExist)
        new = self.make_client(key=new_jwk)
        self.assertEqual(self.successResultOf(new.find_registration()).uri, account.url)

    def test_change_key_algorithms(self) -> None:
        """
        The new key's algorithm follows its type: RS256 for RSA, ES384 for
        P-384; the account keeps working after each change.
        """
        client = self.registered_client()
        for key, alg in ((_NEW_RSA_KEY, RS256), (_NEW_P384_KEY, ES384)):
            self.successResultOf(client.change_key(key))
            self.assertEqual(client._signer.alg, alg)
            self.successResultOf(client.new_order(["a.example"]))
        self.assertIsInstance(client.key, JWKEC)
        self.assertEqual(len(self.server.orders), 2)

    def test_change_key_jwk(self) -> None:
        """The new key may be given as a JWK with its algorithm."""
        client = self.registered_client()
        self.successResultOf(client.change_key(JWKRSA(key=_NEW_RSA_KEY), RS256))
        self.assertIsInstance(client.key, JWKRSA)
        self.successResultOf(client.new_order(["a.example"]))

    def test_change_key_in_use(self) -> None:
        """
        A new key that already has an account is refused (409); the client
        keeps signing with its old key.
        """
        self.registered_client(key=OTHER_EC_KEY)
        client = self.registered_client()
        failure = self.errorOf(client.change_key(OTHER_EC_KEY), ServerError)
        self.assertEqual(failure.status, 409)
        self.assertEqual(client.key, EC_KEY)
        self.assertEqual(client._signer.alg, ES256)
        self.successResultOf(client.new_order(["a.example"]))

    def test_change_key_without_account(self) -> None:
        """``change_key`` before ``register`` is a ValueError; nothing is sent."""
        client = self.make_client()
        before = len(self.server.requests)
        self.failureResultOf(client.change_key(_NEW_EC_KEY), ValueError)
        self.assertEqual(len(self.server.requests), before)
        self.assertEqual(client.key, EC_KEY)

    def test_change_key_not_offered(self) -> None:
        """
        A directory without ``keyChange`` makes ``change_key`` NotOffered,
        and nothing is sent.
        """

        def without_key_change(document: Any) -> Any:
            if isinstance(document, dict):
                document.pop("keyChange", None)
            return document

        client = self.client_over(
            RewritingResource(self.server.resource(), edit_json=without_key_change)
        )
        before = len(self.server.requests)
        failure = self.errorOf(client.change_key(_NEW_EC_KEY), NotOffered)
        self.assertEqual(failure.feature, "keyChange")
        self.assertEqual(len(self.server.requests), before)


class ExternalAccountBindingTests(_NativeTestCase):
    """Tests for ``register(new_reg, eab=EABCredentials(...))``."""

    def setUp(self) -> None:
        super().setUp()
        self.server = self.make_server(
            eab_required=True, eab_keys={_EAB_KEY_ID: _EAB_HMAC}
        )

    def new_reg(self) -> messages.NewRegistration:
        return messages.NewRegistration.from_data(terms_of_service_agreed=True)

    def test_required_and_missing(self) -> None:
        """
        When the directory says EAB is required, registering without it is
        ExternalAccountRequired saying what to pass, and nothing is sent.
        """
        client = self.make_client()
        before = len(self.server.requests)
        failure = self.errorOf(client.register(self.new_reg()), ExternalAccountRequired)
        self.assertIn("eab=EABCredentials", str(failure))
        self.assertEqual(len(self.server.requests), before)
        self.assertEqual(self.server.accounts, [])

    def test_required_by_ca_only(self) -> None:
        """
        A CA that requires EAB without saying so in its directory answers
        ``externalAccountRequired``, raised as ExternalAccountRequired.
        """

        def hide_requirement(document: Any) -> Any:
            if isinstance(document, dict) and isinstance(document.get("meta"), dict):
                document["meta"].pop("externalAccountRequired", None)
            return document

        client = self.client_over(
            RewritingResource(self.server.resource(), edit_json=hide_requirement),
            register=False,
        )
        failure = self.errorOf(client.register(self.new_reg()), ExternalAccountRequired)
        self.assertEqual(failure.code, "externalAccountRequired")
        self.assertEqual(self.server.request_counts()["newAccount"], 1)

    def test_good_key(self) -> None:
        """
        A binding MACed with the right key creates the account, bound to
        the key id; it can order.
        """
        client = self.make_client()
        regr = self.successResultOf(
            client.register(self.new_reg(), eab=EABCredentials(_EAB_KEY_ID, _EAB_HMAC))
        )
        [account] = self.server.accounts
        self.assertEqual(regr.uri, account.url)
        self.assertEqual(account.external_account_key_id, _EAB_KEY_ID)
        self.successResultOf(client.new_order(["a.example"]))

    def test_base64url_key_and_algorithms(self) -> None:
        """
        The MAC key may be the base64url text CAs show, and HS384 or HS512
        may be used.
        """
        text = b64encode(_EAB_HMAC).decode("ascii")
        for key, alg in ((EC_KEY, "HS256"), (OTHER_EC_KEY, "HS384")):
            client = self.make_client(key=key)
            self.successResultOf(
                client.register(
                    self.new_reg(), eab=EABCredentials(_EAB_KEY_ID, text, alg=alg)
                )
            )
        client = self.make_client(key=JWKEC(key=_NEW_EC_KEY))
        self.successResultOf(
            client.register(
                self.new_reg(), eab=EABCredentials(_EAB_KEY_ID, _EAB_HMAC, alg="HS512")
            )
        )
        self.assertEqual(len(self.server.accounts), 3)

    def test_bad_hmac(self) -> None:
        """
        A binding MACed with the wrong key is refused by the CA: a
        ServerError; no account is created.
        """
        client = self.make_client()
        failure = self.errorOf(
            client.register(
                self.new_reg(), eab=EABCredentials(_EAB_KEY_ID, b"not the right key")
            ),
            ServerError,
        )
        self.assertEqual(failure.code, "unauthorized")
        self.assertIn("MAC", str(failure))
        self.assertEqual(self.server.accounts, [])

    def test_unknown_key_id(self) -> None:
        """An unknown key id is refused by the CA: a ServerError."""
        client = self.make_client()
        failure = self.errorOf(
            client.register(self.new_reg(), eab=EABCredentials("kid-2", _EAB_HMAC)),
            ServerError,
        )
        self.assertIn("kid-2", str(failure))
        self.assertEqual(self.server.accounts, [])

    def test_bad_credentials(self) -> None:
        """
        A MAC key that is not base64url at all (wrong length) and an unknown
        MAC algorithm are ValueErrors; nothing is sent.
        """
        client = self.make_client()
        before = len(self.server.requests)
        self.failureResultOf(
            client.register(self.new_reg(), eab=EABCredentials(_EAB_KEY_ID, "abcde")),
            ValueError,
        )
        self.assertRaises(
            ValueError, EABCredentials, _EAB_KEY_ID, _EAB_HMAC, alg="RS256"
        )
        self.assertEqual(len(self.server.requests), before)

    def test_garbage_key_refused(self) -> None:
        """
        A MAC key text with no base64url character in it (or an empty key)
        is a ValueError, not an empty MAC key sent to the CA.
        """
        for hmac_key in ("!!!", "", b""):
            credentials = EABCredentials(_EAB_KEY_ID, hmac_key)
            self.assertRaises(
                ValueError,
                credentials.binding,
                EC_KEY.public_key(),
                "https://acme.example/new-account",
            )

    def test_find_registration_without_binding(self) -> None:
        """
        Looking up an existing account needs no binding even where the CA
        requires one for new accounts.
        """
        self.successResultOf(
            self.make_client().register(
                self.new_reg(), eab=EABCredentials(_EAB_KEY_ID, _EAB_HMAC)
            )
        )
        client = self.make_client()
        regr = self.successResultOf(client.find_registration())
        self.assertEqual(regr.uri, self.server.accounts[0].url)


class DeactivateAuthorizationTests(_NativeTestCase):
    """Tests for :meth:`Client.deactivate_authorization`."""

    def test_deactivate_pending(self) -> None:
        """
        A pending authorization is deactivated: the answer and the server
        say so, and its order can no longer be finalized.
        """
        client = self.registered_client()
        orderr = self.successResultOf(client.new_order(["a.example"]))
        [authzr] = orderr.authorizations
        deactivated = self.successResultOf(client.deactivate_authorization(authzr))
        self.assertEqual(deactivated.uri, authzr.uri)
        self.assertEqual(deactivated.body.status, messages.STATUS_DEACTIVATED)
        self.assertEqual(self.server.authorizations[0].status, "deactivated")
        self.failureResultOf(
            client.finalize(orderr, csr_for_names(["a.example"], _CERT_KEY)),
            OrderFailed,
        )

    def test_deactivate_valid(self) -> None:
        """
        A valid authorization is deactivated; a new order for the name then
        needs a new authorization.
        """
        client = self.registered_client()
        orderr = self.ordered(client, ["a.example"])
        self.successResultOf(client.deactivate_authorization(orderr.authorizations[0]))
        again = self.successResultOf(client.new_order(["a.example"]))
        self.assertEqual(again.authorizations[0].body.status, messages.STATUS_PENDING)
        self.assertNotEqual(again.authorizations[0].uri, orderr.authorizations[0].uri)

    def test_deactivate_twice(self) -> None:
        """Deactivating a deactivated authorization is a ServerError."""
        client = self.registered_client()
        orderr = self.successResultOf(client.new_order(["a.example"]))
        self.successResultOf(client.deactivate_authorization(orderr.authorizations[0]))
        failure = self.errorOf(
            client.deactivate_authorization(orderr.authorizations[0]), ServerError
        )
        self.assertEqual(failure.code, "malformed")

    def test_other_account(self) -> None:
        """Another account's authorization cannot be deactivated."""
        client = self.registered_client()
        orderr = self.successResultOf(client.new_order(["a.example"]))
        other = self.registered_client(key=OTHER_EC_KEY)
        failure = self.errorOf(
            other.deactivate_authorization(orderr.authorizations[0]), ServerError
        )
        self.assertEqual(failure.code, "unauthorized")
        self.assertEqual(self.server.authorizations[0].status, "pending")


class RevocationTests(_NativeTestCase):
    """Tests for :meth:`Client.revoke`."""

    def issued(self, client: Client) -> x509.Certificate:
        return self.leaf(self.finalized(client, ["a.example"]))

    def test_by_account(self) -> None:
        """
        The ordering account revokes with a reason; the server records the
        revocation and the reason.
        """
        client = self.registered_client()
        certificate = self.issued(client)
        self.successResultOf(client.revoke(certificate, reason=4))
        record = self.server.certificate_by_serial(certificate.serial_number)
        self.assertTrue(record.revoked)
        self.assertEqual(record.revocation_reason, 4)

    def test_certificate_forms(self) -> None:
        """
        The certificate may be given as DER, PEM, or a certificate resource;
        the default reason is unspecified (0).
        """
        client = self.registered_client()
        certificates = [self.issued(client) for _ in range(3)]
        der, pem, in_resource = (
            certificates[0].public_bytes(serialization.Encoding.DER),
            certificates[1].public_bytes(serialization.Encoding.PEM),
            messages.CertificateResource(
                uri=self.server.certificates[2].url,
                cert_chain_uri=self.server.certificates[2].url,
                body=certificates[2].public_bytes(serialization.Encoding.DER),
                authzrs=(),
            ),
        )
        for form in (der, pem, in_resource):
            self.successResultOf(client.revoke(form))
        for certificate in certificates:
            record = self.server.certificate_by_serial(certificate.serial_number)
            self.assertTrue(record.revoked)
            self.assertEqual(record.revocation_reason, 0)

    def test_by_certificate_key(self) -> None:
        """
        Anyone holding the certificate's key revokes it, signing with that
        key (``jwk``), even a client without account.
        """
        client = self.registered_client()
        certificate = self.issued(client)
        stranger = self.make_client(key=OTHER_EC_KEY)
        self.successResultOf(stranger.revoke(certificate, reason=1, key=_CERT_KEY))
        record = self.server.certificate_by_serial(certificate.serial_number)
        self.assertTrue(record.revoked)
        self.assertEqual(record.revocation_reason, 1)
        self.assertEqual(len(self.server.accounts), 1)

    def test_by_certificate_key_jwk_with_account(self) -> None:
        """
        An account client revoking with the certificate's key (as a JWK)
        signs with that key, not the account: it works for a certificate
        of another account.
        """
        owner = self.registered_client()
        certificate = self.issued(owner)
        other = self.registered_client(key=OTHER_EC_KEY)
        self.successResultOf(other.revoke(certificate, key=JWKEC(key=_CERT_KEY)))
        self.assertTrue(
            self.server.certificate_by_serial(certificate.serial_number).revoked
        )

    def test_wrong_key(self) -> None:
        """
        Signing with a key that is not the certificate's is refused:
        ``unauthorized``; the certificate stays valid.
        """
        client = self.registered_client()
        certificate = self.issued(client)
        failure = self.errorOf(
            client.revoke(certificate, key=_OTHER_CERT_KEY), ServerError
        )
        self.assertEqual(failure.code, "unauthorized")
        self.assertFalse(
            self.server.certificate_by_serial(certificate.serial_number).revoked
        )

    def test_other_account(self) -> None:
        """
        An account that neither ordered the certificate nor holds
        authorizations for its names may not revoke it.
        """
        client = self.registered_client()
        certificate = self.issued(client)
        other = self.registered_client(key=OTHER_EC_KEY)
        failure = self.errorOf(other.revoke(certificate), ServerError)
        self.assertEqual(failure.code, "unauthorized")

    def test_already_revoked(self) -> None:
        """Revoking twice is ``alreadyRevoked``; the first reason stays."""
        client = self.registered_client()
        certificate = self.issued(client)
        self.successResultOf(client.revoke(certificate, reason=5))
        failure = self.errorOf(client.revoke(certificate, reason=4), ServerError)
        self.assertEqual(failure.code, "alreadyRevoked")
        record = self.server.certificate_by_serial(certificate.serial_number)
        self.assertEqual(record.revocation_reason, 5)

    def test_bad_reason(self) -> None:
        """A reason the CA does not accept is ``badRevocationReason``."""
        client = self.registered_client()
        certificate = self.issued(client)
        failure = self.errorOf(client.revoke(certificate, reason=2), ServerError)
        self.assertEqual(failure.code, "badRevocationReason")
        self.assertFalse(
            self.server.certificate_by_serial(certificate.serial_number).revoked
        )

    def test_not_a_certificate(self) -> None:
        """Something that is not a certificate is a TypeError; nothing is sent."""
        client = self.registered_client()
        before = len(self.server.requests)
        self.failureResultOf(client.revoke("nope"), TypeError)  # type: ignore[arg-type]
        self.assertEqual(len(self.server.requests), before)


class RenewalInfoTests(_NativeTestCase):
    """Tests for :meth:`Client.renewal_info` (RFC 9773)."""

    def test_window(self) -> None:
        """
        The suggested window, the Retry-After and the explanation URL the
        CA gives for the certificate are returned.
        """
        self.server = self.make_server(
            offer_renewal_info=True, renewal_info_retry_after=3600
        )
        client = self.registered_client()
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        start = datetime(2026, 12, 1, tzinfo=UTC)
        end = datetime(2026, 12, 3, tzinfo=UTC)
        self.server.set_renewal_window(
            certificate.serial_number, start, end, "https://acme.example/why"
        )
        window = self.successResultOf(client.renewal_info(certificate))
        self.assertEqual(
            window,
            RenewalWindow(
                start=start,
                end=end,
                retry_after=3600,
                explanation_url="https://acme.example/why",
            ),
        )
        self.assertEqual(self.server.request_counts()["renewalInfo"], 1)
        self.assertEqual(
            [r.method for r in self.server.requests if r.endpoint == "renewalInfo"],
            ["GET"],
        )

    def test_default_window(self) -> None:
        """
        The server's own window (two thirds to five sixths of the lifetime)
        comes back for a certificate given as DER, without explanation.
        """
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        window = self.successResultOf(
            client.renewal_info(certificate.public_bytes(serialization.Encoding.DER))
        )
        self.assertEqual(
            (window.start, window.end),
            self.server.certificate_by_serial(certificate.serial_number).renewal_window,
        )
        self.assertIsNone(window.explanation_url)
        self.assertEqual(window.retry_after, 6 * 3600)

    def test_default_retry_after(self) -> None:
        """Without a Retry-After the client asks again after six hours."""
        self.server = self.make_server(
            offer_renewal_info=True, renewal_info_retry_after=60
        )
        client = self.client_over(
            RewritingResource(self.server.resource(), drop_headers=[b"retry-after"])
        )
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        window = self.successResultOf(client.renewal_info(certificate))
        self.assertEqual(window.retry_after, 6 * 3600)

    def test_malformed_window(self) -> None:
        """
        A window that ends before it starts, or no window at all, is a
        MalformedResponse.
        """

        def swapped(document: Any) -> Any:
            if isinstance(document, dict) and "suggestedWindow" in document:
                window = document["suggestedWindow"]
                window["start"], window["end"] = window["end"], window["start"]
            return document

        def missing(document: Any) -> Any:
            if isinstance(document, dict):
                document.pop("suggestedWindow", None)
            return document

        self.server = self.make_server(offer_renewal_info=True)
        issuer = self.registered_client()
        certificate = self.leaf(self.finalized(issuer, ["a.example"]))
        for edit, message in ((swapped, "ends before"), (missing, "suggestedWindow")):
            client = self.client_over(
                RewritingResource(self.server.resource(), edit_json=edit)
            )
            failure = self.errorOf(client.renewal_info(certificate), MalformedResponse)
            self.assertIn(message, str(failure))

    def test_revoked(self) -> None:
        """After revocation the suggested window lies in the past."""
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        self.successResultOf(client.revoke(certificate, reason=1))
        window = self.successResultOf(client.renewal_info(certificate))
        self.assertLess(
            window.end.timestamp(),
            datetime.fromtimestamp(self.clock.seconds(), UTC).timestamp(),
        )

    def test_not_offered(self) -> None:
        """Without ``renewalInfo`` in the directory: NotOffered, nothing sent."""
        client = self.registered_client()
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        before = len(self.server.requests)
        failure = self.errorOf(client.renewal_info(certificate), NotOffered)
        self.assertEqual(failure.feature, "renewalInfo")
        self.assertEqual(len(self.server.requests), before)

    def test_no_aki(self) -> None:
        """
        A certificate without Authority Key Identifier has no ARI certID:
        ValueError, nothing sent.
        """
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        before = len(self.server.requests)
        self.failureResultOf(
            client.renewal_info(_certificate_without_aki()), ValueError
        )
        self.assertRaises(
            ValueError, renewal_certificate_id, _certificate_without_aki()
        )
        self.assertEqual(len(self.server.requests), before)

    def test_unknown_certificate(self) -> None:
        """A certificate the CA does not know is a ServerError (404)."""
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        other = MemoryAcmeServer(clock=self.clock)
        stranger = self.registered_client(server=other)
        certificate = self.leaf(self.finalized(stranger, ["a.example"]))
        failure = self.errorOf(client.renewal_info(certificate), ServerError)
        self.assertEqual(failure.status, 404)

    def test_certificate_id(self) -> None:
        """
        The ARI certID is base64url(AKI keyIdentifier) "." base64url(DER
        serial content), as the server computes it.
        """
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client()
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        record = self.server.certificate_by_serial(certificate.serial_number)
        self.assertEqual(renewal_certificate_id(certificate), record.renewal_info_id)


class IssueCertificateTests(_NativeTestCase):
    """Tests for :func:`issue_certificate` and :func:`select_chain`."""

    def issue(
        self,
        client: Client,
        names: Sequence[str],
        responders: Sequence[IResponder],
        **arguments: Any,
    ) -> Deferred[str]:
        return issue_certificate(
            client,
            self.clock,
            csr_for_names(names, _CERT_KEY),
            responders,
            **arguments,
        )

    def test_issue(self) -> None:
        """
        The chain for the CSR's names comes back; a responder was started
        for each name and stopped again.
        """
        client = self.registered_client()
        responder = RecordingResponder()
        names = ["a.example", "b.example", "192.0.2.1"]
        pem = self.successResultOf(
            self.settle(self.issue(client, names, [responder]), self.clock)
        )
        self.assertEqual(pem, self.server.certificates[0].pem_chain())
        leaf = _chain(pem)[0]
        self.assertEqual(sorted(_names_of(leaf)), sorted(names))
        self.assertEqual(sorted(responder.started), sorted(names))
        self.assertEqual(sorted(responder.stopped), sorted(names))
        self.assertEqual(len(self.server.orders), 1)

    def test_responder_order(self) -> None:
        """
        Responders are tried in the caller's order: a dns-01 responder
        first wins over http-01; a wildcard is answered by dns-01.
        """
        client = self.registered_client()
        http = RecordingResponder("http-01")
        dns = RecordingResponder("dns-01")
        self.successResultOf(
            self.settle(
                self.issue(client, ["a.example", "*.b.example"], [dns, http]),
                self.clock,
            )
        )
        self.assertEqual(sorted(dns.started), ["a.example", "b.example"])
        self.assertEqual(http.started, [])

    def test_valid_authorizations_skipped(self) -> None:
        """
        Authorizations the CA reuses as valid need no responder: only the
        new name's is started.
        """
        client = self.registered_client()
        self.successResultOf(
            self.settle(
                self.issue(client, ["a.example"], [RecordingResponder()]), self.clock
            )
        )
        responder = RecordingResponder()
        before = self.server.request_counts()["challenge"]
        self.successResultOf(
            self.settle(
                self.issue(client, ["a.example", "b.example"], [responder]),
                self.clock,
            )
        )
        self.assertEqual(responder.started, ["b.example"])
        self.assertEqual(responder.stopped, ["b.example"])
        self.assertEqual(self.server.request_counts()["challenge"], before + 1)

    def test_stopped_on_failure(self) -> None:
        """
        When one authorization fails, AuthorizationFailed is raised and
        every responder started is stopped; nothing is finalized.
        """
        self.server = self.make_server(
            invalid_identifiers={"bad.example"}, validation_delay=5
        )
        client = self.registered_client()
        responder = RecordingResponder()
        failure = self.errorOf(
            self.settle(
                self.issue(client, ["a.example", "bad.example"], [responder]),
                self.clock,
            ),
            AuthorizationFailed,
        )
        self.assertEqual(failure.authzr.body.identifier.value, "bad.example")
        self.assertEqual(sorted(responder.started), ["a.example", "bad.example"])
        self.assertEqual(sorted(responder.stopped), ["a.example", "bad.example"])
        self.assertEqual(self.server.request_counts()["finalize"], 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopped_without_supported_challenge(self) -> None:
        """
        A name no responder can answer (a wildcard with only http-01) is
        NoSupportedChallenges, and the responders already started are
        stopped.
        """
        self.server = self.make_server(validation_delay=30)
        client = self.registered_client()
        responder = RecordingResponder()
        self.errorOf(
            self.settle(
                self.issue(client, ["a.example", "*.b.example"], [responder]),
                self.clock,
            ),
            NoSupportedChallenges,
        )
        self.assertEqual(responder.started, ["a.example"])
        self.assertEqual(responder.stopped, ["a.example"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopped_on_cancel(self) -> None:
        """
        Cancelling while the authorizations are validated is CancelledError;
        every responder is stopped and nothing is left on the clock.
        """
        self.server = self.make_server(validation_delay=1000)
        client = self.registered_client()
        responder = RecordingResponder()
        result = self.issue(client, ["a.example", "b.example"], [responder])
        self.clock.advance(30)
        self.assertNoResult(result)
        self.assertEqual(responder.stopped, [])
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.assertEqual(sorted(responder.stopped), ["a.example", "b.example"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """
        An authorization still pending at the issuance's deadline, ``timeout``
        seconds after it started, fails it with ``PollTimeout``; responders
        are stopped.
        """
        self.server = self.make_server(validation_delay=10_000)
        client = self.registered_client()
        responder = RecordingResponder()
        result = self.issue(client, ["a.example"], [responder], timeout=60)
        self.clock.advance(59)
        self.assertNoResult(result)
        self.clock.advance(1)
        failure = self.errorOf(result, PollTimeout)
        self.assertEqual(failure.status, "pending")
        self.assertEqual(failure.waited, 60)
        self.assertEqual(responder.stopped, ["a.example"])

    def test_one_deadline_for_authorizations_and_order(self) -> None:
        """
        The deadline covers the order's processing too: an issuance whose
        authorizations took most of ``timeout`` fails when the order is
        still processing at it, on the same clock.
        """
        self.server = self.make_server(validation_delay=40, processing_delay=10_000)
        client = self.registered_client()
        result = self.issue(client, ["a.example"], [RecordingResponder()], timeout=60)
        self.clock.pump([1] * 59)
        self.assertNoResult(result)
        self.clock.advance(1)
        failure = self.errorOf(result, PollTimeout)
        self.assertEqual(failure.status, "processing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_preferred_chain(self) -> None:
        """
        ``preferred_chain`` picks the alternate chain whose top certificate
        was issued by the named root.
        """
        self.server = self.make_server(alternate_chains=2)
        client = self.registered_client()
        roots = self.server.root_certificates()
        wanted = _common_name(roots[2].subject)
        pem = self.successResultOf(
            self.settle(
                self.issue(
                    client,
                    ["a.example"],
                    [RecordingResponder()],
                    preferred_chain=wanted,
                ),
                self.clock,
            )
        )
        certificate = self.server.certificates[0]
        self.assertEqual(pem, certificate.pem_chain(2))
        self.assertEqual(_common_name(_chain(pem)[-1].issuer), wanted)
        self.verify(pem, roots[2], "a.example")

    def test_preferred_chain_default(self) -> None:
        """
        ``preferred_chain`` naming the default root, or no root at all,
        gives the default chain.
        """
        self.server = self.make_server(alternate_chains=1)
        client = self.registered_client()
        default_root = _common_name(self.server.root_certificates()[0].subject)
        for preferred in (default_root, "No Such Root X1", None):
            pem = self.successResultOf(
                self.settle(
                    self.issue(
                        client,
                        ["a.example"],
                        [RecordingResponder()],
                        preferred_chain=preferred,
                    ),
                    self.clock,
                )
            )
            self.assertEqual(pem, self.server.certificates[-1].pem_chain(0))

    def test_select_chain_intermediate(self) -> None:
        """
        ``select_chain`` falls back to a chain in which any certificate's
        issuer has the name (an intermediate) when no top matches.
        """
        self.server = self.make_server(chain_length=2, alternate_chains=1)
        client = self.registered_client()
        self.successResultOf(
            self.settle(
                self.issue(client, ["a.example"], [RecordingResponder()]), self.clock
            )
        )
        certificate = self.server.certificates[0]
        default, alternate = certificate.pem_chain(0), certificate.pem_chain(1)
        # The leaf's issuer: in both chains, the top of neither.
        leaf_issuer = _common_name(certificate.certificate.issuer)
        self.assertEqual(select_chain(alternate, [default], leaf_issuer), alternate)
        alternate_root = _common_name(self.server.root_certificates()[1].subject)
        self.assertEqual(select_chain(default, [alternate], alternate_root), alternate)
        self.assertEqual(select_chain(default, [alternate], None), default)

    def test_profile_and_replaces(self) -> None:
        """``profile`` and ``replaces`` reach the order."""
        self.server = self.make_server(offer_renewal_info=True, profiles=_PROFILES)
        client = self.registered_client()
        first = self.successResultOf(
            self.settle(
                self.issue(client, ["a.example"], [RecordingResponder()]), self.clock
            )
        )
        old = _chain(first)[0]
        self.successResultOf(
            self.settle(
                self.issue(
                    client,
                    ["a.example"],
                    [RecordingResponder()],
                    profile="shortlived",
                    replaces=old,
                ),
                self.clock,
            )
        )
        order = self.server_order()
        self.assertEqual(order.profile, "shortlived")
        self.assertEqual(order.replaces, renewal_certificate_id(old))
        replaced = self.server.certificate_by_serial(old.serial_number)
        self.assertEqual(replaced.replaced_by, order.url)

    def test_profile_not_offered(self) -> None:
        """An unoffered profile is NotOffered before any order is made."""
        client = self.registered_client()
        responder = RecordingResponder()
        self.failureResultOf(
            self.issue(client, ["a.example"], [responder], profile="x"), NotOffered
        )
        self.assertEqual(self.server.orders, [])
        self.assertEqual(responder.started, [])


class TransientErrorTests(_NativeTestCase):
    """
    ``rateLimited``, ``serverInternal`` and 5xx answers to the native
    methods, with and without Retry-After.
    """

    def test_new_order_rate_limited_retry_after(self) -> None:
        """A short Retry-After on ``rateLimited`` is waited for exactly."""
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.fail_next("newOrder", "rateLimited", retry_after=7)
        result = client.new_order(["a.example"])
        self.clock.advance(6.9)
        self.assertNoResult(result)
        self.clock.advance(0.1)
        self.successResultOf(result)
        self.assertEqual(self.server.request_counts()["newOrder"], 2)

    def test_new_order_rate_limited_without_retry_after(self) -> None:
        """``rateLimited`` without Retry-After is retried after the backoff."""
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.fail_next("newOrder", "rateLimited")
        result = client.new_order(["a.example"])
        self.clock.advance(0.9)
        self.assertNoResult(result)
        self.clock.advance(0.1)
        self.successResultOf(result)

    def test_new_order_rate_limited_long(self) -> None:
        """
        A Retry-After longer than the policy waits for is raised at once as
        RateLimited carrying it; no order is made.
        """
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.fail_next("newOrder", "rateLimited", retry_after=7200)
        failure = self.errorOf(client.new_order(["a.example"]), RateLimited)
        self.assertEqual(failure.retry_after, 7200)
        self.assertEqual(failure.retry_at, self.clock.seconds() + 7200)
        self.assertEqual(self.server.orders, [])

    def test_rate_limited_exhausted(self) -> None:
        """
        A rate limit that outlasts the retries is RateLimited with the
        backoff as its ``retry_after``.
        """
        client = self.registered_client(
            retry_policy=RetryPolicy(max_retries=2, jitter=0.0, first_delay=1.0)
        )
        self.server.fail_next("newOrder", "rateLimited", count=3)
        result = client.new_order(["a.example"])
        self.clock.advance(1)
        self.clock.advance(2)
        failure = self.errorOf(result, RateLimited)
        self.assertEqual(failure.retry_after, 4)
        self.assertEqual(self.server.request_counts()["newOrder"], 3)

    def test_finalize_server_internal(self) -> None:
        """``serverInternal`` on finalize is retried after the backoff."""
        client = self.registered_client(retry_policy=_NO_JITTER)
        orderr = self.ordered(client, ["a.example"])
        self.server.fail_next("finalize", "serverInternal")
        result = client.finalize(orderr, csr_for_names(["a.example"], _CERT_KEY))
        self.assertNoResult(result)
        self.clock.advance(1)
        self.assertEqual(
            self.successResultOf(result).body.status, messages.STATUS_VALID
        )
        self.assertEqual(self.server.request_counts()["finalize"], 2)

    def test_revoke_503_retry_after(self) -> None:
        """A plain 503 with Retry-After on revokeCert is waited for."""
        client = self.registered_client(retry_policy=_NO_JITTER)
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        self.server.fail_next("revokeCert", None, status=503, retry_after=3)
        result = client.revoke(certificate)
        self.clock.advance(2.9)
        self.assertNoResult(result)
        self.clock.advance(0.1)
        self.successResultOf(result)
        self.assertTrue(
            self.server.certificate_by_serial(certificate.serial_number).revoked
        )

    def test_change_key_503(self) -> None:
        """A plain 503 without Retry-After on keyChange is retried."""
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.fail_next("keyChange", None, status=503)
        result = client.change_key(_NEW_EC_KEY)
        self.clock.advance(1)
        self.successResultOf(result)
        self.assertEqual(client.key, JWKEC(key=_NEW_EC_KEY))
        self.assertEqual(self.server.request_counts()["keyChange"], 2)

    def test_renewal_info_server_internal(self) -> None:
        """``serverInternal`` on renewalInfo (a GET) is retried."""
        self.server = self.make_server(offer_renewal_info=True)
        client = self.registered_client(retry_policy=_NO_JITTER)
        certificate = self.leaf(self.finalized(client, ["a.example"]))
        self.server.fail_next("renewalInfo", "serverInternal", retry_after=2)
        result = client.renewal_info(certificate)
        self.clock.advance(2)
        self.assertIsInstance(self.successResultOf(result), RenewalWindow)

    def test_deactivations_server_internal(self) -> None:
        """
        ``serverInternal`` on account and authorization deactivation is
        retried, and the deactivation happens.
        """
        client = self.registered_client(retry_policy=_NO_JITTER)
        orderr = self.successResultOf(client.new_order(["a.example"]))
        self.server.fail_next("authorization", "serverInternal", status=500)
        result = client.deactivate_authorization(orderr.authorizations[0])
        self.clock.advance(1)
        self.successResultOf(result)
        regr = self.successResultOf(client.find_registration())
        self.server.fail_next("account", "serverInternal", status=500)
        deactivated = client.deactivate_registration(regr)
        self.clock.advance(1)
        self.successResultOf(deactivated)
        self.assertEqual(self.server.authorizations[0].status, "deactivated")
        self.assertEqual(self.server.accounts[0].status, "deactivated")

    def test_cancel_while_waiting(self) -> None:
        """
        Cancelling a native call while it waits out a Retry-After is
        CancelledError at once; nothing is left on the clock and no retry is
        sent.
        """
        client = self.registered_client(retry_policy=_NO_JITTER)
        self.server.fail_next("newOrder", "rateLimited", retry_after=30)
        result = client.new_order(["a.example"])
        self.clock.advance(10)
        result.cancel()
        self.failureResultOf(result, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertEqual(self.server.request_counts()["newOrder"], 1)

    def test_user_action_required(self) -> None:
        """
        ``userActionRequired`` is UserActionRequired, with the new terms from
        the Link header; it is not retried.
        """
        client = self.client_over(
            RewritingResource(
                self.server.resource(),
                error_headers={
                    b"link": b'<https://acme.example/terms/v2>;rel="terms-of-service"'
                },
            ),
            retry_policy=_NO_JITTER,
        )
        self.server.fail_next("newOrder", "userActionRequired", status=403)
        failure = self.errorOf(client.new_order(["a.example"]), UserActionRequired)
        self.assertEqual(failure.terms_of_service, "https://acme.example/terms/v2")
        self.assertIn("agree_to_tos", str(failure))
        self.assertEqual(self.server.request_counts()["newOrder"], 1)


class ForwardCompatibilityTests(_NativeTestCase):
    """
    Answers from a newer CA: unknown fields and unknown challenge types are
    ignored.
    """

    def test_unknown_fields_and_challenges(self) -> None:
        """
        With unknown fields in every object and an unknown challenge type
        offered first, the whole flow works, and the unknown challenge is
        kept as an unrecognized one.
        """
        self.server = self.make_server(alternate_chains=1, offer_renewal_info=True)
        client = self.client_over(
            RewritingResource(self.server.resource(), edit_json=_with_unknown_fields)
        )
        orderr = self.successResultOf(client.new_order(["a.example"]))
        challenges = orderr.authorizations[0].body.challenges
        self.assertIsInstance(
            challenges[0].chall, acme_challenges.UnrecognizedChallenge
        )
        self.assertIn("http-01", [challb.chall.typ for challb in challenges[1:]])
        responder = RecordingResponder()
        pem = self.successResultOf(
            self.settle(
                issue_certificate(
                    client,
                    self.clock,
                    csr_for_names(["a.example", "b.example"], _CERT_KEY),
                    [responder],
                ),
                self.clock,
            )
        )
        self.assertEqual(pem, self.server.certificates[0].pem_chain())
        self.assertEqual(sorted(responder.started), ["a.example", "b.example"])
        regr = self.successResultOf(client.find_registration())
        self.assertEqual(regr.uri, self.server.accounts[0].url)
        window = self.successResultOf(client.renewal_info(_chain(pem)[0]))
        self.assertLess(window.start, window.end)

    def test_problem_with_subproblems_and_unknown_fields(self) -> None:
        """
        A problem document with subproblems (RFC 8555 §6.7.1) and unknown
        fields is read: the error has its code and the subproblems with
        their identifiers.
        """

        def with_subproblems(problem: Any) -> Any:
            problem["txacmeUnknown"] = [1, 2]
            problem["subproblems"] = [
                {
                    "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": "not this one",
                    "identifier": {"type": "dns", "value": "bad.example"},
                    "txacmeUnknown": True,
                }
            ]
            return problem

        client = self.client_over(
            RewritingResource(self.server.resource(), edit_problem=with_subproblems)
        )
        self.server.fail_next("newOrder", "rejectedIdentifier", detail="refused")
        failure = self.errorOf(
            client.new_order(["a.example", "bad.example"]), ServerError
        )
        self.assertEqual(failure.code, "rejectedIdentifier")
        self.assertEqual(failure.message.detail, "refused")
        subproblems = failure.message.subproblems
        assert subproblems is not None
        [subproblem] = subproblems
        assert subproblem.identifier is not None
        self.assertEqual(subproblem.identifier.value, "bad.example")

    def test_unknown_challenge_only(self) -> None:
        """
        An authorization offering nothing but unknown types is
        NoSupportedChallenges; nothing is started.
        """
        client = self.client_over(
            RewritingResource(self.server.resource(), edit_json=_only_future)
        )
        responder = RecordingResponder()
        self.errorOf(
            issue_certificate(
                client,
                self.clock,
                csr_for_names(["a.example"], _CERT_KEY),
                [responder],
            ),
            NoSupportedChallenges,
        )
        self.assertEqual(responder.started, [])

    def test_unknown_challenge_named(self) -> None:
        """
        NoSupportedChallenges names the unknown challenge types the CA
        offered.
        """
        client = self.client_over(
            RewritingResource(self.server.resource(), edit_json=_only_future)
        )
        failure = self.errorOf(
            issue_certificate(
                client,
                self.clock,
                csr_for_names(["a.example"], _CERT_KEY),
                [RecordingResponder()],
            ),
            NoSupportedChallenges,
        )
        self.assertIn("txacme-future-01", str(failure))


class AdaptivePollingTests(_NativeTestCase):
    """The default polling policy learns how long its CA takes."""

    def test_timing_moving_estimate(self) -> None:
        """Observations move the estimate by their weight."""
        timing = PollTiming()
        self.assertIsNone(timing.estimate("authorization"))
        timing.observe("authorization", 2.0)
        self.assertEqual(timing.estimate("authorization"), 2.0)
        timing.observe("authorization", 4.0)
        self.assertAlmostEqual(timing.estimate("authorization"), 2.6)
        self.assertIsNone(timing.estimate("order"))

    def test_waits_from_the_estimate(self) -> None:
        """
        With an estimate, the first wait is just over it and later ones a
        fraction of it, within ``min_delay`` and ``max_delay``; the server's
        ``Retry-After`` wins; without an estimate, or not adaptive, the
        waits are the ladder.
        """
        policy = PollingPolicy(first_delay=1, factor=2, max_delay=8, min_delay=0.1)
        self.assertEqual(policy.wait("order", 0, None), 1)
        policy.timing.observe("order", 3.0)
        self.assertAlmostEqual(policy.wait("order", 0, None), 3.3)
        self.assertAlmostEqual(policy.wait("order", 1, None), 1.5)
        self.assertAlmostEqual(policy.wait("order", 2, None), 3.0)
        self.assertEqual(policy.wait("order", 6, None), 8)
        self.assertEqual(policy.wait("order", 0, 7.0), 7.0)
        policy.timing.observe("authorization", 0.001)
        self.assertEqual(policy.wait("authorization", 0, None), 0.1)
        fixed = PollingPolicy(first_delay=1, factor=2, adaptive=False)
        fixed.timing.observe("order", 3.0)
        self.assertEqual(fixed.wait("order", 0, None), 1)

    def test_slow_validations_polled_rarely(self) -> None:
        """
        On a CA that takes 3 s to validate, the default policy learns it:
        over twenty issuances, at most 1.5 polls per authorization.
        """
        self.server = self.make_server(validation_delay=3.0)
        client = self.registered_client()
        for index in range(20):
            result = issue_certificate(
                client,
                self.clock,
                csr_for_names([f"slow{index}.example"], _CERT_KEY),
                [RecordingResponder()],
            )
            for _ in range(600):
                if result.called:
                    break
                self.clock.advance(0.05)
            self.successResultOf(result)
        polls = self.server.request_counts()["authorization"] - 20
        self.assertTrue(polls / 20 <= 1.5, f"{polls / 20} polls per authorization")

    def test_fast_validations_polled_soon(self) -> None:
        """
        On a CA that validates at once, the waits shrink to the policy's
        ``min_delay`` within a dozen issuances: an issuance's polling then
        takes a tenth of a second.
        """
        client = self.registered_client()
        durations = []
        for index in range(12):
            started = self.clock.seconds()
            result = issue_certificate(
                client,
                self.clock,
                csr_for_names([f"fast{index}.example"], _CERT_KEY),
                [RecordingResponder()],
            )
            for _ in range(600):
                if result.called:
                    break
                self.clock.advance(0.01)
            self.successResultOf(result)
            durations.append(self.clock.seconds() - started)
        self.assertTrue(durations[-1] <= 0.11, durations)
        self.assertTrue(durations[-1] < durations[0], durations)
