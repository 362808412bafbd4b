"""
The native RFC 8555 API of :mod:`txacme.client` against a real ACME server.

Every test makes its own account with Pebble and proves control of its
names with real http-01 validation: Pebble's validator fetches the key
authorization from an :class:`~txacme.challenges.HTTP01Responder` served on
Pebble's http-01 port on 127.0.0.1 (every DNS name resolves there through
pebble-challtestsrv, and the IP identifier is 127.0.0.1 itself).  Issued
chains are verified against Pebble's roots from its management API, and
revocations against its certificate status.

Pebble 2.4 has no ``renewalInfo`` (ARI), no certificate profiles and no
``newAuthz``: those are covered by the unit tests in ``tests/test_orders.py``
only.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from josepy.b64 import b64encode
from josepy.jwk import JWK, JWKEC, JWKRSA
from twisted.internet.defer import Deferred

from tests.integration.pebble import PebbleOptions, PebbleTestCase, expect_failure
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
)
from txacme.errors import (
    AccountDoesNotExist,
    ExternalAccountRequired,
    OrderFailed,
    ServerError,
)
from txacme.util import PrivateKey, csr_for_names, generate_private_key

# Quick polling: Pebble validates at once (PEBBLE_VA_NOSLEEP); every wait
# is bounded by the timeout.
_POLICY = PollingPolicy(first_delay=0.2, factor=1.5, max_delay=2.0, timeout=60.0)
_EAB_KEY_ID = "txacme-kid-1"
_EAB_HMAC = secrets.token_bytes(32)


def _chain(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode("ascii"))


def _common_name(name: x509.Name) -> str:
    [attribute] = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attribute.value
    return value if isinstance(value, str) else value.decode("utf-8")


def _san(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    return [str(name) for name in san.get_values_for_type(x509.DNSName)] + [
        str(address) for address in san.get_values_for_type(x509.IPAddress)
    ]


def _verify(pem: str, root_pem: bytes, names: Sequence[str]) -> None:
    """
    Verify a PEM chain (leaf first) up to ``root_pem`` for every name, DNS
    name or IP address, as a TLS client would.

    :raises cryptography.x509.verification.VerificationError: If it fails.
    """
    leaf, *issuers = _chain(pem)
    store = Store([x509.load_pem_x509_certificate(root_pem)])
    for name in names:
        subject: x509.DNSName | x509.IPAddress
        try:
            subject = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            subject = x509.DNSName(name)
        PolicyBuilder().store(store).build_server_verifier(subject).verify(
            leaf, issuers
        )


class _ProtocolTestCase(PebbleTestCase):
    """
    Helpers for the tests; subclasses choose Pebble's options and hold the
    tests.  (No ``test_`` methods here, so trial runs none.)
    """

    timeout = 120

    _responder: HTTP01Responder | None = None

    def run_body(self, body: Coroutine[Any, Any, None]) -> Deferred[None]:
        """A test body's result, with Pebble's logs if it fails."""
        return self.run_with_logs(body)

    def responder(self) -> HTTP01Responder:
        """The http-01 responder, served on Pebble's http-01 port."""
        if self._responder is None:
            self._responder = HTTP01Responder()
            self.serve_http01(self._responder.resource)
        return self._responder

    def name(self, label: str = "") -> str:
        """A DNS name for this test (resolving to 127.0.0.1)."""
        base = self._testMethodName.replace("_", "-")
        return f"{label}{'.' if label else ''}{base}.example.test"

    async def client(self, key: JWK | None = None) -> Client:
        """A client of this Pebble, with a new P-256 key unless given one."""
        if key is None:
            key = JWKEC(key=generate_private_key("p256"))
        alg = alg_for_key(key)
        jws = JWSClient(self.http_client(), key=key, alg=alg)
        return await Client.from_url(
            self.reactor,
            self.pebble.directory_url,
            key=key,
            alg=alg,
            jws_client=jws,
            policy=_POLICY,
        )

    async def registered(
        self, key: JWK | None = None, eab: EABCredentials | None = None
    ) -> tuple[Client, messages.RegistrationResource]:
        """A client with a new account."""
        client = await self.client(key)
        regr = await client.register(
            messages.NewRegistration.from_data(
                email="admin@example.test", terms_of_service_agreed=True
            ),
            eab=eab,
        )
        return client, regr

    async def authorize(
        self, client: Client, orderr: messages.OrderResource
    ) -> list[messages.AuthorizationResource]:
        """Complete every authorization of an order with http-01."""
        valid = []
        for authzr in orderr.authorizations:
            stop = await answer_challenge(authzr, client, [self.responder()])
            try:
                valid.append(await poll_until_valid(authzr, self.reactor, client, 60))
            finally:
                await stop()
        for authzr in valid:
            self.assertEqual(authzr.body.status, messages.STATUS_VALID)
        return valid

    async def finalized(
        self, client: Client, names: Sequence[str], key: PrivateKey | None = None
    ) -> messages.OrderResource:
        """Order ``names`` with ``new_order``, authorize, and ``finalize``."""
        orderr = await client.new_order(names)
        await self.authorize(client, orderr)
        if key is None:
            key = generate_private_key("p256")
        return await client.finalize(orderr, csr_for_names(names, key))

    async def issued(
        self,
        client: Client,
        names: Sequence[str],
        key: PrivateKey | None = None,
        preferred_chain: str | None = None,
    ) -> str:
        """A chain for ``names`` from :func:`issue_certificate`."""
        if key is None:
            key = generate_private_key("p256")
        return await issue_certificate(
            client,
            self.reactor,
            csr_for_names(names, key),
            [self.responder()],
            preferred_chain=preferred_chain,
            timeout=60,
        )

    async def status(self, certificate: x509.Certificate) -> dict[str, Any]:
        """Pebble's status of a certificate (management API)."""
        return await self.management().cert_status(f"{certificate.serial_number:x}")


