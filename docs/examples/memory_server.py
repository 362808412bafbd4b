"""
Issue a certificate from txacme's in-memory ACME server, with the API of
txacme 0.9's ``txacme.client``.

No network, no CA and no waiting: :class:`txacme.testing.MemoryAcmeServer`
is a strict RFC 8555 server in memory, and time is a
:class:`~twisted.internet.task.Clock` advanced by hand.  Its validator
fetches the http-01 key authorization from the application's own web site
(in memory too, through :class:`treq.testing.StubTreq`), as a CA fetches it
from port 80.  This is how an application's trial tests can run its ACME
code.

Run it with ``python docs/examples/memory_server.py``.
"""

# twisted.web's Resource has no annotations yet.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from collections.abc import Coroutine
from itertools import pairwise
from typing import Any, TypeVar

from acme import messages
from cryptography import x509
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from txacme.challenges import HTTP01Responder
from txacme.client import (
    Client,
    JWSClient,
    answer_challenge,
    fqdn_identifier,
    poll_until_valid,
)
from txacme.messages import CertificateRequest
from txacme.testing import MemoryAcmeServer, Validator
from txacme.util import csr_for_names, generate_private_key

NAMES = ["example.com", "www.example.com"]

_T = TypeVar("_T")


def web_site(responder: HTTP01Responder) -> Resource:
    """The application's web site, with the responder where CAs look."""
    well_known = Resource()
    well_known.putChild(b"acme-challenge", responder.resource)
    root = Resource()
    root.putChild(b".well-known", well_known)
    return root


def http01_validator(site: Resource) -> Validator:
    """
    A validator for the server that checks http-01 challenges as a CA
    does: it fetches ``/.well-known/acme-challenge/<token>`` from the site.
    """
    # StubTreq gets treq's functions at run time, out of mypy's sight.
    web: Any = StubTreq(site)

    async def fetch(
        identifier: messages.Identifier, challenge_type: str, key_authorization: str
    ) -> bool:
        if challenge_type != "http-01":
            return False
        token = key_authorization.split(".")[0]
        url = f"http://{identifier.value}/.well-known/acme-challenge/{token}"
        response = await web.get(url)
        if response.code != 200:
            return False
        body: bytes = await response.content()
        return body == key_authorization.encode("ascii")

    def validate(
        identifier: messages.Identifier, challenge_type: str, key_authorization: str
    ) -> Deferred[bool]:
        return Deferred.fromCoroutine(
            fetch(identifier, challenge_type, key_authorization)
        )

    return validate


async def issue(
    clock: Clock, server: MemoryAcmeServer, responder: HTTP01Responder
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """
    The seed API's issuance flow, against ``server``.

    :returns: The certificate and its issuers.
    """
    account_key = JWKEC(key=generate_private_key("p256"))
    # server.treq_client() is a treq.testing.StubTreq whose requests the
    # server answers in memory.
    jws_client = JWSClient(server.treq_client(), key=account_key, alg=ES256)
    client = await Client.from_url(
        clock, server.directory_url, key=account_key, alg=ES256, jws_client=jws_client
    )
    regr = await client.register(
        messages.NewRegistration.from_data(
            email="admin@example.com", terms_of_service_agreed=True
        )
    )
    print(f"account: {regr.uri}")
    for name in NAMES:
        authzr = await client.request_challenges(fqdn_identifier(name))
        stop_responding = await answer_challenge(authzr, client, [responder])
        try:
            authzr = await poll_until_valid(authzr, clock, client)
        finally:
            await stop_responding()
        print(f"{name}: {authzr.body.status.name}")
    key = generate_private_key("p256")
    certr = await client.request_issuance(
        CertificateRequest(csr=csr_for_names(NAMES, key))
    )
    print(f"certificate: {certr.uri}")
    chain = await client.fetch_chain(certr)
    certificate = x509.load_der_x509_certificate(certr.body)
    if certificate.public_key() != key.public_key():
        raise AssertionError("the certificate is not for our key")
    return certificate, [x509.load_der_x509_certificate(c.body) for c in chain]


def run(clock: Clock, coroutine: Coroutine[Any, Any, _T]) -> _T:
    """
    Run a coroutine to its end, advancing ``clock`` to each timer it waits
    for (the client polls, and times its requests out, with the clock).
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
    responder = HTTP01Responder()
    server = MemoryAcmeServer(
        clock=clock, validator=http01_validator(web_site(responder))
    )
    certificate, issuers = run(clock, issue(clock, server, responder))

    names = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    print(f"names: {', '.join(names)}")
    # Check the chain: each certificate signed by the next, up to a root.
    (root,) = server.root_certificates()[:1]
    path = [certificate, *issuers, root]
    for child, parent in pairwise(path):
        child.verify_directly_issued_by(parent)
    print(f"chain: {' <- '.join(c.subject.rfc4514_string() for c in path[1:])}")
    print(f"verified up to the server's root after {clock.seconds():g} s")


if __name__ == "__main__":
    main()
