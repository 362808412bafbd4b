"""
The RFC 8555 order API of :mod:`txacme.client`, from account to revocation,
against txacme's in-memory ACME server.

The server here asks for External Account Binding (as ZeroSSL, Google
Trust Services and Sectigo do), serves an alternate chain to a second root
(as Let's Encrypt has), offers certificate profiles and ACME Renewal
Information (RFC 9773), and validates every challenge: the responders are
:class:`txacme.testing.NullResponder` objects, which do nothing.  Against a
real CA, pass real ones (:mod:`txacme.challenges`).

No network and no waiting: time is a :class:`~twisted.internet.task.Clock`
advanced by hand.  Run it with ``python docs/examples/orders.py``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from acme import messages
from cryptography import x509
from cryptography.x509.oid import NameOID
from josepy.b64 import b64encode
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txacme.client import (
    Client,
    EABCredentials,
    JWSClient,
    PollingPolicy,
    answer_challenge,
    issue_certificate,
    poll_until_valid,
    renewal_certificate_id,
)
from txacme.errors import (
    ExternalAccountRequired,
    NotOffered,
    ServerError,
)
from txacme.jws import RetryPolicy
from txacme.testing import MemoryAcmeServer, NullResponder
from txacme.util import PrivateKey, csr_for_names, generate_private_key

#: A DNS name, a wildcard and an IP address (RFC 8738) in one certificate.
NAMES = ["example.com", "*.example.com", "192.0.2.10"]

#: In order of preference: the first one whose challenge type the CA offers
#: for an authorization answers it.  CAs validate wildcards with dns-01
#: only, and IP addresses with http-01 or tls-alpn-01 only.
RESPONDERS = [NullResponder("http-01"), NullResponder("dns-01")]

#: What the CA's account page shows: a key id and a base64url MAC key.
EAB_KEY_ID = "kid-1"
EAB_MAC_KEY = bytes(range(32))

#: The clock starts on 1 January 2026 (UTC).
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

_T = TypeVar("_T")


async def connect(clock: Clock, server: MemoryAcmeServer) -> Client:
    """
    A client for ``server`` with a new account key, and explicit polling
    and retry policies (these are the defaults, but for the timeout).
    """
    key = JWKEC(key=generate_private_key("p256"))
    jws_client = JWSClient(
        server.treq_client(),
        key=key,
        alg=ES256,
        retry_policy=RetryPolicy(max_retries=3, max_retry_after=60),
    )
    return await Client.from_url(
        clock,
        server.directory_url,
        key=key,
        alg=ES256,
        jws_client=jws_client,
        policy=PollingPolicy(first_delay=1, factor=1.5, max_delay=10, timeout=120),
    )


async def register(client: Client) -> messages.RegistrationResource:
    """Create the account, bound to the CA's external account."""
    new_reg = messages.NewRegistration.from_data(
        email="admin@example.com", terms_of_service_agreed=True
    )
    try:
        await client.register(new_reg)
    except ExternalAccountRequired as error:
        # The directory says so (meta.externalAccountRequired): nothing sent.
        print(f"without EAB: {type(error).__name__} ({error.code})")
    eab = EABCredentials(
        key_id=EAB_KEY_ID, hmac_key=b64encode(EAB_MAC_KEY).decode("ascii")
    )
    regr = await client.register(new_reg, eab=eab)
    print(f"account: {regr.body.status}, bound to EAB key id {eab.key_id}")
    return regr


def _name(authzr: messages.AuthorizationResource) -> str:
    """The identifier an authorization is for, with ``*.`` for a wildcard."""
    value = authzr.body.identifier.value
    return f"*.{value}" if authzr.body.wildcard else value


async def order_step_by_step(
    clock: Clock, client: Client, key: PrivateKey
) -> messages.OrderResource:
    """
    newOrder, answer each authorization, finalize: every step in view.
    """
    before = clock.seconds()
    orderr = await client.new_order(NAMES)
    print(
        f"order: {orderr.body.status.name}, {len(orderr.authorizations)}"
        f" authorizations, after {clock.seconds() - before:g} s"
    )
    for authzr in orderr.authorizations:
        # The JSON "type": acme knows no tls-alpn-01 class of its own.
        offered = [
            challb.to_partial_json()["type"] for challb in authzr.body.challenges
        ]
        stop_responding = await answer_challenge(authzr, client, RESPONDERS)
        try:
            authzr = await poll_until_valid(authzr, clock, client)
        finally:
            await stop_responding()
        print(
            f"  {_name(authzr)}: offers {', '.join(offered)}"
            f" -> {authzr.body.status.name}"
        )
    orderr = await client.finalize(orderr, csr_for_names(NAMES, key))
    chains = [orderr.fullchain_pem, *orderr.alternative_fullchains_pem]
    print(f"finalized: {orderr.body.status.name}, {len(chains)} chains")
    for chain in chains:
        print(f"  up to {top_issuer(chain)}")
    return orderr


def top_issuer(chain_pem: str) -> str:
    """The issuer common name of a chain's topmost certificate."""
    top = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))[-1]
    (name,) = top.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(name.value)


