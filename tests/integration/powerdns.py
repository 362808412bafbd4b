"""
A test harness that runs the PowerDNS Authoritative Server
(``pdns_server``) for the libcloud integration tests.

:class:`PowerDNSServer` starts ``pdns_server`` as a child process, in a
temporary directory, with:

* the ``gsqlite3`` backend on a database made there from the schema that
  Debian's ``pdns-backend-sqlite3`` ships;
* its DNS service on a free loopback port (UDP and TCP), and its HTTP API
  (the one libcloud's PowerDNS driver uses) on another, with a random
  API key, open to loopback clients only;
* zone ``example.test`` (made with ``pdnsutil``), whose nameserver
  ``ns1.example.test`` and apex have the address 127.0.0.1;
* no caches, so that each answer shows the zone as it is at that moment.

Pebble's ``-dnsserver`` is pointed at the DNS port: Pebble then reads the
TXT records of dns-01 challenges from PowerDNS, as a CA reads them from a
zone's nameservers.

Without PowerDNS the tests are skipped, except when the ``CI`` environment
variable is set: there they fail (:func:`require_powerdns`).
"""

from __future__ import annotations

import atexit
import gzip
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TXT
from attrs import define
from twisted.trial.unittest import FailTest, SkipTest

from txacme.testing.pebble import free_ports, stop_process

__all__ = [
    "PowerDNSServer",
    "PowerDNSStartError",
    "powerdns_for",
    "powerdns_unavailable_reason",
    "require_powerdns",
]

PDNS_SERVER = "pdns_server"
PDNSUTIL = "pdnsutil"
LOOPBACK = "127.0.0.1"
ZONE = "example.test"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_LOG_TAIL = 4000

#: Where Debian's pdns-backend-sqlite3 puts the schema (compressed or not).
_SCHEMAS = (
    Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"),
    Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql.gz"),
)

_CONFIG_TEMPLATE = """\
launch=gsqlite3
gsqlite3-database={workdir}/pdns.sqlite3
local-address={loopback}
local-port={dns_port}
api=yes
api-key={api_key}
webserver=yes
webserver-address={loopback}
webserver-port={api_port}
webserver-allow-from=127.0.0.0/8
socket-dir={workdir}
guardian=no
daemon=no
disable-syslog=yes
write-pid=no
cache-ttl=0
negquery-cache-ttl=0
query-cache-ttl=0
zone-cache-refresh-interval=0
"""


class PowerDNSStartError(Exception):
    """
    ``pdns_server`` did not start or did not answer in time; the message
    has the end of its log.
    """


def _program(name: str) -> str | None:
    return shutil.which(name) or next(
        (
            str(path)
            for path in (Path("/usr/sbin") / name, Path("/usr/bin") / name)
            if path.exists()
        ),
        None,
    )


def _schema() -> str | None:
    for path in _SCHEMAS:
        if path.exists():
            if path.suffix == ".gz":
                return gzip.decompress(path.read_bytes()).decode("utf-8")
            return path.read_text()
    return None


