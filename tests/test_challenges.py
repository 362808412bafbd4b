"""
Tests for :mod:`txacme.challenges`.
"""

from __future__ import annotations

from typing import Any

from acme import challenges
from josepy.jwk import JWKEC
from treq.testing import StubTreq
from twisted.web.resource import Resource
from zope.interface.verify import verifyObject

from tests.support import TestCase
from txacme.challenges import HTTP01Responder
from txacme.interfaces import IResponder
from txacme.util import generate_private_key

# Unannotated in Twisted and treq: called through Any.
_Resource: Any = Resource
_StubTreq: Any = StubTreq

_ACCOUNT_KEY = JWKEC(key=generate_private_key("p256"))


def _challenge(
    token: bytes,
) -> tuple[challenges.HTTP01, challenges.KeyAuthorizationChallengeResponse]:
    challenge = challenges.HTTP01(token=token)
    return challenge, challenge.response(_ACCOUNT_KEY)


class HTTP01ResponderTests(TestCase):
    """Tests for :class:`HTTP01Responder`."""

    def setUp(self) -> None:
        self.responder = HTTP01Responder()
        root: Any = _Resource()
        well_known: Any = _Resource()
        root.putChild(b".well-known", well_known)
        well_known.putChild(b"acme-challenge", self.responder.resource)
        self.http: Any = _StubTreq(root)

    def get(self, path: str) -> tuple[int, bytes, list[bytes]]:
        response = self.successResultOf(self.http.get("http://a.example" + path))
        body = self.successResultOf(response.content())
        return (
            response.code,
            body,
            response.headers.getRawHeaders(b"content-type") or [],
        )

    def test_interface(self) -> None:
        """It provides IResponder for ``http-01``."""
        verifyObject(IResponder, self.responder)
        self.assertEqual(self.responder.challenge_type, "http-01")

    def test_serves_key_authorization(self) -> None:
        """
        While started, the token path answers the key authorization as
        ``text/plain`` (txacme 0.9's content type), repeatedly (CAs fetch
        more than once).
        """
        challenge, response = _challenge(b"x" * 32)
        self.responder.start_responding("a.example", challenge, response)
        for _ in range(3):
            code, body, content_type = self.get(challenge.path)
            self.assertEqual(code, 200)
            self.assertEqual(body, response.key_authorization.encode("ascii"))
            self.assertEqual(content_type, [b"text/plain"])

    def test_other_paths_not_found(self) -> None:
        """
        Other tokens, the directory itself and paths below a token answer
        404.
        """
        challenge, response = _challenge(b"x" * 32)
        self.responder.start_responding("a.example", challenge, response)
        other, _ = _challenge(b"y" * 32)
        for path in (
            other.path,
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge",
            challenge.path + "/more",
        ):
            self.assertEqual(self.get(path)[0], 404, path)

    def test_stop(self) -> None:
        """
        After stop_responding the token answers 404; stopping again, or a
        challenge never started, is harmless; other tokens keep answering.
        """
        first, first_response = _challenge(b"a" * 32)
        second, second_response = _challenge(b"b" * 32)
        never, never_response = _challenge(b"c" * 32)
        self.responder.start_responding("a.example", first, first_response)
        self.responder.start_responding("a.example", second, second_response)
        self.responder.stop_responding("a.example", first, first_response)
        self.responder.stop_responding("a.example", first, first_response)
        self.responder.stop_responding("a.example", never, never_response)
        self.assertEqual(self.get(first.path)[0], 404)
        self.assertEqual(self.get(second.path)[0], 200)

    def test_application_resource(self) -> None:
        """
        An application's own resource may be passed in, as txacme 0.9
        allowed: the tokens become its children.
        """
        mine: Any = _Resource()
        responder = HTTP01Responder(resource=mine)
        challenge, response = _challenge(b"z" * 32)
        responder.start_responding("a.example", challenge, response)
        self.assertIn(challenge.encode("token").encode("ascii"), mine.children)
        responder.stop_responding("a.example", challenge, response)
        self.assertEqual(mine.children, {})
