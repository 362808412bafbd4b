r"""
``twist web --listen acme:...`` against Pebble, as an operator runs it.

Each test runs ``python -m twisted web --listen 'acme:<store>:tcp:<port>:...'
--path <site>`` as a child process, its TLS port on Pebble's ``tlsPort`` so
that Pebble's tls-alpn-01 validation goes through the twistd process itself
(or its http-01 listener on Pebble's ``httpPort``), with ``ca=`` trusting the
harness CA of Pebble's HTTPS.  The tests watch what an operator would: the
store's files, TLS clients that trust only Pebble's root, and the log.
Every wait is bounded; the child is stopped by its PID.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from tests.integration.pebble import (
    LOOPBACK,
    PebbleOptions,
    PebbleTestCase,
    stop_process,
)

ROOT = Path(__file__).resolve().parent.parent.parent
SRC = ROOT / "src"
SITE_BODY = b"hello from twistd over ACME\n"
#: Seconds allowed for a first issuance, a restart, a renewal.
ISSUE_TIMEOUT = 90.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def escape(text: str) -> str:
    """``text`` as a value in an endpoint description."""
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def leaf_of(path: Path) -> x509.Certificate | None:
    """The first certificate of a store file, or ``None`` if it has none."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    if b"-----BEGIN CERTIFICATE-----" not in content:
        return None
    return x509.load_pem_x509_certificates(content)[0]


