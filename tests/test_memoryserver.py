"""
Tests for :class:`txacme.testing.MemoryAcmeServer`, the in-memory ACME
server.

The requests are built by hand here (with :meth:`acme.jws.JWS.sign`, or
byte by byte for malformed ones) rather than with :mod:`txacme.client`, so
that these tests pin down the server alone.
"""

from __future__ import annotations

import ipaddress
import json
import unittest
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from acme import messages
from acme.jws import JWS
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from josepy.b64 import b64decode, b64encode
from josepy.jwa import ES256, ES384, ES512, HS256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA, JWKOct
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from zope.interface.verify import verifyObject

from txacme.testing import (
    FAULT_KINDS,
    InjectedFault,
    LoggedRequest,
    MemoryAcmeServer,
    MemoryCertificate,
)

_JOSE = "application/jose+json"
_NOW = 1_700_000_000.0
_RSA_KEY = JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _ec_key(curve: ec.EllipticCurve | None = None) -> JWKEC:
    return JWKEC(key=ec.generate_private_key(curve or ec.SECP256R1()))


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def _raw_jws(
    protected: dict[str, Any],
    payload: bytes,
    key: JWK,
    alg: JWASignature,
    *,
    envelope: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    A flattened JWS built by hand, for requests acme.jws would not make.
    """
    protected_b64 = _b64(json.dumps(protected).encode())
    payload_b64 = _b64(payload)
    signature = alg.sign(key.key, f"{protected_b64}.{payload_b64}".encode())
    return {
        "protected": protected_b64,
        "payload": payload_b64,
        "signature": _b64(signature),
        **(envelope or {}),
    }


def _csr(
    names: Sequence[str],
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    common_name: str | None = None,
) -> x509.CertificateSigningRequest:
    general_names: list[x509.GeneralName] = []
    for name in names:
        try:
            general_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general_names.append(x509.DNSName(name))
    subject = (
        []
        if common_name is None
        else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        .sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )


def _csr_b64(csr: x509.CertificateSigningRequest) -> str:
    return _b64(csr.public_bytes(serialization.Encoding.DER))


@frozen
class Answer:
    """
    A response, read to the end.
    """

    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return None if values is None else values[0]

    def links(self, rel: str) -> list[str]:
        found = []
        for value in self.headers.getRawHeaders("link", []):
            url, _, params = value.partition(";")
            if params.strip() == f'rel="{rel}"':
                found.append(url.strip().strip("<>"))
        return found


class Client:
    """
    A minimal, hand-made ACME client for driving the server in tests.
    """

    def __init__(
        self,
        case: TypedTestCase,
        server: MemoryAcmeServer,
        key: JWK | None = None,
        alg: JWASignature = ES256,
    ) -> None:
        self.case = case
        self.server = server
        self.http: Any = server.treq_client()
        self.key = key if key is not None else _ec_key()
        self.alg = alg
        self.kid: str | None = None
        self.directory: dict[str, Any] = self.request(
            "GET", server.directory_url
        ).json()

    def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        response = self.case.successResultOf(
            self.http.request(method, url, data=body or None, headers=headers or {})
        )
        content = self.case.successResultOf(self.http.content(response))
        return Answer(response.code, response.headers, content)

    def nonce(self) -> str:
        answer = self.request("HEAD", self.directory["newNonce"])
        nonce = answer.header("replay-nonce")
        assert nonce is not None
        return nonce

    def sign(
        self,
        url: str,
        payload: object = None,
        *,
        key: JWK | None = None,
        alg: JWASignature | None = None,
        kid: str | None = None,
        use_jwk: bool = False,
        nonce: str | None = None,
    ) -> bytes:
        """
        A signed request body; ``payload`` ``None`` is POST-as-GET.
        """
        raw = b"" if payload is None else json.dumps(payload).encode()
        jws = JWS.sign(
            raw,
            key=key or self.key,
            alg=alg or self.alg,
            nonce=b64decode(nonce or self.nonce()),
            url=url,
            kid=None if use_jwk else (kid or self.kid),
        )
        serialized: str = jws.json_dumps()
        return serialized.encode()

    def post(
        self,
        url: str,
        payload: object = None,
        *,
        content_type: str = _JOSE,
        **sign_arguments: Any,
    ) -> Answer:
        body = self.sign(url, payload, **sign_arguments)
        return self.request("POST", url, body, {"Content-Type": content_type})

    def post_body(self, url: str, body: object) -> Answer:
        return self.request(
            "POST", url, json.dumps(body).encode(), {"Content-Type": _JOSE}
        )

    def register(self, **fields: Any) -> Answer:
        payload = {"termsOfServiceAgreed": True, **fields}
        answer = self.post(self.directory["newAccount"], payload, use_jwk=True)
        if answer.status in (200, 201):
            self.kid = answer.header("location")
        return answer

    def new_order(self, *names: str, **fields: Any) -> Answer:
        identifiers = [
            {"type": "ip" if _is_ip(name) else "dns", "value": name} for name in names
        ]
        return self.post(
            self.directory["newOrder"], {"identifiers": identifiers, **fields}
        )

    def authorize(self, order: dict[str, Any]) -> None:
        """
        Answer one challenge of each pending authorization of an order.
        """
        for url in order["authorizations"]:
            authorization = self.post(url).json()
            if authorization["status"] != "pending":
                continue
            challenge = authorization["challenges"][0]
            answer = self.post(challenge["url"], {})
            self.case.assertEqual(answer.status, 200, answer.body)

    def finalize(
        self, order: dict[str, Any], csr: x509.CertificateSigningRequest
    ) -> Answer:
        return self.post(order["finalize"], {"csr": _csr_b64(csr)})

    def issue(self, *names: str) -> tuple[dict[str, Any], Answer]:
        """
        Order, authorize, finalize, download: the order and the certificate.
        """
        created = self.new_order(*names)
        self.case.assertEqual(created.status, 201, created.body)
        self.authorize(created.json())
        order_url = created.header("location")
        assert order_url is not None
        finalized = self.finalize(created.json(), _csr(names))
        self.case.assertEqual(finalized.status, 200, finalized.body)
        order = self.post(order_url).json()
        self.case.assertEqual(order["status"], "valid")
        certificate = self.post(order["certificate"])
        self.case.assertEqual(certificate.status, 200, certificate.body)
        return order, certificate


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _pem_chain(body: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(body)


class TypedTestCase(SynchronousTestCase):
    """
    Annotated versions of the trial assertions these tests use (Twisted's
    are unannotated, which ``mypy --strict`` refuses to call).
    """

    def assertEqual(self, first: object, second: object, msg: object = None) -> None:
        unittest.TestCase.assertEqual(self, first, second, msg)

    def assertNotEqual(self, first: object, second: object, msg: object = None) -> None:
        unittest.TestCase.assertNotEqual(self, first, second, msg)

    def assertTrue(self, condition: object, msg: object = None) -> None:
        unittest.TestCase.assertTrue(self, condition, msg)

    def assertFalse(self, condition: object, msg: object = None) -> None:
        unittest.TestCase.assertFalse(self, condition, msg)

    def assertIn(self, member: object, container: Any, msg: object = None) -> None:
        unittest.TestCase.assertIn(self, member, container, msg)

    def assertNotIn(self, member: object, container: Any, msg: object = None) -> None:
        unittest.TestCase.assertNotIn(self, member, container, msg)

    def assertIsNone(self, value: object, msg: object = None) -> None:
        unittest.TestCase.assertIsNone(self, value, msg)

    def assertIsNotNone(self, value: object, msg: object = None) -> None:
        unittest.TestCase.assertIsNotNone(self, value, msg)

    def assertRaises(  # type: ignore[override]
        self,
        exception: type[BaseException],
        f: Callable[..., object],
        *args: object,
        **kwargs: object,
    ) -> BaseException:
        try:
            f(*args, **kwargs)
        except exception as error:
            return error
        self.fail(f"{exception.__name__} not raised")

    def failureResultOf(
        self, deferred: Deferred[Any], *expected: type[BaseException]
    ) -> Failure:
        trial: Any = super()
        failure: Failure = trial.failureResultOf(deferred, *expected)
        return failure

    def assertNoResult(self, deferred: Deferred[Any]) -> None:
        trial: Any = super()
        trial.assertNoResult(deferred)

    def flushLoggedErrors(self, *error_types: type[BaseException]) -> list[Failure]:
        trial: Any = super()
        flushed: list[Failure] = trial.flushLoggedErrors(*error_types)
        return flushed


class ServerTestCase(TypedTestCase):
    """
    Shared set-up: a clock at a realistic time and helpers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_NOW)

    def server(self, **arguments: Any) -> MemoryAcmeServer:
        return MemoryAcmeServer(clock=self.clock, **arguments)

    def client(self, server: MemoryAcmeServer, **arguments: Any) -> Client:
        return Client(self, server, **arguments)

    def registered(self, server: MemoryAcmeServer, **arguments: Any) -> Client:
        client = self.client(server, **arguments)
        answer = client.register()
        self.assertEqual(answer.status, 201, answer.body)
        return client

    def assertProblem(
        self, answer: Answer, error_type: str, status: int | None = None
    ) -> dict[str, Any]:
        """
        Assert that ``answer`` is a problem document of the given ACME type.
        """
        self.assertEqual(
            answer.header("content-type"), "application/problem+json", answer.body
        )
        document: dict[str, Any] = answer.json()
        self.assertEqual(
            document["type"], "urn:ietf:params:acme:error:" + error_type, document
        )
        self.assertEqual(document["status"], answer.status)
        if status is not None:
            self.assertEqual(answer.status, status)
        return document


