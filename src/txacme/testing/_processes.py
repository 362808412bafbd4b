"""
Child servers on loopback, for the Pebble harness and txacme's own test
harnesses (BIND, PowerDNS): free ports, readiness probes, and stopping a
process by its PID.  Public through :mod:`txacme.testing.pebble`
(:func:`~txacme.testing.pebble.free_ports`,
:func:`~txacme.testing.pebble.stop_process`,
:func:`~txacme.testing.pebble.resolve_a`,
:func:`~txacme.testing.pebble.resolve_aaaa`).
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "dns_answers",
    "free_ports",
    "http_answers",
    "https_ok",
    "log_tail",
    "resolve_a",
    "resolve_aaaa",
    "stop_process",
]

#: The end of each log attached to a failure message.
LOG_TAIL = 6000
LOOPBACK = "127.0.0.1"


class PebbleStartError(Exception):
    """
    Pebble or pebble-challtestsrv did not start (or did not answer) in time.
    The message carries the end of both processes' logs.
    """


# Ports are picked below the kernel's ephemeral range when it allows: there
# no outgoing connection takes one of them as its local port between the
# harness choosing it and a server (Pebble, or a test's responder started
# later) binding it.
_PORT_FLOOR = 10000
_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_range_start() -> int:
    try:
        return int(_PORT_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bind_both(port: int, held: list[socket.socket]) -> int | None:
    """
    Bind ``port`` (0: any) on the loopback address for TCP and UDP alike
    (the DNS server takes both), keeping the sockets in ``held``.

    :returns: The port, or ``None`` if it is taken.
    """
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.append(tcp)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    held.append(udp)
    try:
        tcp.bind((LOOPBACK, port))
        bound: int = tcp.getsockname()[1]
        udp.bind((LOOPBACK, bound))
    except OSError:
        return None
    return bound


def free_ports(count: int) -> list[int]:
    """
    Find ``count`` distinct loopback ports that are free for TCP and UDP.
    """
    ceiling = _ephemeral_range_start()
    chooser = random.Random()
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(count * 100):
            if len(ports) == count:
                break
            if ceiling > _PORT_FLOOR + 1000:
                port = _bind_both(chooser.randrange(_PORT_FLOOR, ceiling), held)
            else:
                port = _bind_both(0, held)
            if port is not None and port not in ports:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise PebbleStartError(f"found only {len(ports)} free loopback ports")
    return ports


def log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"<cannot read {path}: {error}>"
    if len(text) > LOG_TAIL:
        text = "...\n" + text[-LOG_TAIL:]
    return text


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """
    Stop one child process by its PID: SIGTERM, then SIGKILL if it is still
    running after ``timeout`` seconds, and reap it.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def https_ok(url: str, context: ssl.SSLContext) -> None:
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        response.read()


def http_answers(url: str) -> None:
    # Any HTTP answer (a 404 for "/" included) shows the server is up.
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            response.read()
    except urllib.error.HTTPError:
        pass


def _dns_query(name: str, port: int, record_type: int = 1) -> bytes:
    """
    Send one DNS query over UDP to the loopback DNS server and return the raw
    answer (for readiness checks and tests; no dependency on a DNS library).
    """
    query_id = os.getpid() & 0xFFFF
    header = query_id.to_bytes(2, "big") + bytes([1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    question = b"".join(
        len(label).to_bytes(1, "big") + label.encode("ascii")
        for label in name.rstrip(".").split(".")
    )
    question += b"\x00" + record_type.to_bytes(2, "big") + b"\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.sendto(header + question, (LOOPBACK, port))
        answer, _ = sock.recvfrom(4096)
    if answer[:2] != header[:2]:
        raise ValueError("DNS answer to another query")
    return answer


def dns_answers(port: int) -> None:
    _dns_query("txacme-harness.example.test", port)


def resolve_a(name: str, port: int) -> list[str]:
    """
    The IPv4 addresses the loopback DNS server at ``port`` gives for
    ``name`` (``A`` records only; a blocking query).

    :raises ValueError: If the answer cannot be parsed.
    """
    return _parse_addresses(_dns_query(name, port, 1), 1)


def resolve_aaaa(name: str, port: int) -> list[str]:
    """
    The IPv6 addresses the loopback DNS server at ``port`` gives for
    ``name`` (``AAAA`` records only; a blocking query).
    """
    return _parse_addresses(_dns_query(name, port, 28), 28)


def _skip_name(message: bytes, offset: int) -> int:
    while True:
        length = message[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def _parse_addresses(message: bytes, record_type: int) -> list[str]:
    if len(message) < 12:
        raise ValueError("short DNS answer")
    questions = int.from_bytes(message[4:6], "big")
    answers = int.from_bytes(message[6:8], "big")
    offset = 12
    for _ in range(questions):
        offset = _skip_name(message, offset) + 4
    addresses: list[str] = []
    for _ in range(answers):
        offset = _skip_name(message, offset)
        answer_type = int.from_bytes(message[offset : offset + 2], "big")
        length = int.from_bytes(message[offset + 8 : offset + 10], "big")
        data = message[offset + 10 : offset + 10 + length]
        offset += 10 + length
        if answer_type == record_type:
            addresses.append(str(ipaddress.ip_address(data)))
    return addresses
