"""
The seed API of :mod:`txacme.client` against a real ACME server.

Each test registers a new account with Pebble, authorizes every name with
http-01 (Pebble's validator fetches the key authorization from an
:class:`~txacme.challenges.HTTP01Responder` served on Pebble's http-01
port; every test name resolves to 127.0.0.1 through pebble-challtestsrv),
gets a certificate for a CSR, and verifies the leaf and the chain against
Pebble's root for every name.

Only txacme 0.9's documented API is used, in the order its users call it.
"""

from __future__ import annotations

from collections.abc import Sequence

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwa import ES256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.url import URL

from tests.integration.pebble import PebbleOptions, PebbleTestCase, verify_chain
from txacme.challenges import HTTP01Responder
from txacme.client import (
    Client,
    JWSClient,
    answer_challenge,
    fqdn_identifier,
    poll_until_valid,
)
from txacme.messages import CertificateRequest
from txacme.util import csr_for_names, generate_private_key


def _account_key(key_type: str) -> tuple[JWK, JWASignature]:
    """
    A new account key and its JWS algorithm: ``"rsa"`` (RS256) or
    ``"p256"`` (ES256).
    """
    key = generate_private_key(key_type)
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key), RS256
    return JWKEC(key=key), ES256


class _SeedFlow(PebbleTestCase):
    """
    The issuance flow and its checks; subclasses choose Pebble's options
    and hold the tests.  (No ``test_`` methods here, so trial runs none.)
    """

    timeout = 180

    async def issue(
        self, names: Sequence[str], account_key_type: str, certificate_key_type: str
    ) -> None:
        """
        Issue a certificate for ``names`` through the seed API and verify it.
        """
        http = self.http_client()
        key, alg = _account_key(account_key_type)
        jws = JWSClient(http, key=key, alg=alg)
        client = await Client.from_url(
            self.reactor,
            URL.fromText(self.pebble.directory_url),
            key=key,
            alg=alg,
            jws_client=jws,
        )
        regr = await client.register(
            messages.NewRegistration.from_data(
                email="admin@example.test", terms_of_service_agreed=True
            )
        )
        regr = await client.agree_to_tos(regr)
        self.assertEqual(regr.body.status, "valid")

        responder = HTTP01Responder()
        self.serve_http01(responder.resource)
        for name in names:
            authzr = await client.request_challenges(fqdn_identifier(name))
            self.assertEqual(authzr.body.identifier.value, name)
            stop = await answer_challenge(authzr, client, [responder])
            try:
                authzr = await poll_until_valid(authzr, self.reactor, client)
            finally:
                await maybeDeferred(stop)
            self.assertEqual(authzr.body.status, messages.STATUS_VALID)

        certificate_key = generate_private_key(certificate_key_type)
        certr = await client.request_issuance(
            CertificateRequest(csr=csr_for_names(names, certificate_key))
        )
        chain = await client.fetch_chain(certr)

        leaf = x509.load_der_x509_certificate(certr.body)
        self.assertEqual(leaf.public_key(), certificate_key.public_key())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertEqual(
            sorted(san.value.get_values_for_type(x509.DNSName)), sorted(names)
        )
        self.assertTrue(chain, "fetch_chain gave no issuer")
        issuer = x509.load_der_x509_certificate(chain[0].body)
        self.assertEqual(issuer.subject, leaf.issuer)

        management = self.management()
        root_pem = await management.root_pem()
        path = verify_chain(certr.body, [c.body for c in chain], root_pem, names)
        self.assertEqual(path[0], leaf)
        self.assertEqual(path[-1], x509.load_pem_x509_certificate(root_pem))

        status = await management.cert_status(f"{leaf.serial_number:x}")
        self.assertEqual(status["Status"], "Valid")

    def run_issue(
        self, names: Sequence[str], account_key_type: str, certificate_key_type: str
    ) -> Deferred[None]:
        """
        :meth:`issue` as a test method's result, with Pebble's logs in the
        failure message if it fails.
        """
        return self.run_with_logs(
            self.issue(names, account_key_type, certificate_key_type)
        )


ONE_NAME = ["a.example.test"]
THREE_NAMES = ["b.example.test", "www.b.example.test", "c.example.test"]


class OneNameTests(_SeedFlow):
    """
    One name at Pebble's defaults: 5% of nonces rejected, valid
    authorizations reused half of the time.
    """

    pebble_options = PebbleOptions()

    def test_rsa_account(self) -> Deferred[None]:
        """
        An RSA (RS256) account gets a verified certificate for one name.
        """
        return self.run_issue(ONE_NAME, "rsa", "rsa")

    def test_ec_account(self) -> Deferred[None]:
        """
        A P-256 (ES256) account gets a verified certificate, with a P-256
        key, for one name.
        """
        return self.run_issue(ONE_NAME, "p256", "p256")


class ThreeNameTests(_SeedFlow):
    """
    Three names, authorized one order at a time then requested in one CSR:
    this needs Pebble to reuse the valid authorizations, so reuse is 100%.
    """

    pebble_options = PebbleOptions(authz_reuse=100)

    def test_rsa_account(self) -> Deferred[None]:
        """
        An RSA account gets one certificate verified for all three names.
        """
        return self.run_issue(THREE_NAMES, "rsa", "rsa")

    def test_ec_account(self) -> Deferred[None]:
        """
        A P-256 account gets one certificate verified for all three names.
        """
        return self.run_issue(THREE_NAMES, "p256", "p256")


class HighNonceRejectionTests(_SeedFlow):
    """
    Pebble rejects half of all good nonces: every request may need several
    ``badNonce`` retries, and the flow must still complete.
    """

    pebble_options = PebbleOptions(nonce_reject=50, authz_reuse=100)

    def test_rsa_one_name(self) -> Deferred[None]:
        """
        An RSA account gets a certificate for one name.
        """
        return self.run_issue(ONE_NAME, "rsa", "p256")

    def test_ec_one_name(self) -> Deferred[None]:
        """
        A P-256 account gets a certificate for one name.
        """
        return self.run_issue(ONE_NAME, "p256", "rsa")

    def test_rsa_three_names(self) -> Deferred[None]:
        """
        An RSA account gets a certificate for three names.
        """
        return self.run_issue(THREE_NAMES, "rsa", "rsa")

    def test_ec_three_names(self) -> Deferred[None]:
        """
        A P-256 account gets a certificate for three names.
        """
        return self.run_issue(THREE_NAMES, "p256", "p256")
