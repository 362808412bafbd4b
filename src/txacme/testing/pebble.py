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

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from attrs import define, field, frozen
from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.ssl import Certificate
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from txacme.testing._pebble_ca import TestCA
from txacme.testing._pebble_management import PebbleManagement, verify_chain
from txacme.testing._processes import (
    PebbleStartError,
    dns_answers,
    free_ports,
    http_answers,
    https_ok,
    log_tail,
    resolve_a,
    resolve_aaaa,
    stop_process,
)
from txacme.testing._sites import ConnectionTracker, ServedSite, http01_site_root

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
        ca = TestCA.generate()
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
            + log_tail(self.workdir / f"{name}.log")
            for name in ("pebble", "challtestsrv")
        )

    def _wait_until_ready(self, timeout: float) -> None:
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        checks: dict[str, Callable[[], None]] = {
            "ACME directory": lambda: https_ok(self.directory_url, context),
            "management API": lambda: https_ok(
                self.management_url + "/roots/0", context
            ),
            "challtestsrv management API": lambda: http_answers(self.challtestsrv_url),
            "DNS server": lambda: dns_answers(self.ports.dns),
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