class DirectoryTests(ServerTestCase):
    """
    The directory and newNonce (RFC 8555 §7.1.1, §7.2).
    """

    def test_directory(self) -> None:
        """
        The directory lists the five mandatory resources under ``base_url``,
        each with a random path segment, and the terms of service; the
        optional resources are absent by default.
        """
        server = self.server()
        client = self.client(server)
        self.assertEqual(server.directory_url, "https://acme.example/directory")
        for name in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
            self.assertTrue(
                client.directory[name].startswith("https://acme.example/acme-")
            )
        self.assertNotIn("newAuthz", client.directory)
        self.assertNotIn("renewalInfo", client.directory)
        self.assertEqual(
            client.directory["meta"], {"termsOfService": "https://acme.example/terms"}
        )
        messages.Directory.from_json(client.directory)

    def test_random_urls(self) -> None:
        """
        Two servers have different resource URLs, so that clients cannot
        hard-code them.
        """
        first = self.client(self.server()).directory["newAccount"]
        second = self.client(self.server()).directory["newAccount"]
        self.assertNotEqual(first, second)

    def test_optional_entries(self) -> None:
        """
        ``offer_new_authz``, ``offer_renewal_info``, ``eab_required`` and
        ``profiles`` show in the directory; ``terms_of_service=None`` drops
        the terms.
        """
        server = self.server(
            offer_new_authz=True,
            offer_renewal_info=True,
            eab_required=True,
            profiles={"classic": "The usual", "short": "Six days"},
            terms_of_service=None,
        )
        directory = self.client(server).directory
        self.assertIn("newAuthz", directory)
        self.assertIn("renewalInfo", directory)
        self.assertEqual(
            directory["meta"],
            {
                "externalAccountRequired": True,
                "profiles": {"classic": "The usual", "short": "Six days"},
            },
        )

    def test_base_url_with_path(self) -> None:
        """
        A ``base_url`` with a path puts every resource under it.
        """
        server = self.server(base_url="http://127.0.0.1:14000/acme/")
        client = self.client(server)
        self.assertEqual(server.directory_url, "http://127.0.0.1:14000/acme/directory")
        self.assertTrue(
            client.directory["newOrder"].startswith("http://127.0.0.1:14000/acme/")
        )
        kid = self.registered(server).kid
        assert kid is not None
        self.assertTrue(kid.startswith("http://127.0.0.1:14000/acme/"))

    def test_new_nonce(self) -> None:
        """
        newNonce answers HEAD with 200 and GET with 204, each with a
        ``Replay-Nonce`` and ``Cache-Control: no-store``.
        """
        client = self.client(self.server())
        head = client.request("HEAD", client.directory["newNonce"])
        get = client.request("GET", client.directory["newNonce"])
        self.assertEqual((head.status, get.status), (200, 204))
        for answer in (head, get):
            self.assertEqual(answer.header("cache-control"), "no-store")
            self.assertTrue(answer.header("replay-nonce"))
        self.assertNotEqual(head.header("replay-nonce"), get.header("replay-nonce"))

    def test_every_answer_has_nonce_and_index(self) -> None:
        """
        Every answer, errors included, carries a fresh ``Replay-Nonce`` and
        a ``Link`` to the directory with ``rel="index"`` (RFC 8555 §6.5,
        §7.1).
        """
        server = self.server()
        client = self.client(server)
        answers = [
            client.request("GET", server.directory_url),
            client.request("GET", "https://acme.example/nothing-here"),
            client.post(client.directory["newOrder"], {}, use_jwk=True),
        ]
        nonces = {answer.header("replay-nonce") for answer in answers}
        self.assertEqual(len(nonces), 3)
        for answer in answers:
            self.assertEqual(answer.links("index"), [server.directory_url])

    def test_unknown_path(self) -> None:
        """
        A path the server does not serve answers 404 with a problem.
        """
        client = self.client(self.server())
        answer = client.request("GET", "https://acme.example/acme/order/nope")
        self.assertProblem(answer, "malformed", 404)

    def test_other_host(self) -> None:
        """
        A request for another host or scheme than ``base_url``'s answers
        404, so that a client using a wrong origin notices.
        """
        server = self.server()
        client = self.client(server)
        self.assertProblem(
            client.request("GET", "http://acme.example/directory"), "malformed", 404
        )
        self.assertProblem(
            client.request("GET", "https://other.example/directory"), "malformed", 404
        )

    def test_wrong_method(self) -> None:
        """
        POST to the directory answers 405 with an ``Allow`` header.
        """
        server = self.server()
        answer = self.client(server).request("POST", server.directory_url, b"{}")
        self.assertProblem(answer, "malformed", 405)
        self.assertEqual(answer.header("allow"), "GET")

    def test_resource(self) -> None:
        """
        :meth:`MemoryAcmeServer.resource` provides ``IResource``.
        """
        self.assertTrue(verifyObject(IResource, self.server().resource()))

    def test_bad_arguments(self) -> None:
        """
        A nonce rejection rate outside 0 to 1 and a base URL that is not
        http(s) are refused at construction.
        """
        self.assertRaises(ValueError, self.server, nonce_rejection=1.5)
        self.assertRaises(ValueError, self.server, base_url="ftp://acme.example")
        self.assertRaises(ValueError, self.server, base_url="https://acme.example/?x=1")


class JWSTests(ServerTestCase):
    """
    Request authentication (RFC 8555 §6.2 to §6.5).
    """

    def test_content_type(self) -> None:
        """
        A POST whose content type is not ``application/jose+json`` answers
        415 ``malformed``.
        """
        client = self.client(self.server())
        answer = client.post(
            client.directory["newAccount"],
            {"termsOfServiceAgreed": True},
            use_jwk=True,
            content_type="application/json",
        )
        self.assertProblem(answer, "malformed", 415)

    def test_unknown_nonce(self) -> None:
        """
        A nonce the server did not issue answers ``badNonce`` with a fresh
        nonce, and a retry with that nonce succeeds.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        payload = {"termsOfServiceAgreed": True}
        answer = client.post(
            url, payload, use_jwk=True, nonce=_b64(b"made up nonce!!!")
        )
        self.assertProblem(answer, "badNonce", 400)
        retry = client.post(
            url, payload, use_jwk=True, nonce=answer.header("replay-nonce")
        )
        self.assertEqual(retry.status, 201)

    def test_reused_nonce(self) -> None:
        """
        A nonce is good once: a request replayed byte for byte answers
        ``badNonce``.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        body = client.sign(url, {"termsOfServiceAgreed": True}, use_jwk=True)
        first = client.request("POST", url, body, {"Content-Type": _JOSE})
        second = client.request("POST", url, body, {"Content-Type": _JOSE})
        self.assertEqual(first.status, 201)
        self.assertProblem(second, "badNonce")

    def test_missing_nonce(self) -> None:
        """
        A protected header without ``nonce`` answers ``badNonce``.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        protected = {
            "alg": "ES256",
            "url": url,
            "jwk": client.key.public_key().to_json(),
        }
        body = _raw_jws(protected, b'{"termsOfServiceAgreed": true}', client.key, ES256)
        self.assertProblem(client.post_body(url, body), "badNonce")

    def test_wrong_url(self) -> None:
        """
        A ``url`` header other than the request URL answers
        ``unauthorized``.
        """
        client = self.client(self.server())
        body = client.sign(
            client.directory["newOrder"], {"termsOfServiceAgreed": True}, use_jwk=True
        )
        answer = client.request(
            "POST", client.directory["newAccount"], body, {"Content-Type": _JOSE}
        )
        self.assertProblem(answer, "unauthorized", 403)

    def test_bad_signature(self) -> None:
        """
        A JWS whose signature does not verify answers ``malformed``.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        body = json.loads(
            client.sign(url, {"termsOfServiceAgreed": True}, use_jwk=True)
        )
        other = json.loads(
            client.sign(url, {"termsOfServiceAgreed": False}, use_jwk=True)
        )
        body["signature"] = other["signature"]
        self.assertProblem(client.post_body(url, body), "malformed")
        self.assertEqual(client.server.accounts, [])

    def test_unsupported_algorithm(self) -> None:
        """
        An algorithm other than RS256, ES256 and ES384 answers
        ``badSignatureAlgorithm`` listing the accepted ones.
        """
        client = self.client(self.server(), key=_ec_key(ec.SECP521R1()))
        url = client.directory["newAccount"]
        protected = {
            "alg": "ES512",
            "nonce": client.nonce(),
            "url": url,
            "jwk": client.key.public_key().to_json(),
        }
        body = _raw_jws(protected, b"{}", client.key, ES512)
        document = self.assertProblem(
            client.post_body(url, body), "badSignatureAlgorithm"
        )
        self.assertEqual(document["algorithms"], ["ES256", "ES384", "RS256"])

    def test_algorithm_key_mismatch(self) -> None:
        """
        ES384 with a P-256 key, or RS256 with an EC key, answers
        ``badSignatureAlgorithm``.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        for alg_name in ("ES384", "RS256"):
            protected = {
                "alg": alg_name,
                "nonce": client.nonce(),
                "url": url,
                "jwk": client.key.public_key().to_json(),
            }
            body = _raw_jws(protected, b"{}", client.key, ES256)
            self.assertProblem(client.post_body(url, body), "badSignatureAlgorithm")

    def test_rsa_and_p384_accounts(self) -> None:
        """
        RS256 with a 2048-bit RSA key and ES384 with a P-384 key are
        accepted.
        """
        server = self.server()
        rsa_client = self.client(server, key=_RSA_KEY, alg=RS256)
        p384_client = self.client(server, key=_ec_key(ec.SECP384R1()), alg=ES384)
        self.assertEqual(rsa_client.register().status, 201)
        self.assertEqual(p384_client.register().status, 201)
        self.assertEqual(rsa_client.new_order("a.example").status, 201)
        self.assertEqual(p384_client.new_order("a.example").status, 201)

    def test_weak_key(self) -> None:
        """
        A 1024-bit RSA account key answers ``badPublicKey``.
        """
        weak = JWKRSA(
            key=rsa.generate_private_key(public_exponent=65537, key_size=1024)
        )
        client = self.client(self.server(), key=weak, alg=RS256)
        self.assertProblem(client.register(), "badPublicKey")

    def test_private_jwk(self) -> None:
        """
        A ``jwk`` header that carries the private key answers ``malformed``.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        protected = {
            "alg": "ES256",
            "nonce": client.nonce(),
            "url": url,
            "jwk": client.key.to_json(),
        }
        body = _raw_jws(protected, b'{"termsOfServiceAgreed": true}', client.key, ES256)
        self.assertProblem(client.post_body(url, body), "malformed")

    def test_jwk_where_kid_required(self) -> None:
        """
        newOrder signed with ``jwk`` instead of ``kid`` answers
        ``malformed``.
        """
        client = self.registered(self.server())
        answer = client.post(
            client.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": "a.example"}]},
            use_jwk=True,
        )
        self.assertProblem(answer, "malformed")

    def test_kid_on_new_account(self) -> None:
        """
        newAccount signed with ``kid`` answers ``malformed``.
        """
        client = self.registered(self.server())
        answer = client.post(
            client.directory["newAccount"], {"termsOfServiceAgreed": True}
        )
        self.assertProblem(answer, "malformed")

    def test_jwk_and_kid(self) -> None:
        """
        A protected header with both ``jwk`` and ``kid`` answers
        ``malformed``.
        """
        client = self.registered(self.server())
        url = client.directory["newOrder"]
        protected = {
            "alg": "ES256",
            "nonce": client.nonce(),
            "url": url,
            "kid": client.kid,
            "jwk": client.key.public_key().to_json(),
        }
        body = _raw_jws(protected, b'{"identifiers": []}', client.key, ES256)
        self.assertProblem(client.post_body(url, body), "malformed")

    def test_unknown_kid(self) -> None:
        """
        A ``kid`` that is no account URL answers ``accountDoesNotExist``.
        """
        client = self.registered(self.server())
        identifiers = [{"type": "dns", "value": "a.example"}]
        answer = client.post(
            client.directory["newOrder"],
            {"identifiers": identifiers},
            kid=f"{client.kid}x",
        )
        self.assertProblem(answer, "accountDoesNotExist")

    def test_unprotected_header(self) -> None:
        """
        An unprotected ``header`` or the general serialization answers
        ``malformed``: RFC 8555 §6.2 allows neither.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        protected = {"alg": "ES256", "nonce": client.nonce(), "url": url}
        body = _raw_jws(
            protected,
            b'{"termsOfServiceAgreed": true}',
            client.key,
            ES256,
            envelope={"header": {"jwk": client.key.public_key().to_json()}},
        )
        self.assertProblem(client.post_body(url, body), "malformed")
        general = json.loads(
            client.sign(url, {"termsOfServiceAgreed": True}, use_jwk=True)
        )
        general = {
            "payload": general.pop("payload"),
            "signatures": [general],
        }
        self.assertProblem(client.post_body(url, general), "malformed")

    def test_padded_base64(self) -> None:
        """
        Padded base64 in the JWS answers ``malformed`` (RFC 7515 §2).
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        body = json.loads(
            client.sign(url, {"termsOfServiceAgreed": True}, use_jwk=True)
        )
        body["payload"] += "=" * (-len(body["payload"]) % 4 or 4)
        self.assertProblem(client.post_body(url, body), "malformed")

    def test_not_json(self) -> None:
        """
        A body that is not JSON answers ``malformed``.
        """
        client = self.client(self.server())
        url = client.directory["newAccount"]
        answer = client.request("POST", url, b"<jws/>", {"Content-Type": _JOSE})
        self.assertProblem(answer, "malformed", 400)

    def test_get_is_refused(self) -> None:
        """
        Orders, authorizations, challenges and certificates cannot be read
        with GET: 405 ``malformed``, ``Allow: POST``; POST-as-GET works.
        """
        client = self.registered(self.server())
        order, _ = client.issue("a.example")
        authorization = client.post(order["authorizations"][0]).json()
        for url in (
            order["authorizations"][0],
            authorization["challenges"][0]["url"],
            order["certificate"],
            order["finalize"],
        ):
            answer = client.request("GET", url)
            self.assertProblem(answer, "malformed", 405)
            self.assertEqual(answer.header("allow"), "POST")
        self.assertEqual(client.post(order["authorizations"][0]).status, 200)

    def test_post_as_get_payload(self) -> None:
        """
        Reading an order or certificate with a payload other than the empty
        string answers ``malformed``.
        """
        client = self.registered(self.server())
        order, _ = client.issue("a.example")
        self.assertProblem(client.post(order["certificate"], {}), "malformed")


