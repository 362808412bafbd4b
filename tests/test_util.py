"""
Tests for :mod:`txacme.util`.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from josepy.errors import DeserializationError
from twisted.internet.task import Clock
from twisted.python.url import URL

from tests.support import TestCase
from txacme.messages import CertificateRequest
from txacme.util import (
    CSRDecodingError,
    check_directory_url_type,
    clock_now,
    const,
    csr_for_names,
    decode_csr,
    encode_csr,
    generate_private_key,
    identifiers_from_csr,
    tap,
)

_EC_KEY = ec.generate_private_key(ec.SECP256R1())


class GeneratePrivateKeyTests(TestCase):
    """Tests for :func:`generate_private_key`."""

    def test_rsa(self) -> None:
        """``"rsa"`` gives a 2048-bit RSA key, as in txacme 0.9."""
        key = generate_private_key("rsa")
        assert isinstance(key, rsa.RSAPrivateKey)
        self.assertEqual(key.key_size, 2048)

    def test_ec(self) -> None:
        """``"p256"`` and ``"p384"`` give ECDSA keys on those curves."""
        p256 = generate_private_key("p256")
        p384 = generate_private_key("P384")
        assert isinstance(p256, ec.EllipticCurvePrivateKey)
        assert isinstance(p384, ec.EllipticCurvePrivateKey)
        self.assertEqual(p256.curve.name, "secp256r1")
        self.assertEqual(p384.curve.name, "secp384r1")

    def test_unknown(self) -> None:
        """An unknown key type is a ValueError naming the known ones."""
        error = self.assertRaises(ValueError, generate_private_key, "dsa")
        self.assertIn("p256", str(error))


class CSRTests(TestCase):
    """Tests for :func:`csr_for_names` and its encoding."""

    def test_names_in_san(self) -> None:
        """
        Every name lands in the SAN, IP addresses as IP entries, and the
        first name is the common name.
        """
        csr = csr_for_names(
            ["a.example", "*.b.example", "192.0.2.1", "2001:db8::1"], _EC_KEY
        )
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            san.get_values_for_type(x509.DNSName), ["a.example", "*.b.example"]
        )
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")],
        )
        common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual([attribute.value for attribute in common_names], ["a.example"])
        self.assertTrue(csr.is_signature_valid)

    def test_long_first_name(self) -> None:
        """A first name over 64 characters leaves the subject empty."""
        name = "a" * 60 + ".example"
        csr = csr_for_names([name], _EC_KEY)
        self.assertEqual(list(csr.subject), [])
        self.assertEqual(identifiers_from_csr(csr), [("dns", name)])

    def test_no_names(self) -> None:
        """No names is a ValueError."""
        self.assertRaises(ValueError, csr_for_names, [], _EC_KEY)

    def test_identifiers(self) -> None:
        """
        :func:`identifiers_from_csr` lists the SAN names, lowercased and
        without duplicates, and a CN missing from the SAN.
        """
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Only.CN")])
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("A.example"),
                        x509.DNSName("a.example"),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .sign(_EC_KEY, hashes.SHA256())
        )
        self.assertEqual(
            identifiers_from_csr(csr),
            [("dns", "a.example"), ("ip", "::1"), ("dns", "only.cn")],
        )

    @given(
        st.lists(
            st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){1,3}", fullmatch=True),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    def test_encode_round_trip(self, names: list[str]) -> None:
        """A CSR survives :func:`encode_csr` then :func:`decode_csr`."""
        csr = csr_for_names(names, _EC_KEY)
        encoded = encode_csr(csr)
        self.assertNotIn("=", encoded)
        self.assertEqual(decode_csr(encoded), csr)

    def test_decode_garbage(self) -> None:
        """
        Input that is not base64url, or not a DER CSR, raises josepy's
        ``DeserializationError`` (as txacme 0.9 did), which is also a
        ``ValueError`` (as code written for this txacme catches).
        """
        for garbage in ("blah blah not a valid CSR", "A", "é", "AAAA", b"AAAA"):
            with self.subTest(garbage=garbage):
                error = self.assertRaises(CSRDecodingError, decode_csr, garbage)
                self.assertIsInstance(error, DeserializationError)
                self.assertIsInstance(error, ValueError)

    def test_decode_garbage_in_a_message(self) -> None:
        """
        A ``finalize`` payload with a bad CSR fails to deserialize with
        ``DeserializationError``.
        """
        self.assertRaises(
            DeserializationError, CertificateRequest.from_json, {"csr": "AAAA"}
        )


class SmallHelperTests(TestCase):
    """Tests for the small helpers kept from txacme 0.9."""

    def test_clock_now(self) -> None:
        """:func:`clock_now` is the clock's time as an aware UTC datetime."""
        clock = Clock()
        clock.advance(86400)
        self.assertEqual(clock_now(clock).isoformat(), "1970-01-02T00:00:00+00:00")

    def test_check_directory_url_type(self) -> None:
        """Only a :class:`URL` passes."""
        check_directory_url_type(URL.fromText("https://ca.test/dir"))
        self.assertRaises(TypeError, check_directory_url_type, "https://ca.test/dir")

    def test_const_and_tap(self) -> None:
        """:func:`const` ignores its arguments; :func:`tap` passes results on."""
        self.assertEqual(const(3)(1, x=2), 3)
        seen: list[object] = []
        self.assertEqual(tap(seen.append)("result"), "result")
        self.assertEqual(seen, ["result"])
