"""
The certificate stores the service benchmark runs over: a directory of
``<name>.pem`` files, each holding a private key, a certificate signed by a
local CA and the CA's certificate, as :class:`txacme.store.DirectoryStore`
writes them; generated without any network, and kept between runs.

Every entry shares one private key (the service never reads it), and every
certificate is valid for 90 days from the day before generation, so that
nothing is due for renewal (at two thirds of the lifetime) for two months.
A generated store is reused while it is younger than
:data:`REUSE_FOR`; its manifest (:data:`MANIFEST`, written last) says when
it was generated and how long that took.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["FORMAT", "MANIFEST", "REUSE_FOR", "GeneratedStore", "ensure_store"]

#: The layout version: a change to what is generated changes it, so that
#: older cached stores are not reused.
FORMAT = 1
#: The manifest's file name in the store's directory (a dot file, which
#: ``DirectoryStore`` ignores).
MANIFEST = ".bench-manifest.json"
#: The certificates' lifetime: renewal is due when a third remains.
LIFETIME = timedelta(days=90)
#: A cached store is regenerated once this old (half-way to renewal).
REUSE_FOR = timedelta(days=30)
#: Entries per generation task.
_CHUNK = 2000

_PEM = serialization.Encoding.PEM


@frozen
class GeneratedStore:
    """
    A store on disk.

    :ivar path: Its directory.
    :ivar count: Its entries.
    :ivar generated_at: When it was generated (POSIX time).
    :ivar generation_seconds: How long generating it took (wall clock).
    :ivar cached: Whether this run reused it rather than generating it.
    """

    path: Path
    count: int
    generated_at: float
    generation_seconds: float
    cached: bool


def entry_name(index: int) -> str:
    """The server name of the store's entry number ``index``."""
    return f"site-{index:07d}.bench.example"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


# What each generation process needs, set by _initialize.
_state: dict[str, Any] = {}


def _initialize(
    ca_key_pem: bytes, ca_pem: bytes, leaf_key_pem: bytes, not_before: float
) -> None:
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    leaf_key = serialization.load_pem_private_key(leaf_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    _state.update(
        ca_key=ca_key,
        ca_pem=ca_pem,
        leaf_public=leaf_key.public_key(),
        leaf_key_pem=leaf_key_pem,
        not_before=datetime.fromtimestamp(not_before, UTC),
        authority_key_id=(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
            )
        ),
        subject_key_id=x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
    )


def _ca_certificate(
    ca_key: ec.EllipticCurvePrivateKey, not_before: datetime
) -> x509.Certificate:
    """The CA's self-signed certificate."""
    name = _name("txacme service benchmark CA")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _leaf(name: str) -> bytes:
    """A certificate for ``name``, as a CA issues one, in PEM."""
    not_before: datetime = _state["not_before"]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name("txacme service benchmark CA"))
        .public_key(_state["leaf_public"])
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(_state["subject_key_id"], False)
        .add_extension(_state["authority_key_id"], False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .sign(_state["ca_key"], hashes.SHA256())
    )
    return certificate.public_bytes(_PEM)


def _generate_chunk(directory: str, start: int, stop: int) -> int:
    """Write the entries ``start`` to ``stop - 1`` into ``directory``."""
    key_pem: bytes = _state["leaf_key_pem"]
    ca_pem: bytes = _state["ca_pem"]
    for index in range(start, stop):
        name = entry_name(index)
        content = key_pem + _leaf(name) + ca_pem
        descriptor = os.open(
            os.path.join(directory, name + ".pem"),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL,
            0o600,
        )
        try:
            os.write(descriptor, content)
        finally:
            os.close(descriptor)
    return stop - start


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest


def _reusable(path: Path, count: int, now: float) -> dict[str, Any] | None:
    manifest = _read_manifest(path)
    if manifest is None:
        return None
    if manifest.get("format") != FORMAT or manifest.get("count") != count:
        return None
    age = now - float(manifest.get("generated_at", 0.0))
    if not 0 <= age < REUSE_FOR.total_seconds():
        return None
    return manifest


def invalidate(path: Path) -> None:
    """Make a cached store be generated afresh next time."""
    (path / MANIFEST).unlink(missing_ok=True)


def ensure_store(
    count: int, cache_root: Path, *, jobs: int | None = None, reuse: bool = True
) -> GeneratedStore:
    """
    A store of ``count`` entries under ``cache_root``: the cached one if it
    is still usable (and ``reuse``), otherwise a new one, generated in
    ``jobs`` processes (the number of CPUs by default).

    :returns: The store.
    """
    path = cache_root / f"store-{count}-v{FORMAT}"
    now = time.time()
    if reuse:
        manifest = _reusable(path, count, now)
        if manifest is not None:
            return GeneratedStore(
                path,
                count,
                float(manifest["generated_at"]),
                float(manifest["generation_seconds"]),
                cached=True,
            )
    cache_root.mkdir(parents=True, exist_ok=True)
    partial = cache_root / f".partial-{count}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    started = time.perf_counter()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    not_before = datetime.fromtimestamp(now, UTC).replace(microsecond=0) - timedelta(
        days=1
    )
    ca_pem = _ca_certificate(ca_key, not_before).public_bytes(_PEM)
    ca_key_pem, leaf_key_pem = (
        key.private_bytes(
            _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for key in (ca_key, leaf_key)
    )
    chunks = [(start, min(count, start + _CHUNK)) for start in range(0, count, _CHUNK)]
    _generate(
        str(partial),
        chunks,
        (ca_key_pem, ca_pem, leaf_key_pem, not_before.timestamp()),
        jobs,
    )
    generation_seconds = time.perf_counter() - started
    (partial / MANIFEST).write_text(
        json.dumps(
            {
                "format": FORMAT,
                "count": count,
                "generated_at": now,
                "generation_seconds": generation_seconds,
            }
        )
    )
    shutil.rmtree(path, ignore_errors=True)
    try:
        partial.rename(path)
    except OSError:
        # Another run put its store there meanwhile: use that one.
        shutil.rmtree(partial, ignore_errors=True)
        manifest = _reusable(path, count, time.time())
        if manifest is None:
            raise
        return GeneratedStore(
            path,
            count,
            float(manifest["generated_at"]),
            float(manifest["generation_seconds"]),
            cached=True,
        )
    return GeneratedStore(path, count, now, generation_seconds, cached=False)


def _generate(
    directory: str,
    chunks: Sequence[tuple[int, int]],
    initial: tuple[bytes, bytes, bytes, float],
    jobs: int | None,
) -> None:
    workers = max(1, min(jobs or os.cpu_count() or 1, len(chunks)))
    if workers == 1:
        _initialize(*initial)
        for start, stop in chunks:
            _generate_chunk(directory, start, stop)
        return
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_initialize,
        initargs=initial,
    ) as pool:
        futures = [
            pool.submit(_generate_chunk, directory, start, stop)
            for start, stop in chunks
        ]
        for future in futures:
            future.result()
