"""
A test harness that runs BIND 9 (``named``) for the dns-01 integration
tests.

:class:`BindServer` starts ``named -g`` as a child process, in a temporary
working directory, on a free loopback port (UDP and TCP), with:

* a TSIG key (``hmac-sha256``, a fresh random secret) that may update TXT
  records;
* zone ``example.test``, whose update-policy lets the key change TXT
  records anywhere in the zone except under ``locked.example.test``
  (an update there is REFUSED), and holding
  ``_acme-challenge.alias.example.test CNAME alias.delegated.test.``;
* zone ``delegated.test``, the CNAME's target zone, where the key may
  change TXT records;
* recursion for loopback clients only, so that BIND follows that CNAME
  into ``delegated.test`` when Pebble asks for the TXT record, as a CA's
  resolver does (without recursion, BIND answers the CNAME alone).

Both zones name ``ns1.<zone>`` (127.0.0.1) as their only nameserver; as it
listens on a port other than 53, the responder is told where with
:meth:`BindServer.nameserver_addresses`.

Why BIND and not Knot DNS: Debian's ``bind9`` is the reference
implementation of RFC 2136 and RFC 8945 and its ``update-policy`` is what
most users' documentation shows; and one ``named`` is both authoritative
and (for loopback) recursive, which the CNAME case needs, where Knot DNS
would need a separate resolver (Knot Resolver) for Pebble.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TXT
from attrs import define
from twisted.trial.unittest import FailTest, SkipTest

from txacme.testing.pebble import stop_process

__all__ = [
    "BindServer",
    "BindStartError",
    "bind_for",
    "bind_unavailable_reason",
    "require_bind",
]

NAMED = "named"
LOOPBACK = "127.0.0.1"
KEY_NAME = "txacme-test"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_LOG_TAIL = 4000

_ZONE_TEMPLATE = """\
$TTL 60
@ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 60
@ IN NS ns1.{origin}.
ns1 IN A 127.0.0.1
{records}
"""

_EXAMPLE_RECORDS = """\
@ IN A 127.0.0.1
_acme-challenge.alias IN CNAME alias.delegated.test.
"""

_CONFIG_TEMPLATE = """\
key "{key_name}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};

options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    managed-keys-directory "{workdir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-recursion {{ 127.0.0.1; }};
    allow-query {{ 127.0.0.1; }};
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
}};

// No rndc control channel: it would take port 953, shared by every
// instance.
controls {{ }};

zone "example.test" {{
    type primary;
    file "{workdir}/example.test.db";
    update-policy {{
        deny {key_name}. subdomain locked.example.test. ANY;
        grant {key_name}. zonesub TXT;
    }};
}};