class AccountTests(ServerTestCase):
    """
    Accounts (RFC 8555 §7.3).
    """

    def test_new_account(self) -> None:
        """
        newAccount answers 201 with the account URL in ``Location`` and the
        account object, which :mod:`acme.messages` can read.
        """
        server = self.server()
        client = self.client(server)
        answer = client.register(contact=["mailto:admin@example.com"])
        self.assertEqual(answer.status, 201)
        body = answer.json()
        self.assertEqual(body["status"], "valid")
        self.assertEqual(body["contact"], ["mailto:admin@example.com"])
        self.assertTrue(body["termsOfServiceAgreed"])
        self.assertTrue(body["orders"].startswith(answer.header("location")))
        messages.Registration.from_json(body)
        [account] = server.accounts
        self.assertEqual(account.url, answer.header("location"))
        self.assertEqual(account.key.thumbprint(), client.key.thumbprint())
        self.assertEqual(account.contact, ("mailto:admin@example.com",))

    def test_existing_account(self) -> None:
        """
        newAccount with a key that has an account answers 200 with that
        account's URL.
        """
        server = self.server()
        client = self.client(server)
        first = client.register()
        second = client.register()
        self.assertEqual((first.status, second.status), (201, 200))
        self.assertEqual(first.header("location"), second.header("location"))
        self.assertEqual(len(server.accounts), 1)

    def test_only_return_existing(self) -> None:
        """
        ``onlyReturnExisting`` answers ``accountDoesNotExist`` without an
        account, and the account when there is one.
        """
        server = self.server()
        client = self.client(server)
        self.assertProblem(
            client.register(onlyReturnExisting=True), "accountDoesNotExist"
        )
        self.assertEqual(server.accounts, [])
        created = client.register()
        found = client.register(onlyReturnExisting=True)
        self.assertEqual(found.status, 200)
        self.assertEqual(found.header("location"), created.header("location"))

    def test_terms_of_service(self) -> None:
        """
        Without ``termsOfServiceAgreed: true`` newAccount answers
        ``malformed`` "must agree to terms of service", unless the server
        does not require it or has no terms.
        """
        client = self.client(self.server())
        answer = client.post(
            client.directory["newAccount"], {"contact": []}, use_jwk=True
        )
        document = self.assertProblem(answer, "malformed")
        self.assertIn("must agree to terms of service", document["detail"])
        for arguments in (
            {"require_terms_agreement": False},
            {"terms_of_service": None},
        ):
            client = self.client(self.server(**arguments))
            answer = client.post(client.directory["newAccount"], {}, use_jwk=True)
            self.assertEqual(answer.status, 201)
            self.assertFalse(answer.json()["termsOfServiceAgreed"])

    def test_contact_checks(self) -> None:
        """
        A contact that is not one email address answers ``invalidContact``;
        a scheme other than mailto answers ``unsupportedContact``.
        """
        client = self.client(self.server())
        self.assertProblem(client.register(contact=["mailto:nobody"]), "invalidContact")
        self.assertProblem(
            client.register(contact=["mailto:a@example.com,b@example.com"]),
            "invalidContact",
        )
        self.assertProblem(client.register(contact=["tel:+1555"]), "unsupportedContact")
        self.assertProblem(client.register(contact="mailto:a@example.com"), "malformed")

    def test_unknown_fields_ignored(self) -> None:
        """
        Fields the server does not know are ignored.
        """
        client = self.client(self.server())
        self.assertEqual(client.register(futureField={"x": 1}).status, 201)

    def test_read_and_update(self) -> None:
        """
        POST-as-GET to the account URL reads the account; a payload with
        ``contact`` replaces the contacts.
        """
        server = self.server()
        client = self.registered(server)
        assert client.kid is not None
        self.assertEqual(client.post(client.kid).json()["contact"], [])
        updated = client.post(client.kid, {"contact": ["mailto:new@example.com"]})
        self.assertEqual(updated.json()["contact"], ["mailto:new@example.com"])
        self.assertEqual(server.accounts[0].contact, ("mailto:new@example.com",))

    def test_other_account(self) -> None:
        """
        An account cannot read or change another account.
        """
        server = self.server()
        alice = self.registered(server)
        bob = self.registered(server)
        assert alice.kid is not None
        self.assertProblem(bob.post(alice.kid), "unauthorized", 403)
        self.assertProblem(
            bob.post(alice.kid, {"status": "deactivated"}), "unauthorized"
        )
        self.assertEqual(server.accounts[0].status, "valid")

    def test_deactivation(self) -> None:
        """
        ``status: deactivated`` deactivates the account; afterwards every
        request with its ``kid``, and newAccount with its key, answer
        ``unauthorized``.
        """
        server = self.server()
        client = self.registered(server)
        assert client.kid is not None
        answer = client.post(client.kid, {"status": "deactivated"})
        self.assertEqual(answer.json()["status"], "deactivated")
        self.assertEqual(server.accounts[0].status, "deactivated")
        self.assertProblem(client.new_order("a.example"), "unauthorized")
        self.assertProblem(client.post(client.kid), "unauthorized")
        self.assertProblem(client.register(), "unauthorized")

    def test_bad_status_update(self) -> None:
        """
        A client can set no account status other than ``deactivated``.
        """
        client = self.registered(self.server())
        assert client.kid is not None
        self.assertProblem(client.post(client.kid, {"status": "revoked"}), "malformed")

    def test_orders_list(self) -> None:
        """
        The account's ``orders`` URL lists its orders (RFC 8555 §7.1.2.1).
        """
        server = self.server()
        client = self.registered(server)
        assert client.kid is not None
        orders_url = client.post(client.kid).json()["orders"]
        created = client.new_order("a.example")
        self.assertEqual(
            client.post(orders_url).json(), {"orders": [created.header("location")]}
        )
        other = self.registered(server)
        self.assertProblem(other.post(orders_url), "unauthorized")


class ExternalAccountBindingTests(ServerTestCase):
    """
    External account binding (RFC 8555 §7.3.4).
    """

    hmac_key = b"0123456789abcdef0123456789abcdef"

    def binding(
        self,
        client: Client,
        *,
        key_id: str = "kid-1",
        mac_key: bytes | None = None,
        url: str | None = None,
        bound: JWK | None = None,
    ) -> dict[str, Any]:
        protected = {
            "alg": "HS256",
            "kid": key_id,
            "url": url or client.directory["newAccount"],
        }
        payload = json.dumps((bound or client.key).public_key().to_json()).encode()
        return _raw_jws(protected, payload, JWKOct(key=mac_key or self.hmac_key), HS256)

    def test_required(self) -> None:
        """
        With ``eab_required`` newAccount without a binding answers
        ``externalAccountRequired``.
        """
        client = self.client(
            self.server(eab_required=True, eab_keys={"kid-1": self.hmac_key})
        )
        self.assertProblem(client.register(), "externalAccountRequired")

    def test_good_binding(self) -> None:
        """
        A binding made by :class:`acme.messages.ExternalAccountBinding`
        with a known key creates the account and records the key id.
        """
        server = self.server(eab_required=True, eab_keys={"kid-1": self.hmac_key})
        client = self.client(server)
        binding = messages.ExternalAccountBinding.from_data(
            account_public_key=client.key.public_key(),
            kid="kid-1",
            hmac_key=_b64(self.hmac_key),
            directory=messages.Directory(client.directory),
        )
        answer = client.register(externalAccountBinding=binding)
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(server.accounts[0].external_account_key_id, "kid-1")

    def test_bad_bindings(self) -> None:
        """
        A wrong MAC, an unknown key id, a binding of another key and a
        wrong ``url`` answer ``unauthorized``; nothing is created.
        """
        server = self.server(eab_required=True, eab_keys={"kid-1": self.hmac_key})
        client = self.client(server)
        for binding in (
            self.binding(client, mac_key=b"x" * 32),
            self.binding(client, key_id="kid-2"),
            self.binding(client, bound=_ec_key()),
            self.binding(client, url=client.directory["newOrder"]),
        ):
            self.assertProblem(
                client.register(externalAccountBinding=binding), "unauthorized"
            )
        self.assertEqual(server.accounts, [])
        self.assertEqual(
            client.register(externalAccountBinding=self.binding(client)).status, 201
        )

    def test_binding_with_nonce(self) -> None:
        """
        A binding with a ``nonce`` answers ``malformed``.
        """
        client = self.client(self.server(eab_keys={"kid-1": self.hmac_key}))
        binding = self.binding(client)
        protected = json.loads(b64decode(binding["protected"]))
        protected["nonce"] = client.nonce()
        bad = _raw_jws(
            protected, b64decode(binding["payload"]), JWKOct(key=self.hmac_key), HS256
        )
        self.assertProblem(client.register(externalAccountBinding=bad), "malformed")


class KeyChangeTests(ServerTestCase):
    """
    Account key rollover (RFC 8555 §7.3.5).
    """

    def key_change(
        self,
        client: Client,
        new_key: JWK,
        *,
        inner_url: str | None = None,
        account: str | None = None,
        old_key: JWK | None = None,
        signer: JWK | None = None,
        inner_nonce: bool = False,
    ) -> Answer:
        url = client.directory["keyChange"]
        protected: dict[str, Any] = {
            "alg": "ES256",
            "jwk": new_key.public_key().to_json(),
            "url": inner_url or url,
        }
        if inner_nonce:
            protected["nonce"] = client.nonce()
        payload = {
            "account": account or client.kid,
            "oldKey": (old_key or client.key).public_key().to_json(),
        }
        inner = _raw_jws(
            protected, json.dumps(payload).encode(), signer or new_key, ES256
        )
        return client.post(url, inner)

    def test_key_change(self) -> None:
        """
        After a key change the account answers to the new key only, and
        newAccount with the new key finds it.
        """
        server = self.server()
        client = self.registered(server)
        old_key, new_key = client.key, _ec_key()
        answer = self.key_change(client, new_key)
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(server.accounts[0].key.thumbprint(), new_key.thumbprint())
        self.assertProblem(client.new_order("a.example"), "malformed")
        client.key = new_key
        self.assertEqual(client.new_order("a.example").status, 201)
        kid = client.kid
        self.assertEqual(client.register().header("location"), kid)
        client.key = old_key
        self.assertEqual(client.register().status, 201)

    def test_key_in_use(self) -> None:
        """
        Changing to a key another account has answers 409 with that
        account's URL in ``Location``.
        """
        server = self.server()
        alice = self.registered(server)
        bob = self.registered(server)
        answer = self.key_change(alice, bob.key)
        self.assertEqual(answer.status, 409)
        self.assertEqual(answer.header("location"), bob.kid)
        self.assertEqual(server.accounts[0].key.thumbprint(), alice.key.thumbprint())

    def test_inner_checks(self) -> None:
        """
        An inner JWS with another ``url``, with a ``nonce``, signed by
        another key, naming another account or a wrong old key is refused.
        """
        server = self.server()
        client = self.registered(server)
        other = self.registered(server)
        new_key = _ec_key()
        self.assertProblem(
            self.key_change(client, new_key, inner_url=client.directory["newOrder"]),
            "malformed",
        )
        self.assertProblem(
            self.key_change(client, new_key, inner_nonce=True), "malformed"
        )
        self.assertProblem(
            self.key_change(client, new_key, signer=_ec_key()), "malformed"
        )
        self.assertProblem(
            self.key_change(client, new_key, account=other.kid), "unauthorized"
        )
        self.assertProblem(
            self.key_change(client, new_key, old_key=_ec_key()), "unauthorized"
        )
        self.assertEqual(server.accounts[0].key.thumbprint(), client.key.thumbprint())


