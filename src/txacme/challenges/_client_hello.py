"""
Reading the server name and ALPN protocols of a TLS ClientHello.

tls-alpn-01 (RFC 8737 §3) answers with a special certificate only when the
client's ClientHello asks for both a pending name (SNI, RFC 6066 §3) and the
``acme-tls/1`` protocol (ALPN, RFC 7301 §3.1).  OpenSSL reports the two at
different times -- the server name before the certificate is chosen, ALPN
after -- so the responder reads them itself from the first bytes of the
connection, before OpenSSL sees them.

Only what is needed is parsed, and strictly: the TLS record layer (RFC 8446
§5.1, which also frames TLS 1.2), the ClientHello body (RFC 8446 §4.1.2;
TLS 1.2's has the same layout, RFC 5246 §7.4.1.2) and the two extensions.
Anything else, or anything malformed, is :attr:`Unparsed.INVALID`, and the
connection is left to OpenSSL as it is.
"""

from __future__ import annotations

from enum import Enum

from attrs import frozen

__all__ = [
    "MAX_CLIENT_HELLO",
    "ClientHello",
    "Unparsed",
    "parse_client_hello",
    "wanted_length",
]

_HANDSHAKE_RECORD = 22
_CLIENT_HELLO = 1
_MAX_FRAGMENT = 2**14
_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4
_SERVER_NAME = 0
_HOST_NAME = 0
_ALPN = 16

MAX_CLIENT_HELLO = 2**16
"""
The largest ClientHello read, in bytes of handshake message.  Real ones are
a few hundred bytes to a few kilobytes (post-quantum key shares included).
"""


class Unparsed(Enum):
    """
    Why :func:`parse_client_hello` gave no :class:`ClientHello`.
    """

    INCOMPLETE = "incomplete"
    """The bytes so far are the start of a ClientHello: more are needed."""

    INVALID = "invalid"
    """The bytes are not a ClientHello that can be read."""


@frozen
class ClientHello:
    """
    What a ClientHello asks for.

    :ivar server_name: The ``host_name`` of the server name extension,
        lower-cased and without a trailing dot; ``None`` without one (or with
        one that is not ASCII).
    :ivar protocols: The ALPN protocol names offered, in the client's order;
        empty without the extension.
    """

    server_name: str | None
    protocols: tuple[bytes, ...]


class _Malformed(Exception):
    """The bytes do not follow the TLS presentation language."""


