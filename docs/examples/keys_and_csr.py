"""
Private keys and certificate signing requests with :mod:`txacme.util`.

Run it with ``python docs/examples/keys_and_csr.py``: it needs no network
and no ACME server.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from txacme.messages import CertificateRequest
from txacme.util import (
    KEY_TYPES,
    PrivateKey,
    csr_for_names,
    generate_private_key,
    identifiers_from_csr,
)


def describe(key: PrivateKey) -> str:
    """A short description of a private key: its type and size."""
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size} bits"
    return f"ECDSA {key.curve.name}"


def main() -> None:
    # generate_private_key knows these names; "rsa" is 2048 bits, as in
    # txacme 0.9.  (It blocks while it works: on the reactor thread, use
    # generate_private_key_in_thread.)
    print("key types:", ", ".join(sorted(KEY_TYPES)))
    for key_type in ("rsa", "rsa3072", "p256", "p384"):
        print(f"{key_type}: {describe(generate_private_key(key_type))}")

    # A CSR for several names: DNS names, an IP address (RFC 8738) and a
    # name longer than the 64 characters a common name can hold.
    key = generate_private_key("p256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    long_name = "a-host-name-too-long-for-a-common-name.in-a-subdomain.example.com"
    names = ["example.com", "www.example.com", "192.0.2.10", long_name]
    csr = csr_for_names(names, key)
    print("subject:", csr.subject.rfc4514_string() or "(empty)")
    for identifier_type, value in identifiers_from_csr(csr):
        print(f"identifier: {identifier_type} {value}")

    # Only the first name becomes the common name, and only if it fits.
    csr = csr_for_names([long_name, "example.com"], key)
    print("subject with a long first name:", csr.subject.rfc4514_string() or "(empty)")

    # What request_issuance sends as RFC 8555's finalize payload.
    request = CertificateRequest(csr=csr)
    print("finalize payload keys:", sorted(request.to_partial_json()))

    # Keys are cryptography objects: save them as PEM like any other.
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    print(pem.decode("ascii").splitlines()[0])


if __name__ == "__main__":
    main()
