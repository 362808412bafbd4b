"""
Keep certificates issued and renewed with
:class:`txacme.service.AcmeIssuingService`, against txacme's in-memory ACME
server: no network, no CA, and three months that pass in a second.

The service keeps its entries in a :class:`txacme.store.DirectoryStore`
(one ``<name>.pem`` per entry: key, certificate and chain, what txsni and
Twisted's ``tls:`` endpoint read) beside the account key ``client.key``.
The in-memory server offers ACME Renewal Information, so each certificate
is renewed at a random moment of the window the server suggests, and the
new order names the certificate it replaces.  Time is a
:class:`~twisted.internet.task.Clock` moved by hand.

Run it with ``python docs/examples/service.py``.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import TypeVar

from cryptography import x509
from josepy.jwa import RS256
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txacme.client import Client, JWSClient
from txacme.service import AcmeIssuingService
from txacme.store import DirectoryStore, load_or_create_client_key
from txacme.testing import MemoryAcmeServer, NullResponder

#: The entries: one certificate for two names, and one for a single name.
ENTRIES = ["example.com,www.example.com", "example.org"]
START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
DAY = 86400.0

_T = TypeVar("_T")


def advance(clock: Clock, seconds: float) -> None:
    """
    Move ``clock`` forward by ``seconds``, running each timer at its own
    time (the service's checks, renewals and the client's polls).
    """
    end = clock.seconds() + seconds
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls()]
        next_time = min(due, default=end + 1)
        if next_time > end:
            clock.advance(end - clock.seconds())
            return
        clock.advance(max(0.0, next_time - clock.seconds()))


def run(clock: Clock, deferred: Deferred[_T]) -> _T:
    """Wait for ``deferred``, advancing ``clock`` from timer to timer."""
    outcome: list[_T | Failure] = []
    deferred.addBoth(outcome.append)
    while not outcome:
        due = [call.getTime() for call in clock.getDelayedCalls()]
        if not due:
            raise RuntimeError("stuck: nothing to wait for")
        advance(clock, max(0.0, min(due) - clock.seconds()))
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def leaf(path: Path) -> x509.Certificate:
    """The certificate of a store entry (the first in its file)."""
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def describe(path: Path) -> str:
    certificate = leaf(path)
    names = certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    until = certificate.not_valid_after_utc.date().isoformat()
    return f"{path.name}: {', '.join(names)}; valid until {until}"


def day(clock: Clock) -> int:
    return int((clock.seconds() - START) // DAY)


def main() -> None:
    clock = Clock()
    clock.advance(START)
    server = MemoryAcmeServer(clock=clock, offer_renewal_info=True)

    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        # The account key, kept as txacme 0.9 kept it: client.key, RSA 2048.
        account_key = load_or_create_client_key(directory)

        def client_creator() -> Deferred[Client]:
            # With a real CA: Client.from_url(reactor, url, key=account_key).
            jws_client = JWSClient(server.treq_client(), key=account_key, alg=RS256)
            return Client.from_url(
                clock,
                server.directory_url,
                key=account_key,
                alg=RS256,
                jws_client=jws_client,
            )

        service = AcmeIssuingService(
            cert_store=DirectoryStore(directory),
            client_creator=client_creator,
            clock=clock,
            # The in-memory server validates every challenge by default; a
            # real deployment passes a real responder (HTTP01Responder...).
            responders=[NullResponder("http-01")],
            email="admin@example.com",
            names=ENTRIES,
            random=Random(7),
        )
        service.startService()
        run(clock, service.when_certs_valid())
        print(f"ready after {round(clock.seconds() - START, 3):g} s")
        entries = sorted(directory.glob("*.pem"))
        for path in entries:
            print(describe(path))

        serials = {path.name: leaf(path).serial_number for path in entries}
        while day(clock) < 90:
            advance(clock, DAY / 4)
            for path in entries:
                serial = leaf(path).serial_number
                if serial != serials[path.name]:
                    serials[path.name] = serial
                    issued = server.certificate_by_serial(serial)
                    order = next(o for o in server.orders if o.url == issued.order_url)
                    print(
                        f"day {day(clock)}: renewed {path.name}"
                        + (" (replacing the old one)" if order.replaces else "")
                    )

        print("files: " + ", ".join(sorted(p.name for p in directory.iterdir())))
        run(clock, service.stopService())
        print("stopped")


if __name__ == "__main__":
    main()