class OrderTests(_ProtocolTestCase):
    """
    Orders for several names and for an IP address, and authorization
    deactivation, at Pebble's defaults (5% of nonces rejected, valid
    authorizations reused half of the time).
    """

    pebble_options = PebbleOptions()

    def test_multiple_names(self) -> Deferred[None]:
        """
        One ``issue_certificate`` call gets a certificate for three names
        that verifies to Pebble's root for each.
        """

        async def body() -> None:
            client, _ = await self.registered()
            names = [self.name("a"), self.name("www.a"), self.name("b")]
            key = generate_private_key("rsa")
            pem = await self.issued(client, names, key)
            leaf = _chain(pem)[0]
            self.assertEqual(sorted(_san(leaf)), sorted(names))
            self.assertEqual(leaf.public_key(), key.public_key())
            _verify(pem, await self.management().root_pem(0), names)

        return self.run_body(body())

    def test_ip_address(self) -> Deferred[None]:
        """
        ``new_order("127.0.0.1")`` makes an ``ip`` identifier (RFC 8738);
        its http-01 challenge is validated at the address itself, and the
        finalized certificate names and verifies for the address.
        """

        async def body() -> None:
            client, _ = await self.registered()
            orderr = await client.new_order(["127.0.0.1"])
            [authzr] = orderr.authorizations
            self.assertEqual(authzr.body.identifier.typ, messages.IDENTIFIER_IP)
            self.assertEqual(authzr.body.identifier.value, "127.0.0.1")
            await self.authorize(client, orderr)
            finalized = await client.finalize(
                orderr, csr_for_names(["127.0.0.1"], generate_private_key("p256"))
            )
            assert finalized.fullchain_pem is not None
            leaf = _chain(finalized.fullchain_pem)[0]
            self.assertEqual(_san(leaf), ["127.0.0.1"])
            _verify(
                finalized.fullchain_pem,
                await self.management().root_pem(0),
                ["127.0.0.1"],
            )

        return self.run_body(body())

    def test_names_and_address(self) -> Deferred[None]:
        """
        A CSR with a DNS name and an IP address gets one certificate for
        both through ``issue_certificate``.
        """

        async def body() -> None:
            client, _ = await self.registered()
            names = [self.name(), "127.0.0.1"]
            pem = await self.issued(client, names)
            self.assertEqual(sorted(_san(_chain(pem)[0])), sorted(names))
            _verify(pem, await self.management().root_pem(0), names)

        return self.run_body(body())

    def test_deactivate_pending_authorization(self) -> Deferred[None]:
        """
        A pending authorization is deactivated: Pebble says so when it is
        read again, and its order can no longer be finalized.
        """

        async def body() -> None:
            client, _ = await self.registered()
            name = self.name()
            orderr = await client.new_order([name])
            [authzr] = orderr.authorizations
            deactivated = await client.deactivate_authorization(authzr)
            self.assertEqual(deactivated.body.status, messages.STATUS_DEACTIVATED)
            polled, _ = await client.poll(authzr)
            self.assertEqual(polled.body.status, messages.STATUS_DEACTIVATED)
            await expect_failure(
                OrderFailed,
                client.finalize(
                    orderr, csr_for_names([name], generate_private_key("p256"))
                ),
            )

        return self.run_body(body())

    def test_deactivate_valid_authorization(self) -> Deferred[None]:
        """
        A valid authorization is deactivated, so that a new order for the
        name needs a new authorization.
        """

        async def body() -> None:
            client, _ = await self.registered()
            orderr = await client.new_order([self.name()])
            [authzr] = await self.authorize(client, orderr)
            deactivated = await client.deactivate_authorization(authzr)
            self.assertEqual(deactivated.body.status, messages.STATUS_DEACTIVATED)
            polled, _ = await client.poll(authzr)
            self.assertEqual(polled.body.status, messages.STATUS_DEACTIVATED)
            again = await client.new_order([self.name()])
            [fresh] = again.authorizations
            self.assertNotEqual(fresh.uri, authzr.uri)
            self.assertEqual(fresh.body.status, messages.STATUS_PENDING)

        return self.run_body(body())