class OrderTests(ServerTestCase):
    """
    Orders, authorizations and challenges (RFC 8555 §7.4, §7.5).
    """

    def test_new_order(self) -> None:
        """
        newOrder answers 201 with ``Location``, a pending order with one
        authorization per identifier, a finalize URL and an expiry from the
        clock; :mod:`acme.messages` reads it.
        """
        server = self.server()
        client = self.registered(server)
        answer = client.new_order("a.example", "B.Example")
        self.assertEqual(answer.status, 201)
        order = answer.json()
        self.assertEqual(order["status"], "pending")
        self.assertEqual(
            order["identifiers"],
            [
                {"type": "dns", "value": "a.example"},
                {"type": "dns", "value": "b.example"},
            ],
        )
        self.assertEqual(len(order["authorizations"]), 2)
        self.assertEqual(order["expires"], "2023-11-21T22:13:20Z")
        parsed = messages.Order.from_json(order)
        self.assertEqual(parsed.finalize, order["finalize"])
        [record] = server.orders
        self.assertEqual(record.url, answer.header("location"))

    def test_challenges(self) -> None:
        """
        A DNS name gets http-01, dns-01 and tls-alpn-01 challenges, each
        with its own token; a wildcard gets dns-01 only and
        ``wildcard: true``; an IP address no dns-01 (RFC 8738).
        """
        client = self.registered(self.server())
        order = client.new_order(
            "a.example", "*.b.example", "192.0.2.1", "2001:db8::1"
        ).json()
        authorizations = [client.post(url).json() for url in order["authorizations"]]
        kinds = [[c["type"] for c in a["challenges"]] for a in authorizations]
        self.assertEqual(
            kinds,
            [
                ["http-01", "dns-01", "tls-alpn-01"],
                ["dns-01"],
                ["http-01", "tls-alpn-01"],
                ["http-01", "tls-alpn-01"],
            ],
        )
        self.assertEqual(
            authorizations[1]["identifier"], {"type": "dns", "value": "b.example"}
        )
        self.assertTrue(authorizations[1]["wildcard"])
        self.assertNotIn("wildcard", authorizations[0])
        tokens = [c["token"] for a in authorizations for c in a["challenges"]]
        self.assertEqual(len(set(tokens)), len(tokens))
        for authorization in authorizations:
            parsed = messages.Authorization.from_json(authorization)
            self.assertEqual(parsed.status, messages.STATUS_PENDING)

    def test_identifier_checks(self) -> None:
        """
        An unknown identifier type answers ``unsupportedIdentifier``, a bad
        DNS name ``rejectedIdentifier``, a non-canonical IP address or an
        empty list ``malformed``.
        """
        client = self.registered(self.server())
        url = client.directory["newOrder"]

        def order(*identifiers: dict[str, str]) -> Answer:
            return client.post(url, {"identifiers": list(identifiers)})

        self.assertProblem(
            order({"type": "email", "value": "a@b.example"}), "unsupportedIdentifier"
        )
        for name in (
            "-a.example",
            "a..example",
            "localhost",
            "a.example.",
            "*.*.a.example",
        ):
            self.assertProblem(
                order({"type": "dns", "value": name}), "rejectedIdentifier"
            )
        self.assertProblem(order({"type": "ip", "value": "2001:DB8::1"}), "malformed")
        self.assertProblem(
            order({"type": "ip", "value": "example"}), "rejectedIdentifier"
        )
        self.assertProblem(order(), "malformed")
        self.assertProblem(client.post(url, {}), "malformed")
        self.assertProblem(client.post(url), "malformed")

    def test_unknown_fields_ignored(self) -> None:
        """
        Unknown fields in newOrder and challenge responses are ignored.
        """
        client = self.registered(self.server())
        answer = client.new_order("a.example", notAfterFuture="x")
        self.assertEqual(answer.status, 201)
        authorization = client.post(answer.json()["authorizations"][0]).json()
        response = client.post(authorization["challenges"][0]["url"], {"extra": True})
        self.assertEqual(response.json()["status"], "valid")

    def test_validation(self) -> None:
        """
        POSTing ``{}`` to a challenge validates it: the challenge and its
        authorization become valid, the order ready; the challenge answer
        links up to its authorization; a valid authorization lists only the
        challenge that validated it.
        """
        server = self.server()
        client = self.registered(server)
        order_answer = client.new_order("a.example")
        order = order_answer.json()
        authorization_url = order["authorizations"][0]
        authorization = client.post(authorization_url).json()
        challenge = authorization["challenges"][1]
        answer = client.post(challenge["url"], {})
        self.assertEqual(answer.links("up"), [authorization_url])
        self.assertEqual(answer.json()["status"], "valid")
        self.assertEqual(answer.json()["validated"], "2023-11-14T22:13:20Z")
        authorization = client.post(authorization_url).json()
        self.assertEqual(authorization["status"], "valid")
        self.assertEqual(
            [c["url"] for c in authorization["challenges"]], [challenge["url"]]
        )
        order_url = order_answer.header("location")
        assert order_url is not None
        self.assertEqual(client.post(order_url).json()["status"], "ready")

    def test_validator_arguments(self) -> None:
        """
        The validator gets the identifier, the challenge type and the key
        authorization ``token.thumbprint`` (RFC 8555 §8.1).
        """
        calls: list[tuple[messages.Identifier, str, str]] = []

        def validator(
            identifier: messages.Identifier, kind: str, key_authorization: str
        ) -> bool:
            calls.append((identifier, kind, key_authorization))
            return True

        client = self.registered(self.server(validator=validator))
        order = client.new_order("*.a.example").json()
        challenge = client.post(order["authorizations"][0]).json()["challenges"][0]
        client.post(challenge["url"], {})
        thumbprint = _b64(client.key.thumbprint())
        self.assertEqual(
            calls,
            [
                (
                    messages.Identifier(
                        typ=messages.IDENTIFIER_FQDN, value="a.example"
                    ),
                    "dns-01",
                    f"{challenge['token']}.{thumbprint}",
                )
            ],
        )

    def test_failed_validation(self) -> None:
        """
        A validator saying no makes the challenge invalid with an
        ``incorrectResponse`` error, and its authorization and order
        invalid.
        """
        server = self.server(
            validator=lambda identifier, kind, key_authorization: False
        )
        client = self.registered(server)
        order_answer = client.new_order("a.example")
        order = order_answer.json()
        challenge = client.post(order["authorizations"][0]).json()["challenges"][0]
        answer = client.post(challenge["url"], {}).json()
        self.assertEqual(answer["status"], "invalid")
        self.assertEqual(
            answer["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse"
        )
        self.assertEqual(answer["error"]["status"], 403)
        self.assertEqual(
            client.post(order["authorizations"][0]).json()["status"], "invalid"
        )
        order_url = order_answer.header("location")
        assert order_url is not None
        self.assertEqual(client.post(order_url).json()["status"], "invalid")

    def test_invalid_identifiers(self) -> None:
        """
        Names in ``invalid_identifiers`` always fail validation, whatever
        the validator says.
        """
        server = self.server(invalid_identifiers={"bad.example"})
        client = self.registered(server)
        order = client.new_order("good.example", "bad.example").json()
        client.authorize(order)
        statuses = [
            client.post(url).json()["status"] for url in order["authorizations"]
        ]
        self.assertEqual(statuses, ["valid", "invalid"])
        self.assertEqual(server.orders[0].status, "invalid")

    def test_validation_delay(self) -> None:
        """
        With ``validation_delay`` the challenge stays ``processing`` and the
        authorization ``pending``, both answered with ``Retry-After``, until
        the clock passes the delay.
        """
        server = self.server(validation_delay=10)
        client = self.registered(server)
        order = client.new_order("a.example").json()
        authorization_url = order["authorizations"][0]
        challenge = client.post(authorization_url).json()["challenges"][0]
        answer = client.post(challenge["url"], {})
        self.assertEqual(answer.json()["status"], "processing")
        self.assertEqual(answer.header("retry-after"), "10")
        pending = client.post(authorization_url)
        self.assertEqual(pending.json()["status"], "pending")
        self.assertEqual(pending.header("retry-after"), "10")
        self.clock.advance(9)
        self.assertEqual(client.post(challenge["url"]).json()["status"], "processing")
        self.clock.advance(1)
        self.assertEqual(client.post(challenge["url"]).json()["status"], "valid")
        self.assertEqual(client.post(authorization_url).json()["status"], "valid")

    def test_deferred_validator(self) -> None:
        """
        A validator may answer with a Deferred; the challenge stays
        ``processing`` until it fires.
        """
        pending: Deferred[bool] = Deferred()
        server = self.server(
            validator=lambda identifier, kind, key_authorization: pending
        )
        client = self.registered(server)
        order = client.new_order("a.example").json()
        challenge = client.post(order["authorizations"][0]).json()["challenges"][0]
        self.assertEqual(
            client.post(challenge["url"], {}).json()["status"], "processing"
        )
        self.assertEqual(server.authorizations[0].status, "pending")
        pending.callback(True)
        self.assertEqual(server.authorizations[0].status, "valid")
        self.assertEqual(client.post(challenge["url"]).json()["status"], "valid")

    def test_validator_error(self) -> None:
        """
        A validator that raises makes the challenge invalid with a
        ``serverInternal`` error, and the error is logged.
        """

        def validator(
            identifier: messages.Identifier, kind: str, key_authorization: str
        ) -> bool:
            raise RuntimeError("validator bug")

        client = self.registered(self.server(validator=validator))
        order = client.new_order("a.example").json()
        challenge = client.post(order["authorizations"][0]).json()["challenges"][0]
        answer = client.post(challenge["url"], {}).json()
        self.assertEqual(
            answer["error"]["type"], "urn:ietf:params:acme:error:serverInternal"
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_challenge_repeat(self) -> None:
        """
        Responding again to a challenge already valid returns it unchanged;
        responding to another challenge of a valid authorization answers
        ``malformed``; POST-as-GET reads a challenge without starting it.
        """
        client = self.registered(self.server())
        order = client.new_order("a.example").json()
        challenges = client.post(order["authorizations"][0]).json()["challenges"]
        self.assertEqual(client.post(challenges[1]["url"]).json()["status"], "pending")
        self.assertEqual(
            client.post(challenges[0]["url"], {}).json()["status"], "valid"
        )
        self.assertEqual(
            client.post(challenges[0]["url"], {}).json()["status"], "valid"
        )
        self.assertProblem(client.post(challenges[1]["url"], {}), "malformed")

    def test_authorization_reuse(self) -> None:
        """
        A new order for a name with a valid authorization of the same
        account reuses it and is ready at once; another account, or a
        server with ``authorization_reuse=False``, gets a new one.
        """
        server = self.server()
        client = self.registered(server)
        first = client.new_order("a.example").json()
        client.authorize(first)
        second = client.new_order("a.example").json()
        self.assertEqual(second["status"], "ready")
        self.assertEqual(second["authorizations"], first["authorizations"])
        other = self.registered(server).new_order("a.example").json()
        self.assertEqual(other["status"], "pending")
        self.assertNotEqual(other["authorizations"], first["authorizations"])
        server = self.server(authorization_reuse=False)
        client = self.registered(server)
        client.authorize(client.new_order("a.example").json())
        self.assertEqual(client.new_order("a.example").json()["status"], "pending")

    def test_authorization_deactivation(self) -> None:
        """
        ``status: deactivated`` deactivates an authorization (RFC 8555
        §7.5.2) and so invalidates its order; deactivating again answers
        ``malformed``.
        """
        server = self.server()
        client = self.registered(server)
        order = client.new_order("a.example").json()
        url = order["authorizations"][0]
        self.assertEqual(
            client.post(url, {"status": "deactivated"}).json()["status"], "deactivated"
        )
        self.assertEqual(server.orders[0].status, "invalid")
        self.assertProblem(client.post(url, {"status": "deactivated"}), "malformed")
        self.assertProblem(client.post(url, {"status": "valid"}), "malformed")

    def test_other_account(self) -> None:
        """
        An account cannot read or act on another account's order,
        authorization or challenge.
        """
        server = self.server()
        alice = self.registered(server)
        bob = self.registered(server)
        created = alice.new_order("a.example")
        order = created.json()
        challenge = alice.post(order["authorizations"][0]).json()["challenges"][0]
        for url in (
            created.header("location"),
            order["authorizations"][0],
            challenge["url"],
        ):
            assert url is not None
            self.assertProblem(bob.post(url), "unauthorized", 403)
        self.assertProblem(bob.post(challenge["url"], {}), "unauthorized")
        self.assertProblem(bob.finalize(order, _csr(["a.example"])), "unauthorized")

    def test_expiry(self) -> None:
        """
        An order not finalized before it expires becomes invalid, and its
        pending authorizations expire.
        """
        server = self.server(order_lifetime=timedelta(hours=1))
        client = self.registered(server)
        order = client.new_order("a.example").json()
        self.clock.advance(3600)
        self.assertEqual(
            client.post(order["authorizations"][0]).json()["status"], "expired"
        )
        self.assertEqual(server.orders[0].status, "invalid")

    def test_profiles(self) -> None:
        """
        An unknown profile answers ``invalidProfile``; a known one is
        echoed in the order.
        """
        server = self.server(profiles={"classic": "The usual"})
        client = self.registered(server)
        self.assertProblem(
            client.new_order("a.example", profile="tlsserver"), "invalidProfile"
        )
        answer = client.new_order("a.example", profile="classic")
        self.assertEqual(answer.json()["profile"], "classic")
        self.assertEqual(server.orders[0].profile, "classic")
        plain = self.registered(self.server())
        self.assertProblem(
            plain.new_order("a.example", profile="classic"), "invalidProfile"
        )

    def test_new_authz(self) -> None:
        """
        When offered, newAuthz pre-authorizes one identifier (RFC 8555
        §7.4.1) but not a wildcard; when not offered its path is unknown.
        """
        server = self.server(offer_new_authz=True)
        client = self.registered(server)
        url = client.directory["newAuthz"]
        answer = client.post(url, {"identifier": {"type": "dns", "value": "a.example"}})
        self.assertEqual(answer.status, 201)
        self.assertEqual(answer.json()["status"], "pending")
        self.assertEqual(answer.header("location"), server.authorizations[0].url)
        client.authorize({"authorizations": [answer.header("location")]})
        self.assertEqual(client.new_order("a.example").json()["status"], "ready")
        wildcard = {"identifier": {"type": "dns", "value": "*.a.example"}}
        self.assertProblem(client.post(url, wildcard), "rejectedIdentifier")
        plain = self.registered(self.server())
        self.assertProblem(plain.post(url, {"identifier": {}}), "malformed", 404)


class FinalizeTests(ServerTestCase):
    """
    Finalization and certificates (RFC 8555 §7.4, §7.4.2).
    """

    def ready_order(self, client: Client, *names: str) -> tuple[str, dict[str, Any]]:
        answer = client.new_order(*names)
        client.authorize(answer.json())
        url = answer.header("location")
        assert url is not None
        return url, client.post(url).json()

    def test_not_ready(self) -> None:
        """
        Finalizing a pending order answers ``orderNotReady`` with 403.
        """
        client = self.registered(self.server())
        order = client.new_order("a.example").json()
        self.assertProblem(
            client.finalize(order, _csr(["a.example"])), "orderNotReady", 403
        )

    def test_csr_mismatch(self) -> None:
        """
        A CSR naming more, fewer or other names than the order, or a
        common name outside them, answers ``badCSR``; the order stays ready.
        """
        server = self.server()
        client = self.registered(server)
        _, order = self.ready_order(client, "a.example", "b.example")
        for csr in (
            _csr(["a.example"]),
            _csr(["a.example", "b.example", "c.example"]),
            _csr(["a.example", "c.example"]),
            _csr(["a.example", "b.example"], common_name="c.example"),
        ):
            self.assertProblem(client.finalize(order, csr), "badCSR")
        self.assertEqual(server.orders[0].status, "ready")
        answer = client.finalize(
            order, _csr(["B.example", "a.example"], common_name="a.example")
        )
        self.assertEqual(answer.status, 200, answer.body)

    def test_csr_account_key(self) -> None:
        """
        A CSR for the account's own key answers ``badCSR``.
        """
        account_key = ec.generate_private_key(ec.SECP256R1())
        client = self.registered(self.server(), key=JWKEC(key=account_key))
        _, order = self.ready_order(client, "a.example")
        csr = _csr(["a.example"], key=account_key)
        self.assertProblem(client.finalize(order, csr), "badCSR")

    def test_csr_signature(self) -> None:
        """
        A CSR whose signature does not verify answers ``badCSR``, one that
        is not DER too, and one that is not base64url ``malformed``.
        """
        client = self.registered(self.server())
        _, order = self.ready_order(client, "a.example")
        signed = _csr(["a.example"])
        other = _csr(["b.example"])
        # Graft another CSR's signature onto this one's request info.
        info = signed.tbs_certrequest_bytes
        der = other.public_bytes(serialization.Encoding.DER)
        forged = der.replace(other.tbs_certrequest_bytes, info)
        self.assertNotEqual(forged, der)
        url = order["finalize"]
        answer = client.post(url, {"csr": _b64(forged)})
        self.assertIn("signature", self.assertProblem(answer, "badCSR")["detail"])
        self.assertProblem(client.post(url, {"csr": _b64(b"not a csr")}), "badCSR")
        self.assertProblem(client.post(url, {"csr": "a+b/c=="}), "malformed")

    def test_issuance(self) -> None:
        """
        Finalizing a ready order issues a certificate: the order becomes
        valid with a certificate URL, the download is a PEM chain (leaf
        first, no root) whose leaf has the order's names, an authority key
        identifier matching the issuer's subject key identifier, a random
        serial and validity from the clock, and which verifies up to
        :meth:`~MemoryAcmeServer.root_certificates`.
        """
        server = self.server()
        client = self.registered(server)
        order, answer = client.issue("a.example", "192.0.2.7")
        self.assertEqual(
            answer.header("content-type"), "application/pem-certificate-chain"
        )
        leaf, issuer = _pem_chain(answer.body)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["a.example"])
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("192.0.2.7")]
        )
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(aki.key_identifier, ski.digest)
        self.assertEqual(leaf.not_valid_before_utc, datetime.fromtimestamp(_NOW, UTC))
        self.assertEqual(
            leaf.not_valid_after_utc - leaf.not_valid_before_utc, timedelta(days=90)
        )
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.SERVER_AUTH])
        [root] = server.root_certificates()
        self.assertEqual(issuer.issuer, root.subject)
        self.assertNotIn(root, _pem_chain(answer.body))
        _verify(leaf, [issuer], [root], "a.example")
        record = server.certificate_by_serial(leaf.serial_number)
        self.assertEqual(record.certificate, leaf)
        self.assertEqual(record.url, order["certificate"])
        self.assertEqual(record.pem_chain(), answer.body.decode())
        self.assertEqual(server.orders[0].certificate, record)
        self.assertNotEqual(
            leaf.serial_number,
            _pem_chain(client.issue("a.example")[1].body)[0].serial_number,
        )

    def test_certificate_lifetime(self) -> None:
        """
        ``certificate_lifetime`` sets the validity of issued certificates.
        """
        client = self.registered(self.server(certificate_lifetime=timedelta(days=6)))
        leaf = _pem_chain(client.issue("a.example")[1].body)[0]
        self.assertEqual(
            leaf.not_valid_after_utc - leaf.not_valid_before_utc, timedelta(days=6)
        )

    def test_epoch_clock(self) -> None:
        """
        A :class:`Clock` left at 0 (1970) works: the CA and the leaf are
        valid then.
        """
        server = MemoryAcmeServer(clock=Clock())
        client = self.registered(server)
        leaf, *chain = _pem_chain(client.issue("a.example")[1].body)
        self.assertEqual(leaf.not_valid_before_utc.year, 1970)
        _verify(
            leaf,
            chain,
            server.root_certificates(),
            "a.example",
            at=leaf.not_valid_before_utc,
        )

    def test_processing_delay(self) -> None:
        """
        With ``processing_delay`` a finalized order stays ``processing``,
        with ``Retry-After``, until the clock passes the delay.
        """
        client = self.registered(self.server(processing_delay=30))
        url, order = self.ready_order(client, "a.example")
        answer = client.finalize(order, _csr(["a.example"]))
        self.assertEqual(answer.json()["status"], "processing")
        self.assertEqual(answer.header("retry-after"), "30")
        self.assertEqual(answer.header("location"), url)
        self.clock.advance(20)
        polled = client.post(url)
        self.assertEqual(polled.json()["status"], "processing")
        self.assertEqual(polled.header("retry-after"), "10")
        self.assertProblem(client.finalize(order, _csr(["a.example"])), "orderNotReady")
        self.clock.advance(10)
        polled = client.post(url)
        self.assertEqual(polled.json()["status"], "valid")
        self.assertIsNone(polled.header("retry-after"))
        leaf = _pem_chain(client.post(polled.json()["certificate"]).body)[0]
        self.assertEqual(
            leaf.not_valid_before_utc, datetime.fromtimestamp(_NOW + 30, UTC)
        )

    def test_chain_length(self) -> None:
        """
        ``chain_length`` intermediates are served between leaf and root.
        """
        for length in (0, 1, 3):
            server = self.server(chain_length=length)
            client = self.registered(server)
            leaf, *chain = _pem_chain(client.issue("a.example")[1].body)
            self.assertEqual(len(chain), length)
            _verify(leaf, chain, server.root_certificates(), "a.example")

    def test_alternate_chains(self) -> None:
        """
        With ``alternate_chains`` the certificate answer links each
        alternate with ``rel="alternate"``; each alternate serves the same
        leaf, links back, and verifies to its own root with its own name.
        """
        for length in (0, 2):
            server = self.server(alternate_chains=2, chain_length=length)
            client = self.registered(server)
            _, primary = client.issue("a.example")
            roots = server.root_certificates()
            self.assertEqual(len({root.subject for root in roots}), 3)
            alternates = primary.links("alternate")
            self.assertEqual(len(alternates), 2)
            leaf = _pem_chain(primary.body)[0]
            for index, url in enumerate(alternates, 1):
                answer = client.post(url)
                served_leaf, *chain = _pem_chain(answer.body)
                self.assertEqual(served_leaf, leaf)
                self.assertEqual(len(chain), max(length, 1))
                self.assertIn(server.certificates[0].url, answer.links("alternate"))
                self.assertEqual(len(answer.links("alternate")), 2)
                _verify(leaf, chain, [roots[index]], "a.example")
                if length:
                    # (With no intermediates the primary root signs the
                    # leaf itself, so every chain also leads to it.)
                    self.assertRaises(
                        VerificationError, _verify, leaf, chain, [roots[0]], "a.example"
                    )

    def test_wildcard_certificate(self) -> None:
        """
        A wildcard order is validated with dns-01 and yields a certificate
        for the ``*.`` name.
        """
        client = self.registered(self.server())
        leaf = _pem_chain(client.issue("*.a.example", "a.example")[1].body)[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            sorted(san.get_values_for_type(x509.DNSName)), ["*.a.example", "a.example"]
        )

    def test_other_account_certificate(self) -> None:
        """
        Another account cannot download a certificate.
        """
        server = self.server()
        order, _ = self.registered(server).issue("a.example")
        self.assertProblem(
            self.registered(server).post(order["certificate"]), "unauthorized"
        )


