"""
What the Pebble harness offers besides running Pebble: its management APIs
(:class:`~txacme.testing.pebble.PebbleManagement`) and checking an issued
chain against its root (:func:`~txacme.testing.pebble.verify_chain`).
Public through :mod:`txacme.testing.pebble`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import treq
from attrs import frozen
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from treq.client import HTTPClient
from twisted.internet.defer import Deferred

__all__ = ["PebbleManagement", "verify_chain"]


@frozen
class PebbleManagement:
    """
    Pebble's and pebble-challtestsrv's management APIs, as Deferreds.

    :ivar http: The client to use; it must trust Pebble's HTTPS CA.
    :ivar pebble_url: Pebble's management base URL.
    :ivar challtestsrv_url: pebble-challtestsrv's management base URL.
    """

    http: HTTPClient
    pebble_url: str
    challtestsrv_url: str

    async def _get(self, url: str) -> bytes:
        response = await self.http.get(url)
        body: bytes = await treq.content(response)
        if response.code != 200:
            raise ValueError(f"GET {url}: HTTP {response.code}: {body[:500]!r}")
        return body

    async def _post(self, path: str, payload: Mapping[str, object]) -> None:
        url = self.challtestsrv_url + path
        response = await self.http.post(url, json=dict(payload))
        body: bytes = await treq.content(response)
        if response.code != 200:
            raise ValueError(f"POST {url}: HTTP {response.code}: {body[:500]!r}")

    def root_pem(self, index: int = 0) -> Deferred[bytes]:
        """
        The PEM certificate of Pebble's root ``index`` (``/roots/<index>``;
        1 and up are the alternate roots).
        """
        return Deferred.fromCoroutine(self._get(f"{self.pebble_url}/roots/{index}"))

    def intermediate_pem(self, index: int = 0) -> Deferred[bytes]:
        """
        The PEM certificate of Pebble's intermediate ``index``
        (``/intermediates/<index>``).
        """
        return Deferred.fromCoroutine(
            self._get(f"{self.pebble_url}/intermediates/{index}")
        )

    def cert_status(self, serial_hex: str) -> Deferred[dict[str, Any]]:
        """
        A certificate's status (``/cert-status-by-serial/<serial>``): a JSON
        object with ``Certificate`` (PEM), ``Status`` (``"Valid"`` or
        ``"Revoked"``), ``Serial``, and for a revoked one ``Reason`` and
        ``RevokedAt``.

        :param serial_hex: The serial number in hexadecimal, no ``0x``.
        """

        async def status() -> dict[str, Any]:
            body = await self._get(
                f"{self.pebble_url}/cert-status-by-serial/{serial_hex}"
            )
            parsed: dict[str, Any] = json.loads(body)
            return parsed

        return Deferred.fromCoroutine(status())

    def add_dns_a(self, host: str, addresses: list[str]) -> Deferred[None]:
        """
        Make the DNS server answer ``A`` queries for ``host`` with
        ``addresses`` instead of the default 127.0.0.1.
        """
        return Deferred.fromCoroutine(
            self._post("/add-a", {"host": host, "addresses": addresses})
        )

    def clear_dns_a(self, host: str) -> Deferred[None]:
        """
        Undo :meth:`add_dns_a`.
        """
        return Deferred.fromCoroutine(self._post("/clear-a", {"host": host}))

    def set_dns_txt(self, host: str, value: str) -> Deferred[None]:
        """
        Add a ``TXT`` record for ``host`` (a name such as
        ``_acme-challenge.a.example.test``).
        """
        return Deferred.fromCoroutine(
            self._post("/set-txt", {"host": _absolute(host), "value": value})
        )

    def clear_dns_txt(self, host: str) -> Deferred[None]:
        """
        Remove the ``TXT`` records of ``host``.
        """
        return Deferred.fromCoroutine(
            self._post("/clear-txt", {"host": _absolute(host)})
        )


def verify_chain(
    leaf_der: bytes,
    chain_der: Sequence[bytes],
    root_pem: bytes,
    names: Sequence[str],
) -> list[x509.Certificate]:
    """
    Verify an issued certificate as a TLS client would: a path from the
    leaf through ``chain_der`` to the root, valid now, for every one of
    ``names`` (the CA/Browser Forum web PKI profile of
    :mod:`cryptography.x509.verification`).

    :param leaf_der: The leaf certificate, DER.
    :param chain_der: The issuer chain, DER, any order (the root may be in
        it or not).
    :param root_pem: The one trusted root, PEM (Pebble's ``/roots/0``).
    :param names: The DNS names the certificate must be valid for.
    :returns: The verified path for the first name, leaf first and root
        last.
    :raises cryptography.x509.verification.VerificationError: If any name
        fails.
    """
    leaf = x509.load_der_x509_certificate(leaf_der)
    intermediates = [x509.load_der_x509_certificate(der) for der in chain_der]
    store = Store([x509.load_pem_x509_certificate(root_pem)])
    paths = [
        PolicyBuilder()
        .store(store)
        .build_server_verifier(x509.DNSName(name))
        .verify(leaf, intermediates)
        for name in names
    ]
    return paths[0]


def _absolute(host: str) -> str:
    return host if host.endswith(".") else host + "."
