"""
Parsing of the HTTP headers ACME relies on: ``Link`` (RFC 8288),
``Retry-After`` (RFC 9110 §10.2.3) and media types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:
    from txacme._types import HTTPResponse

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_LINK_PARAM = re.compile(rf";\s*({_TOKEN})\s*(?:=\s*({_QUOTED}|[^;]*))?")


def media_type(value: str | bytes | None) -> str | None:
    """
    The media type of a ``Content-Type`` value, lowercase, without
    parameters; ``None`` if there is none.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    kind = value.split(";", 1)[0].strip().lower()
    return kind or None


def parse_links(values: Iterable[str | bytes], base: str = "") -> dict[str, list[str]]:
    """
    Parse ``Link`` header values (RFC 8288) into a mapping from each
    relation type to the target URLs that have it, in order.

    Relative targets are resolved against ``base``.  A ``rel`` parameter
    may name several relation types separated by spaces.  Malformed parts
    are skipped, never fatal.
    """
    links: dict[str, list[str]] = {}
    for value in values:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        for target, params in _link_values(text):
            url = urljoin(base, target) if base else target
            for param in _LINK_PARAM.finditer(params):
                name, rel_value = param.group(1), param.group(2)
                if name.lower() != "rel" or rel_value is None:
                    continue
                rel_value = rel_value.strip()
                if rel_value.startswith('"') and rel_value.endswith('"'):
                    rel_value = rel_value[1:-1]
                for rel in rel_value.split():
                    links.setdefault(rel.lower(), []).append(url)
    return links


def _link_values(text: str) -> Iterator[tuple[str, str]]:
    """
    Split one ``Link`` header value into ``(target, parameters)`` pairs:
    ``<target>`` followed by everything up to the next comma that is not
    inside a quoted string.
    """
    position = 0
    while True:
        start = text.find("<", position)
        if start == -1:
            return
        end = text.find(">", start)
        if end == -1:
            return
        cursor = end + 1
        quoted = False
        while cursor < len(text):
            character = text[cursor]
            if quoted and character == "\\":
                cursor += 1
            elif character == '"':
                quoted = not quoted
            elif character == "," and not quoted:
                break
            cursor += 1
        yield text[start + 1 : end].strip(), text[end + 1 : cursor]
        position = cursor + 1


def parse_retry_after(
    value: str | bytes | None, now: Callable[[], float]
) -> float | None:
    """
    Parse a ``Retry-After`` value: delta-seconds or an HTTP-date.

    :param value: The header value, or ``None``.
    :param now: The current POSIX time, for the HTTP-date form.
    :returns: Seconds to wait from now (never negative; a date in the past
        gives 0), or ``None`` if ``value`` is absent or malformed.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return float(max(0, math.ceil(when.timestamp() - now())))


def first_header(response: HTTPResponse, name: bytes) -> str | None:
    """The first value of a response header, as text; ``None`` if absent."""
    values = response.headers.getRawHeaders(name)
    if not values:
        return None
    value = values[0]
    return value.decode("latin-1") if isinstance(value, bytes) else value
