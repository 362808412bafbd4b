"""
Code written for txacme 0.9.3 runs unchanged against Pebble.

:func:`issue_like_093` is what a txacme 0.9.3 application wrote (the README
and API of that release): ``inlineCallbacks``, a
:class:`~twisted.python.filepath.FilePath` store, the account key from
``txacme.endpoint.load_or_create_client_key``, an ``RS256`` client made by
``Client.from_url`` with its own ``JWSClient``, an
:class:`~txacme.challenges.HTTP01Responder` whose ``resource`` the
application serves, an empty ``<name>.pem`` file to ask for a certificate,
``when_certs_valid`` and ``issue_cert``.  Only the directory URL and the
HTTP client trusting Pebble's CA are this test's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator
from typing import Any

import pem
from acme.messages import NewRegistration
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from josepy.jwa import RS256
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.python.filepath import FilePath

from tests.integration.pebble import PebbleOptions, PebbleTestCase, verify_chain
from txacme.challenges import HTTP01Responder
from txacme.client import Client, JWSClient
from txacme.endpoint import load_or_create_client_key
from txacme.service import AcmeIssuingService
from txacme.store import DirectoryStore

FIRST = "compat.example.test"
SECOND = "later.example.test"


@inlineCallbacks
def issue_like_093(
    reactor: Any,
    pem_path: FilePath[str],
    directory_url: str,
    treq_client: Any,
    responder: HTTP01Responder,
) -> Generator[Deferred[Any], Any, AcmeIssuingService]:
    """
    txacme 0.9.3 application code: keep the store's certificates issued,
    wait for them, then ask for one more.
    """
    # As txacme 0.9.3's README: an empty file asks for a certificate.
    pem_path.child(FIRST + ".pem").setContent(b"")
    acme_key = load_or_create_client_key(pem_path)

    def client_creator() -> Deferred[Client]:
        return Client.from_url(
            reactor,
            directory_url,
            key=acme_key,
            alg=RS256,
            jws_client=JWSClient(treq_client, key=acme_key, alg=RS256),
        )

    service = AcmeIssuingService(
        cert_store=DirectoryStore(pem_path),
        client_creator=client_creator,
        clock=reactor,
        responders=[responder],
        email="admin@example.test",
    )
    service.startService()
    yield service.when_certs_valid()
    yield service.issue_cert(SECOND)
    return service


class Compat093Tests(PebbleTestCase):
    """
    txacme 0.9.3 code gets certificates from Pebble through http-01.
    """

    pebble_options = PebbleOptions(authz_reuse=0)
    timeout = 120

    def test_093_code_runs_unchanged(self) -> Deferred[None]:
        """
        The 0.9.3-style code issues a certificate for the empty entry and
        for the name given to ``issue_cert``; each file holds a private key
        and a chain that verifies up to Pebble's root for its name, and
        ``client.key`` was created beside them.
        """

        async def run() -> None:
            responder = HTTP01Responder()
            self.serve_http01(responder.resource)
            pem_path = FilePath(tempfile.mkdtemp(prefix="txacme-093-"))
            self.addCleanup(shutil.rmtree, pem_path.path, True)
            service = await issue_like_093(
                self.reactor,
                pem_path,
                self.pebble.directory_url,
                self.http_client(),
                responder,
            )
            self.addCleanup(service.stopService)
            self.assertTrue(pem_path.child("client.key").exists())
            root_pem = await self.management().root_pem()
            for name in (FIRST, SECOND):
                objects = pem.parse(pem_path.child(name + ".pem").getContent())
                self.assertTrue(isinstance(objects[0], pem.PrivateKey))
                certificates = [
                    x509.load_pem_x509_certificate(obj.as_bytes())
                    for obj in objects
                    if isinstance(obj, pem.Certificate)
                ]
                verify_chain(
                    certificates[0].public_bytes(Encoding.DER),
                    [issuer.public_bytes(Encoding.DER) for issuer in certificates[1:]],
                    root_pem,
                    [name],
                )

        return self.run_with_logs(run())


class ApplicationStore:
    """
    The certificate store a txacme 0.9.3 application wrote for itself:
    ``store`` and ``as_dict`` (what 0.9.3's service called), nothing more.
    """

    def __init__(self) -> None:
        self.certs: dict[str, list[Any]] = {}

    def store(self, server_name: str, pem_objects: list[Any]) -> Deferred[None]:
        self.certs[server_name] = list(pem_objects)
        return succeed(None)

    def as_dict(self) -> Deferred[dict[str, list[Any]]]:
        return succeed(dict(self.certs))


@inlineCallbacks
def application_093(
    reactor: Any,
    directory_url: str,
    treq_client: Any,
    responder: HTTP01Responder,
    acme_key: Any,
    store: ApplicationStore,
) -> Generator[Deferred[Any], Any, tuple[Any, AcmeIssuingService]]:
    """
    txacme 0.9.3 application code: register, then agree to the terms (two
    calls, as 0.9's API had it); register the service at start-up without
    starting it (``_ensure_registered``, and ``_registered`` reset to force
    it); then issue into its own store.
    """
    client = yield Client.from_url(
        reactor,
        directory_url,
        key=acme_key,
        alg=RS256,
        jws_client=JWSClient(treq_client, key=acme_key, alg=RS256),
    )
    regr = yield client.register(NewRegistration.from_data(email="ops@example.test"))
    regr = yield client.agree_to_tos(regr)

    service = AcmeIssuingService(
        # As applications' own stores, it does not declare ICertificateStore.
        cert_store=store,  # type: ignore[arg-type]
        client_creator=lambda: succeed(client),
        clock=reactor,
        responders=[responder],
        email="ops@example.test",
    )
    yield service._ensure_registered()
    service._registered = False
    yield service._ensure_registered()
    service.startService()
    yield service.when_certs_valid()
    yield service.issue_cert(THIRD)
    return regr, service


THIRD = "app.example.test"


class Application093Tests(PebbleTestCase):
    """
    A txacme 0.9-era application gets a certificate from Pebble, unchanged.
    """

    pebble_options = PebbleOptions(authz_reuse=0)
    timeout = 120

    def test_register_agree_own_store_key_marker(self) -> Deferred[None]:
        """
        ``register`` without agreement then ``agree_to_tos`` creates the
        account on Pebble (which requires the agreement); the service,
        registered by hand through ``_ensure_registered``, issues into the
        application's own store (no ``get``); the application finds the key
        by its ``BEGIN RSA PRIVATE KEY`` marker, and it is the leaf's key.
        """

        async def run() -> None:
            responder = HTTP01Responder()
            self.serve_http01(responder.resource)
            store = ApplicationStore()
            key_dir = FilePath(tempfile.mkdtemp(prefix="txacme-093-app-"))
            self.addCleanup(shutil.rmtree, key_dir.path, True)
            regr, service = await application_093(
                self.reactor,
                self.pebble.directory_url,
                self.http_client(),
                responder,
                load_or_create_client_key(key_dir),
                store,
            )
            self.addCleanup(service.stopService)
            self.assertTrue(regr.uri)
            self.assertTrue(regr.body.terms_of_service_agreed)
            objects = store.certs[THIRD]
            # As applications did: pick the key by its PEM marker.
            [key_pem] = [
                obj.as_bytes()
                for obj in objects
                if b"BEGIN RSA PRIVATE KEY" in obj.as_bytes()
            ]
            certificates = [
                x509.load_pem_x509_certificate(obj.as_bytes())
                for obj in objects
                if isinstance(obj, pem.Certificate)
            ]
            self.assertEqual(
                load_pem_private_key(key_pem, None).public_key(),
                certificates[0].public_key(),
            )
            root_pem = await self.management().root_pem()
            verify_chain(
                certificates[0].public_bytes(Encoding.DER),
                [issuer.public_bytes(Encoding.DER) for issuer in certificates[1:]],
                root_pem,
                [THIRD],
            )

        return self.run_with_logs(run())
