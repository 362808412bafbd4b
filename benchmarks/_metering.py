"""
What the client benchmark measures with: request counting by endpoint, the
CPU time of the http-01 responder, and the reactor stall probe.

Everything here is the benchmark's own instrumentation; nothing in txacme
or certbot's ``acme`` is changed to measure them.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.interfaces import IAddress, IReactorTime, ITransport
from twisted.internet.task import LoopingCall
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.server import Site

__all__ = [
    "ENDPOINTS",
    "SETUP_ENDPOINTS",
    "EndpointClassifier",
    "MeteredSiteFactory",
    "RequestLog",
    "StallProbe",
    "count_treq_requests",
    "pebble_log_requests",
]

#: The endpoints requests are counted by, in report order.  ``authz fetch``
#: is the first POST-as-GET of an authorization URL, ``authz poll`` any
#: later one; ``order poll`` is any POST-as-GET of an order URL.
ENDPOINTS = (
    "directory",
    "newNonce",
    "newAccount",
    "account",
    "newOrder",
    "authz fetch",
    "challenge",
    "authz poll",
    "finalize",
    "order poll",
    "certificate",
    "other",
)

#: The endpoints of the set-up a client does once (not per certificate).
SETUP_ENDPOINTS = ("directory", "newNonce", "newAccount", "account")

# Pebble 2.4's paths for the resources the directory does not name.
_PEBBLE_PREFIXES = (
    ("/authZ/", "authz"),
    ("/chalZ/", "challenge"),
    ("/finalize-order/", "finalize"),
    ("/my-order/", "order poll"),
    ("/certZ/", "certificate"),
    ("/my-account/", "account"),
)

_DIRECTORY_NAMES = ("newNonce", "newAccount", "newOrder")


class EndpointClassifier:
    """
    Names the ACME endpoint of a request from its method and URL path.

    It is stateful: it tells an authorization's first fetch from its polls
    by remembering the authorization paths it has seen.

    :param directory_url: The directory URL.
    :param directory: The directory's JSON object.
    """

    def __init__(self, directory_url: str, directory: Mapping[str, Any]) -> None:
        self._paths = {urlsplit(directory_url).path: "directory"}
        for name in _DIRECTORY_NAMES:
            url = directory.get(name)
            if isinstance(url, str):
                self._paths[urlsplit(url).path] = name
        self._seen_authorizations: set[str] = set()
        self._lock = threading.Lock()

    def classify(self, method: str, path: str) -> str:
        """
        The endpoint of ``method path`` (one of :data:`ENDPOINTS`).
        """
        path = urlsplit(path).path
        named = self._paths.get(path)
        if named is not None:
            return named
        for prefix, name in _PEBBLE_PREFIXES:
            if path.startswith(prefix):
                if name != "authz":
                    return name
                with self._lock:
                    if path in self._seen_authorizations:
                        return "authz poll"
                    self._seen_authorizations.add(path)
                return "authz fetch"
        return "other"


class RequestLog:
    """
    Thread-safe counts of requests by endpoint.
    """

    def __init__(self, classifier: EndpointClassifier | None = None) -> None:
        self.classifier = classifier
        self._pending: list[tuple[str, str]] = []
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, method: str, url: str) -> None:
        """
        Count one request (before the directory is known, keep it for
        :meth:`classify_pending`).
        """
        with self._lock:
            if self.classifier is None:
                self._pending.append((method, url))
            else:
                self._counts[self.classifier.classify(method, url)] += 1

    def set_classifier(self, classifier: EndpointClassifier) -> None:
        """
        Classify from now on with ``classifier``, and count the requests
        recorded before it was known.
        """
        with self._lock:
            self.classifier = classifier
            pending, self._pending = self._pending, []
            for method, url in pending:
                self._counts[classifier.classify(method, url)] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by endpoint."""
        with self._lock:
            return dict(self._counts)