class _Reader:
    """
    Reads TLS presentation-language fields (RFC 8446 §3) from bytes.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise _Malformed()
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def integer(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Reader:
        """A variable-length vector whose length takes ``length_size`` bytes."""
        return _Reader(self.take(self.integer(length_size)))

    def rest(self) -> bytes:
        return self.take(len(self._data) - self._offset)

    @property
    def done(self) -> bool:
        return self._offset == len(self._data)


def _handshake_bytes(data: bytes) -> bytes | Unparsed | int:
    """
    The first handshake message in ``data`` (records of the TLS record
    layer), once all of its fragments have arrived; until then, the length
    ``data`` must reach before more of it can be read.
    """
    handshake = b""
    offset = 0
    while True:
        if len(handshake) >= _HANDSHAKE_HEADER:
            if handshake[0] != _CLIENT_HELLO:
                return Unparsed.INVALID
            length = int.from_bytes(handshake[1:_HANDSHAKE_HEADER], "big")
            if length > MAX_CLIENT_HELLO:
                return Unparsed.INVALID
            if len(handshake) >= _HANDSHAKE_HEADER + length:
                return handshake[_HANDSHAKE_HEADER : _HANDSHAKE_HEADER + length]
        header = data[offset : offset + _RECORD_HEADER]
        if len(header) >= 1 and header[0] != _HANDSHAKE_RECORD:
            return Unparsed.INVALID
        if len(header) >= 2 and header[1] != 3:
            # Not TLS (SSL 3.0 and TLS 1.x all have major version 3).
            return Unparsed.INVALID
        if len(header) < _RECORD_HEADER:
            return offset + _RECORD_HEADER
        record_length = int.from_bytes(header[3:5], "big")
        if record_length == 0 or record_length > _MAX_FRAGMENT:
            return Unparsed.INVALID
        record_end = offset + _RECORD_HEADER + record_length
        if len(data) < record_end:
            return record_end
        handshake += data[offset + _RECORD_HEADER : record_end]
        offset += _RECORD_HEADER + record_length


def _server_name(extension: _Reader) -> str | None:
    """The ``host_name`` of a server_name extension (RFC 6066 §3)."""
    names = extension.vector(2)
    if not extension.done or names.done:
        raise _Malformed()
    host_name: str | None = None
    while not names.done:
        name_type = names.integer(1)
        name = names.vector(2).rest()
        if name_type == _HOST_NAME and host_name is None:
            if not name:
                raise _Malformed()
            try:
                host_name = name.decode("ascii")
            except UnicodeDecodeError:
                return None
    if host_name is None:
        return None
    return host_name.lower().rstrip(".")


def _protocols(extension: _Reader) -> tuple[bytes, ...]:
    """The protocol names of an ALPN extension (RFC 7301 §3.1)."""
    names = extension.vector(2)
    if not extension.done or names.done:
        raise _Malformed()
    protocols = []
    while not names.done:
        protocol = names.vector(1).rest()
        if not protocol:
            raise _Malformed()
        protocols.append(protocol)
    return tuple(protocols)


def _parse_body(body: bytes) -> ClientHello:
    reader = _Reader(body)
    reader.take(2)  # legacy_version
    reader.take(32)  # random
    if len(reader.vector(1).rest()) > 32:  # legacy_session_id
        raise _Malformed()
    reader.vector(2)  # cipher_suites
    reader.vector(1)  # legacy_compression_methods
    server_name: str | None = None
    protocols: tuple[bytes, ...] = ()
    if reader.done:
        # A TLS 1.2 ClientHello may end here, without extensions.
        return ClientHello(server_name=None, protocols=())
    extensions = reader.vector(2)
    if not reader.done:
        raise _Malformed()
    seen: set[int] = set()
    while not extensions.done:
        extension_type = extensions.integer(2)
        extension = extensions.vector(2)
        if extension_type in seen:
            # RFC 8446 §4.2: at most one extension of each type.
            raise _Malformed()
        seen.add(extension_type)
        if extension_type == _SERVER_NAME:
            server_name = _server_name(extension)
        elif extension_type == _ALPN:
            protocols = _protocols(extension)
    return ClientHello(server_name=server_name, protocols=protocols)


def parse_client_hello(data: bytes) -> ClientHello | Unparsed:
    """
    Read the server name and ALPN protocols of the ClientHello that
    ``data``, the first bytes a TLS client sent, starts with.

    :param data: The bytes received so far, from the first.
    :returns: The :class:`ClientHello`, or :attr:`Unparsed.INCOMPLETE` if
        ``data`` is a true start of one, or :attr:`Unparsed.INVALID`.
    """
    handshake = _handshake_bytes(data)
    if isinstance(handshake, int):
        return Unparsed.INCOMPLETE
    if isinstance(handshake, Unparsed):
        return handshake
    try:
        return _parse_body(handshake)
    except _Malformed:
        return Unparsed.INVALID


def wanted_length(data: bytes) -> int:
    """
    How long the bytes received must be before :func:`parse_client_hello`
    can tell more than it tells of ``data``: the end of the TLS record
    being received, or ``len(data)`` if nothing more is needed.  (So that
    a client sending its ClientHello a byte at a time does not make the
    whole of it be parsed again for each byte.)

    :param data: The bytes received so far, from the first.
    """
    handshake = _handshake_bytes(data)
    if isinstance(handshake, int):
        return handshake
    return len(data)
