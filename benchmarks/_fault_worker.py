"""
One run of the fault benchmark, in a process of its own:
``python -m benchmarks._fault_worker CONFIG-JSON``.

:mod:`benchmarks.fault_bench` starts Pebble, then one such process per
run.  The worker puts a :class:`~txacme.testing.faultproxy.FaultProxy` on
its reactor in front of Pebble's ACME listener, with a seeded
``FaultPlan.mixed(rate)`` over the fault kinds (every endpoint, the
directory and newNonce included, from the first request on), makes one
txacme ``Client`` of the proxy's directory (``Client.from_url`` with its
own transport, trusting the proxy's CA; the default retry and polling
policies), registers it (the set-up) and issues ``n`` single-name
certificates, ``concurrency`` at once, each with ``issue_certificate``
validated over http-01 by Pebble.  A failed issuance is recorded and the
same client goes on with the next certificate.  Then the plan is removed
and the client issues one more certificate (is it still usable?).  The
worker prints one line ``RESULT <json>``: what succeeded and failed and
why, the proxy's fault counts and requests, and the orders Pebble
finalized whose certificate the client never received.

The proxy, the client and the http-01 responder share the reactor thread,
so the wall time includes the proxy's work: it is there to show what the
faults cost, not as a throughput figure.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.logger import ILogObserver
from zope.interface import implementer

from benchmarks._client_worker import site_resource, verify_chains
from benchmarks._metering import MeteredSiteFactory
from benchmarks._workers import print_result, react_for_result

__all__ = ["main"]

_LOOPBACK = "127.0.0.1"


def _name(config: dict[str, Any], index: int) -> str:
    return f"{config['name_prefix']}-{index}.example.test"


@implementer(ILogObserver)
class _RetryLog:
    """
    Counts the retries txacme's transport logs (``log_event`` is
    ``"txacme.retry"``) by reason, and the ``badNonce`` retries.
    """

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.bad_nonces = 0

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_event") == "txacme.retry":
            self.reasons[_reason_kind(str(event.get("reason", "")))] += 1
        elif str(event.get("log_format", "")).startswith("badNonce for"):
            self.bad_nonces += 1


def _reason_kind(reason: str) -> str:
    """
    A retry reason without its details: ``"no answer"``, ``"not the CA's
    answer"``, or the problem code and status (``"rateLimited (HTTP
    429)"``).
    """
    for prefix in ("no answer", "not the CA's answer"):
        if reason.startswith(prefix):
            return prefix
    return reason


#: The issuance (its index) the requests sent in this context belong to.
_ISSUANCE: ContextVar[int | None] = ContextVar("bench_issuance", default=None)

# The last requests of a failed issuance shown in its diagnosis.
_HISTORY_SHOWN = 12


class _History:
    """
    Each issuance's requests as the client saw them: method, endpoint and
    outcome (``"201"``, ``"503 html"``, ``"no answer"``, ``"200 slow"``),
    recorded around treq's ``HTTPClient.request`` in this process (a
    worker) for the issuance named by :data:`_ISSUANCE`.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.requests: dict[int, list[str]] = {}

    def install(self) -> None:
        """Record every treq request of this process from now on."""
        from treq.client import HTTPClient
        from twisted.python.failure import Failure

        from txacme.testing.faultproxy import classify_pebble_path

        original = HTTPClient.request
        history = self

        def request(self: HTTPClient, method: str, url: Any, **kwargs: Any) -> Any:
            index = _ISSUANCE.get()
            sent = original(self, method, url, **kwargs)
            if index is None:
                return sent
            started = history.clock.seconds()
            endpoint = classify_pebble_path(urlsplit(str(url)).path)
            entries = history.requests.setdefault(index, [])

            def answered(response: Any) -> Any:
                media = response.headers.getRawHeaders(b"content-type", [b""])[0]
                outcome = str(response.code)
                if media.startswith(b"text/html"):
                    outcome += " html"
                if history.clock.seconds() - started > 1.5:
                    outcome += " slow"
                entries.append(f"{method} {endpoint} {outcome}")
                return response

            def failed(failure: Failure) -> Failure:
                entries.append(f"{method} {endpoint} no answer")
                return failure

            sent.addCallbacks(answered, failed)
            return sent

        HTTPClient.request = request  # type: ignore[method-assign]


