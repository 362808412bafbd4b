"""
The certificate authority behind :class:`txacme.testing.MemoryAcmeServer`.

Private: the server's public API exposes what tests need (roots, issued
certificates).  Every key here is ECDSA P-256, so building a CA costs a few
milliseconds.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "IssuerChain"]

_CA_VALIDITY = timedelta(days=365 * 30)
_CA_BACKDATE = timedelta(days=1)

_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@frozen
class IssuerChain:
    """
    One path from the issuing key up to a root.

    :ivar certificates: The certificates served after the leaf, the leaf's
        issuer first; the root is not among them.
    :ivar root: The self-signed root the path ends at.
    """

    certificates: tuple[x509.Certificate, ...]
    root: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "txacme testing"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before - _CA_BACKDATE)
        .not_valid_after(not_before + _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    )
    if subject != issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _general_name(identifier_type: str, value: str) -> x509.GeneralName:
    if identifier_type == "ip":
        return x509.IPAddress(ipaddress.ip_address(value))
    return x509.DNSName(value)


class CertificateAuthority:
    """
    A root, ``chain_length`` intermediates below it, and ``alternate_chains``
    further roots that cross-sign the top of the primary path, as Let's
    Encrypt's alternate chains do.

    With ``chain_length`` 0 the leaf is signed by the primary root itself,
    and an alternate chain is the leaf plus the primary root cross-signed by
    the alternate root.
    """

    def __init__(self, now: datetime, chain_length: int, alternate_chains: int) -> None:
        """
        :param now: The time the CA certificates become valid (they are
            back-dated by a day and last thirty years).
        :param chain_length: Intermediates between leaf and root.
        :param alternate_chains: Extra roots, each with its own path.
        :raises ValueError: For a negative count.
        """
        if chain_length < 0 or alternate_chains < 0:
            raise ValueError("chain_length and alternate_chains must not be negative")
        label = secrets.token_hex(3)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name(f"txacme memory root {label}")
        root = _ca_certificate(
            root_name, root_key.public_key(), root_name, root_key, now
        )
        # The primary path, root first: (certificate, key).
        path: list[tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = [
            (root, root_key)
        ]
        for index in range(1, chain_length + 1):
            issuer, issuer_key = path[-1]
            key = ec.generate_private_key(ec.SECP256R1())
            certificate = _ca_certificate(
                _name(f"txacme memory intermediate {index} {label}"),
                key.public_key(),
                issuer.subject,
                issuer_key,
                now,
            )
            path.append((certificate, key))
        self._issuer, self._issuer_key = path[-1]
        below_root = tuple(certificate for certificate, _ in reversed(path[1:]))
        chains = [IssuerChain(certificates=below_root, root=root)]
        # The certificate an alternate root cross-signs: the top of the
        # primary path below the root, or the root itself.
        top, _ = path[1] if chain_length else path[0]
        top_public_key = top.public_key()
        assert isinstance(top_public_key, ec.EllipticCurvePublicKey)
        for index in range(1, alternate_chains + 1):
            alternate_key = ec.generate_private_key(ec.SECP256R1())
            alternate_name = _name(f"txacme memory alternate root {index} {label}")
            alternate_root = _ca_certificate(
                alternate_name,
                alternate_key.public_key(),
                alternate_name,
                alternate_key,
                now,
            )
            cross = _ca_certificate(
                top.subject, top_public_key, alternate_name, alternate_key, now
            )
            certificates = (*below_root[:-1], cross) if chain_length else (cross,)
            chains.append(IssuerChain(certificates=certificates, root=alternate_root))
        self.chains: tuple[IssuerChain, ...] = tuple(chains)
        """The primary chain first, then the alternates."""

    @property
    def roots(self) -> list[x509.Certificate]:
        """
        The root certificates, the primary one first.
        """
        return [chain.root for chain in self.chains]

    @property
    def issuer(self) -> x509.Certificate:
        """
        The certificate that signs leaves.
        """
        return self._issuer

    def issue(
        self,
        public_key: _PublicKey,
        identifiers: Sequence[tuple[str, str]],
        common_name: str | None,
        not_before: datetime,
        lifetime: timedelta,
    ) -> x509.Certificate:
        """
        Sign an end-entity (TLS server) certificate.

        :param public_key: The subject's public key, from the CSR.
        :param identifiers: ``(type, value)`` pairs, type ``"dns"`` or
            ``"ip"``, all of which go into the subjectAltName.
        :param common_name: The subject's common name, or ``None`` for an
            empty subject (the subjectAltName is then critical).
        :param not_before: Start of validity.
        :param lifetime: Length of validity.
        :returns: The certificate.
        """
        subject = x509.Name(
            []
            if common_name is None
            else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        )
        issuer_ski = self._issuer.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        )
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._issuer.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
            .add_extension(
                x509.SubjectAlternativeName(
                    [_general_name(kind, value) for kind, value in identifiers]
                ),
                critical=common_name is None,
            )
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    issuer_ski.value
                ),
                critical=False,
            )
            .sign(self._issuer_key, hashes.SHA256())
        )
