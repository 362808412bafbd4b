"""
Tests for :mod:`txacme._headers`: Link, Retry-After and media types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from tests.support import TestCase
from txacme._headers import media_type, parse_links, parse_retry_after

_NOW = 1_700_000_000.0

_url_text = st.text(
    alphabet=st.characters(
        min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='<>",;'
    ),
    min_size=1,
    max_size=40,
)
_rel = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)


class MediaTypeTests(TestCase):
    """Tests for :func:`media_type`."""

    def test_parameters_dropped(self) -> None:
        """Parameters and case do not matter: the bare media type is returned."""
        self.assertEqual(
            media_type("Application/JSON; charset=utf-8"), "application/json"
        )
        self.assertEqual(
            media_type(b"application/pem-certificate-chain"),
            "application/pem-certificate-chain",
        )

    def test_missing(self) -> None:
        """No header, or an empty one, gives ``None``."""
        self.assertIsNone(media_type(None))
        self.assertIsNone(media_type(" ; charset=utf-8"))


class ParseLinksTests(TestCase):
    """Tests for :func:`parse_links` (RFC 8288)."""

    def test_several_values(self) -> None:
        """
        Links in one header value separated by commas, and in several
        header values, are all found, keyed by relation, in order.
        """
        links = parse_links(
            [
                '<https://ca.test/a/1>;rel="up", '
                "<https://ca.test/alt/1>; rel=alternate",
                b'<https://ca.test/alt/2>;rel="alternate"',
            ]
        )
        self.assertEqual(links["up"], ["https://ca.test/a/1"])
        self.assertEqual(
            links["alternate"], ["https://ca.test/alt/1", "https://ca.test/alt/2"]
        )

    def test_relative_and_multiple_rels(self) -> None:
        """
        Relative targets resolve against the base; a ``rel`` naming several
        relation types files the link under each.
        """
        links = parse_links(['</dir>;rel="index start"'], base="https://ca.test/x/y")
        self.assertEqual(
            links, {"index": ["https://ca.test/dir"], "start": ["https://ca.test/dir"]}
        )

    def test_quoted_separators(self) -> None:
        """
        Commas and semicolons inside quoted parameters do not split the
        link.
        """
        links = parse_links(
            ['<https://ca.test/t>;title="a, b; c";rel="terms-of-service"']
        )
        self.assertEqual(links, {"terms-of-service": ["https://ca.test/t"]})

    def test_garbage_skipped(self) -> None:
        """Malformed parts are skipped without an exception."""
        self.assertEqual(parse_links(["garbage", "<unterminated", ";rel=up"]), {})

    @given(st.lists(st.tuples(_url_text, _rel), min_size=1, max_size=5))
    def test_round_trip(self, pairs: list[tuple[str, str]]) -> None:
        """Any list of links formatted per RFC 8288 parses back to itself."""
        header = ", ".join(
            f'<https://ca.test/{url}>; rel="{rel}"' for url, rel in pairs
        )
        expected: dict[str, list[str]] = {}
        for url, rel in pairs:
            expected.setdefault(rel, []).append(f"https://ca.test/{url}")
        self.assertEqual(parse_links([header]), expected)

    @given(st.text(max_size=200))
    def test_never_raises(self, value: str) -> None:
        """Arbitrary header text never raises."""
        parse_links([value])


class ParseRetryAfterTests(TestCase):
    """Tests for :func:`parse_retry_after` (RFC 9110 §10.2.3)."""

    @given(st.integers(min_value=0, max_value=10**9))
    def test_delta_seconds(self, seconds: int) -> None:
        """The delta-seconds form is taken as it is."""
        self.assertEqual(parse_retry_after(str(seconds), lambda: _NOW), seconds)

    @given(st.integers(min_value=-(10**6), max_value=10**8))
    def test_http_date(self, offset: int) -> None:
        """
        The HTTP-date form gives the seconds from now until then, and 0 for a
        date in the past.
        """
        when = datetime.fromtimestamp(_NOW + offset, UTC)
        value = format_datetime(when, usegmt=True)
        self.assertEqual(parse_retry_after(value, lambda: _NOW), max(0, offset))

    def test_absent_or_malformed(self) -> None:
        """A missing or malformed value gives ``None``."""
        for value in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020"):
            self.assertIsNone(parse_retry_after(value, lambda: _NOW), value)

    @given(st.text(max_size=60))
    def test_never_raises(self, value: str) -> None:
        """Arbitrary text gives a number or ``None``, never an exception."""
        result = parse_retry_after(value, lambda: _NOW)
        self.assertTrue(result is None or result >= 0)