def _verify(
    leaf: x509.Certificate,
    chain: Iterable[x509.Certificate],
    roots: list[x509.Certificate],
    name: str,
    at: datetime | None = None,
) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(at or datetime.fromtimestamp(_NOW + 60, UTC))
        .build_server_verifier(x509.DNSName(name))
    )
    verifier.verify(leaf, list(chain))


class RevocationTests(ServerTestCase):
    """
    revokeCert (RFC 8555 §7.6).
    """

    def issued(
        self, server: MemoryAcmeServer
    ) -> tuple[Client, x509.Certificate, MemoryCertificate]:
        client = self.registered(server)
        leaf = _pem_chain(client.issue("a.example")[1].body)[0]
        return client, leaf, server.certificate_by_serial(leaf.serial_number)

    def test_by_account(self) -> None:
        """
        The issuing account revokes with ``kid``; the record shows the
        reason; revoking again answers ``alreadyRevoked``.
        """
        server = self.server()
        client, leaf, record = self.issued(server)
        der = _b64(leaf.public_bytes(serialization.Encoding.DER))
        url = client.directory["revokeCert"]
        answer = client.post(url, {"certificate": der, "reason": 4})
        self.assertEqual((answer.status, answer.body), (200, b""))
        self.assertTrue(record.revoked)
        self.assertEqual(record.revocation_reason, 4)
        self.assertEqual(record.revoked_at, datetime.fromtimestamp(_NOW, UTC))
        self.assertProblem(client.post(url, {"certificate": der}), "alreadyRevoked")

    def test_by_certificate_key(self) -> None:
        """
        A JWS signed with the certificate's key, carrying it as ``jwk``,
        revokes it; another key answers ``unauthorized``.
        """
        server = self.server()
        client = self.registered(server)
        order = client.new_order("a.example")
        client.authorize(order.json())
        certificate_key = ec.generate_private_key(ec.SECP256R1())
        client.finalize(order.json(), _csr(["a.example"], key=certificate_key))
        record = server.certificates[0]
        der = _b64(record.certificate.public_bytes(serialization.Encoding.DER))
        url = client.directory["revokeCert"]
        stranger = self.client(server, key=_ec_key())
        self.assertProblem(
            stranger.post(url, {"certificate": der}, use_jwk=True), "unauthorized"
        )
        self.assertProblem(
            client.post(url, {"certificate": der}, use_jwk=True), "unauthorized"
        )
        answer = stranger.post(
            url,
            {"certificate": der, "reason": 1},
            key=JWKEC(key=certificate_key),
            use_jwk=True,
        )
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(record.revocation_reason, 1)

    def test_other_account(self) -> None:
        """
        Another account may revoke only if it holds valid authorizations
        for all the certificate's names.
        """
        server = self.server()
        _, leaf, record = self.issued(server)
        der = _b64(leaf.public_bytes(serialization.Encoding.DER))
        other = self.registered(server)
        url = other.directory["revokeCert"]
        self.assertProblem(other.post(url, {"certificate": der}), "unauthorized")
        self.assertFalse(record.revoked)
        other.authorize(other.new_order("a.example").json())
        self.assertEqual(other.post(url, {"certificate": der}).status, 200)
        self.assertTrue(record.revoked)

    def test_bad_reason(self) -> None:
        """
        A reason code the server does not accept answers
        ``badRevocationReason``.
        """
        server = self.server()
        client, leaf, record = self.issued(server)
        der = _b64(leaf.public_bytes(serialization.Encoding.DER))
        url = client.directory["revokeCert"]
        for reason in (2, 6, 7, 11):
            answer = client.post(url, {"certificate": der, "reason": reason})
            self.assertProblem(answer, "badRevocationReason")
        self.assertProblem(
            client.post(url, {"certificate": der, "reason": "1"}), "malformed"
        )
        self.assertFalse(record.revoked)

    def test_unknown_certificate(self) -> None:
        """
        A certificate this server did not issue answers ``malformed``.
        """
        server = self.server()
        client, _, _ = self.issued(server)
        foreign = self.server()
        foreign_client = self.registered(foreign)
        foreign_leaf = _pem_chain(foreign_client.issue("a.example")[1].body)[0]
        der = _b64(foreign_leaf.public_bytes(serialization.Encoding.DER))
        self.assertProblem(
            client.post(client.directory["revokeCert"], {"certificate": der}),
            "malformed",
        )