def names_of(certificate: x509.Certificate) -> str:
    """A certificate's DNS names and IP addresses."""
    san = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    names = san.get_values_for_type(x509.DNSName)
    addresses = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return ", ".join([*names, *addresses])


async def issue_in_one_call(
    clock: Clock, client: Client, key: PrivateKey, preferred_chain: str
) -> x509.Certificate:
    """
    issue_certificate: order, answer, poll, finalize, pick a chain.
    """
    csr = csr_for_names(NAMES, key)
    try:
        await issue_certificate(client, clock, csr, RESPONDERS, profile="tlsserver")
    except NotOffered as error:
        print(f"NotOffered: {error.detail}")
    chain_pem = await issue_certificate(
        client,
        clock,
        csr,
        RESPONDERS,
        preferred_chain=preferred_chain,
        profile="classic",
    )
    certificate = x509.load_pem_x509_certificate(chain_pem.encode("ascii"))
    print(f"issued for {names_of(certificate)}")
    print(f"  up to {top_issuer(chain_pem)}")
    return certificate


async def renew(
    clock: Clock, client: Client, certificate: x509.Certificate, key: PrivateKey
) -> x509.Certificate:
    """Ask the CA when to renew (ARI), then renew, naming the old one."""
    window = await client.renewal_info(certificate)
    print(
        f"renewal window: {window.start:%Y-%m-%d} to {window.end:%Y-%m-%d},"
        f" ask again in {window.retry_after:g} s"
    )
    chain_pem = await issue_certificate(
        client,
        clock,
        csr_for_names(NAMES, key),
        RESPONDERS,
        replaces=certificate,
    )
    renewed = x509.load_pem_x509_certificate(chain_pem.encode("ascii"))
    print(f"renewed: {renewed.not_valid_before_utc:%Y-%m-%d} to ", end="")
    print(f"{renewed.not_valid_after_utc:%Y-%m-%d}")
    return renewed


async def roll_account_key(client: Client, regr: messages.RegistrationResource) -> None:
    """Replace the account key, then look the account up by the new one."""
    await client.change_key(generate_private_key("p256"))
    found = await client.find_registration()
    print(f"new account key; find_registration finds it: {found.uri == regr.uri}")


async def revoke(
    client: Client,
    old: x509.Certificate,
    compromised: x509.Certificate,
    compromised_key: PrivateKey,
) -> None:
    """Revoke with the account, and with a certificate's own key."""
    await client.revoke(old, reason=4)  # superseded
    print("revoked the old certificate (superseded), signed by the account")
    await client.revoke(compromised, reason=1, key=compromised_key)  # keyCompromise
    print("revoked the renewed one (keyCompromise), signed by its key")
    try:
        await client.revoke(old)
    except ServerError as error:
        print(f"revoking again: {error.code}")


async def close_account(client: Client, regr: messages.RegistrationResource) -> None:
    """Deactivate the account: the CA refuses it from now on."""
    regr = await client.deactivate_registration(regr)
    print(f"account: {regr.body.status}")
    try:
        await client.new_order(NAMES)
    except ServerError as error:
        print(f"ordering again: {error.code}")


async def demo(clock: Clock, server: MemoryAcmeServer) -> None:
    """Every step in turn."""
    client = await connect(clock, server)
    regr = await register(client)

    # A passing error: the transport waits as told and sends it again.
    server.fail_next("newOrder", "rateLimited", retry_after=5)
    print("the next newOrder is answered: rateLimited, Retry-After: 5")
    first_key = generate_private_key("p256")
    await order_step_by_step(clock, client, first_key)

    # The alternate chain's root, by its common name, as one would ask
    # for "ISRG Root X1".
    alternate_root = server.root_certificates()[1]
    (name,) = alternate_root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    current_key = generate_private_key("p256")
    current = await issue_in_one_call(clock, client, current_key, str(name.value))
    print(f"  profile sent: {server.orders[-1].profile}")

    renewed_key = generate_private_key("p256")
    renewed = await renew(clock, client, current, renewed_key)
    replaces = server.orders[-1].replaces
    print(f"  replaces= sent: {replaces == renewal_certificate_id(current)}")

    await roll_account_key(client, regr)
    await revoke(client, current, renewed, renewed_key)
    await close_account(client, regr)


def run(clock: Clock, coroutine: Coroutine[Any, Any, _T]) -> _T:
    """
    Run a coroutine to its end, advancing ``clock`` to each timer it waits
    for.
    """
    outcome: list[_T | Failure] = []
    Deferred.fromCoroutine(coroutine).addBoth(outcome.append)
    while not outcome:
        delayed_calls = clock.getDelayedCalls()
        if not delayed_calls:
            raise RuntimeError("stuck: nothing to wait for")
        next_time = min(call.getTime() for call in delayed_calls)
        clock.advance(max(0.0, next_time - clock.seconds()))
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def main() -> None:
    clock = Clock()
    clock.advance(START)
    server = MemoryAcmeServer(
        clock=clock,
        eab_required=True,
        eab_keys={EAB_KEY_ID: EAB_MAC_KEY},
        alternate_chains=1,
        offer_renewal_info=True,
        profiles={"classic": "90 days", "shortlived": "6 days"},
    )
    run(clock, demo(clock, server))


if __name__ == "__main__":
    main()