def subtract(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """The counts of ``after`` minus ``before``, by endpoint, zeros dropped."""
    return {
        name: after.get(name, 0) - before.get(name, 0)
        for name in after
        if after.get(name, 0) - before.get(name, 0)
    }


def count_treq_requests(log: RequestLog) -> None:
    """
    Count every request any treq ``HTTPClient`` of this process makes in
    ``log`` (the transport ``Client.from_url`` builds is one).  This
    patches the class for the rest of the process: benchmark workers only.
    """
    from treq.client import HTTPClient

    original = HTTPClient.request

    def request(self: HTTPClient, method: str, url: Any, **kwargs: Any) -> Any:
        log.record(method, url if isinstance(url, str) else str(url))
        return original(self, method, url, **kwargs)

    HTTPClient.request = request  # type: ignore[method-assign]


# Pebble logs every ACME request as "Pebble <date> <time> METHOD /route/ ->
# calling handler()".
_PEBBLE_REQUEST = re.compile(
    r"^Pebble \S+ \S+ (?P<method>[A-Z]+) (?P<path>\S+) -> calling handler\(\)"
)


def pebble_log_requests(lines: Iterable[str]) -> list[tuple[str, str]]:
    """
    The ``(method, path)`` of every ACME request in Pebble's log lines.
    """
    found: list[tuple[str, str]] = []
    for line in lines:
        match = _PEBBLE_REQUEST.match(line)
        if match is not None:
            found.append((match.group("method"), match.group("path")))
    return found


class _MeteredProtocol(ProtocolWrapper):
    """
    Adds the CPU time of the calling thread spent in the wrapped protocol's
    callbacks to its factory's total.
    """

    factory: MeteredSiteFactory

    def makeConnection(self, transport: ITransport) -> None:
        started = time.thread_time()
        try:
            super().makeConnection(transport)  # type: ignore[no-untyped-call]
        finally:
            self.factory.cpu += time.thread_time() - started

    def dataReceived(self, data: bytes) -> None:
        started = time.thread_time()
        try:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
        finally:
            self.factory.cpu += time.thread_time() - started

    def connectionLost(self, reason: Any = None) -> None:
        started = time.thread_time()
        try:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
        finally:
            self.factory.cpu += time.thread_time() - started


class MeteredSiteFactory(WrappingFactory):
    """
    A ``twisted.web`` site factory that sums the CPU time its connections
    take (:attr:`cpu`, seconds): accepting, parsing, rendering and writing
    into the transport's buffer.  The reactor's own socket work (accept,
    flushing buffers) is not counted.

    It can also abort every open connection (:meth:`close_connections`);
    Pebble's validator may leave connections open.

    :ivar cpu: Seconds of CPU time spent in the site's protocols.
    :ivar requests: How many connections it handled.
    """

    protocol = _MeteredProtocol

    def __init__(self, site: Site) -> None:
        super().__init__(site)  # type: ignore[no-untyped-call]
        self.cpu = 0.0
        self.connections = 0

    def buildProtocol(self, addr: IAddress | None) -> ProtocolWrapper:
        self.connections += 1
        protocol: ProtocolWrapper = super().buildProtocol(addr)
        return protocol

    def close_connections(self) -> None:
        """Abort every open connection."""
        for protocol in list(self.protocols):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abortConnection()


class StallProbe:
    """
    Measures how late the reactor runs a call scheduled every
    :attr:`interval` seconds: the largest stall is the longest gap between
    two consecutive calls, minus the interval.

    :param reactor: The reactor to probe.
    :param interval: Seconds between calls (10 ms).
    """

    def __init__(self, reactor: IReactorTime, interval: float = 0.01) -> None:
        self.interval = interval
        self._call = LoopingCall(self._tick)
        self._call.clock = reactor
        self._last = 0.0
        self.lateness: list[float] = []

    def start(self) -> None:
        """Start probing."""
        self._last = time.perf_counter()
        self._call.start(self.interval, now=False)

    def stop(self) -> None:
        """Stop probing."""
        if self._call.running:
            self._call.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness.append(max(0.0, now - self._last - self.interval))
        self._last = now

    @property
    def largest(self) -> float:
        """The largest stall seen, in seconds."""
        return max(self.lateness, default=0.0)

    def percentile(self, fraction: float) -> float:
        """The stall that ``fraction`` of the calls were no later than."""
        if not self.lateness:
            return 0.0
        ordered = sorted(self.lateness)
        index = min(len(ordered) - 1, int(fraction * len(ordered)))
        return ordered[index]