class RenewalInfoTests(ServerTestCase):
    """
    ACME Renewal Information (RFC 9773).
    """

    def test_renewal_info(self) -> None:
        """
        GET ``renewalInfo/<certID>`` answers the suggested window and a
        ``Retry-After``; :meth:`~MemoryAcmeServer.set_renewal_window`
        changes it.
        """
        server = self.server(offer_renewal_info=True)
        client = self.registered(server)
        leaf = _pem_chain(client.issue("a.example")[1].body)[0]
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier is not None
        serial = leaf.serial_number.to_bytes(
            leaf.serial_number.bit_length() // 8 + 1, "big"
        )
        certificate_id = f"{_b64(aki.key_identifier)}.{_b64(serial)}"
        self.assertEqual(server.certificates[0].renewal_info_id, certificate_id)
        url = f"{client.directory['renewalInfo']}/{certificate_id}"
        answer = client.request("GET", url)
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.header("retry-after"), "21600")
        window = messages.RenewalInfo.from_json(answer.json()).suggested_window
        self.assertTrue(leaf.not_valid_before_utc < window.start < window.end)
        self.assertTrue(window.end < leaf.not_valid_after_utc)
        start = datetime(2024, 1, 1, tzinfo=UTC)
        server.set_renewal_window(
            leaf.serial_number,
            start,
            start + timedelta(days=1),
            "https://acme.example/why",
        )
        document = client.request("GET", url).json()
        self.assertEqual(
            document,
            {
                "suggestedWindow": {
                    "start": "2024-01-01T00:00:00Z",
                    "end": "2024-01-02T00:00:00Z",
                },
                "explanationURL": "https://acme.example/why",
            },
        )
        self.assertRaises(
            ValueError, server.set_renewal_window, leaf.serial_number, start, start
        )
        self.assertRaises(
            KeyError, server.set_renewal_window, 1, start, start + timedelta(1)
        )

    def test_unknown_certificate(self) -> None:
        """
        renewalInfo for an unknown or garbled certificate ID answers 404.
        """
        server = self.server(offer_renewal_info=True)
        client = self.client(server)
        for certificate_id in ("AAAA.AQ", "nodot", "A=.AQ"):
            answer = client.request(
                "GET", f"{client.directory['renewalInfo']}/{certificate_id}"
            )
            self.assertProblem(answer, "malformed", 404)

    def test_revoked_window(self) -> None:
        """
        Revoking a certificate moves its window into the past, so that
        clients renew at once.
        """
        server = self.server(offer_renewal_info=True)
        client = self.registered(server)
        leaf = _pem_chain(client.issue("a.example")[1].body)[0]
        der = _b64(leaf.public_bytes(serialization.Encoding.DER))
        client.post(client.directory["revokeCert"], {"certificate": der})
        certificate_id = server.certificates[0].renewal_info_id
        url = f"{client.directory['renewalInfo']}/{certificate_id}"
        window = messages.RenewalInfo.from_json(
            client.request("GET", url).json()
        ).suggested_window
        self.assertTrue(window.end < datetime.fromtimestamp(_NOW, UTC))

    def test_replaces(self) -> None:
        """
        newOrder with ``replaces`` naming this account's certificate is
        accepted and echoed; once that order is finalized the certificate
        is replaced, and replacing it again answers ``alreadyReplaced``.
        """
        server = self.server(offer_renewal_info=True)
        client = self.registered(server)
        client.issue("a.example")
        old = server.certificates[0]
        answer = client.new_order("a.example", replaces=old.renewal_info_id)
        self.assertEqual(answer.json()["replaces"], old.renewal_info_id)
        self.assertIsNone(old.replaced_by)
        client.authorize(answer.json())
        client.finalize(answer.json(), _csr(["a.example"]))
        self.assertEqual(old.replaced_by, answer.header("location"))
        again = client.new_order("a.example", replaces=old.renewal_info_id)
        self.assertProblem(again, "alreadyReplaced", 409)

    def test_bad_replaces(self) -> None:
        """
        ``replaces`` naming no certificate, another account's certificate
        or one sharing no name with the order answers ``malformed``, as
        does ``replaces`` on a server that does not offer renewalInfo.
        """
        server = self.server(offer_renewal_info=True)
        client = self.registered(server)
        client.issue("a.example")
        certificate_id = server.certificates[0].renewal_info_id
        self.assertProblem(
            client.new_order("a.example", replaces="AAAA.AQ"), "malformed"
        )
        self.assertProblem(
            client.new_order("b.example", replaces=certificate_id), "malformed"
        )
        other = self.registered(server)
        self.assertProblem(
            other.new_order("a.example", replaces=certificate_id), "malformed"
        )
        plain = self.registered(self.server())
        self.assertProblem(
            plain.new_order("a.example", replaces=certificate_id), "malformed"
        )


