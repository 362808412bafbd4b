"""
Tests for ``tools/issue_from_pebble.py``, the main job's script.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.integration.pebble import TypedAssertions, require_pebble

TOOL = Path(__file__).resolve().parents[2] / "tools" / "issue_from_pebble.py"


class IssueFromPebbleTests(TypedAssertions, TestCase):
    """
    The script issues a certificate from its own Pebble and saves it.
    """

    timeout = 120

    def setUp(self) -> None:
        require_pebble()

    def test_issue(self) -> Deferred[None]:
        """
        The script exits 0, prints subject, issuer and validity of every
        certificate, and writes ``fullchain.pem`` (the leaf for the names
        asked for, then its issuer) and ``privkey.pem`` (mode 0600, the
        leaf's key).
        """

        async def test() -> None:
            out = Path(self.mktemp())  # type: ignore[no-untyped-call]
            names = ["one.example.test", "two.example.test"]
            arguments = [str(TOOL), "--out", str(out)]
            for name in names:
                arguments += ["--name", name]
            output, errors, code = await getProcessOutputAndValue(  # type: ignore[no-untyped-call]
                sys.executable, arguments, env=dict(os.environ)
            )
            report = output.decode() + errors.decode()
            self.assertEqual(code, 0, report)
            for label in ("subject:", "issuer:", "not before:", "not after:"):
                self.assertIn(label, report)
            self.assertIn("(root, from Pebble's /roots/0)", report)
            self.assertIn(str(out / "fullchain.pem"), report)

            chain = x509.load_pem_x509_certificates(
                (out / "fullchain.pem").read_bytes()
            )
            self.assertEqual(len(chain), 2)
            leaf, issuer = chain
            self.assertEqual(leaf.issuer, issuer.subject)
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            self.assertEqual(san.value.get_values_for_type(x509.DNSName), names)

            key_path = out / "privkey.pem"
            self.assertEqual(stat.S_IMODE(key_path.stat().st_mode), 0o600)
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            self.assertEqual(key.public_key(), leaf.public_key())

        return Deferred.fromCoroutine(test())
