#!/usr/bin/env python3
"""
Issue a real certificate with txacme from a local Pebble.

Starts Pebble and pebble-challtestsrv on free loopback ports (the test
harness in ``tests/integration/pebble.py``), registers an account, answers
http-01 for each name with :class:`txacme.challenges.HTTP01Responder` served
on Pebble's http-01 port (Pebble really fetches the key authorization; every
name resolves to 127.0.0.1 through pebble-challtestsrv), requests the
certificate, verifies it against Pebble's root, prints each certificate's
subject, issuer and validity, and saves ``fullchain.pem`` and ``privkey.pem``
(mode 0600) in the output directory.

Usage::

    python tools/issue_from_pebble.py [--out DIR] [--name NAME ...]

Needs the ``pebble`` Debian package (``bash .ci/setup`` installs it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwa import ES256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.task import react
from twisted.python.url import URL
from twisted.web.client import HTTPConnectionPool

from txacme.challenges import HTTP01Responder
from txacme.client import (
    Client,
    JWSClient,
    answer_challenge,
    fqdn_identifier,
    poll_until_valid,
)
from txacme.messages import CertificateRequest
from txacme.testing.pebble import (
    PebbleOptions,
    PebbleServer,
    ServedSite,
    http01_site_root,
    verify_chain,
)
from txacme.util import PrivateKey, csr_for_names, generate_private_key

DEFAULT_NAMES = ["www.example.test", "example.test"]


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Issue a certificate with txacme from a local Pebble."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        help="directory for fullchain.pem and privkey.pem (default: ./out)",
    )
    parser.add_argument(
        "--name",
        dest="names",
        action="append",
        help=f"a DNS name to certify; repeatable (default: {' '.join(DEFAULT_NAMES)})",
    )
    parser.add_argument(
        "--account-key",
        choices=["rsa", "p256"],
        default="p256",
        help="account key type: rsa (RS256) or p256 (ES256); default p256",
    )
    parser.add_argument(
        "--key-type",
        choices=["rsa", "rsa3072", "rsa4096", "p256", "p384"],
        default="rsa",
        help="certificate key type (default: rsa, 2048 bits)",
    )
    parser.add_argument(
        "--nonce-reject",
        type=int,
        default=5,
        help="percentage of good nonces Pebble rejects (default: 5)",
    )
    return parser.parse_args(argv)


def _account_key(key_type: str) -> tuple[JWK, JWASignature]:
    key = generate_private_key(key_type)
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key), RS256
    return JWKEC(key=key), ES256


def _describe(label: str, certificate: x509.Certificate) -> str:
    lines = [
        f"{label}:",
        f"  subject:    {certificate.subject.rfc4514_string() or '(empty)'}",
        f"  issuer:     {certificate.issuer.rfc4514_string()}",
        f"  not before: {certificate.not_valid_before_utc.isoformat()}",
        f"  not after:  {certificate.not_valid_after_utc.isoformat()}",
        f"  serial:     {certificate.serial_number:x}",
    ]
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        pass
    else:
        names = ", ".join(san.value.get_values_for_type(x509.DNSName))
        lines.append(f"  names:      {names}")
    return "\n".join(lines)


def _write_private(path: Path, data: bytes) -> None:
    """
    Write ``data`` to ``path`` readable by its owner only (0600), also when
    the file already existed with wider permissions.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(data)


async def _issue(
    reactor: IReactorTCP,
    pebble: PebbleServer,
    http_pool: HTTPConnectionPool,
    names: Sequence[str],
    account_key_type: str,
    certificate_key: PrivateKey,
) -> tuple[bytes, list[bytes]]:
    """
    The seed API's issuance flow: account, one authorization per name
    (http-01), then the certificate for all names.

    :returns: The leaf and its issuer chain, DER.
    """
    clock = IReactorTime(reactor)
    http = pebble.http_client(reactor, http_pool)
    key, alg = _account_key(account_key_type)
    client = await Client.from_url(
        clock,
        URL.fromText(pebble.directory_url),
        key=key,
        alg=alg,
        jws_client=JWSClient(http, key=key, alg=alg),
    )
    regr = await client.register(
        messages.NewRegistration.from_data(
            email="admin@example.test", terms_of_service_agreed=True
        )
    )
    regr = await client.agree_to_tos(regr)
    print(f"Registered account {regr.uri} ({account_key_type} key)")

    responder = HTTP01Responder()
    site = ServedSite.listen(
        reactor, pebble.http_port, http01_site_root(responder.resource)
    )
    try:
        for name in names:
            authzr = await client.request_challenges(fqdn_identifier(name))
            stop = await answer_challenge(authzr, client, [responder])
            try:
                authzr = await poll_until_valid(authzr, clock, client)
            finally:
                await maybeDeferred(stop)
            print(f"Authorized {name} (http-01, {authzr.body.status.name})")
    finally:
        await site.stop()

    certr = await client.request_issuance(
        CertificateRequest(csr=csr_for_names(names, certificate_key))
    )
    chain = await client.fetch_chain(certr)
    return certr.body, [issuer.body for issuer in chain]


async def main(reactor: IReactorTCP, argv: Sequence[str]) -> None:
    """
    Start Pebble, issue, verify, print and save; stop Pebble.
    """
    arguments = _arguments(argv)
    names: list[str] = arguments.names or DEFAULT_NAMES
    out: Path = arguments.out.resolve()

    print("Starting Pebble and pebble-challtestsrv...")
    pebble = PebbleServer.start(
        PebbleOptions(nonce_reject=arguments.nonce_reject, authz_reuse=100)
    )
    pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
    try:
        print(
            f"Pebble: {pebble.directory_url} (http-01 validation on port "
            f"{pebble.http_port}, {arguments.nonce_reject}% of nonces rejected)"
        )
        certificate_key = generate_private_key(arguments.key_type)
        leaf_der, chain_der = await _issue(
            reactor, pebble, pool, names, arguments.account_key, certificate_key
        )
        management = pebble.management(pebble.http_client(reactor, pool))
        root_pem = await management.root_pem()
        path = verify_chain(leaf_der, chain_der, root_pem, names)
    except BaseException:
        print(f"Failed. Pebble's logs:\n{pebble.logs()}", file=sys.stderr)
        raise
    finally:
        await pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        pebble.stop()

    print(
        f"\nIssued and verified against Pebble's root for {', '.join(names)}; "
        "the chain:"
    )
    for index, certificate in enumerate(path):
        if index == 0:
            label = "Certificate 1 (leaf)"
        elif index == len(path) - 1:
            label = f"Certificate {index + 1} (root, from Pebble's /roots/0)"
        else:
            label = f"Certificate {index + 1} (intermediate)"
        print(_describe(label, certificate))

    _save(out, leaf_der, chain_der, certificate_key)


def _save(
    out: Path, leaf_der: bytes, chain_der: Sequence[bytes], key: PrivateKey
) -> None:
    """
    Write ``fullchain.pem`` (leaf first, then its issuers; no root) and
    ``privkey.pem`` (PKCS#8, mode 0600) into ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    fullchain = b"".join(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in [leaf_der, *chain_der]
    )
    (out / "fullchain.pem").write_bytes(fullchain)
    _write_private(
        out / "privkey.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    print(f"\nWrote {out / 'fullchain.pem'} (leaf and {len(chain_der)} issuer(s))")
    print(f"Wrote {out / 'privkey.pem'} (mode 0600)")


if __name__ == "__main__":

    def _run(reactor: IReactorTCP) -> Deferred[None]:
        return Deferred.fromCoroutine(main(reactor, sys.argv[1:]))

    react(_run)