class FaultInjectionTests(ServerTestCase):
    """
    :meth:`~MemoryAcmeServer.fail_next`, :meth:`~MemoryAcmeServer.break_next`
    and ``nonce_rejection``.
    """

    def test_fail_next(self) -> None:
        """
        ``fail_next`` answers the next request to the endpoint with the
        problem, status and ``Retry-After`` asked for, without acting on
        it; the request after that is served.
        """
        server = self.server()
        client = self.registered(server)
        server.fail_next("newOrder", "rateLimited", detail="slow down", retry_after=120)
        answer = client.new_order("a.example")
        document = self.assertProblem(answer, "rateLimited", 429)
        self.assertEqual(document["detail"], "slow down")
        self.assertEqual(answer.header("retry-after"), "120")
        self.assertTrue(answer.header("replay-nonce"))
        self.assertEqual(server.orders, [])
        self.assertEqual(client.new_order("a.example").status, 201)

    def test_fail_next_count_and_status(self) -> None:
        """
        ``count`` fails that many requests; ``status`` overrides the
        default status.
        """
        server = self.server()
        client = self.client(server)
        server.fail_next("directory", "serverInternal", status=502, count=2)
        statuses = [
            client.request("GET", server.directory_url).status for _ in range(3)
        ]
        self.assertEqual(statuses, [502, 502, 200])

    def test_plain_failure(self) -> None:
        """
        ``error_type=None`` answers a plain-text 503 without a problem
        document, as a proxy would.
        """
        server = self.server()
        client = self.registered(server)
        server.fail_next("order", None)
        url = client.new_order("a.example").header("location")
        assert url is not None
        answer = client.post(url)
        self.assertEqual(answer.status, 503)
        self.assertEqual(answer.header("content-type"), "text/plain")
        self.assertEqual(client.post(url).status, 200)

    def test_fault_uses_nonce(self) -> None:
        """
        A request refused by an injected fault uses up its nonce, as it
        would on a real server.
        """
        server = self.server()
        client = self.registered(server)
        server.fail_next("newOrder", "serverInternal")
        url = client.directory["newOrder"]
        body = client.sign(
            url, {"identifiers": [{"type": "dns", "value": "a.example"}]}
        )
        self.assertProblem(
            client.request("POST", url, body, {"Content-Type": _JOSE}),
            "serverInternal",
            500,
        )
        self.assertProblem(
            client.request("POST", url, body, {"Content-Type": _JOSE}), "badNonce"
        )

    def test_fail_next_checks(self) -> None:
        """
        Unknown endpoints and break kinds are refused.
        """
        server = self.server()
        self.assertRaises(ValueError, server.fail_next, "newThing")
        self.assertRaises(ValueError, server.break_next, "order", "garbled")

    def test_break_json(self) -> None:
        """
        ``html``, ``truncated-json``, ``wrong-content-type`` and
        ``empty-body`` spoil the answer's body or type while the request
        is acted on.
        """
        server = self.server()
        client = self.registered(server)
        server.break_next("newOrder", "html")
        server.break_next("newOrder", "truncated-json")
        server.break_next("newOrder", "wrong-content-type")
        server.break_next("newOrder", "empty-body")
        html = client.new_order("a.example")
        truncated = client.new_order("a.example")
        mistyped = client.new_order("a.example")
        empty = client.new_order("a.example")
        self.assertEqual(html.header("content-type"), "text/html")
        self.assertTrue(html.body.startswith(b"<html>"))
        self.assertRaises(ValueError, truncated.json)
        self.assertEqual(truncated.header("content-type"), "application/json")
        self.assertEqual(mistyped.header("content-type"), "text/plain")
        self.assertEqual(mistyped.json()["status"], "pending")
        self.assertEqual(empty.body, b"")
        self.assertEqual(len(server.orders), 4)
        self.assertEqual(client.new_order("a.example").json()["status"], "pending")

    def test_break_headers(self) -> None:
        """
        ``no-location`` and ``no-replay-nonce`` drop those headers.
        """
        server = self.server()
        client = self.registered(server)
        server.break_next("newOrder", "no-location")
        server.break_next("newOrder", "no-replay-nonce")
        no_location = client.new_order("a.example")
        no_nonce = client.new_order("a.example")
        self.assertIsNone(no_location.header("location"))
        self.assertIsNotNone(no_location.header("replay-nonce"))
        self.assertIsNone(no_nonce.header("replay-nonce"))
        self.assertIsNotNone(no_nonce.header("location"))

    def test_break_certificate(self) -> None:
        """
        ``not-pem`` serves a certificate body that is not a PEM chain.
        """
        server = self.server()
        client = self.registered(server)
        order, _ = client.issue("a.example")
        server.break_next("certificate", "not-pem")
        answer = client.post(order["certificate"])
        self.assertEqual(answer.status, 200)
        self.assertRaises(ValueError, x509.load_pem_x509_certificates, answer.body)

    def test_nonce_rejection_all(self) -> None:
        """
        With ``nonce_rejection=1`` every good nonce is rejected with
        ``badNonce``, each answer carrying a fresh nonce.
        """
        server = self.server(nonce_rejection=1.0)
        client = self.client(server)
        answer = client.register()
        for _ in range(3):
            self.assertProblem(answer, "badNonce")
            answer = client.post(
                client.directory["newAccount"],
                {"termsOfServiceAgreed": True},
                use_jwk=True,
                nonce=answer.header("replay-nonce"),
            )
        self.assertEqual(server.accounts, [])

    def test_nonce_rejection_rate(self) -> None:
        """
        With a seed, the rejected fraction is near ``nonce_rejection`` and
        the same for two servers with the same seed.
        """

        def outcomes() -> list[int]:
            server = self.server(nonce_rejection=0.3, seed=42)
            client = self.client(server)
            return [client.register().status for _ in range(100)]

        first = outcomes()
        self.assertEqual(first, outcomes())
        rejected = first.count(400)
        self.assertTrue(15 <= rejected <= 45, rejected)


