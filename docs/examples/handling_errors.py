"""
What txacme raises when things go wrong, shown against the in-memory ACME
server of :mod:`txacme.testing`, which can be told to misbehave.

Run it with ``python docs/examples/handling_errors.py``.
"""

# twisted.web's Resource has no annotations yet.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from acme import messages
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txacme.challenges import HTTP01Responder
from txacme.client import (
    Client,
    JWSClient,
    answer_challenge,
    fqdn_identifier,
    poll_until_valid,
)
from txacme.errors import (
    AuthorizationFailed,
    AuthorizationsNotValid,
    MalformedResponse,
    RateLimited,
    TermsOfServiceNotAgreed,
)
from txacme.jws import RetryPolicy
from txacme.messages import CertificateRequest
from txacme.testing import MemoryAcmeServer
from txacme.util import csr_for_names, generate_private_key

_T = TypeVar("_T")


async def connect(clock: Clock, server: MemoryAcmeServer) -> Client:
    """A client for ``server``, with a new account key."""
    key = JWKEC(key=generate_private_key("p256"))
    jws_client = JWSClient(server.treq_client(), key=key, alg=ES256)
    return await Client.from_url(
        clock, server.directory_url, key=key, alg=ES256, jws_client=jws_client
    )


async def terms_of_service(clock: Clock, server: MemoryAcmeServer) -> Client:
    """
    RFC 8555 CAs create an account only with the agreement to their terms:
    until then, register returns a registration without account URL, and
    requests that need the account fail.
    """
    client = await connect(clock, server)
    regr = await client.register(
        messages.NewRegistration.from_data(email="a@example.com")
    )
    print(f"no account yet (uri={regr.uri}), terms: {regr.terms_of_service}")
    try:
        await client.request_challenges(fqdn_identifier("example.com"))
    except TermsOfServiceNotAgreed as error:
        print(f"TermsOfServiceNotAgreed: {error}")
    regr = await client.agree_to_tos(regr)
    print(f"registered, terms: {regr.terms_of_service}")
    return client


async def rate_limited(client: Client, server: MemoryAcmeServer) -> None:
    """
    Rate limits: the transport retries by itself when the server's
    Retry-After is short; a long one is raised at once, carrying it.
    """
    server.fail_next("newOrder", "rateLimited", retry_after=3600)
    try:
        await client.request_challenges(fqdn_identifier("example.com"))
    except RateLimited as error:
        print(f"RateLimited: code={error.code} retry_after={error.retry_after:g}")


async def failed_validation(
    clock: Clock, client: Client, server: MemoryAcmeServer
) -> None:
    """The CA could not validate the challenge: AuthorizationFailed."""
    server.invalid_identifiers.add("broken.example.com")
    authzr = await client.request_challenges(fqdn_identifier("broken.example.com"))
    stop_responding = await answer_challenge(authzr, client, [HTTP01Responder()])
    try:
        await poll_until_valid(authzr, clock, client)
    except AuthorizationFailed as error:
        print(f"AuthorizationFailed: {error}")
    finally:
        await stop_responding()


async def not_authorized(client: Client) -> None:
    """Asking for a name that was never authorized: AuthorizationsNotValid."""
    csr = csr_for_names(["never-authorized.example.com"], generate_private_key("p256"))
    try:
        await client.request_issuance(CertificateRequest(csr=csr))
    except AuthorizationsNotValid as error:
        names = [authzr.body.identifier.value for authzr in error.authorizations]
        print(f"AuthorizationsNotValid: {', '.join(names)}")


async def not_acme(clock: Clock, server: MemoryAcmeServer) -> None:
    """
    An answer that is not RFC 8555 (here HTML, as a captive portal sends)
    is retried; when every attempt gets one: MalformedResponse.
    """
    attempts = RetryPolicy().max_retries + 1
    server.break_next("directory", "html", count=attempts)
    try:
        await connect(clock, server)
    except MalformedResponse as error:
        print(f"MalformedResponse: {error.reason}")


async def demonstrate(clock: Clock, server: MemoryAcmeServer) -> None:
    client = await terms_of_service(clock, server)
    await rate_limited(client, server)
    await failed_validation(clock, client, server)
    await not_authorized(client)
    await not_acme(clock, server)


def run(clock: Clock, coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to its end, advancing ``clock`` to each timer."""
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
    run(clock, demonstrate(clock, MemoryAcmeServer(clock=clock)))


if __name__ == "__main__":
    main()
