"""
Pebble, the ACME test server, for integration tests and tools: a harness
that runs it on free loopback ports, its management API, and helpers to
serve responders where its validator connects and to check what it issued.

:class:`PebbleServer` starts ``pebble`` and ``pebble-challtestsrv`` (the
Debian package ``pebble``) as child processes on free loopback ports:

* ``pebble`` serves ACME over HTTPS with a certificate for ``localhost`` and
  ``127.0.0.1`` issued by a throwaway CA that the harness generates (clients
  trust it through :meth:`PebbleServer.http_client`).  Its validator connects
  to :attr:`PebbleServer.http_port` (http-01) and
  :attr:`PebbleServer.tls_port` (tls-alpn-01), where the tests' own responders
  listen on 127.0.0.1.
* ``pebble-challtestsrv`` runs only its mock DNS server (Pebble's
  ``-dnsserver``), which answers every ``A`` query with ``127.0.0.1`` and no
  ``AAAA`` query, and its management API; its http-01 and tls-alpn-01
  responders are switched off.

Nothing here needs trial: ``tools/issue_from_pebble.py`` and the benchmarks
use it with :func:`twisted.internet.task.react`, and txacme's own trial
fixture (``tests/integration/pebble.py``) builds on it.  Every wait is
bounded; child processes are stopped by :meth:`PebbleServer.stop` (and
killed when they do not stop in time).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import treq
from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.internet.ssl import Certificate
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

__all__ = [
    "CHALLTESTSRV",
    "LOOPBACK",
    "PEBBLE",
    "ConnectionTracker",
    "PebbleManagement",
    "PebbleOptions",
    "PebblePorts",
    "PebbleServer",
    "PebbleStartError",
    "ServedSite",
    "free_ports",
    "http01_site_root",
    "pebble_unavailable_reason",
    "resolve_a",
    "resolve_aaaa",
    "stop_process",
    "verify_chain",
]


#: The name of Pebble's program.
PEBBLE = "pebble"
#: The name of pebble-challtestsrv's program.
CHALLTESTSRV = "pebble-challtestsrv"
#: The address everything listens on.
LOOPBACK = "127.0.0.1"

# How long a start may take before it is reported as failed, and how long a
# stopping process gets before it is killed.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
# How many times a start is retried when another process took one of the
# chosen ports between choosing it and Pebble binding it.
_START_ATTEMPTS = 3
# The end of each log attached to a failure message.
_LOG_TAIL = 6000


@frozen
class PebbleOptions:
    """
    How to run Pebble: its environment options and configuration.

    :ivar nonce_reject: ``PEBBLE_WFE_NONCEREJECT``: the percentage of good
        nonces rejected with ``badNonce`` (Pebble's default is 5).
    :ivar authz_reuse: ``PEBBLE_AUTHZREUSE``: the percentage of new orders
        that reuse an existing valid authorization (Pebble's default is 50).
    :ivar chain_length: ``PEBBLE_CHAIN_LENGTH``: the number of intermediates
        between leaf and root (Pebble's default and minimum is 1).
    :ivar alternate_roots: ``PEBBLE_ALTERNATE_ROOTS``: the number of
        alternate chains, each with its own root (default 0).
    :ivar va_nosleep: ``PEBBLE_VA_NOSLEEP``: validate at once instead of after
        a random delay of up to 15 seconds.
    :ivar va_always_valid: ``PEBBLE_VA_ALWAYS_VALID``: accept every challenge
        without validating it.
    :ivar eab_required: ``externalAccountBindingRequired``.
    :ivar eab_keys: ``externalAccountMACKeys``: key identifier to base64url
        HMAC key.
    :ivar strict: Pebble's ``-strict`` flag.
    :ivar extra_environment: Further environment variables for ``pebble``.
    :ivar dns_server: ``"host:port"`` of the DNS server Pebble's validator
        asks instead of pebble-challtestsrv's (which still runs): a BIND for
        real dns-01 validation, for instance.
    """

    nonce_reject: int = 5
    authz_reuse: int = 50
    chain_length: int = 1
    alternate_roots: int = 0
    va_nosleep: bool = True
    va_always_valid: bool = False
    eab_required: bool = False
    eab_keys: Mapping[str, str] = field(factory=dict, hash=False)
    strict: bool = False
    extra_environment: Mapping[str, str] = field(factory=dict, hash=False)
    dns_server: str | None = None

    def environment(self) -> dict[str, str]:
        """
        The ``PEBBLE_*`` environment variables these options stand for.
        """
        environment = {
            "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject),
            "PEBBLE_AUTHZREUSE": str(self.authz_reuse),
            "PEBBLE_CHAIN_LENGTH": str(self.chain_length),
            "PEBBLE_ALTERNATE_ROOTS": str(self.alternate_roots),
        }
        if self.va_nosleep:
            environment["PEBBLE_VA_NOSLEEP"] = "1"
        if self.va_always_valid:
            environment["PEBBLE_VA_ALWAYS_VALID"] = "1"
        environment.update(self.extra_environment)
        return environment


@frozen
class PebblePorts:
    """
    The loopback ports of one harness instance.

    :ivar acme: Pebble's ACME (HTTPS) listener.
    :ivar management: Pebble's management (HTTPS) listener.
    :ivar http: Where Pebble's validator connects for http-01.
    :ivar tls: Where Pebble's validator connects for tls-alpn-01.
    :ivar dns: pebble-challtestsrv's DNS server (UDP and TCP).
    :ivar challtestsrv: pebble-challtestsrv's management API (HTTP).
    """

    acme: int
    management: int
    http: int
    tls: int
    dns: int
    challtestsrv: int


class PebbleStartError(Exception):
    """
    Pebble or pebble-challtestsrv did not start (or did not answer) in time.
    The message carries the end of both processes' logs.
    """


def pebble_unavailable_reason() -> str | None:
    """
    Why Pebble cannot be run here, or ``None`` if it can.
    """
    missing = [name for name in (PEBBLE, CHALLTESTSRV) if shutil.which(name) is None]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not found on PATH "
        "(Debian: apt-get install pebble; or run bash .ci/setup)"
    )


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


@frozen
class _TestCA:
    """
    A throwaway CA and the certificate it issued for Pebble's own listeners.
    """

    ca_pem: bytes
    server_certificate_pem: bytes
    server_key_pem: bytes

    @classmethod
    def generate(cls) -> _TestCA:
        now = datetime.now(UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "txacme test harness CA")]
        )
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_certificate = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
            )
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=7))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        return cls(
            ca_pem=ca_certificate.public_bytes(serialization.Encoding.PEM),
            server_certificate_pem=server_certificate.public_bytes(
                serialization.Encoding.PEM
            ),
            server_key_pem=server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"<cannot read {path}: {error}>"
    if len(text) > _LOG_TAIL:
        text = "...\n" + text[-_LOG_TAIL:]
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


@define
class PebbleServer:
    """
    A running Pebble and pebble-challtestsrv pair; see the module docstring.

    Make one with :meth:`start` and stop it with :meth:`stop`.

    :ivar options: What it was started with.
    :ivar ports: Its loopback ports.
    :ivar workdir: The directory holding its configuration, TLS files and
        logs (``pebble.log``, ``challtestsrv.log``).
    :ivar ca_pem: The PEM certificate of the CA that issued the certificate
        of Pebble's HTTPS listeners.
    """

    options: PebbleOptions
    ports: PebblePorts
    workdir: Path
    ca_pem: bytes
    _processes: list[subprocess.Popen[bytes]]
    _logs: list[IO[bytes]]
    _remove_workdir: bool

    @classmethod
    def start(
        cls,
        options: PebbleOptions | None = None,
        *,
        workdir: Path | None = None,
        timeout: float = START_TIMEOUT,
    ) -> PebbleServer:
        """
        Start Pebble and pebble-challtestsrv, and wait (blocking, at most
        ``timeout`` seconds) until Pebble's directory, its management API and
        the DNS server answer.

        :param options: How to run Pebble; :class:`PebbleOptions` defaults if
            ``None``.
        :param workdir: An existing directory for the configuration, TLS
            files and logs, kept after :meth:`stop`.  By default a temporary
            directory, removed by :meth:`stop` unless the environment
            variable ``TXACME_KEEP_PEBBLE_LOGS`` is set.
        :param timeout: Seconds to wait for each start attempt.
        :returns: The running server.
        :raises PebbleStartError: If it did not start; the message has the
            end of the logs.
        """
        if options is None:
            options = PebbleOptions()
        reason = pebble_unavailable_reason()
        if reason is not None:
            raise PebbleStartError(reason)
        remove = workdir is None and not os.environ.get("TXACME_KEEP_PEBBLE_LOGS")
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="txacme-pebble-"))
        ca = _TestCA.generate()
        (workdir / "ca.pem").write_bytes(ca.ca_pem)
        (workdir / "cert.pem").write_bytes(ca.server_certificate_pem)
        key_path = workdir / "key.pem"
        key_path.touch(mode=0o600)
        key_path.write_bytes(ca.server_key_pem)
        errors: list[str] = []
        for attempt in range(1, _START_ATTEMPTS + 1):
            ports = PebblePorts(*free_ports(6))
            server = cls(
                options=options,
                ports=ports,
                workdir=workdir,
                ca_pem=ca.ca_pem,
                processes=[],
                logs=[],
                remove_workdir=False,
            )
            try:
                server._spawn()
                server._wait_until_ready(timeout)
            except PebbleStartError as error:
                server.stop()
                errors.append(f"attempt {attempt}: {error}")
                if "address already in use" not in str(error):
                    break
            else:
                server._remove_workdir = remove
                return server
        if remove:
            shutil.rmtree(workdir, ignore_errors=True)
        raise PebbleStartError("\n\n".join(errors))

    def _spawn(self) -> None:
        config = {
            "pebble": {
                "listenAddress": f"{LOOPBACK}:{self.ports.acme}",
                "managementListenAddress": f"{LOOPBACK}:{self.ports.management}",
                "certificate": str(self.workdir / "cert.pem"),
                "privateKey": str(self.workdir / "key.pem"),
                "httpPort": self.ports.http,
                "tlsPort": self.ports.tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": self.options.eab_required,
                "externalAccountMACKeys": dict(self.options.eab_keys),
            }
        }
        config_path = self.workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config, indent=2))

        # Only the options asked for: none inherited from the caller's shell.
        environment = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("PEBBLE_")
        }
        environment.update(self.options.environment())

        challtestsrv_command = [
            CHALLTESTSRV,
            "-dns01",
            f"{LOOPBACK}:{self.ports.dns}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            f"{LOOPBACK}:{self.ports.challtestsrv}",
            "-defaultIPv4",
            LOOPBACK,
            "-defaultIPv6",
            "",
        ]
        pebble_command = [
            PEBBLE,
            "-config",
            str(config_path),
            "-dnsserver",
            self.options.dns_server or f"{LOOPBACK}:{self.ports.dns}",
            f"-strict={'true' if self.options.strict else 'false'}",
        ]
        for name, command in (
            ("challtestsrv", challtestsrv_command),
            ("pebble", pebble_command),
        ):
            log = (self.workdir / f"{name}.log").open("ab")
            self._logs.append(log)
            log.write(f"$ {' '.join(repr(part) for part in command)}\n".encode())
            log.flush()
            self._processes.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=environment,
                )
            )

    def logs(self) -> str:
        """
        The end of both processes' logs, for failure messages.
        """
        return "\n".join(
            f"--- {name}.log ({self.workdir / (name + '.log')}) ---\n"
            + _log_tail(self.workdir / f"{name}.log")
            for name in ("pebble", "challtestsrv")
        )

    def _wait_until_ready(self, timeout: float) -> None:
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        checks: dict[str, Callable[[], None]] = {
            "ACME directory": lambda: _https_ok(self.directory_url, context),
            "management API": lambda: _https_ok(
                self.management_url + "/roots/0", context
            ),
            "challtestsrv management API": lambda: _http_answers(self.challtestsrv_url),
            "DNS server": lambda: _dns_answers(self.ports.dns),
        }
        deadline = time.monotonic() + timeout
        last_error: dict[str, str] = {}
        while checks:
            for process in self._processes:
                status = process.poll()
                if status is not None:
                    raise PebbleStartError(
                        f"{process.args!r} exited with status {status} "
                        f"while starting\n{self.logs()}"
                    )
            for name, check in list(checks.items()):
                try:
                    check()
                except (OSError, ValueError) as error:
                    last_error[name] = f"{type(error).__name__}: {error}"
                else:
                    del checks[name]
            if not checks:
                return
            if time.monotonic() > deadline:
                waiting = "; ".join(
                    f"{name} ({last_error.get(name)})" for name in checks
                )
                raise PebbleStartError(
                    f"not ready after {timeout} s, waiting for {waiting}\n{self.logs()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """
        Stop both processes (by PID: SIGTERM, then SIGKILL after ``timeout``
        seconds), wait for them to exit, and remove the temporary directory.
        Idempotent.
        """
        processes, self._processes = self._processes, []
        for process in reversed(processes):
            stop_process(process, timeout)
        logs, self._logs = self._logs, []
        for log in logs:
            log.close()
        if self._remove_workdir:
            self._remove_workdir = False
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        """
        Whether both processes are still running.
        """
        return bool(self._processes) and all(
            process.poll() is None for process in self._processes
        )

    @property
    def pids(self) -> list[int]:
        """
        The process IDs of pebble-challtestsrv and pebble (empty once stopped).
        """
        return [process.pid for process in self._processes]

    @property
    def directory_url(self) -> str:
        """
        The ACME directory URL, ``https://127.0.0.1:<port>/dir``.
        """
        return f"https://{LOOPBACK}:{self.ports.acme}/dir"

    @property
    def management_url(self) -> str:
        """
        The base URL of Pebble's management API (HTTPS, same CA).
        """
        return f"https://{LOOPBACK}:{self.ports.management}"

    @property
    def challtestsrv_url(self) -> str:
        """
        The base URL of pebble-challtestsrv's management API (plain HTTP).
        """
        return f"http://{LOOPBACK}:{self.ports.challtestsrv}"

    @property
    def http_port(self) -> int:
        """
        The port Pebble connects to for http-01 validation (Pebble's
        ``httpPort``).
        """
        return self.ports.http

    @property
    def tls_port(self) -> int:
        """
        The port Pebble connects to for tls-alpn-01 validation (Pebble's
        ``tlsPort``).
        """
        return self.ports.tls

    @property
    def dns_address(self) -> tuple[str, int]:
        """
        The (host, port) of the DNS server Pebble resolves names with.
        """
        if self.options.dns_server is not None:
            host, _, port = self.options.dns_server.rpartition(":")
            return (host, int(port))
        return (LOOPBACK, self.ports.dns)

    def trust_root(self) -> Certificate:
        """
        The CA of Pebble's HTTPS listeners, as a Twisted trust root.
        """
        return Certificate.loadPEM(self.ca_pem)

    def http_client(
        self, reactor: IReactorTCP, pool: HTTPConnectionPool | None = None
    ) -> HTTPClient:
        """
        A treq client on ``reactor`` that trusts Pebble's HTTPS certificate
        (and no other CA).

        :param pool: The connection pool.  In trial tests pass a persistent
            pool and close its connections in a cleanup, or the reactor is
            left dirty.
        """
        agent = Agent(  # type: ignore[no-untyped-call]
            reactor,
            contextFactory=BrowserLikePolicyForHTTPS(  # type: ignore[no-untyped-call]
                trustRoot=self.trust_root()
            ),
            pool=pool,
        )
        return HTTPClient(agent)

    def management(self, http: HTTPClient) -> PebbleManagement:
        """
        The management APIs of this Pebble and its DNS server, through
        ``http`` (a client from :meth:`http_client`).
        """
        return PebbleManagement(
            http=http,
            pebble_url=self.management_url,
            challtestsrv_url=self.challtestsrv_url,
        )


def _https_ok(url: str, context: ssl.SSLContext) -> None:
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        response.read()


def _http_answers(url: str) -> None:
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


def _dns_answers(port: int) -> None:
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


@frozen
class PebbleManagement:
    """
    Pebble's and pebble-challtestsrv's management APIs, as Deferreds.

    :ivar http: The client to use; it must trust Pebble's HTTPS CA.
    :ivar pebble_url: Pebble's management base URL.
    :ivar challtestsrv_url: pebble-challtestsrv's management base URL.
    """

    http: HTTPClient
    pebble_url: str
    challtestsrv_url: str

    async def _get(self, url: str) -> bytes:
        response = await self.http.get(url)
        body: bytes = await treq.content(response)
        if response.code != 200:
            raise ValueError(f"GET {url}: HTTP {response.code}: {body[:500]!r}")
        return body

    async def _post(self, path: str, payload: Mapping[str, object]) -> None:
        url = self.challtestsrv_url + path
        response = await self.http.post(url, json=dict(payload))
        body: bytes = await treq.content(response)
        if response.code != 200:
            raise ValueError(f"POST {url}: HTTP {response.code}: {body[:500]!r}")

    def root_pem(self, index: int = 0) -> Deferred[bytes]:
        """
        The PEM certificate of Pebble's root ``index`` (``/roots/<index>``;
        1 and up are the alternate roots).
        """
        return Deferred.fromCoroutine(self._get(f"{self.pebble_url}/roots/{index}"))

    def intermediate_pem(self, index: int = 0) -> Deferred[bytes]:
        """
        The PEM certificate of Pebble's intermediate ``index``
        (``/intermediates/<index>``).
        """
        return Deferred.fromCoroutine(
            self._get(f"{self.pebble_url}/intermediates/{index}")
        )

    def cert_status(self, serial_hex: str) -> Deferred[dict[str, Any]]:
        """
        A certificate's status (``/cert-status-by-serial/<serial>``): a JSON
        object with ``Certificate`` (PEM), ``Status`` (``"Valid"`` or
        ``"Revoked"``), ``Serial``, and for a revoked one ``Reason`` and
        ``RevokedAt``.

        :param serial_hex: The serial number in hexadecimal, no ``0x``.
        """

        async def status() -> dict[str, Any]:
            body = await self._get(
                f"{self.pebble_url}/cert-status-by-serial/{serial_hex}"
            )
            parsed: dict[str, Any] = json.loads(body)
            return parsed

        return Deferred.fromCoroutine(status())

    def add_dns_a(self, host: str, addresses: list[str]) -> Deferred[None]:
        """
        Make the DNS server answer ``A`` queries for ``host`` with
        ``addresses`` instead of the default 127.0.0.1.
        """
        return Deferred.fromCoroutine(
            self._post("/add-a", {"host": host, "addresses": addresses})
        )

    def clear_dns_a(self, host: str) -> Deferred[None]:
        """
        Undo :meth:`add_dns_a`.
        """
        return Deferred.fromCoroutine(self._post("/clear-a", {"host": host}))

    def set_dns_txt(self, host: str, value: str) -> Deferred[None]:
        """
        Add a ``TXT`` record for ``host`` (a name such as
        ``_acme-challenge.a.example.test``).
        """
        return Deferred.fromCoroutine(
            self._post("/set-txt", {"host": _absolute(host), "value": value})
        )

    def clear_dns_txt(self, host: str) -> Deferred[None]:
        """
        Remove the ``TXT`` records of ``host``.
        """
        return Deferred.fromCoroutine(
            self._post("/clear-txt", {"host": _absolute(host)})
        )


def verify_chain(
    leaf_der: bytes,
    chain_der: Sequence[bytes],
    root_pem: bytes,
    names: Sequence[str],
) -> list[x509.Certificate]:
    """
    Verify an issued certificate as a TLS client would: a path from the
    leaf through ``chain_der`` to the root, valid now, for every one of
    ``names`` (the CA/Browser Forum web PKI profile of
    :mod:`cryptography.x509.verification`).

    :param leaf_der: The leaf certificate, DER.
    :param chain_der: The issuer chain, DER, any order (the root may be in
        it or not).
    :param root_pem: The one trusted root, PEM (Pebble's ``/roots/0``).
    :param names: The DNS names the certificate must be valid for.
    :returns: The verified path for the first name, leaf first and root
        last.
    :raises cryptography.x509.verification.VerificationError: If any name
        fails.
    """
    leaf = x509.load_der_x509_certificate(leaf_der)
    intermediates = [x509.load_der_x509_certificate(der) for der in chain_der]
    store = Store([x509.load_pem_x509_certificate(root_pem)])
    paths = [
        PolicyBuilder()
        .store(store)
        .build_server_verifier(x509.DNSName(name))
        .verify(leaf, intermediates)
        for name in names
    ]
    return paths[0]


def _absolute(host: str) -> str:
    return host if host.endswith(".") else host + "."


def http01_site_root(challenge_resource: Resource) -> Resource:
    """
    A site root with ``challenge_resource`` (an http-01 responder's
    resource) mounted at ``/.well-known/acme-challenge``.
    """
    root = Resource()  # type: ignore[no-untyped-call]
    well_known = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b".well-known", well_known)
    well_known.putChild(b"acme-challenge", challenge_resource)
    return root


@define
class ServedSite:
    """
    A ``twisted.web`` site listening on a loopback port, which can be stopped
    completely: listening socket and open connections alike (Pebble's
    validator may leave a connection open).
    """

    port: IListeningPort
    _factory: ConnectionTracker

    @classmethod
    def listen(cls, reactor: IReactorTCP, port: int, resource: Resource) -> ServedSite:
        """
        Serve ``resource`` on 127.0.0.1:``port``.
        """
        factory = ConnectionTracker(Site(resource))  # type: ignore[no-untyped-call]
        # A WrappingFactory is a ServerFactory in all but its annotations.
        listening = reactor.listenTCP(
            port,
            factory,  # type: ignore[arg-type]
            interface=LOOPBACK,
        )
        return cls(port=listening, factory=factory)

    def stop(self) -> Deferred[None]:
        """
        Stop listening and close every connection.  Idempotent.

        :returns: A Deferred firing once the port and connections are closed.
        """

        async def stop() -> None:
            # stopListening returns None once the port is already stopped.
            await maybeDeferred(self.port.stopListening)
            await self._factory.close_all()

        return Deferred.fromCoroutine(stop())


class ConnectionTracker(WrappingFactory):
    """
    Wraps a server factory: :meth:`close_all` aborts every connection and
    fires once they are all gone.

    :param wrapped: The server factory.

    :ivar connections: How many connections were made to the server.
    """

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self._waiting: list[Deferred[None]] = []
        self.connections = 0

    def registerProtocol(self, p: Any) -> None:
        super().registerProtocol(p)  # type: ignore[no-untyped-call]
        self.connections += 1

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)

    def close_all(self) -> Deferred[None]:
        """
        Abort every connection.

        :returns: A Deferred firing once they are all closed.
        """
        if not self.protocols:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        for protocol in list(self.protocols):
            if isinstance(protocol, ProtocolWrapper) and protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
        return waiter