class AccountTests(_ProtocolTestCase):
    """Account lookup, key change and deactivation."""

    pebble_options = PebbleOptions()

    def test_find_registration(self) -> Deferred[None]:
        """
        A second client with the same key finds the account; a key without
        account gets AccountDoesNotExist.
        """

        async def body() -> None:
            key = JWKEC(key=generate_private_key("p256"))
            _, regr = await self.registered(key)
            again = await self.client(key)
            found = await again.find_registration()
            self.assertEqual(found.uri, regr.uri)
            stranger = await self.client()
            await expect_failure(AccountDoesNotExist, stranger.find_registration())

        return self.run_body(body())

    def test_key_change(self) -> Deferred[None]:
        """
        After ``change_key`` (RSA to P-256) a new order signed with the new
        key issues a certificate; the new key finds the account and the old
        one no longer does.
        """

        async def body() -> None:
            old_key = JWKRSA(key=generate_private_key("rsa"))
            client, regr = await self.registered(old_key)
            new_private_key = generate_private_key("p256")
            await client.change_key(new_private_key)
            self.assertEqual(client.key, JWKEC(key=new_private_key))
            pem = await self.issued(client, [self.name()])
            _verify(pem, await self.management().root_pem(0), [self.name()])
            new = await self.client(JWKEC(key=new_private_key))
            self.assertEqual((await new.find_registration()).uri, regr.uri)
            old = await self.client(old_key)
            await expect_failure(AccountDoesNotExist, old.find_registration())

        return self.run_body(body())

    def test_key_change_to_used_key(self) -> Deferred[None]:
        """
        Changing to a key that has an account is refused; the client keeps
        working with its key.
        """

        async def body() -> None:
            taken = JWKEC(key=generate_private_key("p256"))
            await self.registered(taken)
            client, _ = await self.registered()
            key = client.key
            await expect_failure(ServerError, client.change_key(taken))
            self.assertEqual(client.key, key)
            await client.new_order([self.name()])

        return self.run_body(body())

    def test_deactivate_account(self) -> Deferred[None]:
        """
        A deactivated account says so, and Pebble refuses its later
        requests.
        """

        async def body() -> None:
            client, regr = await self.registered()
            deactivated = await client.deactivate_registration(regr)
            self.assertEqual(deactivated.body.status, "deactivated")
            error = await expect_failure(ServerError, client.new_order([self.name()]))
            self.assertEqual(error.code, "unauthorized")

        return self.run_body(body())


