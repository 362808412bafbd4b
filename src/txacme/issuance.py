"""
The issuance workflow: answering an authorization's challenge with a
responder, waiting for authorizations, and getting a certificate in one
call.  Written against :class:`~txacme.interfaces.IssuingClient`, so that
:class:`~txacme.client.Client` and :class:`txacme.testing.FakeClient` take
the same path; every wait of an issuance runs on one clock, against one
deadline.

Its names are documented in :mod:`txacme.client`, which re-exports them
(txacme 0.9 defined ``answer_challenge`` and ``poll_until_valid`` there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from acme import messages
from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from txacme._deferred import deferred_async
from txacme._polling import Deadline, finalize_order, persevere, poll_authorization
from txacme._protocol._common import as_csr, csr_identifiers, gather
from txacme.errors import NoSupportedChallenges, OrderFailed
from txacme.interfaces import IResponder, IssuingClient
from txacme.jws import retry_budget

__all__ = [
    "answer_challenge",
    "issue_certificate",
    "poll_until_valid",
    "select_chain",
]

_log = Logger()


def _find_supported_challenge(
    authzr: messages.AuthorizationResource, responders: Sequence[IResponder]
) -> tuple[IResponder, messages.ChallengeBody]:
    """The first responder (in the caller's order) with an offered challenge."""
    for responder in responders:
        for challb in authzr.body.challenges or ():
            if getattr(challb.chall, "typ", None) == responder.challenge_type:
                return responder, challb
    raise NoSupportedChallenges(authzr)


@deferred_async
async def answer_challenge(
    authzr: messages.AuthorizationResource,
    client: IssuingClient,
    responders: Sequence[IResponder],
) -> Callable[[], Deferred[None]]:
    """
    Complete an authorization using a responder.

    Picks the first responder (in the order given) whose challenge type the
    server offers, starts it responding, and tells the server to validate.
    An authorization that is already valid (reused by the CA) needs
    nothing: no responder is started.

    :param authzr: The authorization to complete.
    :param client: The ACME client.
    :param responders: A list of :class:`~txacme.interfaces.IResponder`
        that can be used to complete the challenge with.
    :returns: A Deferred firing, once the server was told to validate, with
        a callable that stops responding (it returns a Deferred and may be
        called more than once).
    :raises NoSupportedChallenges: If no responder fits.
    """
    if authzr.body.status == messages.STATUS_VALID:
        return _no_op_stop
    responder, challb = _find_supported_challenge(authzr, responders)
    response = challb.response(client.key)
    server_name = authzr.body.identifier.value

    def stop_responding() -> Deferred[None]:
        # IResponder.stop_responding is idempotent by contract.
        return maybeDeferred(
            responder.stop_responding, server_name, challb.chall, response
        )

    try:
        await maybeDeferred(
            responder.start_responding, server_name, challb.chall, response
        )
        await client.answer_challenge(challb, response)
    except BaseException:
        # The cause is what the caller needs; a failure to clean up after
        # it (a responder whose stop fails after a failed start) is logged.
        try:
            await stop_responding()
        except Exception:
            _log.failure(
                "Stopping the {challenge_type} responder for {server_name} "
                "after a failure failed",
                challenge_type=responder.challenge_type,
                server_name=server_name,
            )
        raise
    return stop_responding


def _no_op_stop() -> Deferred[None]:
    return succeed(None)


def poll_until_valid(
    authzr: messages.AuthorizationResource,
    clock: IReactorTime,
    client: IssuingClient,
    timeout: float = 300.0,
) -> Deferred[messages.AuthorizationResource]:
    """
    Poll an authorization until it is in a state other than pending or
    processing.

    The waits follow the client's :class:`PollingPolicy` (and the server's
    ``Retry-After``).

    :param authzr: The authorization to complete.
    :param clock: The ``IReactorTime`` implementation to use; usually the
        reactor, when not testing.
    :param client: The ACME client.
    :param timeout: Maximum time to poll in seconds, before giving up.
    :raises txacme.client.AuthorizationFailed: if the authorization is no
        longer in the pending, processing, or valid states.
    :raises twisted.internet.defer.CancelledError: if the authorization was
        still in pending or processing state when the timeout was reached.
    :returns: A Deferred firing when the authorization has completed; if
        the authorization is valid, the authorization resource will be
        returned.
    """
    result = Deferred.fromCoroutine(
        poll_authorization(client, authzr, Deadline(clock, None))
    )
    timer = clock.callLater(timeout, result.cancel)

    def stop_timer(outcome: object) -> object:
        if timer.active():
            timer.cancel()
        return outcome

    result.addBoth(stop_timer)
    return result


def _issuer_names(certificate: x509.Certificate) -> list[str]:
    return [
        attribute.value
        if isinstance(attribute.value, str)
        else attribute.value.decode()
        for attribute in certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]


def select_chain(
    default_pem: str, alternatives_pem: Sequence[str], preferred_chain: str | None
) -> str:
    """
    Pick a certificate chain by the name of its issuer.

    A chain whose topmost certificate was issued by ``preferred_chain`` (the
    root's common name) wins; failing that, one in which any certificate's
    issuer has that name (an intermediate); failing that, the default chain.
    Chains are looked at in order, the default first.

    :param default_pem: The default chain (PEM).
    :param alternatives_pem: The alternate chains (PEM).
    :param preferred_chain: The issuer common name wanted, or ``None``.
    :returns: The chosen chain (PEM).
    """
    if preferred_chain is None:
        return default_pem
    chains = [default_pem, *alternatives_pem]
    parsed = [
        x509.load_pem_x509_certificates(chain.encode("ascii")) for chain in chains
    ]
    for chain, certificates in zip(chains, parsed, strict=True):
        if preferred_chain in _issuer_names(certificates[-1]):
            return chain
    for chain, certificates in zip(chains, parsed, strict=True):
        if any(
            preferred_chain in _issuer_names(certificate)
            for certificate in certificates
        ):
            return chain
    return default_pem


@deferred_async
async def issue_certificate(
    client: IssuingClient,
    clock: IReactorTime,
    csr: x509.CertificateSigningRequest | messages.CertificateRequest | bytes | Any,
    responders: Sequence[IResponder],
    preferred_chain: str | None = None,
    profile: str | None = None,
    replaces: str | x509.Certificate | None = None,
    timeout: float | None = None,
    *,
    order: str | None = None,
    on_order: Callable[[messages.OrderResource], Awaitable[object]] | None = None,
) -> str:
    """
    Get a certificate in one call: order the CSR's names, answer every
    pending authorization with the responders (in parallel; authorizations
    the CA reuses as valid are skipped), wait until they are valid, finalize,
    and return the chain.  Every responder started is stopped afterwards,
    also when something fails or the call is cancelled.

    Every wait (authorizations being validated, the order being processed)
    runs on ``clock``, against one deadline ``timeout`` seconds away; the
    retries of all its requests share one budget
    (:attr:`~txacme.jws.RetryPolicy.max_issuance_retries`).  Polls, the
    finalization and everything after it (the CA may have issued) are tried
    again after a passing failure even when the retries are spent, until
    the deadline.

    :param client: The ACME client (any
        :class:`~txacme.interfaces.IssuingClient`), registered.
    :param clock: The clock for polling.
    :param csr: The certificate signing request (its SAN names and IP
        addresses are the order's identifiers).
    :param responders: :class:`~txacme.interfaces.IResponder` objects, in
        order of preference.
    :param preferred_chain: The issuer common name of the chain wanted
        (see :func:`select_chain`); ``None`` for the CA's default.
    :param profile: A certificate profile the CA offers.
    :param replaces: The certificate (or ARI certID) being renewed.
    :param timeout: Seconds for all the polling of the issuance; ``None``
        for the client's ``policy.timeout`` (300 by default).
    :param order: The URL of an order of the CSR's names to go on with
        instead of ordering: to resume an issuance interrupted by a crash or
        a restart, whatever the order's state (a ``valid`` order's
        certificate is downloaded; a ``pending`` one's authorizations are
        answered).
    :param on_order: Called (and awaited) with the order once its
        authorizations are valid, before it is finalized: the moment to
        record it (with the CSR's key) so that a restart can resume it.
    :returns: A Deferred firing with the certificate chain (PEM, leaf
        first).
    :raises OrderFailed: If the order is or becomes invalid.
    :raises AuthorizationFailed: If an authorization fails.
    :raises NoSupportedChallenges: If no responder fits an authorization.
    :raises PollTimeout: If the CA had not validated and issued by the
        deadline.
    """
    request = as_csr(csr)
    deadline = Deadline(clock, client.policy.timeout if timeout is None else timeout)
    with retry_budget():
        if order is None:
            orderr = await client.new_order(
                csr_identifiers(request), profile=profile, replaces=replaces
            )
        else:
            orderr = await _existing_order(client, order)
        orderr = await _authorize(client, orderr, responders, deadline)
        if on_order is not None:
            await on_order(orderr)
        orderr = await finalize_order(client, orderr, request, deadline)
        valid = orderr
        # Issued: the certificate is not given up for a passing failure.
        orderr = await persevere(
            deadline,
            lambda: client.fetch_certificate(valid, request),
            f"Downloading {valid.body.certificate}",
        )
    return select_chain(
        orderr.fullchain_pem, orderr.alternative_fullchains_pem or (), preferred_chain
    )


async def _existing_order(client: IssuingClient, url: str) -> messages.OrderResource:
    """
    An order as the CA has it, its authorizations fetched.

    :raises OrderFailed: If it is invalid.
    """
    orderr, _ = await client.refresh_order(
        messages.OrderResource(uri=url, body=messages.Order(), authorizations=())
    )
    if orderr.body.status == messages.STATUS_INVALID:
        raise OrderFailed(orderr)
    fetched = await gather(
        [
            client.refresh_authorization(
                messages.AuthorizationResource(uri=authorization_url, body=None)
            )
            for authorization_url in orderr.body.authorizations or ()
        ]
    )
    complete: messages.OrderResource = orderr.update(
        authorizations=tuple(authzr for authzr, _ in fetched)
    )
    return complete


async def _authorize(
    client: IssuingClient,
    orderr: messages.OrderResource,
    responders: Sequence[IResponder],
    deadline: Deadline,
) -> messages.OrderResource:
    """
    Answer the order's pending authorizations and wait until they are
    valid (if the order still needs them).

    :returns: The order, its authorizations as last seen.
    """
    if orderr.body.status != messages.STATUS_PENDING:
        return orderr
    stoppers: list[Callable[[], Deferred[None]]] = []

    async def authorize(
        authzr: messages.AuthorizationResource,
    ) -> messages.AuthorizationResource:
        stoppers.append(await answer_challenge(authzr, client, responders))
        return await poll_authorization(client, authzr, deadline)

    try:
        authorized = await gather(
            [
                Deferred.fromCoroutine(authorize(authzr))
                for authzr in orderr.authorizations
                if authzr.body.status != messages.STATUS_VALID
            ]
        )
    finally:
        await _stop_all(stoppers)
    # The authorizations as last seen, all valid: finalize need not refresh
    # the order to learn that it is ready.
    polled = {authzr.uri: authzr for authzr in authorized}
    updated: messages.OrderResource = orderr.update(
        authorizations=tuple(
            polled.get(authzr.uri, authzr) for authzr in orderr.authorizations
        )
    )
    return updated


async def _stop_all(stoppers: Sequence[Callable[[], Deferred[None]]]) -> None:
    """Stop every responder; a failure to stop is logged, not raised."""
    results = await DeferredList(
        [maybeDeferred(stop) for stop in stoppers], consumeErrors=True
    )
    for success, outcome in results:
        if not success:
            _log.failure("Stopping a responder failed", outcome)
