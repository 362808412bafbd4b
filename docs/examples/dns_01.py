"""
dns-01 with txacme: the two responders.

* :class:`~txacme.challenges.CallableDNS01Responder` with a DNS provider's
  API: here a stand-in provider in memory, and txacme's in-memory ACME
  server validating a wildcard and its base name from its records.  Run
  ``python docs/examples/dns_01.py``.

* :class:`~txacme.challenges.RFC2136Responder` with your own DNS server:
  ``check`` publishes a test value as a challenge would, waits until every
  nameserver of the zone serves it, and deletes it, so that you can try the
  set-up (key, update-policy, nameservers) before asking a CA::

      python docs/examples/dns_01.py check 192.0.2.53:53 acme-key SECRET \\
          www.example.com [--nameserver ns1.example.com=192.0.2.53:53]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from acme import challenges, messages
from cryptography import x509
from josepy import b64
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, react
from twisted.python.failure import Failure

from txacme.challenges import CallableDNS01Responder, RFC2136Responder
from txacme.client import Client, JWSClient, issue_certificate
from txacme.testing import MemoryAcmeServer
from txacme.util import csr_for_names, generate_private_key

_T = TypeVar("_T")


# -- a DNS provider's API, and the callables responder ------------------------


class ExampleProvider:
    """
    Stands in for a DNS provider's HTTP API: TXT values by record name.
    A real one would make HTTP requests (with treq) in these methods.
    """

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.peak: dict[str, int] = {}

    async def add_txt(self, record_name: str, value: str) -> None:
        values = self.records.setdefault(record_name, [])
        values.append(value)
        self.peak[record_name] = max(self.peak.get(record_name, 0), len(values))

    async def remove_txt(self, record_name: str, value: str) -> None:
        values = self.records.get(record_name, [])
        if value in values:
            values.remove(value)


def provider_responder(provider: ExampleProvider) -> CallableDNS01Responder:
    """
    A dns-01 responder that sets the record through the provider's API.
    (A ``propagation_check=`` function would wait until the provider's
    nameservers serve it.)
    """
    return CallableDNS01Responder(
        set_txt=provider.add_txt, remove_txt=provider.remove_txt
    )


def validator(provider: ExampleProvider) -> Any:
    """
    How the in-memory CA validates dns-01: the TXT values at
    ``_acme-challenge.<name>`` must hold the key authorization's digest.
    """

    def validate(
        identifier: messages.Identifier, challenge_type: str, key_authorization: str
    ) -> bool:
        digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
        expected = b64.b64encode(digest).decode("ascii")
        record_name = f"_acme-challenge.{identifier.value}"
        return expected in provider.records.get(record_name, [])

    return validate


async def issue_wildcard(
    clock: IReactorTime, server: MemoryAcmeServer, responder: CallableDNS01Responder
) -> x509.Certificate:
    """
    A certificate for ``*.example.com`` and ``example.com``.
    """
    account_key = JWKEC(key=generate_private_key("p256"))
    client = await Client.from_url(
        clock,
        server.directory_url,
        key=account_key,
        alg=ES256,
        jws_client=JWSClient(server.treq_client(), key=account_key, alg=ES256),
    )
    await client.register(
        messages.NewRegistration.from_data(terms_of_service_agreed=True)
    )
    key = generate_private_key("p256")
    csr = csr_for_names(["*.example.com", "example.com"], key)
    chain_pem = await issue_certificate(client, clock, csr, [responder])
    return x509.load_pem_x509_certificates(chain_pem.encode("ascii"))[0]


def run(clock: Clock, coroutine: Coroutine[Any, Any, _T]) -> _T:
    """
    Run a coroutine to its end, advancing ``clock`` to each timer.
    """
    outcome: list[_T | Failure] = []
    Deferred.fromCoroutine(coroutine).addBoth(outcome.append)
    while not outcome:
        calls = clock.getDelayedCalls()
        if not calls:
            raise RuntimeError("stuck: nothing to wait for")
        clock.advance(max(0.0, min(call.getTime() for call in calls) - clock.seconds()))
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def demonstrate() -> None:
    clock = Clock()
    provider = ExampleProvider()
    server = MemoryAcmeServer(clock=clock, validator=validator(provider))
    certificate = run(
        clock, issue_wildcard(clock, server, provider_responder(provider))
    )
    record_name = "_acme-challenge.example.com"
    print(f"peak: {record_name} had {provider.peak[record_name]} TXT values at once")
    names = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    print(f"names: {', '.join(names)}")
    print(f"after: {record_name} has {len(provider.records[record_name])} TXT values")


# -- RFC 2136: check a set-up -------------------------------------------------


def rfc2136_responder(
    reactor: IReactorTime,
    server: tuple[str, int],
    key_name: str,
    secret: str,
    nameservers: dict[str, Sequence[tuple[str, int]]] | None = None,
) -> RFC2136Responder:
    """
    The responder as an application makes it: the primary server's address,
    the TSIG key from ``tsig-keygen``, and where to find nameservers that
    cannot be reached at their published addresses (if any).
    """
    return RFC2136Responder(
        reactor,
        server,
        key_name,
        secret,
        tsig_algorithm="hmac-sha256",
        propagation_timeout=120.0,
        nameserver_addresses=nameservers,
    )


async def check(responder: RFC2136Responder, name: str) -> None:
    """
    Publish and delete a test value for ``name`` as a dns-01 challenge
    would.
    """
    challenge = challenges.DNS01(token=os.urandom(32))
    account_key = JWKEC(key=generate_private_key("p256"))
    response = challenge.response(account_key)
    record_name = challenge.validation_domain_name(name.removeprefix("*."))
    value = challenge.validation(account_key)
    try:
        await responder.start_responding(name, challenge, response)
        print(f"served by every nameserver: {record_name} = {value}")
    finally:
        await responder.stop_responding(name, challenge, response)
    print(f"deleted: {record_name} = {value}")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host.strip("[]"), int(port))


def main(arguments: Sequence[str]) -> None:
    if not arguments:
        demonstrate()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check_command = commands.add_parser("check", help="try an RFC 2136 set-up")
    check_command.add_argument("server", help="primary server, ADDRESS:PORT")
    check_command.add_argument("key_name", help="TSIG key name")
    check_command.add_argument("secret", help="TSIG secret (base64)")
    check_command.add_argument("name", help="a name to validate, e.g. example.com")
    check_command.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="NAME=ADDRESS:PORT",
        help="where a nameserver really listens (repeatable)",
    )
    options = parser.parse_args(arguments)
    nameservers: dict[str, Sequence[tuple[str, int]]] = {}
    for entry in options.nameserver:
        nameserver, _, address = entry.partition("=")
        nameservers.setdefault(nameserver, [])
        nameservers[nameserver] = [*nameservers[nameserver], _address(address)]

    def go(reactor: Any) -> Deferred[None]:
        responder = rfc2136_responder(
            reactor,
            _address(options.server),
            options.key_name,
            options.secret,
            nameservers or None,
        )
        return Deferred.fromCoroutine(check(responder, options.name))

    react(go)


if __name__ == "__main__":
    main(sys.argv[1:])
