"""
Get a certificate from an ACME CA with the API of :mod:`txacme.client`.

Run it on the host that the names point at, with the right to listen on
port 80, for instance::

    python get_certificate.py --email you@example.com example.com www.example.com

It asks Let's Encrypt's staging CA (untrusted certificates, generous rate
limits) unless ``--directory`` names another, keeps the account key in
``account.pem``, and writes ``<first name>.key.pem`` (the certificate's
private key) and ``<first name>.chain.pem`` (the certificate, then its
issuers) into ``--out``.
"""

# Twisted's Agent, Site and endpoints have no annotations yet.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import react
from twisted.web.resource import Resource
from twisted.web.server import Site

from txacme.challenges import HTTP01Responder
from txacme.client import Client, answer_challenge, fqdn_identifier, poll_until_valid
from txacme.messages import CertificateChainResource, CertificateRequest
from txacme.urls import LETSENCRYPT_STAGING_DIRECTORY
from txacme.util import PrivateKey, csr_for_names, generate_private_key


def load_account_key(path: Path) -> JWKEC:
    """
    The ACME account key, created on first use.  Keep it: the account is
    the key, and a new key means a new account.
    """
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an ECDSA key")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, private_pem(key))
    return JWKEC(key=key)


def http01_site(responder: HTTP01Responder) -> Site:
    """
    A web site serving the responder's resource at
    ``/.well-known/acme-challenge``, where the CA looks for http-01 tokens.
    """
    well_known = Resource()
    well_known.putChild(b"acme-challenge", responder.resource)
    root = Resource()
    root.putChild(b".well-known", well_known)
    return Site(root)


async def get_certificate(
    reactor: IReactorTime,
    client: Client,
    responder: HTTP01Responder,
    names: list[str],
    email: str,
) -> tuple[PrivateKey, CertificateChainResource]:
    """
    Register, prove control of every name with http-01, and have the CA
    issue a certificate for all of them.

    :returns: The certificate's new private key, and the certificate.
    """
    # RFC 8555 CAs want the terms of service agreed to in the request that
    # creates the account.  An existing account for the key is returned.
    await client.register(
        messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    )
    for name in names:
        authzr = await client.request_challenges(fqdn_identifier(name))
        # Serve the key authorization and ask the CA to look at it ...
        stop_responding = await answer_challenge(authzr, client, [responder])
        try:
            # ... and wait until it did.
            await poll_until_valid(authzr, reactor, client)
        finally:
            await stop_responding()
    key = generate_private_key("p256")
    certr = await client.request_issuance(
        CertificateRequest(csr=csr_for_names(names, key))
    )
    return key, certr


async def save_certificate(
    client: Client,
    key: PrivateKey,
    certr: CertificateChainResource,
    directory: Path,
    name: str,
) -> tuple[Path, Path]:
    """
    Write the private key and the certificate chain as PEM files named
    after ``name``.

    :returns: The paths of the key and of the chain.
    """
    # fetch_chain makes no request here: the chain came with the certificate.
    chain = await client.fetch_chain(certr)
    certificates = [
        x509.load_der_x509_certificate(der)
        for der in [certr.body, *(issuer.body for issuer in chain)]
    ]
    chain_pem = b"".join(
        certificate.public_bytes(serialization.Encoding.PEM)
        for certificate in certificates
    )
    key_path = directory / f"{name}.key.pem"
    chain_path = directory / f"{name}.chain.pem"
    write_private(key_path, private_pem(key))
    chain_path.write_bytes(chain_pem)
    return key_path, chain_path


def private_pem(key: PrivateKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a file that only its owner may read."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("names", nargs="+", help="the names of the certificate")
    parser.add_argument("--email", required=True, help="the account's contact")
    parser.add_argument(
        "--directory",
        default=LETSENCRYPT_STAGING_DIRECTORY.asText(),
        help="the CA's directory URL (default: Let's Encrypt staging)",
    )
    parser.add_argument("--port", type=int, default=80, help="the http-01 port")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to save")
    return parser.parse_args(argv)


async def main(reactor: Any, *argv: str) -> None:
    arguments = parse_arguments(list(argv))
    account_key = load_account_key(arguments.out / "account.pem")
    responder = HTTP01Responder()
    port = await TCP4ServerEndpoint(reactor, arguments.port).listen(
        http01_site(responder)
    )
    client = await Client.from_url(
        reactor, arguments.directory, key=account_key, alg=ES256
    )
    try:
        key, certr = await get_certificate(
            reactor, client, responder, arguments.names, arguments.email
        )
        key_path, chain_path = await save_certificate(
            client, key, certr, arguments.out, arguments.names[0]
        )
    finally:
        await client.close()
        await port.stopListening()
    print(f"Certificate {certr.uri}")
    print(f"Saved {key_path} and {chain_path}")


if __name__ == "__main__":
    react(main, sys.argv[1:])
