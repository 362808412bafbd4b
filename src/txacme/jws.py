"""
The JWS transport of RFC 8555 (§6): signed requests, nonces, retries and
the checks every response goes through.

:class:`JWSClient` is re-exported by :mod:`txacme.client`, where txacme 0.9
documented it.  Its parts live in modules of their own (building the JWS,
the nonce pool, the retry policy, reading answers); this module keeps the
class whose methods share one request loop (the narrow API, txacme 0.9's
three methods, and the loop itself), which is why it is longer than the
others: most of its length is the docstrings of the API reference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from attrs import frozen
from josepy.interfaces import JSONDeSerializable
from josepy.jwa import JWASignature
from josepy.jwk import JWK
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from txacme import __version__
from txacme._answers import (
    decode_json,
    describe_failure,
    lasting_failure,
    response_nonce,
    server_error,
)
from txacme._deferred import deferred_async
from txacme._headers import first_header, media_type
from txacme._nonces import NoncePool
from txacme._retry import (
    RetryBudget,
    RetryPolicy,
    current_budget,
    is_transient,
    retry_budget,
)
from txacme._signing import RequestBody, encode_payload, flattened_jws
from txacme._types import HTTPResponse as _Response
from txacme._types import TreqClient
from txacme.errors import MalformedResponse, NetworkError, ServerError

__all__ = [
    "DEFAULT_USER_AGENT",
    "JOSE_JSON",
    "JSON_CONTENT_TYPE",
    "JSON_ERROR_CONTENT_TYPE",
    "PEM_CHAIN_TYPE",
    "Answer",
    "JWSClient",
    "RetryBudget",
    "RetryPolicy",
    "Signer",
    "is_transient",
    "retry_budget",
]

JSON_CONTENT_TYPE = "application/json"
"""The content type of ACME resources."""
JSON_ERROR_CONTENT_TYPE = "application/problem+json"
"""The content type of problem documents (RFC 7807)."""
JOSE_JSON = "application/jose+json"
"""The content type of JWS request bodies (RFC 8555 §6.2)."""
PEM_CHAIN_TYPE = "application/pem-certificate-chain"
"""The content type of certificate downloads (RFC 8555 §7.4.2)."""

DEFAULT_USER_AGENT = f"txacme/{__version__}"
"""The ``User-Agent`` sent by default (RFC 8555 §6.1 asks for one)."""

if TYPE_CHECKING:
    from treq.testing import StubTreq

_log = Logger()


@frozen
class Signer:
    """
    Who signs a request (RFC 8555 §6.2): the key, its algorithm, and the
    account URL to name it by (``kid``), or ``None`` to send the public key
    itself (``jwk``: ``newAccount``, and revocation by a certificate's key).

    A value: the client passes its account's signer with every request, so
    that the transport holds no account of its own.

    :ivar key: The private key.
    :ivar alg: The JWS algorithm, compatible with ``key``.
    :ivar kid: The account URL, or ``None``.
    """

    key: JWK
    alg: JWASignature
    kid: str | None = None


@frozen
class Answer:
    """
    A checked answer of the server: a success with the expected content
    type, its body read.

    :ivar response: The HTTP response.
    :ivar body: Its body.
    """

    response: _Response
    body: bytes

    def json(self) -> Any:
        """
        The body as JSON.

        :raises MalformedResponse: If it is not JSON.
        """
        return decode_json(self.response, self.body)


class JWSClient:
    """
    HTTP client using JWS-signed messages (RFC 8555 §6.2).

    Its narrow API, used by :class:`~txacme.client.Client`:
    :meth:`post_jws` (a signed request), :meth:`post_as_get` (a signed
    read, §6.3), :meth:`fetch` (a plain GET: the directory, renewal
    information) and :meth:`new_nonce`.  Each request names its
    :class:`Signer` and the directory's ``newNonce`` URL, so the
    transport holds no account state.  The methods of txacme 0.9
    (:meth:`post`, :meth:`get`, :meth:`head`) sign with the key given here,
    and :attr:`kid` if set.

    It keeps a pool of nonces fed by the ``Replay-Nonce`` header of every
    response.  When the pool is empty while signed requests are in flight,
    a request waits (at most ``nonce_wait`` seconds) for the nonce one of
    their answers brings rather than ask ``newNonce``: many issuances at
    once then cost the CA no more requests than one at a time.  ``newNonce``
    is asked only when no nonce is to be had otherwise.  A ``badNonce``
    answer is retried (at most ``max_nonce_retries`` times) with the nonce
    that came with it.  Any number of requests may be in flight at once.

    :param treq_client: A treq client: :class:`treq.client.HTTPClient`, or
        :class:`treq.testing.StubTreq` in tests.
    :param key: The key txacme 0.9's :meth:`post` signs with.
    :param alg: The JWS algorithm, compatible with ``key`` (``RS256`` for
        RSA keys, ``ES256``/``ES384`` for P-256/P-384 keys).
    :param user_agent: The ``User-Agent`` header.
    :param reactor: The clock for request timeouts and retries; when
        ``None``, the ``clock`` each request names (the
        :class:`~txacme.client.Client`'s reactor).
    :param timeout: Seconds after which a request (until its body is read)
        fails with :class:`~txacme.errors.NetworkError`.
    :param max_nonce_retries: How many times one request is retried after a
        ``badNonce`` answer before the error is raised.
    :param retry_policy: When to retry after ``rateLimited``,
        ``serverInternal`` and 5xx answers (default :class:`RetryPolicy()
        <RetryPolicy>`).
    :param nonce_wait: The longest a signed request waits for a nonce from
        the answer to a request in flight before it asks ``newNonce``; 0
        never waits.  (Without a clock it never waits either.)

    :ivar kid: The account URL txacme 0.9's :meth:`post` signs with as
        ``kid``, or ``None`` for ``jwk``.
    :ivar new_nonce_url: The ``newNonce`` URL txacme 0.9's :meth:`post`
        uses; ``None`` for the last one a request of the narrow API named.
    """

    def __init__(
        self,
        treq_client: TreqClient | StubTreq,
        key: JWK,
        alg: JWASignature,
        user_agent: str = DEFAULT_USER_AGENT,
        *,
        reactor: IReactorTime | None = None,
        timeout: float = 60.0,
        max_nonce_retries: int = 20,
        retry_policy: RetryPolicy | None = None,
        nonce_wait: float = 1.0,
    ) -> None:
        # StubTreq makes its methods at run time, unseen by type checkers.
        self._treq = cast(TreqClient, treq_client)
        self._key = key
        self._alg = alg
        self._user_agent = user_agent.encode("ascii")
        self.reactor = reactor
        self.timeout = timeout
        self.max_nonce_retries = max_nonce_retries
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.kid: str | None = None
        self.new_nonce_url: str | None = None
        self.nonce_wait = nonce_wait
        self._nonces = NoncePool()
        # The newNonce URL and clock of the last request that named them,
        # for txacme 0.9's methods.
        self._last_nonce_url: str | None = None
        self._last_clock: IReactorTime | None = None

    @property
    def key(self) -> JWK:
        """The key txacme 0.9's :meth:`post` signs with."""
        return self._key

    @property
    def alg(self) -> JWASignature:
        """The JWS algorithm txacme 0.9's :meth:`post` signs with."""
        return self._alg

    def set_key(self, key: JWK, alg: JWASignature) -> None:
        """
        Make txacme 0.9's :meth:`post` sign with another key from now on.
        """
        self._key = key
        self._alg = alg

    # -- the narrow API ------------------------------------------------------

    @deferred_async
    async def post_jws(
        self,
        url: str,
        payload: bytes | Mapping[str, Any] | JSONDeSerializable | None,
        signer: Signer,
        *,
        nonce_url: str,
        clock: IReactorTime | None = None,
        content_type: str | None = JSON_CONTENT_TYPE,
        accept: str | None = None,
    ) -> Answer:
        """
        POST a JWS of ``payload`` to ``url``, signed by ``signer``, and
        check the answer (RFC 8555 §6.2).  ``badNonce`` answers are retried
        with a fresh nonce, passing errors as ``retry_policy`` says.

        :param payload: The payload: JSON (a mapping or a josepy object),
            bytes as they are, or ``None`` for POST-as-GET (§6.3).
        :param signer: Who signs.
        :param nonce_url: The directory's ``newNonce`` URL.
        :param clock: The clock for timeouts and retries, unless the
            transport has a reactor of its own.
        :param content_type: The media type a success must have, or
            ``None`` for any.
        :param accept: An ``Accept`` header to send.
        :returns: A Deferred firing with the :class:`Answer`.
        :raises ServerError: For an error answer.
        :raises MalformedResponse: For a success with another content type.
        :raises NetworkError: When no answer came.
        """
        call = self._call(nonce_url, clock)
        data = payload if isinstance(payload, bytes) else encode_payload(payload)
        headers = {b"content-type": JOSE_JSON.encode("ascii")}
        if accept is not None:
            headers[b"accept"] = accept.encode("ascii")

        def sign(nonce: bytes | None) -> bytes:
            return flattened_jws(data, signer.key, signer.alg, nonce, url, signer.kid)

        response, body = await self._exchange(
            call, "POST", url, content_type, headers, sign
        )
        return Answer(response, body)

    def post_as_get(
        self,
        url: str,
        signer: Signer,
        *,
        nonce_url: str,
        clock: IReactorTime | None = None,
        content_type: str | None = JSON_CONTENT_TYPE,
        accept: str | None = None,
    ) -> Deferred[Answer]:
        """
        Read a resource with a POST-as-GET (RFC 8555 §6.3): :meth:`post_jws`
        with an empty payload.
        """
        return self.post_jws(
            url,
            None,
            signer,
            nonce_url=nonce_url,
            clock=clock,
            content_type=content_type,
            accept=accept,
        )

    @deferred_async
    async def fetch(
        self,
        url: str,
        *,
        clock: IReactorTime | None = None,
        content_type: str | None = JSON_CONTENT_TYPE,
    ) -> Answer:
        """
        A plain GET, checked (the directory; ``renewalInfo``, RFC 9773):
        retried after passing errors as ``retry_policy`` says.

        :returns: A Deferred firing with the :class:`Answer`.
        :raises ServerError: For an error answer.
        :raises MalformedResponse: For a success with another content type.
        :raises NetworkError: When no answer came.
        """
        call = self._call(self._last_nonce_url, clock)
        response, body = await self._exchange(call, "GET", url, content_type)
        return Answer(response, body)

    @deferred_async
    async def new_nonce(
        self, nonce_url: str, *, clock: IReactorTime | None = None
    ) -> bytes:
        """
        A fresh nonce: from the pool, from the answer to a request in
        flight, or from ``newNonce`` (RFC 8555 §7.2).

        :param nonce_url: The directory's ``newNonce`` URL.
        :param clock: As for :meth:`post_jws`.
        :returns: A Deferred firing with the nonce (decoded bytes).
        """
        return await self._get_nonce(self._call(nonce_url, clock))

    def _call(self, nonce_url: str | None, clock: IReactorTime | None) -> _Call:
        """The context of one request: its clock and newNonce URL."""
        if nonce_url is not None:
            self._last_nonce_url = nonce_url
        if clock is not None:
            self._last_clock = clock
        reactor = self.reactor if self.reactor is not None else clock
        return _Call(reactor, nonce_url)

    def _default_call(self) -> _Call:
        """The context of a request through txacme 0.9's methods."""
        reactor = self.reactor if self.reactor is not None else self._last_clock
        nonce_url = self.new_nonce_url or self._last_nonce_url
        return _Call(reactor, nonce_url)

    # -- HTTP ---------------------------------------------------------------

    async def _request(
        self,
        call: _Call,
        method: str,
        url: str,
        headers: Mapping[bytes, bytes] | None = None,
        data: bytes | None = None,
        read_body: bool = True,
    ) -> tuple[_Response, bytes]:
        """
        Make one HTTP request and read its body, within :attr:`timeout`.

        :raises NetworkError: When no complete answer came.
        """
        request_headers = Headers({b"user-agent": [self._user_agent]})
        for name, value in (headers or {}).items():
            request_headers.setRawHeaders(name, [value])
        timed_out = []

        async def exchange() -> tuple[_Response, bytes]:
            kwargs: dict[str, Any] = {"headers": request_headers}
            if data is not None:
                kwargs["data"] = RequestBody(data)
            response: _Response = await self._treq.request(method, url, **kwargs)
            body = await response.content() if read_body else b""
            return response, body

        attempt = Deferred.fromCoroutine(exchange())
        delayed = None
        if call.clock is not None and self.timeout:

            def on_timeout() -> None:
                timed_out.append(True)
                attempt.cancel()

            delayed = call.clock.callLater(self.timeout, on_timeout)
        try:
            return await attempt
        except CancelledError:
            if timed_out:
                raise NetworkError(
                    method, url, f"no answer within {self.timeout:g} s"
                ) from None
            raise
        except Exception as error:
            raise NetworkError(
                method,
                url,
                describe_failure(error),
                transient=not lasting_failure(error),
            ) from error
        finally:
            if delayed is not None and delayed.active():
                delayed.cancel()

    def _check_response(
        self,
        call: _Call,
        response: _Response,
        body: bytes,
        content_type: str | None,
        signed: bool,
    ) -> None:
        """
        Raise for error answers, and for success answers no RFC 8555 server
        sends (§6.5: a middlebox's or a captive portal's).

        :param content_type: The media type expected for a successful answer,
            or ``None`` to accept any.
        :param signed: Whether the request was a signed POST, whose answer
            must carry a nonce.
        :raises ServerError: For a problem document or an error status.
        :raises MalformedResponse: (``transient``) For a success without a
            nonce, with another content type, or with undecodable JSON.
        """
        received = media_type(first_header(response, b"content-type"))
        if received == JSON_ERROR_CONTENT_TYPE or response.code >= 400:
            raise server_error(response, body, received, call.seconds)
        if content_type is not None and received != content_type:
            raise MalformedResponse(
                f"Expected content type {content_type!r}, got {received!r}"
                + _snippet(body),
                response,
                transient=True,
            )
        if signed and response_nonce(response) is None:
            raise MalformedResponse(
                "The answer to a signed request has no Replay-Nonce (RFC 8555 "
                "§6.5): not the CA's",
                response,
                transient=True,
            )
        if content_type == JSON_CONTENT_TYPE:
            try:
                json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise MalformedResponse(
                    f"Undecodable JSON body: {error}", response, transient=True
                ) from error

    def _pool_nonce(self, response: _Response) -> None:
        """Take the ``Replay-Nonce`` of a response into the pool."""
        self._nonces.keep(response_nonce(response))

    async def _get_nonce(self, call: _Call) -> bytes:
        """
        A fresh nonce: the newest from the pool, else the next one an
        answer to a request in flight brings, else one from ``newNonce``
        (RFC 8555 §7.2).
        """
        pooled = self._nonces.take()
        if pooled is not None:
            return pooled
        if self._nonces.in_flight and self.nonce_wait > 0 and call.clock is not None:
            waited = await self._nonces.wait(call.clock, self.nonce_wait)
            if waited is not None:
                return waited
        if call.nonce_url is None:
            raise MalformedResponse(
                "No nonce available: no newNonce URL is known (the directory "
                "has none, or none was given)"
            )
        response, _ = await self._request(call, "HEAD", call.nonce_url, read_body=False)
        received = media_type(first_header(response, b"content-type"))
        if response.code >= 400:
            error = server_error(response, b"", received, call.seconds)
            error.method, error.url = "HEAD", call.nonce_url
            raise error
        nonce = response_nonce(response)
        if nonce is None:
            malformed = MalformedResponse(
                "The newNonce answer has no valid Replay-Nonce header (content "
                f"type {received or 'none'})",
                response,
                transient=True,
            )
            malformed.method, malformed.url = "HEAD", call.nonce_url
            raise malformed
        return nonce

    # -- requests -------------------------------------------------------------

    async def _exchange(
        self,
        call: _Call,
        method: str,
        url: str,
        content_type: str | None,
        headers: Mapping[bytes, bytes] | None = None,
        sign: Callable[[bytes | None], bytes] | None = None,
    ) -> tuple[_Response, bytes]:
        """
        One checked request, sent again after ``badNonce`` (signed requests
        only, at once, with the nonce the error brought) and after passing
        faults (:class:`RetryPolicy`: after a delay, re-signed with a fresh
        nonce).  Getting a nonce is part of the loop: a ``newNonce`` that
        fails is retried as the request is.

        :param sign: For a signed request, builds the body from a nonce.
        :raises ServerError: For an error answer not retried, or the last.
        :raises MalformedResponse: For the last of the middlebox answers, or
            a success answer that breaks RFC 8555 otherwise.
        :raises NetworkError: When the last attempt got no answer.
        """
        retries = 0
        bad_nonces = 0
        attempts = 0
        nonce: bytes | None = None
        while True:
            try:
                if sign is not None and nonce is None:
                    nonce = await self._get_nonce(call)
                attempts += 1
                response, body = await self._send(
                    call, method, url, headers, sign, nonce
                )
                nonce = None
                fresh = response_nonce(response)
                try:
                    self._check_response(
                        call, response, body, content_type, sign is not None
                    )
                except ServerError as error:
                    if (
                        sign is not None
                        and error.code == "badNonce"
                        and bad_nonces < self.max_nonce_retries
                    ):
                        bad_nonces += 1
                        attempts -= 1
                        _log.debug(
                            "badNonce for {url}, retry {count}",
                            url=url,
                            count=bad_nonces,
                        )
                        # Retry at once, with the nonce the error brought.
                        if fresh is None:
                            self._nonces.lost()
                        nonce = fresh
                        continue
                    self._nonces.keep(fresh)
                    raise
                except BaseException:
                    self._nonces.keep(fresh)
                    raise
                self._nonces.keep(fresh)
            except (ServerError, MalformedResponse, NetworkError) as error:
                delay = self._retry_delay(call, error, retries)
                if delay is None:
                    _annotate(error, method, url, attempts)
                    raise
                retries += 1
                nonce = None
                _log.info(
                    "{method} {url}: {reason}; retry {count} in {delay:.1f} s",
                    method=method,
                    url=url,
                    reason=_retry_reason(error),
                    count=retries,
                    delay=delay,
                    log_event="txacme.retry",
                )
                assert call.clock is not None  # _retry_delay checked.
                await deferLater(call.clock, delay)
                continue
            return response, body

    async def _send(
        self,
        call: _Call,
        method: str,
        url: str,
        headers: Mapping[bytes, bytes] | None,
        sign: Callable[[bytes | None], bytes] | None,
        nonce: bytes | None,
    ) -> tuple[_Response, bytes]:
        """Send one attempt, counting a signed one as in flight."""
        if sign is None:
            return await self._request(call, method, url, headers=headers)
        self._nonces.in_flight += 1
        try:
            answer = await self._request(
                call, method, url, headers=headers, data=sign(nonce)
            )
        except BaseException:
            self._nonces.in_flight -= 1
            self._nonces.lost()
            raise
        self._nonces.in_flight -= 1
        return answer

    def _retry_delay(
        self,
        call: _Call,
        error: ServerError | MalformedResponse | NetworkError,
        retries: int,
    ) -> float | None:
        """
        The seconds to wait before retrying after ``error``, or ``None`` to
        raise it.  Sets a passing error's ``retry_after`` to the policy's
        backoff when the server gave none, so that the caller learns when
        to try again.
        """
        policy = self.retry_policy
        if not policy.is_transient(error):
            return None
        delay = policy.backoff(retries)
        if isinstance(error, ServerError):
            if error.retry_after is None:
                error.retry_after = delay
                error.retry_at = call.seconds() + delay
            delay = error.retry_after
            if delay > policy.max_retry_after:
                return None
        if call.clock is None or retries >= policy.max_retries:
            return None
        budget = current_budget()
        if budget is not None and not budget.take(policy):
            return None
        return delay

    # -- the txacme 0.9 API -------------------------------------------------

    @deferred_async
    async def head(self, url: str, *args: Any, **kwargs: Any) -> _Response:
        """
        Send HEAD request without checking the response.

        Note that the response is not checked, as there will be no response
        body to check; its ``Replay-Nonce`` still goes into the pool.

        :param url: The URL to make the request to.
        :returns: A Deferred firing with the HTTP response.
        """
        response, _ = await self._request(
            self._default_call(), "HEAD", url, read_body=False
        )
        self._pool_nonce(response)
        return response

    @deferred_async
    async def get(
        self, url: str, content_type: str | None = JSON_CONTENT_TYPE, **kwargs: Any
    ) -> _Response:
        """
        Send GET request and check response.

        Only the directory and ``renewalInfo`` are read with plain GET in
        RFC 8555; other resources need POST-as-GET (:meth:`post` with
        ``obj=None``).

        :param url: The URL to make the request to.
        :param content_type: The expected media type of the answer, or
            ``None`` for any.
        :returns: A Deferred firing with the checked HTTP response (its body
            already read: ``response.json()`` works).
        :raises ServerError: For an error answer.
        :raises MalformedResponse: For an unexpected content type.
        :raises NetworkError: When no answer came.
        """
        response, _ = await self._exchange(
            self._default_call(), "GET", url, content_type
        )
        return response

    @deferred_async
    async def post(
        self,
        url: str,
        obj: JSONDeSerializable | Mapping[str, Any] | None,
        content_type: str | None = JSON_CONTENT_TYPE,
        **kwargs: Any,
    ) -> _Response:
        """
        POST an object and check the response.

        Signed with this transport's key (``jwk``), or with :attr:`kid` once
        it is set; see :meth:`post_jws` for signing as any account.

        :param url: The URL to request.
        :param obj: The serializable payload of the request; ``None`` sends
            a POST-as-GET (empty payload, RFC 8555 §6.3).
        :param content_type: The expected content type of the response. By
            default, JSON.
        :returns: A Deferred firing with the checked HTTP response (its body
            already read).
        :raises ServerError: For a problem document (after retrying
            ``badNonce``).
        :raises MalformedResponse: For an unexpected content type.
        :raises NetworkError: When no answer came.
        """
        call = self._default_call()
        signer = Signer(self._key, self._alg, self.kid)
        payload = encode_payload(obj)

        def sign(nonce: bytes | None) -> bytes:
            return flattened_jws(
                payload, signer.key, signer.alg, nonce, url, signer.kid
            )

        response, _ = await self._exchange(
            call,
            "POST",
            url,
            content_type,
            {b"content-type": JOSE_JSON.encode("ascii")},
            sign,
        )
        return response


@frozen
class _Call:
    """
    The context of one request: the clock for its timeout and retries, and
    the ``newNonce`` URL for its nonces.
    """

    clock: IReactorTime | None
    nonce_url: str | None

    def seconds(self) -> float:
        """The current time, from the clock when there is one."""
        if self.clock is not None:
            return self.clock.seconds()
        return time.time()


def _snippet(body: bytes) -> str:
    """The start of an unexpected body, for an error message."""
    text = body[:120].decode("utf-8", "replace").strip()
    return f": {text!r}" if text else " (empty body)"


def _annotate(
    error: ServerError | MalformedResponse | NetworkError,
    method: str,
    url: str,
    attempts: int,
) -> None:
    """Name the request an error answered, and how often it was sent."""
    if error.method is None or isinstance(error, NetworkError):
        error.method, error.url = method, url
    error.attempts = attempts


def _retry_reason(error: ServerError | MalformedResponse | NetworkError) -> str:
    """Why a request is sent again, in words, for the log."""
    if isinstance(error, ServerError):
        return f"{error.code or 'HTTP error'} (HTTP {error.status})"
    if isinstance(error, NetworkError):
        return f"no answer ({error.reason})"
    return f"not the CA's answer ({error.reason})"