class RevocationTests(_ProtocolTestCase):
    """Revocation, checked in Pebble's certificate status."""

    pebble_options = PebbleOptions()

    def test_by_account(self) -> Deferred[None]:
        """
        The account that ordered a certificate revokes it with a reason;
        Pebble shows it revoked with that reason.
        """

        async def body() -> None:
            client, _ = await self.registered()
            orderr = await self.finalized(client, [self.name()])
            assert orderr.fullchain_pem is not None
            leaf = _chain(orderr.fullchain_pem)[0]
            self.assertEqual((await self.status(leaf))["Status"], "Valid")
            await client.revoke(leaf, reason=4)
            status = await self.status(leaf)
            self.assertEqual(status["Status"], "Revoked")
            self.assertEqual(status["Reason"], 4)
            error = await expect_failure(ServerError, client.revoke(leaf))
            self.assertEqual(error.code, "alreadyRevoked")

        return self.run_body(body())

    def test_by_certificate_key(self) -> Deferred[None]:
        """
        A client without account revokes a certificate with its private
        key; Pebble shows it revoked with the reason.
        """

        async def body() -> None:
            client, _ = await self.registered()
            certificate_key = generate_private_key("p256")
            pem = await self.issued(client, [self.name()], certificate_key)
            leaf = _chain(pem)[0]
            stranger = await self.client()
            await stranger.revoke(
                leaf.public_bytes(serialization.Encoding.PEM),
                reason=1,
                key=certificate_key,
            )
            status = await self.status(leaf)
            self.assertEqual(status["Status"], "Revoked")
            self.assertEqual(status["Reason"], 1)

        return self.run_body(body())

    def test_wrong_key(self) -> Deferred[None]:
        """
        Signing a revocation with a key that is not the certificate's is
        refused; the certificate stays valid.
        """

        async def body() -> None:
            client, _ = await self.registered()
            pem = await self.issued(client, [self.name()])
            leaf = _chain(pem)[0]
            stranger = await self.client()
            await expect_failure(
                ServerError,
                stranger.revoke(leaf, key=generate_private_key("p256")),
            )
            self.assertEqual((await self.status(leaf))["Status"], "Valid")

        return self.run_body(body())


class ExternalAccountBindingTests(_ProtocolTestCase):
    """Pebble requiring External Account Binding (RFC 8555 §7.3.4)."""

    pebble_options = PebbleOptions(
        eab_required=True,
        eab_keys={_EAB_KEY_ID: b64encode(_EAB_HMAC).decode("ascii")},
    )

    def test_missing(self) -> Deferred[None]:
        """
        The directory says a binding is required: registering without one
        is ExternalAccountRequired.
        """

        async def body() -> None:
            client = await self.client()
            self.assertTrue(client.directory.meta.external_account_required)
            await expect_failure(
                ExternalAccountRequired,
                client.register(
                    messages.NewRegistration.from_data(terms_of_service_agreed=True)
                ),
            )

        return self.run_body(body())

    def test_good_binding(self) -> Deferred[None]:
        """
        A binding with the right MAC key (given as the base64url text CAs
        show) creates an account, which gets a certificate.
        """

        async def body() -> None:
            client, regr = await self.registered(
                eab=EABCredentials(_EAB_KEY_ID, b64encode(_EAB_HMAC).decode("ascii"))
            )
            self.assertEqual(regr.body.status, "valid")
            pem = await self.issued(client, [self.name()])
            _verify(pem, await self.management().root_pem(0), [self.name()])

        return self.run_body(body())

    def test_bad_hmac(self) -> Deferred[None]:
        """A binding MACed with the wrong key is refused by Pebble."""

        async def body() -> None:
            client = await self.client()
            await expect_failure(
                ServerError,
                client.register(
                    messages.NewRegistration.from_data(terms_of_service_agreed=True),
                    eab=EABCredentials(_EAB_KEY_ID, secrets.token_bytes(32)),
                ),
            )
            stranger = await self.client(client.key)
            await expect_failure(AccountDoesNotExist, stranger.find_registration())

        return self.run_body(body())