def tls_get(
    port: int, server_name: str, root_pem: bytes
) -> tuple[x509.Certificate, bytes]:
    """
    Connect to 127.0.0.1:``port`` asking for ``server_name``, trusting only
    ``root_pem`` and checking the name (blocking, bounded by socket
    timeouts); GET ``/``.

    :returns: The server's certificate and the response's body.
    :raises ssl.SSLError: If the certificate does not verify.
    """
    context = ssl.create_default_context(cadata=root_pem.decode("ascii"))
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        request = f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close"
        tls.sendall(request.encode() + b"\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"GET / answered {head[:200]!r}")
    return x509.load_der_x509_certificate(der), body


def refused(port: int) -> bool:
    """Whether a TCP connection to 127.0.0.1:``port`` is refused."""
    try:
        socket.create_connection((LOOPBACK, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


class Twistd:
    """
    One ``python -m twisted web`` child process, its output in a log file.
    """

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(SRC), *filter(None, [environment.get("PYTHONPATH")])]
        )
        self._log.write(f"$ {' '.join(command)}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=log_path.parent,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """
        Stop it by its PID: SIGTERM (a clean twistd shutdown), then SIGKILL
        after :data:`STOP_TIMEOUT` seconds.  Idempotent.

        :returns: Its exit status.
        """
        stop_process(self.process, STOP_TIMEOUT)
        self._log.close()
        return self.process.returncode


class TwistdTests(PebbleTestCase):
    """
    ``twist web --listen acme:...`` issues, serves, restarts and renews
    against Pebble.  Authorizations are never reused, so every issuance is
    validated through the twistd process.
    """

    pebble_options = PebbleOptions(authz_reuse=0)
    timeout = 400

    def setUp(self) -> None:
        super().setUp()
        self.workdir = Path(tempfile.mkdtemp(prefix="txacme-twistd-"))
        self.store = self.workdir / "certs"
        self.site = self.workdir / "site"
        self.site.mkdir()
        (self.site / "index.html").write_bytes(SITE_BODY)
        self.ca_path = self.workdir / "pebble-https-ca.pem"
        self.ca_path.write_bytes(self.pebble.ca_pem)
        self.runs: list[Twistd] = []
        self.addCleanup(self.stop_all)

    def stop_all(self) -> None:
        for run in self.runs:
            run.stop()
        if not os.environ.get("TXACME_KEEP_PEBBLE_LOGS"):
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_cleanly(self, run: Twistd) -> None:
        """
        Stop ``run`` with SIGTERM; it must shut down cleanly (``twist``
        exits by the signal once its reactor has stopped).
        """
        self.assertIn(run.stop(), (0, -signal.SIGTERM), run.log())
        self.assertIn("Main loop terminated.", run.log())
        self.assertNotIn("Traceback", run.log())

    def description(self, **options: str) -> str:
        """
        The ``acme:`` description of the store on Pebble's tls-alpn-01
        port, with more ``options`` (values unescaped).
        """
        parts = [
            "acme",
            escape(str(self.store)),
            "tcp",
            str(self.pebble.tls_port),
            f"interface={LOOPBACK}",
            f"directory={escape(self.pebble.directory_url)}",
            f"ca={escape(str(self.ca_path))}",
            "email=admin@example.test",
        ]
        parts.extend(f"{name}={escape(value)}" for name, value in options.items())
        return ":".join(parts)

    def start(self, description: str) -> Twistd:
        run = Twistd(
            [
                sys.executable,
                "-m",
                "twisted",
                "--log-format=text",
                "web",
                "--listen",
                description,
                "--path",
                str(self.site),
            ],
            self.workdir / f"twistd-{len(self.runs) + 1}.log",
        )
        self.runs.append(run)
        return run

    def root_pem(self) -> bytes:
        context = ssl.create_default_context(cadata=self.pebble.ca_pem.decode("ascii"))
        with urllib.request.urlopen(
            self.pebble.management_url + "/roots/0", context=context, timeout=10
        ) as response:
            root: bytes = response.read()
        return root

    async def wait_for(
        self, what: str, condition: Callable[[], object], run: Twistd, timeout: float
    ) -> Any:
        """
        Poll ``condition`` until it returns something true, at most
        ``timeout`` seconds; fail with the twistd log if it does not, or if
        twistd exits meanwhile.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if run.process.poll() is not None:
                self.fail(
                    f"twistd exited ({run.process.returncode}) while waiting "
                    f"for {what}\n{run.log()}\n{self.pebble.logs()}"
                )
            if time.monotonic() > deadline:
                self.fail(
                    f"no {what} after {timeout} s\n{run.log()}\n{self.pebble.logs()}"
                )
            await deferLater(self.reactor, 0.25, lambda: None)

    def pebble_orders(self) -> int:
        """How many orders Pebble has received (from its log)."""
        log = (self.pebble.workdir / "pebble.log").read_text(errors="replace")
        return log.count("Added order")

    async def served(self, name: str, root_pem: bytes) -> x509.Certificate:
        """The certificate served for ``name``, verified by a TLS client."""
        certificate, body = await deferToThread(
            tls_get, self.pebble.tls_port, name, root_pem
        )
        self.assertEqual(body, SITE_BODY)
        return certificate

    def test_issue_serve_restart_renew(self) -> Deferred[None]:
        """
        ``twist web --listen acme:...:domains=a,www.a`` with an empty
        ``c.example.test.pem`` in the store (txacme 0.9's request for a
        certificate): the port comes up, both entries are issued through
        tls-alpn-01 on the twistd port itself, and a TLS client trusting
        only Pebble's root gets the site by each of the three names.  A
        restart serves the same certificates and orders none.  A restart
        with a ``reissue=`` that makes them due renews them, and the new
        certificates are served.
        """

        async def run() -> None:
            names = ["a.example.test", "www.a.example.test"]
            self.store.mkdir(mode=0o700)
            (self.store / "c.example.test.pem").write_bytes(b"")
            description = self.description(domains=",".join(names))
            root_pem = self.root_pem()

            first = self.start(description)
            await self.wait_for(
                "certificates in the store",
                lambda: (
                    leaf_of(self.store / "a.example.test.pem")
                    and leaf_of(self.store / "c.example.test.pem")
                ),
                first,
                ISSUE_TIMEOUT,
            )
            leaf_a = leaf_of(self.store / "a.example.test.pem")
            leaf_c = leaf_of(self.store / "c.example.test.pem")
            assert leaf_a is not None and leaf_c is not None
            self.assertEqual(
                sorted(
                    leaf_a.extensions.get_extension_for_class(
                        x509.SubjectAlternativeName
                    ).value.get_values_for_type(x509.DNSName)
                ),
                sorted(names),
            )
            self.assertTrue((self.store / "client.key").exists())
            await self.wait_for(
                "stored certificates served",
                lambda: (
                    "Stored a new certificate for c.example.test" in first.log()
                    and "Stored a new certificate for a.example.test" in first.log()
                ),
                first,
                START_TIMEOUT,
            )
            for name in names:
                self.assertEqual(await self.served(name, root_pem), leaf_a)
            self.assertEqual(await self.served("c.example.test", root_pem), leaf_c)
            self.stop_cleanly(first)
            # Nothing listens on Pebble's http-01 port: the validations
            # went through tls-alpn-01 on the twistd port.
            self.assertTrue(refused(self.pebble.http_port))

            orders = self.pebble_orders()
            second = self.start(description)
            await self.wait_for(
                "the restarted service's first check",
                lambda: (
                    re.search(
                        r"Checked 2 certificate entries: 0 to issue now", second.log()
                    )
                    and "renewing by reissue_interval" in second.log()
                ),
                second,
                START_TIMEOUT,
            )
            await deferLater(self.reactor, 1.0, lambda: None)
            for name in [*names, "c.example.test"]:
                expected = leaf_c if name.startswith("c.") else leaf_a
                self.assertEqual(await self.served(name, root_pem), expected)
            self.assertNotIn("Issuing a certificate", second.log())
            self.assertEqual(self.pebble_orders(), orders)
            self.assertEqual(leaf_of(self.store / "a.example.test.pem"), leaf_a)
            self.stop_cleanly(second)

            # Due a few seconds after the third start: reissue_interval is
            # a little less than what remains of the certificate.
            remaining = (leaf_a.not_valid_after_utc - datetime.now(UTC)).total_seconds()
            reissue = int(remaining) - 5
            third = self.start(
                self.description(domains=",".join(names), reissue=f"{reissue}s")
            )
            await self.wait_for(
                "renewed certificates",
                lambda: (
                    leaf_of(self.store / "a.example.test.pem") not in (None, leaf_a)
                    and leaf_of(self.store / "c.example.test.pem") not in (None, leaf_c)
                ),
                third,
                ISSUE_TIMEOUT,
            )
            await self.wait_for(
                "the renewal logged",
                lambda: "renewal due" in third.log(),
                third,
                START_TIMEOUT,
            )
            renewed = {
                name: await self.served(name, root_pem)
                for name in [*names, "c.example.test"]
            }
            for name, certificate in renewed.items():
                self.assertNotIn(certificate, (leaf_a, leaf_c), name)
                self.assertIn(
                    name,
                    certificate.extensions.get_extension_for_class(
                        x509.SubjectAlternativeName
                    ).value.get_values_for_type(x509.DNSName),
                )
            self.stop_cleanly(third)

        return self.run_with_logs(run())

    def test_http01(self) -> Deferred[None]:
        """
        With ``challenge=http-01:http01=tcp\\:<port>``, twistd answers
        http-01 on that listener (Pebble's ``httpPort``) for an entry asked
        for with an empty file, serves the certificate on its TLS port, and
        closes the http-01 listener when it stops.
        """

        async def run() -> None:
            name = "h.example.test"
            self.store.mkdir(mode=0o700)
            (self.store / f"{name}.pem").write_bytes(b"")
            root_pem = self.root_pem()
            twistd = self.start(
                self.description(
                    challenge="http-01",
                    http01=f"tcp:{self.pebble.http_port}:interface={LOOPBACK}",
                )
            )
            await self.wait_for(
                "the stored certificate",
                lambda: f"Stored a new certificate for {name}" in twistd.log(),
                twistd,
                ISSUE_TIMEOUT,
            )
            leaf = leaf_of(self.store / f"{name}.pem")
            assert leaf is not None
            self.assertEqual(await self.served(name, root_pem), leaf)
            self.stop_cleanly(twistd)
            self.assertTrue(refused(self.pebble.http_port))

        return self.run_with_logs(run())