def _failure(
    error: BaseException, history: list[str], started: float, ended: float
) -> dict[str, Any]:
    """
    What defeated one issuance: the error, the request it names (method,
    endpoint, attempts) and the issuance's last requests as the client saw
    them.
    """
    from txacme.testing.faultproxy import classify_pebble_path

    url = getattr(error, "url", None)
    path = urlsplit(url).path if isinstance(url, str) else None
    return {
        "error": type(error).__name__,
        "message": str(error)[:500],
        "method": getattr(error, "method", None),
        "endpoint": classify_pebble_path(path) if path is not None else None,
        "attempts": getattr(error, "attempts", None),
        "last_requests": history[-_HISTORY_SHOWN:],
        "requests": len(history),
        "started": started,
        "ended": ended,
    }


def _indices(n: int) -> Iterator[int]:
    yield from range(n)


async def _run(reactor: Any, config: dict[str, Any]) -> dict[str, Any]:
    from acme import messages
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC
    from twisted.internet.defer import (
        CancelledError,
        Deferred,
        DeferredSemaphore,
        gatherResults,
    )
    from twisted.internet.defer import TimeoutError as DeferredTimeout
    from twisted.internet.ssl import Certificate
    from twisted.logger import globalLogPublisher
    from twisted.web.server import Site

    from txacme.challenges import HTTP01Responder
    from txacme.client import Client, issue_certificate
    from txacme.testing import FaultPlan
    from txacme.testing.faultproxy import FaultProxy
    from txacme.util import (
        csr_for_names,
        generate_private_key,
        generate_private_key_in_thread,
    )

    retries = _RetryLog()
    globalLogPublisher.addObserver(retries)
    history = _History(reactor)
    history.install()
    plan = (
        FaultPlan.mixed(
            config["rate"],
            config["kinds"],
            seed=config["seed"],
            delay=config["delay"],
            endpoints=config["endpoints"],
        )
        if config["rate"] > 0
        else None
    )
    proxy = FaultProxy(
        reactor=reactor,
        upstream=f"https://{_LOOPBACK}:{config['acme_port']}",
        upstream_trust=Certificate.loadPEM(config["ca_pem"].encode("ascii")),
        plan=plan,
    )
    proxy.start()
    responder = HTTP01Responder()
    site = MeteredSiteFactory(Site(site_resource(responder.resource)))  # type: ignore[no-untyped-call]
    port = reactor.listenTCP(config["http_port"], site, interface=_LOOPBACK)
    client: Any = None
    try:
        account_key = JWKEC(key=generate_private_key("p256"))
        setup_started = time.perf_counter()
        client = await Client.from_url(
            reactor,
            proxy.directory_url,
            key=account_key,
            alg=ES256,
            trust_root=proxy.trust_root(),
        )
        await client.register(
            messages.NewRegistration.from_data(terms_of_service_agreed=True)
        )
        setup_wall = time.perf_counter() - setup_started
        setup_requests = len(proxy.requests)
        setup_retries = sum(retries.reasons.values())
        setup_bad_nonces = retries.bad_nonces

        chains: dict[int, str] = {}
        # Each issuance's order, once its authorizations are valid.
        orders: dict[int, str] = {}
        failures: list[dict[str, Any]] = []
        durations: list[float] = []
        successes_started: list[float] = []
        hangs = 0
        indices = _indices(config["n"])
        keygen = DeferredSemaphore(config["keygen_threads"])
        issuance_timeout = config["issuance_timeout"]
        wall_started = time.perf_counter()

        async def issue(index: int) -> str:
            key = await keygen.run(generate_private_key_in_thread, reactor, "p256")
            csr = csr_for_names([_name(config, index)], key)
            _ISSUANCE.set(index)

            async def on_order(orderr: Any) -> None:
                # What an application's order journal would record.
                orders[index] = orderr.uri

            issuing = issue_certificate(
                client, reactor, csr, [responder], on_order=on_order
            )
            # The watchdog: an issuance still running after this long is
            # a hang, cancelled and counted.
            issuing.addTimeout(issuance_timeout, reactor)
            chain: str = await issuing
            return chain

        async def issue_some() -> None:
            nonlocal hangs
            for index in indices:
                started = time.perf_counter() - wall_started
                try:
                    chains[index] = await issue(index)
                except Exception as error:
                    ended = time.perf_counter() - wall_started
                    if isinstance(error, (CancelledError, DeferredTimeout)):
                        hangs += 1
                    failures.append(
                        {
                            "index": index,
                            "order": orders.get(index),
                            **_failure(
                                error, history.requests.get(index, []), started, ended
                            ),
                        }
                    )
                else:
                    ended = time.perf_counter() - wall_started
                    successes_started.append(started)
                durations.append(ended - started)

        await gatherResults(
            [Deferred.fromCoroutine(issue_some()) for _ in range(config["concurrency"])]
        )
        wall = time.perf_counter() - wall_started
        records = proxy.requests
        issuance_records = records[setup_requests:]
        issuance_retries = sum(retries.reasons.values()) - setup_retries
        issuance_bad_nonces = retries.bad_nonces - setup_bad_nonces
        fault_counts = dict(proxy.fault_counts)
        faults_by_endpoint: dict[str, dict[str, int]] = {}
        for record in records:
            if record.fault is not None:
                by_kind = faults_by_endpoint.setdefault(record.endpoint, {})
                by_kind[record.fault] = by_kind.get(record.fault, 0) + 1
        finalized_before_check = len(proxy.finalized_orders())
        orphaned_before_check = proxy.orphaned_orders()

        # Still usable?  One more issuance, with no faults.
        proxy.plan = None
        check: dict[str, Any] = {"ok": False, "error": None}
        check_started = time.perf_counter()
        try:
            check_chain = await issue(config["n"])
        except Exception as error:
            check["error"] = f"{type(error).__name__}: {error}"[:500]
        else:
            chains[config["n"]] = check_chain
            check["ok"] = True
        check["wall"] = time.perf_counter() - check_started

        orphans = set(proxy.orphaned_orders())
        for failure in failures:
            order = failure["order"]
            failure["orphaned"] = order is not None and urlsplit(order).path in orphans
        # A failure is followed by a success if an issuance started after
        # it ended succeeded, or else the one after the run did.
        for failure in failures:
            failure["later_success"] = any(
                started > failure["ended"] for started in successes_started
            )
            failure["check_after"] = not failure["later_success"]
        requests_by_endpoint = Counter(record.endpoint for record in issuance_records)
        statuses = Counter(
            str(record.status) for record in issuance_records if record.fault is None
        )
        issued = len(chains) - (1 if check["ok"] else 0)
        verified = verify_chains(
            chains, Path(config["root_path"]), lambda index: _name(config, index)
        )
        return {
            "n": config["n"],
            "issued": issued,
            "failed": len(failures),
            "failures": failures,
            "hangs": hangs,
            "verified": verified,
            "wall": wall,
            "setup_wall": setup_wall,
            "issuance_seconds": sorted(durations),
            "setup_requests": setup_requests,
            "setup_endpoints": dict(
                Counter(record.endpoint for record in records[:setup_requests])
            ),
            "requests": len(issuance_records),
            "requests_by_endpoint": dict(requests_by_endpoint),
            "statuses": dict(statuses),
            "bad_nonce_answers": sum(
                1
                for record in issuance_records
                if record.fault is None and record.upstream_status == 400
            ),
            "retries": issuance_retries,
            "retry_reasons": dict(retries.reasons),
            "bad_nonce_retries": issuance_bad_nonces,
            "faults": sum(fault_counts.values()),
            "fault_counts": fault_counts,
            "faults_by_endpoint": faults_by_endpoint,
            "finalized_orders": finalized_before_check,
            "orphaned_orders": orphaned_before_check,
            "returned_after_check": len(chains),
            "finalized_after_check": len(proxy.finalized_orders()),
            "delivered_after_check": len(proxy.delivered_orders()),
            "orphaned_after_check": proxy.orphaned_orders(),
            "check": check,
        }
    finally:
        globalLogPublisher.removeObserver(retries)
        await port.stopListening()
        site.close_connections()
        if client is not None:
            await client.close()
        await proxy.stop()


def main(argv: list[str]) -> int:
    """Run the configured run and print ``RESULT <json>``."""
    config: dict[str, Any] = json.loads(argv[0])
    result = react_for_result(lambda reactor: _run(reactor, config))
    if not result:
        return 1
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