class AlternateChainTests(_ProtocolTestCase):
    """Two alternate roots (``PEBBLE_ALTERNATE_ROOTS=2``)."""

    pebble_options = PebbleOptions(alternate_roots=2)

    def test_alternates(self) -> Deferred[None]:
        """
        ``finalize`` fetches both alternate chains; the default one verifies
        to root 0 and the alternates to roots 1 and 2, one each.
        """

        async def body() -> None:
            client, _ = await self.registered()
            name = self.name()
            orderr = await self.finalized(client, [name])
            assert orderr.fullchain_pem is not None
            management = self.management()
            roots = [await management.root_pem(index) for index in range(3)]
            _verify(orderr.fullchain_pem, roots[0], [name])
            alternates = list(orderr.alternative_fullchains_pem)
            self.assertEqual(len(alternates), 2)
            leaf = _chain(orderr.fullchain_pem)[0]
            verified = []
            for alternate in alternates:
                self.assertEqual(_chain(alternate)[0], leaf)
                for index, root in enumerate(roots):
                    try:
                        _verify(alternate, root, [name])
                    except x509.verification.VerificationError:
                        continue
                    verified.append(index)
            self.assertEqual(sorted(verified), [1, 2])

        return self.run_body(body())

    def test_preferred_chain(self) -> Deferred[None]:
        """
        ``preferred_chain`` with the name of Pebble's root 1 gets the chain
        to that root; an unknown name gets the default chain.
        """

        async def body() -> None:
            client, _ = await self.registered()
            management = self.management()
            root_0, root_1 = await management.root_pem(0), await management.root_pem(1)
            wanted = _common_name(x509.load_pem_x509_certificate(root_1).subject)
            name = self.name()
            pem = await self.issued(client, [name], preferred_chain=wanted)
            self.assertEqual(_common_name(_chain(pem)[-1].issuer), wanted)
            _verify(pem, root_1, [name])
            default = await self.issued(
                client, [name], preferred_chain="No Such Root X9"
            )
            _verify(default, root_0, [name])

        return self.run_body(body())


class _ChainLengthTests(_ProtocolTestCase):
    """
    ``fullchain_pem`` and ``fetch_chain`` with ``PEBBLE_CHAIN_LENGTH``;
    subclasses set it.  (No ``test_`` methods here.)
    """

    async def check_chain(self) -> None:
        client, _ = await self.registered()
        name = self.name()
        orderr = await self.finalized(client, [name])
        assert orderr.fullchain_pem is not None
        assert orderr.body.certificate is not None
        leaf, *issuers = _chain(orderr.fullchain_pem)
        # PEBBLE_CHAIN_LENGTH is the number of intermediates served.
        self.assertEqual(len(issuers), self.pebble_options.chain_length)
        der = leaf.public_bytes(serialization.Encoding.DER)
        fetched = await client.fetch_chain(
            messages.CertificateResource(
                uri=orderr.body.certificate,
                cert_chain_uri=orderr.body.certificate,
                body=der,
                authzrs=(),
            )
        )
        self.assertEqual(
            [certificate.body for certificate in fetched],
            [c.public_bytes(serialization.Encoding.DER) for c in issuers],
        )
        _verify(orderr.fullchain_pem, await self.management().root_pem(0), [name])
        now = datetime.now(UTC)
        for certificate in issuers:
            self.assertTrue(certificate.not_valid_after_utc > now)


class ChainLengthThreeTests(_ChainLengthTests):
    """``PEBBLE_CHAIN_LENGTH=3``."""

    pebble_options = PebbleOptions(chain_length=3)

    def test_chain(self) -> Deferred[None]:
        """
        ``fullchain_pem`` holds the leaf and every intermediate, as
        ``fetch_chain`` of the certificate URL gives them, and verifies to
        Pebble's root.
        """
        return self.run_body(self.check_chain())


class ChainLengthFourTests(_ChainLengthTests):
    """``PEBBLE_CHAIN_LENGTH=4``."""

    pebble_options = PebbleOptions(chain_length=4)

    def test_chain(self) -> Deferred[None]:
        """
        ``fullchain_pem`` holds the leaf and every intermediate, as
        ``fetch_chain`` of the certificate URL gives them, and verifies to
        Pebble's root.
        """
        return self.run_body(self.check_chain())