def powerdns_unavailable_reason() -> str | None:
    """
    Why PowerDNS cannot be run here, or ``None`` if it can.
    """
    missing = [name for name in (PDNS_SERVER, PDNSUTIL) if _program(name) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not found (Debian: apt-get install "
            "pdns-server pdns-backend-sqlite3; or bash .ci/setup)"
        )
    if _schema() is None:
        return (
            "the gsqlite3 schema is missing (Debian: apt-get install "
            "pdns-backend-sqlite3; or bash .ci/setup)"
        )
    return None


def require_powerdns() -> None:
    """
    Skip the calling test without PowerDNS, or fail it when the ``CI``
    environment variable is set.
    """
    reason = powerdns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise FailTest(f"CI is set and PowerDNS cannot run: {reason}")
    raise SkipTest(reason)


@define
class PowerDNSServer:
    """
    A running ``pdns_server``; see the module docstring.

    :ivar dns_port: Its loopback DNS port (UDP and TCP).
    :ivar api_port: Its loopback HTTP API port.
    :ivar api_key: The API key (``X-API-Key``).
    :ivar workdir: Its configuration, database and log (``pdns.log``).
    """

    dns_port: int
    api_port: int
    api_key: str
    workdir: Path
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _remove_workdir: bool = True

    @classmethod
    def start(
        cls,
        dns_port: int | None = None,
        api_port: int | None = None,
        timeout: float = START_TIMEOUT,
    ) -> PowerDNSServer:
        """
        Make the database and the zone, start ``pdns_server`` and wait
        (blocking, at most ``timeout`` seconds) until its DNS service (UDP
        and TCP) and its API answer.

        :param dns_port: The DNS port; by default a free one.
        :param api_port: The API port; by default a free one.
        :raises PowerDNSStartError: If it did not start.
        """
        reason = powerdns_unavailable_reason()
        if reason is not None:
            raise PowerDNSStartError(reason)
        if dns_port is None or api_port is None:
            free = iter(free_ports(2))
            dns_port = dns_port if dns_port is not None else next(free)
            api_port = api_port if api_port is not None else next(free)
        server = cls(
            dns_port=dns_port,
            api_port=api_port,
            api_key=secrets.token_urlsafe(24),
            workdir=Path(tempfile.mkdtemp(prefix="txacme-powerdns-")),
            remove_workdir=not os.environ.get("TXACME_KEEP_PEBBLE_LOGS"),
        )
        try:
            server._prepare()
            server._spawn()
            server._wait_until_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _prepare(self) -> None:
        schema = _schema()
        assert schema is not None
        with sqlite3.connect(self.workdir / "pdns.sqlite3") as database:
            database.executescript(schema)
        database.close()
        config = self.workdir / "pdns.conf"
        config.write_text(
            _CONFIG_TEMPLATE.format(
                workdir=self.workdir,
                loopback=LOOPBACK,
                dns_port=self.dns_port,
                api_port=self.api_port,
                api_key=self.api_key,
            )
        )
        config.chmod(0o600)
        self._log = (self.workdir / "pdns.log").open("ab")
        self._pdnsutil("create-zone", ZONE, f"ns1.{ZONE}")
        self._pdnsutil("add-record", ZONE, "ns1", "A", "60", LOOPBACK)
        self._pdnsutil("add-record", ZONE, "@", "A", "60", LOOPBACK)

    def _pdnsutil(self, *arguments: str) -> None:
        program = _program(PDNSUTIL)
        assert program is not None and self._log is not None
        command = [program, f"--config-dir={self.workdir}", *arguments]
        self._log.write(f"$ {' '.join(command)}\n".encode())
        self._log.flush()
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            timeout=START_TIMEOUT,
            check=False,
        )
        if completed.returncode != 0:
            raise PowerDNSStartError(
                f"pdnsutil {' '.join(arguments)} exited with status "
                f"{completed.returncode}\n{self.logs()}"
            )

    def _spawn(self) -> None:
        program = _program(PDNS_SERVER)
        assert program is not None and self._log is not None
        command = [program, f"--config-dir={self.workdir}"]
        self._log.write(f"$ {' '.join(command)}\n".encode())
        self._log.flush()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            assert self._process is not None
            status = self._process.poll()
            if status is not None:
                raise PowerDNSStartError(
                    f"pdns_server exited with status {status} while starting\n"
                    f"{self.logs()}"
                )
            try:
                for tcp in (False, True):
                    answer = self.query(ZONE, "SOA", tcp=tcp, timeout=0.5)
                    if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
                        raise ValueError(
                            f"{ZONE} SOA: {dns.rcode.to_text(answer.rcode())}"
                        )
                self.api("GET", f"/zones/{ZONE}.", timeout=0.5)
            except (OSError, ValueError, dns.exception.DNSException) as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                return
            if time.monotonic() > deadline:
                raise PowerDNSStartError(
                    f"pdns_server not ready after {timeout} s ({last_error})\n"
                    f"{self.logs()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """
        Stop ``pdns_server`` (by PID: SIGTERM, then SIGKILL after
        ``timeout`` seconds) and remove its directory.  Idempotent.
        """
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout)
        log, self._log = self._log, None
        if log is not None:
            log.close()
        if self._remove_workdir:
            self._remove_workdir = False
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        """Whether ``pdns_server`` is running."""
        return self._process is not None and self._process.poll() is None

    @property
    def dns_address(self) -> tuple[str, int]:
        """``(127.0.0.1, dns_port)``."""
        return (LOOPBACK, self.dns_port)

    def logs(self) -> str:
        """
        The end of ``pdns_server``'s log, for failure messages.
        """
        path = self.workdir / "pdns.log"
        try:
            text = path.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace")
        except OSError as error:
            text = f"({error})"
        return f"--- pdns.log ({path}) ---\n{text}"

    def api(self, method: str, path: str, *, timeout: float = 5.0) -> Any:
        """
        Call the HTTP API (a blocking request, for checks): ``path`` below
        ``/api/v1/servers/localhost``.

        :returns: The decoded JSON answer.
        :raises OSError: If the request failed (``urllib.error.HTTPError``
            for an error status).
        """
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{self.api_port}/api/v1/servers/localhost{path}",
            method=method,
            headers={"X-API-Key": self.api_key},
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read() or b"null")

    def rrsets(self, rdtype: str) -> dict[str, list[str]]:
        """
        The record sets of type ``rdtype`` in zone ``example.test``, by
        name, as the API lists them.
        """
        zone = self.api("GET", f"/zones/{ZONE}.")
        return {
            rrset["name"]: sorted(record["content"] for record in rrset["records"])
            for rrset in zone["rrsets"]
            if rrset["type"] == rdtype
        }

    def query(
        self, name: str, rdtype: str, *, tcp: bool = False, timeout: float = 2.0
    ) -> dns.message.Message:
        """
        Ask ``pdns_server`` (a blocking query, for checks).
        """
        request = dns.message.make_query(name, rdtype)
        request.flags &= ~dns.flags.RD
        if tcp:
            return dns.query.tcp(request, LOOPBACK, timeout=timeout, port=self.dns_port)
        return dns.query.udp(request, LOOPBACK, timeout=timeout, port=self.dns_port)

    def txt(self, name: str) -> set[str]:
        """
        The TXT values ``pdns_server`` answers for ``name``.
        """
        answer = self.query(name, "TXT")
        return {
            b"".join(rdata.strings).decode()
            for rrset in answer.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rdata in rrset
            if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
        }


_servers: dict[type, PowerDNSServer] = {}
_ports: dict[type, tuple[int, int]] = {}


def _stop_all() -> None:
    while _servers:
        _servers.popitem()[1].stop()


atexit.register(_stop_all)


def powerdns_for(owner: type) -> PowerDNSServer:
    """
    The PowerDNS of test class ``owner``: started for its first test
    (others' are stopped), always on the same ports, so that the Pebble
    started with it keeps finding it.  A ``pdns_server`` that died is
    restarted after the failing test shows its log.

    :raises FailTest: If it died (with its log).
    """
    require_powerdns()
    server = _servers.get(owner)
    if server is not None and not server.running:
        logs = server.logs()
        _servers.pop(owner).stop()
        raise FailTest(f"pdns_server of {owner.__name__} died\n{logs}")
    if server is None:
        for other in [other for other in _servers if other is not owner]:
            _servers.pop(other).stop()
        if owner not in _ports:
            dns_port, api_port = free_ports(2)
            _ports[owner] = (dns_port, api_port)
        dns_port, api_port = _ports[owner]
        server = _servers[owner] = PowerDNSServer.start(dns_port, api_port)
    return server