class NetworkFaultTests(ServerTestCase):
    """
    The faults of issue 11: :meth:`~MemoryAcmeServer.drop_next`,
    :meth:`~MemoryAcmeServer.delay_next`,
    :meth:`~MemoryAcmeServer.inject_next` and
    :meth:`~MemoryAcmeServer.random_faults`, and faults of ``newNonce``
    through the older switches.
    """

    def send(
        self,
        client: Client,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> Deferred[Any]:
        """
        A request through the client's ``StubTreq``, its Deferred unread.
        """
        deferred: Deferred[Any] = client.http.request(
            method, url, data=body or None, headers=headers or {}
        )
        return deferred

    def read(self, client: Client, deferred: Deferred[Any]) -> Answer:
        """
        The answer a request's Deferred fired with, read to the end.
        """
        response = self.successResultOf(deferred)
        content = self.successResultOf(client.http.content(response))
        return Answer(response.code, response.headers, content)

    def new_order_body(self, client: Client, name: str = "a.example") -> bytes:
        """
        A signed newOrder request body for ``name``, with a fresh nonce.
        """
        return client.sign(
            client.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": name}]},
        )

    def assertDropped(self, deferred: Deferred[Any]) -> None:
        """
        Assert that a request failed as treq's does on a connection closed
        without an answer.
        """
        error = self.failureResultOf(deferred, ResponseNeverReceived).value
        assert isinstance(error, ResponseNeverReceived)
        reasons = error.reasons
        self.assertTrue(
            reasons and all(reason.check(ConnectionDone) for reason in reasons),
            reasons,
        )

    def test_drop_before(self) -> None:
        """
        ``drop_next(stage="before")`` fails the request with a connection
        error and the server acts on nothing: no order, no log entry, and
        the request's nonce is still good, so the same body sent again
        creates the order.
        """
        server = self.server()
        client = self.registered(server)
        server.drop_next("newOrder", "before")
        url = client.directory["newOrder"]
        body = self.new_order_body(client)
        logged = len(server.requests)
        self.assertDropped(
            self.send(client, "POST", url, body, {"Content-Type": _JOSE})
        )
        self.assertEqual(server.orders, [])
        self.assertEqual(len(server.requests), logged)
        resent = client.request("POST", url, body, {"Content-Type": _JOSE})
        self.assertEqual(resent.status, 201, resent.body)
        self.assertEqual(len(server.orders), 1)

    def test_drop_after(self) -> None:
        """
        ``drop_next(stage="after")`` on newOrder: the order exists on the
        server and the request is logged with the status it got, while the
        client got a connection error.
        """
        server = self.server()
        client = self.registered(server)
        server.drop_next("newOrder", "after")
        url = client.directory["newOrder"]
        body = self.new_order_body(client)
        self.assertDropped(
            self.send(client, "POST", url, body, {"Content-Type": _JOSE})
        )
        [order] = server.orders
        self.assertEqual(order.status, "pending")
        self.assertEqual(
            server.requests[-1], LoggedRequest("POST", "newOrder", url, 201)
        )
        self.assertEqual(
            server.injected_faults,
            [InjectedFault("POST", "newOrder", url, "drop-after")],
        )

    def test_drop_default_and_count(self) -> None:
        """
        By default the drop is before the server; ``count`` drops that many
        requests to the endpoint, and the next one is answered.
        """
        server = self.server()
        client = self.client(server)
        server.drop_next("newNonce", count=2)
        url = client.directory["newNonce"]
        for _ in range(2):
            self.assertDropped(self.send(client, "HEAD", url))
        self.assertEqual(self.read(client, self.send(client, "HEAD", url)).status, 200)
        self.assertEqual(server.fault_counts, Counter({"drop-before": 2}))
        self.assertEqual(server.request_counts()["newNonce"], 1)

    def test_drop_challenge_after(self) -> None:
        """
        A challenge response dropped after the server acted has started
        validation: the authorization becomes valid.
        """
        server = self.server()
        client = self.registered(server)
        order = client.new_order("a.example").json()
        authorization_url = order["authorizations"][0]
        challenge = client.post(authorization_url).json()["challenges"][0]
        server.drop_next("challenge", "after")
        body = client.sign(challenge["url"], {})
        self.assertDropped(
            self.send(client, "POST", challenge["url"], body, {"Content-Type": _JOSE})
        )
        self.assertEqual(client.post(authorization_url).json()["status"], "valid")

    def test_delay(self) -> None:
        """
        ``delay_next`` acts on the request at once and answers ``seconds``
        later on the server's clock.
        """
        server = self.server()
        client = self.registered(server)
        server.delay_next("newOrder", 5)
        url = client.directory["newOrder"]
        pending = self.send(
            client, "POST", url, self.new_order_body(client), {"Content-Type": _JOSE}
        )
        self.assertNoResult(pending)
        self.assertEqual(len(server.orders), 1)
        self.clock.advance(4.9)
        self.assertNoResult(pending)
        self.clock.advance(0.1)
        answer = self.read(client, pending)
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(answer.json()["status"], "pending")
        self.assertIsNotNone(answer.header("replay-nonce"))
        self.assertEqual(answer.header("location"), server.orders[0].url)
        self.assertEqual(server.fault_counts, Counter({"delay": 1}))

    def test_delay_head(self) -> None:
        """
        A delayed answer to a HEAD newNonce brings its nonce.
        """
        server = self.server()
        client = self.client(server)
        server.delay_next("newNonce", 1)
        pending = self.send(client, "HEAD", client.directory["newNonce"])
        self.assertNoResult(pending)
        self.clock.advance(1)
        answer = self.read(client, pending)
        self.assertEqual(answer.status, 200)
        self.assertIsNotNone(answer.header("replay-nonce"))

    def test_delay_given_up(self) -> None:
        """
        A client that cancels its request before a delayed answer comes gets
        no answer later, and the server goes on answering.
        """
        server = self.server()
        client = self.registered(server)
        server.delay_next("newOrder", 5)
        url = client.directory["newOrder"]
        pending = self.send(
            client, "POST", url, self.new_order_body(client), {"Content-Type": _JOSE}
        )
        pending.cancel()
        self.failureResultOf(pending, ResponseNeverReceived)
        self.clock.advance(5)
        self.assertEqual(client.new_order("b.example").status, 201)
        self.assertEqual(len(server.orders), 2)

    def test_switch_checks(self) -> None:
        """
        Unknown endpoints, stages and kinds, and delays that are not
        positive, are refused.
        """
        server = self.server()
        self.assertRaises(ValueError, server.drop_next, "newThing")
        self.assertRaises(ValueError, server.drop_next, "newOrder", "during")
        self.assertRaises(ValueError, server.delay_next, "newOrder", 0)
        self.assertRaises(ValueError, server.delay_next, "newThing", 1)
        self.assertRaises(ValueError, server.inject_next, "newOrder", "flood")
        self.assertRaises(ValueError, server.random_faults, 1.5)
        self.assertRaises(ValueError, server.random_faults, 0.5, ["flood"])
        self.assertRaises(ValueError, server.random_faults, 0.5, endpoints=["x"])

    def test_new_nonce_faults(self) -> None:
        """
        ``newNonce`` can fail through the older switches: a 503, a 429 with
        ``Retry-After``, and a 200 without ``Replay-Nonce``.
        """
        server = self.server()
        client = self.client(server)
        url = client.directory["newNonce"]
        server.fail_next("newNonce", None, status=503)
        server.fail_next("newNonce", "rateLimited", retry_after=3)
        unavailable = client.request("HEAD", url)
        limited = client.request("HEAD", url)
        server.break_next("newNonce", "no-replay-nonce")
        no_nonce = client.request("HEAD", url)
        self.assertEqual(unavailable.status, 503)
        self.assertEqual(limited.status, 429)
        self.assertEqual(limited.header("retry-after"), "3")
        self.assertEqual(no_nonce.status, 200)
        self.assertIsNone(no_nonce.header("replay-nonce"))
        self.assertIsNotNone(client.request("HEAD", url).header("replay-nonce"))

    def test_html_200(self) -> None:
        """
        ``break_next("html")`` on a POST answered 200 keeps the 200 and
        makes it ``text/html`` garbage, as a captive portal answers.
        """
        server = self.server()
        client = self.registered(server)
        order_url = client.new_order("a.example").header("location")
        assert order_url is not None
        server.break_next("order", "html")
        answer = client.post(order_url)
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.header("content-type"), "text/html")
        self.assertRaises(ValueError, answer.json)

    def test_inject_answers(self) -> None:
        """
        The kinds of ``inject_next`` that answer in the CA's place: each
        status, content type, ``Retry-After`` and body; the CA's own answers
        (500, 429) carry a nonce and are logged, those of a device in
        between (503, 200 HTML) carry none and never reach the server; no
        order is created.
        """
        server = self.server()
        client = self.registered(server)
        for kind in (
            "unavailable",
            "truncated-error",
            "rate-limited",
            "captive-portal",
        ):
            server.inject_next("newOrder", kind)
        logged = len(server.requests)
        unavailable = client.new_order("a.example")
        truncated = client.new_order("a.example")
        limited = client.new_order("a.example")
        portal = client.new_order("a.example")
        self.assertEqual(
            (unavailable.status, unavailable.header("content-type")),
            (503, "text/html"),
        )
        self.assertEqual(unavailable.header("retry-after"), "1")
        self.assertTrue(unavailable.body.startswith(b"<html>"))
        self.assertIsNone(unavailable.header("replay-nonce"))
        self.assertEqual(
            (truncated.status, truncated.header("content-type")),
            (500, "application/problem+json"),
        )
        self.assertRaises(ValueError, truncated.json)
        self.assertTrue(truncated.body.startswith(b"{"))
        self.assertIsNotNone(truncated.header("replay-nonce"))
        self.assertProblem(limited, "rateLimited", 429)
        self.assertEqual(limited.header("retry-after"), "1")
        self.assertIsNotNone(limited.header("replay-nonce"))
        self.assertEqual(
            (portal.status, portal.header("content-type")), (200, "text/html")
        )
        self.assertRaises(ValueError, portal.json)
        self.assertIsNone(portal.header("replay-nonce"))
        self.assertEqual(server.orders, [])
        self.assertEqual(
            [
                request.status
                for request in server.requests[logged:]
                if request.endpoint == "newOrder"
            ],
            [500, 429],
        )
        self.assertEqual(client.new_order("a.example").status, 201)

    def test_inject_portal_keeps_nonce(self) -> None:
        """
        A request a device in between answered never reached the server: its
        nonce is still good.
        """
        server = self.server()
        client = self.registered(server)
        server.inject_next("newOrder", "unavailable")
        url = client.directory["newOrder"]
        body = self.new_order_body(client)
        first = client.request("POST", url, body, {"Content-Type": _JOSE})
        second = client.request("POST", url, body, {"Content-Type": _JOSE})
        self.assertEqual((first.status, second.status), (503, 201))

    def test_inject_goes_first(self) -> None:
        """
        A queued fault of ``inject_next`` is served before those of
        ``fail_next`` and ``break_next``, which wait for the next request,
        also when it passes the server's own answer on (a delay).
        """
        server = self.server()
        client = self.registered(server)
        server.fail_next("newOrder", "serverInternal")
        server.inject_next("newOrder", "rate-limited")
        self.assertEqual(client.new_order("a.example").status, 429)
        self.assertEqual(client.new_order("a.example").status, 500)
        self.assertEqual(client.new_order("a.example").status, 201)
        server.break_next("newOrder", "no-location")
        server.inject_next("newOrder", "delay", delay=1)
        pending = self.send(
            client,
            "POST",
            client.directory["newOrder"],
            self.new_order_body(client),
            {"Content-Type": _JOSE},
        )
        self.clock.advance(1)
        delayed = self.read(client, pending)
        self.assertEqual(delayed.status, 201)
        self.assertIsNotNone(delayed.header("location"))
        self.assertIsNone(client.new_order("a.example").header("location"))

    def faulted_run(self, seed: int, rate: float = 0.5) -> list[InjectedFault]:
        """
        Twenty orders on a new server with random faults of newOrder from
        ``seed`` (delays of 1 s): the faults injected.
        """
        server = self.server()
        client = self.registered(server)
        plan = server.random_faults(rate, seed=seed, delay=1, endpoints=["newOrder"])
        assert plan is not None
        for index in range(20):
            pending = self.send(
                client,
                "POST",
                client.directory["newOrder"],
                self.new_order_body(client, f"n{index}.example"),
                {"Content-Type": _JOSE},
            )
            self.clock.advance(1)
            pending.addErrback(lambda failure: None)
        self.assertEqual(plan.injected, len(server.injected_faults))
        return [
            InjectedFault(fault.method, fault.endpoint, "", fault.kind)
            for fault in server.injected_faults
        ]

    def test_random_faults_seeded(self) -> None:
        """
        The same seed injects the same faults into the same requests; another
        seed other faults.
        """
        first = self.faulted_run(7)
        self.assertEqual(first, self.faulted_run(7))
        self.assertNotEqual(first, self.faulted_run(8))
        self.assertTrue(first)

    def test_random_faults_all_kinds(self) -> None:
        """
        At rate 1 every request gets a fault, and over a long run each of the
        seven kinds turns up; ``fault_counts`` adds up to the faults
        injected.
        """
        server = self.server()
        client = self.client(server)
        server.random_faults(1.0, seed=3, delay=1)
        url = client.directory["newNonce"]
        for _ in range(200):
            self.send(client, "HEAD", url).addErrback(lambda failure: None)
            self.clock.advance(1)
        counts = server.fault_counts
        self.assertEqual(set(counts), set(FAULT_KINDS))
        self.assertEqual(sum(counts.values()), 200)

    def test_random_faults_endpoints_and_off(self) -> None:
        """
        Random faults limited to an endpoint leave the others alone; rate 0
        switches them off.
        """
        server = self.server()
        client = self.registered(server)
        server.random_faults(1.0, ["rate-limited"], endpoints=["newOrder"])
        self.assertEqual(
            client.request("HEAD", client.directory["newNonce"]).status, 200
        )
        self.assertEqual(client.new_order("a.example").status, 429)
        self.assertIsNone(server.random_faults(0))
        self.assertEqual(client.new_order("a.example").status, 201)
        self.assertEqual(server.fault_counts, Counter({"rate-limited": 1}))

    def test_random_faults_limit(self) -> None:
        """
        ``limit`` stops the faults after that many.
        """
        server = self.server()
        client = self.registered(server)
        server.random_faults(1.0, ["rate-limited"], endpoints=["newOrder"], limit=2)
        statuses = [client.new_order("a.example").status for _ in range(3)]
        self.assertEqual(statuses, [429, 429, 201])

    def test_random_faults_wait_for_queued(self) -> None:
        """
        A request with a fault queued by ``fail_next`` or ``break_next``
        draws no random fault.
        """
        server = self.server()
        client = self.registered(server)
        server.random_faults(1.0, ["captive-portal"], endpoints=["newOrder"])
        server.fail_next("newOrder", "serverInternal")
        self.assertEqual(client.new_order("a.example").status, 500)
        self.assertEqual(server.fault_counts, Counter())
        server.break_next("newOrder", "no-location")
        broken = client.new_order("a.example")
        self.assertEqual(broken.status, 201)
        self.assertIsNone(broken.header("location"))
        self.assertEqual(server.fault_counts, Counter())
        portal = client.new_order("a.example")
        self.assertEqual(
            (portal.status, portal.header("content-type")), (200, "text/html")
        )
        self.assertEqual(server.fault_counts, Counter({"captive-portal": 1}))


class IntrospectionTests(ServerTestCase):
    """
    The request log and records.
    """

    def test_request_log(self) -> None:
        """
        Every answered request is logged with method, endpoint kind, URL
        and status, and counted by endpoint kind.
        """
        server = self.server()
        client = self.registered(server)
        client.new_order("a.example", "-bad")
        self.assertEqual(
            server.requests,
            [
                LoggedRequest("GET", "directory", server.directory_url, 200),
                LoggedRequest("HEAD", "newNonce", client.directory["newNonce"], 200),
                LoggedRequest(
                    "POST", "newAccount", client.directory["newAccount"], 201
                ),
                LoggedRequest("HEAD", "newNonce", client.directory["newNonce"], 200),
                LoggedRequest("POST", "newOrder", client.directory["newOrder"], 400),
            ],
        )
        self.assertEqual(server.request_counts()["newNonce"], 2)
        self.assertEqual(server.request_counts()["challenge"], 0)

    def test_records(self) -> None:
        """
        The accounts, orders, authorizations and certificates are visible,
        linked by URL; ``certificate_by_serial`` raises ``KeyError`` for an
        unknown serial.
        """
        server = self.server()
        client = self.registered(server)
        client.issue("a.example")
        [account] = server.accounts
        [order] = server.orders
        [authorization] = server.authorizations
        [certificate] = server.certificates
        self.assertEqual(order.account_url, account.url)
        self.assertEqual(order.authorizations, [authorization])
        self.assertEqual(
            authorization.challenges[0].authorization_url, authorization.url
        )
        self.assertEqual(certificate.order_url, order.url)
        self.assertEqual(certificate.account_url, account.url)
        self.assertEqual(
            authorization.challenges[0].key_authorization,
            f"{authorization.challenges[0].token}.{_b64(client.key.thumbprint())}",
        )
        self.assertRaises(
            KeyError, server.certificate_by_serial, certificate.serial + 1
        )
