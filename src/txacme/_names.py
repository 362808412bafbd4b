"""
The rules for server names, in one place: how a name is written in its
canonical form (for comparing identifiers, and for store entries), how a
certificate's names are given, and which names can key a store entry.
Public through :mod:`txacme.service` (:func:`parse_server_names`) and
:mod:`txacme.store` (:func:`check_server_name`).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence

__all__ = ["canonical_name", "check_server_name", "entry_names", "parse_server_names"]


def canonical_name(name: str) -> str:
    """
    A DNS name or IP address in the form CAs and stores compare: lower case
    without a trailing dot; an IP address in its canonical text form (RFC
    8738 §3, RFC 5952).

    :param name: The name, without surrounding spaces.
    """
    name = name.lower().rstrip(".")
    with contextlib.suppress(ValueError):
        name = str(ipaddress.ip_address(name))
    return name


def parse_server_names(server_names: str | Sequence[str]) -> tuple[str, ...]:
    """
    The names of a store entry: a name, several names separated by commas
    (``"example.com,www.example.com"``), or a sequence of names.  Names are
    lower-cased, lose a trailing dot, IP addresses take their canonical
    form, and repeats are dropped; the first name is the entry's key.

    :param server_names: The names.
    :returns: The names, the key first.
    :raises ValueError: If there is no name, or an empty one.
    """
    parts = server_names.split(",") if isinstance(server_names, str) else server_names
    names: list[str] = []
    for part in parts:
        name = canonical_name(part.strip())
        if not name:
            raise ValueError(f"An empty server name in {server_names!r}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("No server name given")
    return tuple(names)


def check_server_name(server_name: str) -> str:
    """
    Check that ``server_name`` can key an entry: a non-empty name that
    cannot escape a store's directory.

    :returns: ``server_name``.
    :raises ValueError: If it is empty, starts with a dot, or holds a path
        separator or a NUL.
    """
    if (
        not isinstance(server_name, str)
        or not server_name
        or server_name.startswith(".")
        or "/" in server_name
        or "\\" in server_name
        or "\0" in server_name
        or len(server_name.encode("utf-8")) > 250
    ):
        raise ValueError(f"Not usable as a store entry's name: {server_name!r}")
    return server_name


def entry_names(server_names: str | Sequence[str]) -> tuple[str, ...]:
    """
    :func:`parse_server_names`, and the key checked with
    :func:`check_server_name`.

    :raises ValueError: For names that cannot make an entry.
    """
    names = parse_server_names(server_names)
    check_server_name(names[0])
    return names
