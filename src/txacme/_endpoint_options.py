"""
The options of the ``le:``, ``lets:`` and ``acme:`` endpoint descriptions
(their syntax is documented in :mod:`txacme.endpoint`): reading a
description, as Twisted's endpoint string parser splits it, into
:class:`EndpointOptions`, before anything is opened or read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta

from attrs import frozen
from twisted.python.url import URL

from txacme.service import parse_server_names
from txacme.store import check_server_name
from txacme.urls import LETSENCRYPT_DIRECTORY, LETSENCRYPT_STAGING_DIRECTORY
from txacme.util import KEY_TYPES

__all__ = [
    "CHALLENGE_TYPES",
    "DEFAULT_CHECK",
    "DIRECTORIES",
    "OPTIONS",
    "EndpointOptions",
    "parse_duration",
    "parse_endpoint_options",
]

#: The challenge types the endpoints can answer, in the default order.
CHALLENGE_TYPES = ("tls-alpn-01", "http-01")

#: The prefixes and the directory each one uses (``None``: ``directory=``).
DIRECTORIES: dict[str, URL | None] = {
    "le": LETSENCRYPT_DIRECTORY,
    "lets": LETSENCRYPT_STAGING_DIRECTORY,
    "acme": None,
}

#: The keyword options of the descriptions; other keywords go to the
#: endpoint listened on.
OPTIONS = frozenset(
    {
        "directory",
        "ca",
        "email",
        "domains",
        "challenge",
        "http01",
        "reissue",
        "check",
        "key_type",
    }
)

#: The interval between two checks of the store, without ``check=``.
DEFAULT_CHECK = timedelta(days=1)

_DEFAULT_HTTP01 = "tcp:80"
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


def parse_duration(text: str) -> timedelta:
    """
    Parse a duration: a number of seconds (``"90"``), or numbers with units
    ``w``, ``d``, ``h``, ``m``, ``s`` (``"30d"``, ``"1h30m"``, ``"1.5h"``).

    :param text: The duration.
    :returns: It, as a positive :class:`~datetime.timedelta`.
    :raises ValueError: If it is malformed, or not positive.
    """
    stripped = text.strip().lower()
    seconds: float
    if re.fullmatch(r"\d+(?:\.\d+)?", stripped):
        seconds = float(stripped)
    else:
        position = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(stripped):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            position = match.end()
        if position != len(stripped) or not stripped:
            raise ValueError(
                f"Not a duration: {text!r} (write seconds, or for example "
                "'30d', '12h', '1h30m')"
            )
    if seconds <= 0:
        raise ValueError(f"A duration must be positive, not {text!r}")
    return timedelta(seconds=seconds)


def _escape(text: str, colons: bool = True) -> str:
    """``text`` escaped for an endpoint description (backslash escapes)."""
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace(":", "\\:") if colons else text


@frozen
class EndpointOptions:
    """
    What an ``le:``, ``lets:`` or ``acme:`` description asks for (see
    :mod:`txacme.endpoint`), before anything is opened or read.

    :ivar prefix: ``"le"``, ``"lets"`` or ``"acme"``.
    :ivar path: The store's directory.
    :ivar endpoint: The description of the endpoint to listen on.
    :ivar directory: The ACME directory URL.
    :ivar ca: A PEM file of CA certificates to trust for the ACME server,
        or ``None`` for the platform's.
    :ivar email: The account's contact address, or ``None``.
    :ivar domains: Entries to keep issued: each a tuple of names, the first
        naming the entry.
    :ivar challenges: The challenge types, in order of preference.
    :ivar http01: The description of the http-01 listener, or ``None``
        without http-01.
    :ivar reissue: The reissue interval, or ``None`` for the default.
    :ivar check: The interval between two checks of the store.
    :ivar key_type: The type of the certificates' keys (``"rsa"``, as in
        txacme 0.9, or ``"p256"``...; see
        :func:`txacme.util.generate_private_key`).
    """

    prefix: str
    path: str
    endpoint: str
    directory: URL
    ca: str | None = None
    email: str | None = None
    domains: tuple[tuple[str, ...], ...] = ()
    challenges: tuple[str, ...] = ("tls-alpn-01",)
    http01: str | None = None
    reissue: timedelta | None = None
    check: timedelta = DEFAULT_CHECK
    key_type: str = "rsa"


def _parse_domains(text: str) -> tuple[tuple[str, ...], ...]:
    entries: list[tuple[str, ...]] = []
    for group in text.split(";"):
        if not group.strip():
            raise ValueError(f"An empty certificate in domains={text!r}")
        names = parse_server_names(group)
        check_server_name(names[0])
        entries.append(names)
    return tuple(entries)


def _parse_challenges(text: str) -> tuple[str, ...]:
    challenges: list[str] = []
    for part in text.split(","):
        challenge = part.strip().lower()
        if challenge not in CHALLENGE_TYPES:
            raise ValueError(
                f"Unknown challenge type {part!r} in challenge={text!r}; "
                f"expected {' or '.join(CHALLENGE_TYPES)}"
            )
        if challenge in challenges:
            raise ValueError(f"{challenge} twice in challenge={text!r}")
        challenges.append(challenge)
    return tuple(challenges)


def _parse_directory_url(text: str) -> URL:
    try:
        url = URL.fromText(text)
    except Exception as error:
        raise ValueError(f"Not a URL: directory={text!r}: {error}") from error
    if url.scheme != "https" or not url.host:
        raise ValueError(
            f"The ACME directory must be an https URL, not {text!r} (escape "
            "its colons in the description: directory=https\\://...)"
        )
    return url


def parse_endpoint_options(
    prefix: str, args: Sequence[str], kwargs: Mapping[str, str]
) -> EndpointOptions:
    """
    Read an ``le:``, ``lets:`` or ``acme:`` description, split by Twisted's
    endpoint string parser into positional and keyword arguments.

    :param prefix: The description's prefix.
    :param args: Its positional arguments after the prefix: the store's
        directory, then the endpoint to listen on.
    :param kwargs: Its keyword arguments: the options, and those of the
        endpoint to listen on.
    :returns: The options.
    :raises ValueError: For a description that cannot work, with a message
        saying why.
    """
    prefix = prefix.lower()
    if prefix not in DIRECTORIES:
        raise ValueError(f"Unknown endpoint type {prefix!r}")
    example = f"{prefix}:/srv/www/certs:tcp:443" + (
        ":directory=https\\://ca.example/directory" if prefix == "acme" else ""
    )
    if not args or not args[0]:
        raise ValueError(
            f"{prefix}: needs the certificate directory first, as in {example}"
        )
    path, listen_args = args[0], [arg for arg in args[1:] if arg]
    listen_kwargs = {
        name: value for name, value in kwargs.items() if name not in OPTIONS
    }
    if not listen_args:
        raise ValueError(
            f"{prefix}: needs an endpoint to listen on after the directory, as "
            f"in {example}"
        )
    endpoint = ":".join(_escape(arg, colons=False) for arg in listen_args) + "".join(
        f":{_escape(name)}={_escape(value)}"
        for name, value in sorted(listen_kwargs.items())
    )

    fixed = DIRECTORIES[prefix]
    if fixed is None:
        if "directory" not in kwargs:
            raise ValueError(
                f"acme: needs the CA's directory URL, as in {example} (or use "
                "le: for Let's Encrypt, lets: for its staging environment)"
            )
        directory = _parse_directory_url(kwargs["directory"])
    elif "directory" in kwargs:
        raise ValueError(
            f"{prefix}: uses Let's Encrypt's directory; for another CA use "
            "acme:...:directory=<URL>"
        )
    else:
        directory = fixed

    ca = kwargs.get("ca")
    if ca is not None and not ca:
        raise ValueError("ca= needs the path of a PEM file of CA certificates")
    email = kwargs.get("email")
    if email is not None and not email.strip():
        raise ValueError("email= needs an address")
    domains = _parse_domains(kwargs["domains"]) if "domains" in kwargs else ()

    http01 = kwargs.get("http01")
    if http01 is not None and not http01:
        raise ValueError("http01= needs an endpoint description, as http01=tcp\\:80")
    if "challenge" in kwargs:
        challenges = _parse_challenges(kwargs["challenge"])
    elif http01 is not None:
        challenges = ("http-01",)
    else:
        challenges = ("tls-alpn-01",)
    if "http-01" in challenges:
        http01 = http01 or _DEFAULT_HTTP01
    elif http01 is not None:
        raise ValueError(
            f"http01={http01!r} is set but challenge={kwargs['challenge']!r} "
            "leaves out http-01"
        )

    reissue = parse_duration(kwargs["reissue"]) if "reissue" in kwargs else None
    check = parse_duration(kwargs["check"]) if "check" in kwargs else DEFAULT_CHECK
    key_type = kwargs.get("key_type", "rsa").strip().lower()
    if key_type not in KEY_TYPES:
        raise ValueError(
            f"Unknown key_type={kwargs['key_type']!r}; expected one of "
            f"{', '.join(sorted(KEY_TYPES))}"
        )
    return EndpointOptions(
        prefix=prefix,
        path=path,
        endpoint=endpoint,
        directory=directory,
        ca=ca,
        email=email.strip() if email is not None else None,
        domains=domains,
        challenges=challenges,
        http01=http01,
        reissue=reissue,
        check=check,
        key_type=key_type,
    )
