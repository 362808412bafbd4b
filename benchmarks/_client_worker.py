"""
One run of the client benchmark, in a process of its own:
``python -m benchmarks._client_worker CONFIG-JSON``.

:mod:`benchmarks.client_bench` starts one such process per run, so that the
process's CPU time is the client's alone (Pebble runs in its own processes)
and every txacme run gets a fresh reactor.  The worker registers an account
(the set-up), then issues ``n`` single-name certificates, each validated
over http-01 by Pebble, and prints one line ``RESULT <json>`` with its
measurements.  Every chain is verified against Pebble's root after the
timed part.

CPU is ``time.process_time()`` (user and system time of every thread of the
process) from the first issuance to the last, set-up excluded.  The
certificate keys are generated inside the timed part on both sides: txacme
in the reactor's thread pool (``generate_private_key_in_thread``), certbot
in its issuing threads.  The http-01 responder is the same on both sides,
txacme's ``HTTP01Responder`` on a ``twisted.web`` site: on the reactor for
txacme, on a reactor running in a thread of its own for certbot.  Its CPU
time is reported apart (metered in its connections' callbacks, and for
certbot also the whole CPU time of its thread) for the report to subtract.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from benchmarks._metering import (
    EndpointClassifier,
    MeteredSiteFactory,
    RequestLog,
    StallProbe,
    count_treq_requests,
    subtract,
)
from benchmarks._workers import print_result, react_for_result

__all__ = ["main", "site_resource", "verify_chains"]

_LOOPBACK = "127.0.0.1"


def _name(config: dict[str, Any], index: int) -> str:
    return f"{config['name_prefix']}-{index}.example.test"


def verify_chains(
    chains: dict[int, str], root_path: Path, name: Callable[[int], str]
) -> int:
    """
    Verify every chain (PEM, leaf first) against Pebble's root (PEM, at
    ``root_path``) for its name (``name(index)``); return how many were
    verified, raise on the first bad one.
    """
    root = x509.load_pem_x509_certificate(root_path.read_bytes())
    store = Store([root])
    for index, pem in sorted(chains.items()):
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
        PolicyBuilder().store(store).build_server_verifier(
            x509.DNSName(name(index))
        ).verify(certificates[0], certificates[1:])
    return len(chains)


def _verify(chains: dict[int, str], config: dict[str, Any]) -> int:
    """:func:`verify_chains` with the run's root and names."""
    return verify_chains(
        chains, Path(config["root_path"]), lambda index: _name(config, index)
    )