zone "delegated.test" {{
    type primary;
    file "{workdir}/delegated.test.db";
    update-policy {{
        grant {key_name}. zonesub TXT;
    }};
}};
"""


class BindStartError(Exception):
    """
    ``named`` did not start or did not answer in time; the message has the
    end of its log.
    """


def bind_unavailable_reason() -> str | None:
    """
    Why BIND cannot be run here, or ``None`` if it can.
    """
    if shutil.which(NAMED) is None and not Path("/usr/sbin/named").exists():
        return "named not found (Debian: apt-get install bind9; or bash .ci/setup)"
    return None


def require_bind() -> None:
    """
    Skip the calling test without BIND, or fail it when the ``CI``
    environment variable is set.
    """
    reason = bind_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise FailTest(f"CI is set and BIND cannot run: {reason}")
    raise SkipTest(reason)


def _named() -> str:
    return shutil.which(NAMED) or "/usr/sbin/named"


def free_port() -> int:
    """
    A loopback port free for both TCP and UDP (BIND takes both).
    """
    for _ in range(100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise BindStartError("no loopback port free for TCP and UDP")


@define
class BindServer:
    """
    A running ``named``; see the module docstring.

    :ivar port: Its loopback port (UDP and TCP).
    :ivar workdir: Its configuration, zone files, journals and log
        (``named.log``).
    :ivar key_name: The TSIG key's name.
    :ivar secret: The TSIG key's secret, base64.
    """

    port: int
    workdir: Path
    key_name: str
    secret: str
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _remove_workdir: bool = True

    @classmethod
    def start(
        cls, port: int | None = None, timeout: float = START_TIMEOUT
    ) -> BindServer:
        """
        Start ``named`` and wait (blocking, at most ``timeout`` seconds)
        until it answers for both zones over UDP and TCP.

        :param port: The port; by default a free one.
        :raises BindStartError: If it did not start.
        """
        reason = bind_unavailable_reason()
        if reason is not None:
            raise BindStartError(reason)
        workdir = Path(tempfile.mkdtemp(prefix="txacme-bind-"))
        server = cls(
            port=port if port is not None else free_port(),
            workdir=workdir,
            key_name=KEY_NAME,
            secret=base64.b64encode(os.urandom(32)).decode("ascii"),
            remove_workdir=not os.environ.get("TXACME_KEEP_PEBBLE_LOGS"),
        )
        try:
            server._spawn()
            server._wait_until_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _spawn(self) -> None:
        (self.workdir / "example.test.db").write_text(
            _ZONE_TEMPLATE.format(origin="example.test", records=_EXAMPLE_RECORDS)
        )
        (self.workdir / "delegated.test.db").write_text(
            _ZONE_TEMPLATE.format(origin="delegated.test", records="")
        )
        config = self.workdir / "named.conf"
        config.write_text(
            _CONFIG_TEMPLATE.format(
                key_name=self.key_name,
                secret=self.secret,
                workdir=self.workdir,
                port=self.port,
            )
        )
        config.chmod(0o600)
        # -g: foreground, log to stderr; -4: IPv4 only.  No -u: as root
        # (CI) named keeps running as root, which can write the journals
        # in the working directory; as another user it runs as that user.
        command = [_named(), "-g", "-4", "-c", str(config)]
        self._log = (self.workdir / "named.log").open("ab")
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
                raise BindStartError(
                    f"named exited with status {status} while starting\n{self.logs()}"
                )
            try:
                for zone in ("example.test", "delegated.test"):
                    for tcp in (False, True):
                        answer = self.query(zone, "SOA", tcp=tcp, timeout=0.5)
                        if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
                            raise ValueError(
                                f"{zone} SOA: {dns.rcode.to_text(answer.rcode())}"
                            )
            except (OSError, ValueError, dns.exception.DNSException) as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                return
            if time.monotonic() > deadline:
                raise BindStartError(
                    f"named not ready after {timeout} s ({last_error})\n{self.logs()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """
        Stop ``named`` (by PID: SIGTERM, then SIGKILL after ``timeout``
        seconds) and remove its directory.  Idempotent.
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
        """Whether ``named`` is running."""
        return self._process is not None and self._process.poll() is None

    @property
    def address(self) -> tuple[str, int]:
        """``(127.0.0.1, port)``."""
        return (LOOPBACK, self.port)

    def nameserver_addresses(self) -> dict[str, Sequence[tuple[str, int]]]:
        """
        Where the zones' nameservers really listen, for
        ``RFC2136Responder(nameserver_addresses=...)``.
        """
        return {
            "ns1.example.test": [self.address],
            "ns1.delegated.test": [self.address],
        }

    def logs(self) -> str:
        """
        The end of ``named``'s log, for failure messages.
        """
        path = self.workdir / "named.log"
        try:
            text = path.read_bytes()[-_LOG_TAIL:].decode("utf-8", "replace")
        except OSError as error:
            text = f"({error})"
        return f"--- named.log ({path}) ---\n{text}"

    def query(
        self,
        name: str,
        rdtype: str,
        *,
        tcp: bool = False,
        recursion: bool = False,
        timeout: float = 2.0,
    ) -> dns.message.Message:
        """
        Ask ``named`` (a blocking query, for checks).
        """
        request = dns.message.make_query(name, rdtype)
        if not recursion:
            request.flags &= ~dns.flags.RD
        if tcp:
            return dns.query.tcp(request, LOOPBACK, timeout=timeout, port=self.port)
        return dns.query.udp(request, LOOPBACK, timeout=timeout, port=self.port)

    def txt(self, name: str, *, recursion: bool = False) -> set[str]:
        """
        The TXT values ``named`` answers for ``name`` (following a CNAME
        with ``recursion``, as a CA's resolver does).
        """
        answer = self.query(name, "TXT", recursion=recursion)
        return {
            b"".join(rdata.strings).decode()
            for rrset in answer.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rdata in rrset
            if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
        }


_servers: dict[type, BindServer] = {}
_ports: dict[type, int] = {}


def _stop_all() -> None:
    while _servers:
        _servers.popitem()[1].stop()


atexit.register(_stop_all)


def bind_for(owner: type) -> BindServer:
    """
    The BIND of test class ``owner``: started for its first test (others'
    are stopped), always on the same port, so that the Pebble started with
    it keeps finding it.  A ``named`` that died is restarted after the
    failing test shows its log.

    :raises FailTest: If it died (with its log).
    """
    require_bind()
    server = _servers.get(owner)
    if server is not None and not server.running:
        logs = server.logs()
        _servers.pop(owner).stop()
        raise FailTest(f"named of {owner.__name__} died\n{logs}")
    if server is None:
        for other in [other for other in _servers if other is not owner]:
            _servers.pop(other).stop()
        port = _ports.setdefault(owner, free_port())
        server = _servers[owner] = BindServer.start(port)
    return server
