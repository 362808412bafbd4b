"""
Answer http-01 challenges (RFC 8555 §8.3) with a server of their own.

A CA validating http-01 fetches
``http://<name>/.well-known/acme-challenge/<token>`` from port 80 and
expects the token's key authorization.  This script runs
:meth:`HTTP01Responder.listen <txacme.challenges.HTTP01Responder.listen>`
on a loopback port -- for a program with no web site of its own -- then:

1. starts responding to a challenge it makes up (as
   :func:`txacme.client.answer_challenge` does for a real one) and fetches
   as the CA's validator would: the token, another path, and the token
   after ``stop_responding``;
2. gets a certificate from txacme's in-memory ACME server, whose validator
   fetches the tokens over real HTTP from the port, with the responder's
   self-check on;
3. shows the self-check failing fast where nothing answers.

Run it with ``python docs/examples/http_01.py``.
"""

# Twisted's endpoints and twisted.web have no annotations yet.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import os
import socket
from typing import Any

from acme import challenges, messages
from cryptography import x509
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import react
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

from txacme.challenges import HTTP01Responder, SelfCheck, SelfCheckFailed
from txacme.client import Client, JWSClient, issue_certificate
from txacme.testing import MemoryAcmeServer, Validator
from txacme.util import PrivateKey, csr_for_names, generate_private_key

LOOPBACK = "127.0.0.1"


# -- the application ---------------------------------------------------------------


def listen_for_challenges(
    reactor: Any, responder: HTTP01Responder, port: int = 80, interface: str = ""
) -> Deferred[IListeningPort]:
    """
    Serve the responder's tokens, and nothing else, on ``port``.
    """
    endpoint = TCP4ServerEndpoint(reactor, port, interface=interface)
    return responder.listen(endpoint, reactor)


def checked_responder(
    reactor: Any, address: tuple[str, int] | None = None
) -> HTTP01Responder:
    """
    A responder that fetches each token itself before the challenge is
    answered; ``address`` is where to connect instead of port 80 of the
    name (``None`` resolves the name, as the CA will).
    """
    return HTTP01Responder(self_check=SelfCheck(reactor, timeout=10, address=address))


async def get_certificate(
    reactor: Any, client: Client, responder: HTTP01Responder, names: list[str]
) -> tuple[PrivateKey, str]:
    """
    Get a certificate for ``names``, validated by http-01 through the
    responder (the client must be registered).

    :returns: The certificate's new key and its chain (PEM, leaf first).
    """
    key = generate_private_key("p256")
    chain = await issue_certificate(
        client, reactor, csr_for_names(names, key), [responder]
    )
    return key, chain


# -- the rest of the demonstration ----------------------------------------------------


async def fetch(
    reactor: Any, port: int, host: str, path: str
) -> tuple[int, bytes, str]:
    """
    GET ``path`` from 127.0.0.1:``port`` with ``Host: host``, as a CA's
    validator would: status, body and content type.
    """
    http = HTTPClient(Agent(reactor))
    response = await http.get(
        f"http://{LOOPBACK}:{port}{path}", headers=Headers({"Host": [host]})
    )
    body: bytes = await response.content()
    content_type = (response.headers.getRawHeaders("content-type") or ["none"])[0]
    return response.code, body, content_type


def http01_validator(reactor: Any, port: int) -> Validator:
    """
    A validator for the in-memory ACME server that checks http-01 as a CA
    does (RFC 8555 §8.3), fetching from 127.0.0.1:``port``.
    """

    async def validate(
        identifier: messages.Identifier, challenge_type: str, key_authorization: str
    ) -> bool:
        if challenge_type != "http-01":
            return False
        token = key_authorization.split(".")[0]
        path = f"/.well-known/acme-challenge/{token}"
        code, body, _ = await fetch(reactor, port, identifier.value, path)
        return code == 200 and body.strip() == key_authorization.encode("ascii")

    return lambda *arguments: Deferred.fromCoroutine(validate(*arguments))


def closed_port() -> int:
    """A loopback port where nothing listens (it was just released)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


async def main(reactor: Any) -> None:
    responder = HTTP01Responder()
    listening = await listen_for_challenges(
        reactor, responder, port=0, interface=LOOPBACK
    )
    address: Any = listening.getHost()
    port = address.port

    # 1. A made-up challenge, fetched as the CA would.
    account_key = JWKEC(key=generate_private_key("p256"))
    challenge = challenges.HTTP01(token=os.urandom(16))
    response = challenge.response(account_key)
    await responder.start_responding("example.com", challenge, response)
    code, body, content_type = await fetch(reactor, port, "example.com", challenge.path)
    matches = body == response.key_authorization.encode("ascii")
    print(
        f"validator: {code} {content_type}, "
        f"body is {'the' if matches else 'NOT the'} key authorization"
    )
    code, _, _ = await fetch(reactor, port, "example.com", "/index.html")
    print(f"other path: {code}")
    responder.stop_responding("example.com", challenge, response)
    code, _, _ = await fetch(reactor, port, "example.com", challenge.path)
    print(f"validator after stop: {code}")

    # 2. A certificate, from a server that validates over real HTTP, with
    # the self-check on.  A real program makes its responder with
    # checked_responder(reactor) and listens on port 80; here the system
    # chose the port, so a second responder, checking that port, shares the
    # first one's tokens.
    checked = HTTP01Responder(
        responder.resource, self_check=SelfCheck(reactor, address=(LOOPBACK, port))
    )
    server = MemoryAcmeServer(clock=reactor, validator=http01_validator(reactor, port))
    jws_client = JWSClient(server.treq_client(), key=account_key, alg=ES256)
    client = await Client.from_url(
        reactor, server.directory_url, key=account_key, alg=ES256, jws_client=jws_client
    )
    await client.register(
        messages.NewRegistration.from_data(terms_of_service_agreed=True)
    )
    _, chain = await get_certificate(
        reactor, client, checked, ["example.com", "www.example.com"]
    )
    leaf = x509.load_pem_x509_certificates(chain.encode("ascii"))[0]
    names = leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    print(f"issued for {', '.join(names)}, validated by http-01")
    await maybeDeferred(listening.stopListening)

    # 3. The self-check against a port where nothing listens: the challenge
    # fails here, before the CA is asked to validate it.
    broken = checked_responder(reactor, address=(LOOPBACK, closed_port()))
    challenge = challenges.HTTP01(token=os.urandom(16))
    try:
        await broken.start_responding(
            "example.com", challenge, challenge.response(account_key)
        )
    except SelfCheckFailed as error:
        print(f"self-check failed for {error.server_name}: {error.reason}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