def _usage_since(started: resource.struct_rusage) -> dict[str, float]:
    """User and system CPU seconds and context switches since ``started``."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_user": now.ru_utime - started.ru_utime,
        "cpu_system": now.ru_stime - started.ru_stime,
        "voluntary_switches": now.ru_nvcsw - started.ru_nvcsw,
        "involuntary_switches": now.ru_nivcsw - started.ru_nivcsw,
    }


def _indices(n: int) -> Iterator[int]:
    yield from range(n)


def site_resource(responder_resource: Any) -> Any:
    from twisted.web.resource import Resource

    root = Resource()  # type: ignore[no-untyped-call]
    well_known = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b".well-known", well_known)
    well_known.putChild(b"acme-challenge", responder_resource)
    return root


# -- txacme -------------------------------------------------------------------


async def _run_txacme(reactor: Any, config: dict[str, Any]) -> dict[str, Any]:
    from acme import messages
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
    from twisted.web.server import Site

    from txacme.challenges import HTTP01Responder
    from txacme.client import Client, PollingPolicy, issue_certificate
    from txacme.util import (
        csr_for_names,
        generate_private_key,
        generate_private_key_in_thread,
    )

    # The transport Client.from_url builds for itself, as for any CA: it
    # trusts the platform's CAs, here Pebble's through SSL_CERT_FILE.
    os.environ["SSL_CERT_FILE"] = config["ca_path"]
    requests = RequestLog()
    count_treq_requests(requests)
    account_key = JWKEC(key=generate_private_key("p256"))
    interval = config["poll_interval"]
    policy = PollingPolicy() if interval is None else _fixed_policy(interval)
    client = await Client.from_url(
        reactor, config["directory_url"], key=account_key, alg=ES256, policy=policy
    )
    requests.set_classifier(
        EndpointClassifier(config["directory_url"], client.directory.to_partial_json())
    )
    await client.register(
        messages.NewRegistration.from_data(terms_of_service_agreed=True)
    )
    setup = requests.snapshot()

    responder = HTTP01Responder()
    site = MeteredSiteFactory(Site(site_resource(responder.resource)))  # type: ignore[no-untyped-call]
    port = reactor.listenTCP(config["http_port"], site, interface=_LOOPBACK)
    probe = StallProbe(reactor, config["stall_interval"])
    chains: dict[int, str] = {}
    indices = _indices(config["n"])
    key_type = config["key_type"]

    keygen = DeferredSemaphore(config.get("keygen_threads") or 1_000_000)
    # Each issuance's start (seconds from the first) and duration, key
    # generation apart.
    issuances: list[tuple[float, float]] = []
    wall_started = 0.0

    async def issue_some() -> None:
        for index in indices:
            key = await keygen.run(generate_private_key_in_thread, reactor, key_type)
            csr = csr_for_names([_name(config, index)], key)
            started = time.perf_counter()
            chains[index] = await issue_certificate(client, reactor, csr, [responder])
            issuances.append((started - wall_started, time.perf_counter() - started))

    profiler = _start_profiler(config)
    probe.start()
    usage_started = resource.getrusage(resource.RUSAGE_SELF)
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    try:
        await gatherResults(
            [Deferred.fromCoroutine(issue_some()) for _ in range(config["concurrency"])]
        )
    finally:
        wall = time.perf_counter() - wall_started
        cpu = time.process_time() - cpu_started
        usage = _usage_since(usage_started)
        probe.stop()
        _stop_profiler(profiler, config)
        await port.stopListening()
        site.close_connections()
        await client.close()
    after = requests.snapshot()
    return {
        "wall": wall,
        "cpu": cpu,
        **usage,
        "responder_cpu": site.cpu,
        "responder_connections": site.connections,
        "setup": setup,
        "requests": subtract(after, setup),
        "stall_max": probe.largest,
        "stall_p99": probe.percentile(0.99),
        "stall_samples": len(probe.lateness),
        "issuances": sorted(issuances),
        "issued": len(chains),
        "verified": _verify(chains, config),
    }


def _fixed_policy(interval: float) -> Any:
    """
    A polling policy that waits ``interval`` before every poll, never
    adapting (``adaptive=False``, where the policy has that field: txacme
    before issue 11 did not adapt), with a timeout of 120 s.
    """
    import attrs

    from txacme.client import PollingPolicy

    options: dict[str, Any] = {
        "first_delay": interval,
        "factor": 1.0,
        "max_delay": interval,
        "timeout": 120.0,
    }
    if "adaptive" in attrs.fields_dict(PollingPolicy):
        options["adaptive"] = False
    return PollingPolicy(**options)


def _txacme_main(config: dict[str, Any]) -> dict[str, Any]:
    return react_for_result(lambda reactor: _run_txacme(reactor, config))


# -- certbot's acme -----------------------------------------------------------


class _PollInterval:
    """
    Stands in for the ``time`` module inside :mod:`acme.client`, whose
    polling loops sleep 1 s between polls (or until a ``Retry-After``):
    those sleeps of at most 1 s last ``interval`` instead.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def sleep(self, seconds: float) -> None:
        time.sleep(self.interval if seconds <= 1 else seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _certbot_main(config: dict[str, Any]) -> dict[str, Any]:
    import acme.client
    from acme import challenges, crypto_util, messages
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC
    from twisted.internet import reactor as global_reactor
    from twisted.internet.threads import blockingCallFromThread
    from twisted.web.server import Site

    from txacme.challenges import HTTP01Responder

    reactor: Any = global_reactor
    if config["poll_interval"] is not None:
        setattr(acme.client, "time", _PollInterval(config["poll_interval"]))  # noqa: B010

    # The responder: a reactor in a thread of its own.
    responder = HTTP01Responder()
    site = MeteredSiteFactory(Site(site_resource(responder.resource)))  # type: ignore[no-untyped-call]
    reactor.listenTCP(config["http_port"], site, interface=_LOOPBACK)
    reactor_thread = threading.Thread(
        target=reactor.run,
        kwargs={"installSignalHandlers": False},
        name="responder-reactor",
        daemon=True,
    )
    reactor_thread.start()

    def on_reactor(function: Callable[..., object], *args: object) -> None:
        blockingCallFromThread(reactor, function, *args)

    account_key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    requests = RequestLog()
    network = acme.client.ClientNetwork(
        key=account_key,
        alg=ES256,
        verify_ssl=config["ca_path"],  # requests takes a CA bundle path here
        user_agent="acme-python-benchmark",
    )

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        requests.record(response.request.method, response.request.url)

    network.session.hooks["response"].append(hook)
    directory = acme.client.ClientV2.get_directory(config["directory_url"], network)
    requests.set_classifier(
        EndpointClassifier(config["directory_url"], directory.to_partial_json())
    )
    client = acme.client.ClientV2(directory, network)
    client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    setup = requests.snapshot()

    chains: dict[int, str] = {}
    errors: list[BaseException] = []
    # Each issuance's start (seconds from the first) and duration, key
    # generation apart.
    issuances: list[tuple[float, float]] = []
    wall_started = 0.0
    indices = _indices(config["n"])
    lock = threading.Lock()
    key_type = config["key_type"]

    def issue_one(index: int) -> None:
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if key_type == "p256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        name = _name(config, index)
        started = time.perf_counter()
        orderr = client.new_order(crypto_util.make_csr(key_pem, [name]))
        authzr = orderr.authorizations[0]
        challb = next(
            challb
            for challb in authzr.body.challenges
            if isinstance(challb.chall, challenges.HTTP01)
        )
        response = challb.response(account_key)
        on_reactor(responder.start_responding, name, challb.chall, response)
        try:
            client.answer_challenge(challb, response)
            orderr = client.poll_and_finalize(orderr)
        finally:
            on_reactor(responder.stop_responding, name, challb.chall, response)
        chains[index] = orderr.fullchain_pem
        issuances.append((started - wall_started, time.perf_counter() - started))

    def issue_some() -> None:
        while not errors:
            with lock:
                index = next(indices, None)
            if index is None:
                return
            try:
                issue_one(index)
            except BaseException as error:
                errors.append(error)
                raise

    threads = [
        threading.Thread(target=issue_some, name=f"issuer-{number}")
        for number in range(config["concurrency"])
    ]
    responder_clock = time.pthread_getcpuclockid(reactor_thread.ident or 0)
    responder_thread_started = time.clock_gettime(responder_clock)
    responder_started = site.cpu
    profiler = _start_profiler(config)
    usage_started = resource.getrusage(resource.RUSAGE_SELF)
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started
    usage = _usage_since(usage_started)
    _stop_profiler(profiler, config)
    responder_thread = time.clock_gettime(responder_clock) - responder_thread_started
    responder_cpu = site.cpu - responder_started
    reactor.callFromThread(reactor.stop)
    reactor_thread.join(10)
    if errors:
        raise errors[0]
    after = requests.snapshot()
    return {
        "wall": wall,
        "cpu": cpu,
        **usage,
        "responder_cpu": responder_cpu,
        "responder_thread_cpu": responder_thread,
        "issuances": sorted(issuances),
        "responder_connections": site.connections,
        "setup": setup,
        "requests": subtract(after, setup),
        "issued": len(chains),
        "verified": _verify(chains, config),
    }


# -- profiling ----------------------------------------------------------------


def _start_profiler(config: dict[str, Any]) -> Any:
    """Start pyinstrument if the configuration asks for a profile."""
    if not config.get("profile"):
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


def _stop_profiler(profiler: Any, config: dict[str, Any]) -> None:
    if profiler is None:
        return
    from pyinstrument.renderers import ConsoleRenderer

    profiler.stop()
    session = profiler.last_session
    tree = ConsoleRenderer(unicode=True, color=False, show_all=False)
    flat = ConsoleRenderer(unicode=True, color=False, flat=True)
    Path(config["profile"]).write_text(
        flat.render(session) + "\n\n" + tree.render(session)
    )
    print(f"profile written to {config['profile']}", file=sys.stderr)


def main(argv: list[str]) -> int:
    """Run the configured run and print ``RESULT <json>``."""
    config: dict[str, Any] = json.loads(argv[0])
    if config["client"] == "txacme":
        result = _txacme_main(config)
    elif config["client"] == "certbot":
        result = _certbot_main(config)
    else:
        raise ValueError(f"unknown client {config['client']!r}")
    if not result:
        return 1
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
