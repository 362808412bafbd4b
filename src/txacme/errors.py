"""
Exceptions raised by txacme.

Every failure of an ACME exchange ends in one of these (or in
:class:`twisted.internet.defer.CancelledError` when the caller cancelled, or
when :func:`txacme.client.poll_until_valid` timed out, as in txacme 0.9):

* :class:`ServerError`: the server answered with an RFC 7807 problem
  document, or with an HTTP error status.  Its subclasses name the problems a
  caller can act on.
* :class:`MalformedResponse`: the server's answer does not follow RFC 8555
  (wrong content type, undecodable JSON, a missing header, a certificate
  body that is not a chain).
* :class:`NetworkError`: the request never got an answer (connection
  refused, TLS failure, timeout).
* :class:`AuthorizationFailed`, :class:`AuthorizationsNotValid`,
  :class:`NoSupportedChallenges`, :class:`OrderFailed`, :class:`PollTimeout`:
  the protocol ran, but did not get where the caller wanted.
* :class:`NotInZone`, :class:`ZoneNotFound`: a dns-01 responder has no zone
  to put a record in (the names of txacme 0.9).  They are
  dns-01 responder errors too (:exc:`~txacme.challenges.DNSError`): the
  root of that family is defined here, so that each is one class under
  both names, and :mod:`txacme.challenges` re-exports it.

None of these leave the :class:`~txacme.client.Client` unusable: the next
call starts afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from acme import errors as acme_errors
from acme import messages

if TYPE_CHECKING:
    from txacme._types import HTTPResponse as IResponse

__all__ = [
    "AccountDoesNotExist",
    "AuthorizationFailed",
    "AuthorizationsNotValid",
    "ChainTooLong",
    "ExternalAccountRequired",
    "MalformedResponse",
    "NetworkError",
    "NoSupportedChallenges",
    "NotInZone",
    "NotOffered",
    "OrderFailed",
    "PollTimeout",
    "RateLimited",
    "ServerError",
    "TermsOfServiceNotAgreed",
    "UserActionRequired",
    "ZoneNotFound",
]


def _request_context(
    method: str | None, url: str | None, attempts: int | None
) -> list[str]:
    """The request an error answered, and its attempts, for messages."""
    parts = []
    if method is not None and url is not None:
        parts.append(f"[{method} {url}]")
    if attempts is not None and attempts > 1:
        parts.append(f"({attempts} attempts)")
    return parts


def _describe_identifier(identifier: messages.Identifier | None) -> str:
    if identifier is None:
        return "<no identifier>"
    return f"{identifier.typ.name}:{identifier.value}"


class ServerError(Exception):
    """
    The ACME server answered with an error: a problem document (RFC 8555
    §6.7), or an HTTP error status without one.

    :class:`acme.messages.Error` is not usable as an asynchronous exception
    (Twisted needs to set ``__traceback__`` on what it raises), so this type
    wraps one, as in txacme 0.9, together with the response it came in.

    :ivar message: The problem document.  For an error answer that had no
        problem document, a synthetic one of type ``about:blank`` whose detail
        gives the HTTP status and content type.
    :ivar response: The HTTP response, already read; or ``None``.
    :ivar retry_after: Seconds after which a retry makes sense: the server's
        ``Retry-After`` header, or for a passing error (``rateLimited``,
        ``serverInternal``, 5xx) without one, the retry policy's backoff;
        ``None`` otherwise.
    :ivar retry_at: The POSIX time (of the client's clock) after which a
        retry makes sense, when ``retry_after`` is known.
    :ivar method: The HTTP method of the request, when known.
    :ivar url: The URL requested, when known.
    :ivar attempts: How many times the request was sent (retries included),
        when known.
    """

    method: str | None = None
    url: str | None = None
    attempts: int | None = None

    def __init__(
        self,
        message: messages.Error,
        response: IResponse | None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, response)
        self.message = message
        self.response = response
        self.retry_after = retry_after
        self.retry_at: float | None = None

    @property
    def code(self) -> str | None:
        """
        The ACME error code (``badNonce``, ``rateLimited``, ...) without the
        ``urn:ietf:params:acme:error:`` prefix; ``None`` for problem types
        that are not ACME errors.
        """
        typ = self.message.typ or ""
        if typ.startswith(messages.ERROR_PREFIX):
            return typ[len(messages.ERROR_PREFIX) :]
        return None

    @property
    def status(self) -> int | None:
        """The HTTP status code of the response, if there was one."""
        if self.response is None:
            return None
        code: int = self.response.code
        return code

    def __str__(self) -> str:
        parts = [str(self.message)]
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        if self.retry_after is not None:
            parts.append(f"(retry after {self.retry_after:g} s)")
        parts.extend(_request_context(self.method, self.url, self.attempts))
        return " ".join(parts)


class TermsOfServiceNotAgreed(ServerError):
    """
    The CA refused to create an account because its terms of service were
    not agreed to.

    RFC 8555 (§7.3) has the client agree in the ``newAccount`` request
    itself, where ACME v1 had it agree afterwards: pass
    ``NewRegistration.from_data(..., terms_of_service_agreed=True)`` to
    :meth:`txacme.client.Client.register` once the user has agreed to
    :attr:`terms_of_service`.

    txacme 0.9's flow, :meth:`~txacme.client.Client.register` then
    :meth:`~txacme.client.Client.agree_to_tos`, works too: ``register``
    then returns a registration without a URL, and the account is created
    by ``agree_to_tos``.  A request that needs the account in between
    raises this error with :attr:`account_pending` set.

    :ivar terms_of_service: The URL of the terms, from the directory, or
        ``None`` if the CA does not publish one.
    :ivar account_pending: Whether ``register`` returned a registration
        waiting for ``agree_to_tos`` and the account does not exist yet.
    """

    def __init__(
        self,
        message: messages.Error,
        response: IResponse | None,
        terms_of_service: str | None,
        *,
        account_pending: bool = False,
    ) -> None:
        super().__init__(message, response)
        self.terms_of_service = terms_of_service
        self.account_pending = account_pending

    def waiting(self) -> TermsOfServiceNotAgreed:
        """
        The error for a request that needs the account while it waits for
        agreement (:attr:`account_pending` set).
        """
        return TermsOfServiceNotAgreed(
            self.message, self.response, self.terms_of_service, account_pending=True
        )

    def __str__(self) -> str:
        terms = self.terms_of_service or "(no URL published)"
        if self.account_pending:
            return (
                "No account yet: the CA creates it only once its terms of "
                f"service {terms} are agreed to.  Call Client.agree_to_tos(regr) "
                "with the registration Client.register returned, or pass "
                "new_reg=NewRegistration.from_data(..., "
                "terms_of_service_agreed=True) to Client.register. "
                f"The CA said: {super().__str__()}"
            )
        return (
            f"The CA requires agreement to its terms of service {terms} "
            "before it creates an account: pass "
            "new_reg=NewRegistration.from_data(..., "
            "terms_of_service_agreed=True) to Client.register. "
            f"The CA said: {super().__str__()}"
        )


class RateLimited(ServerError):
    """
    The CA's rate limit was hit (``rateLimited``, RFC 8555 §6.6).  Retries
    were attempted where the ``Retry-After`` allowed; :attr:`retry_after`
    says when another attempt makes sense.
    """


class UserActionRequired(ServerError):
    """
    The CA wants a human to do something first (``userActionRequired``,
    RFC 8555 §7.3.3), typically to agree to changed terms of service.

    :ivar terms_of_service: The new terms' URL (``Link:
        rel="terms-of-service"``), if given.
    :ivar instance: A URL for the user to visit (the problem's
        ``instance``), if given.
    """

    terms_of_service: str | None = None
    instance: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        if self.terms_of_service is not None:
            text += (
                f"; the terms of service changed: review {self.terms_of_service} "
                "and agree with Client.agree_to_tos"
            )
        if self.instance is not None:
            text += f"; see {self.instance}"
        return text


class ExternalAccountRequired(ServerError):
    """
    The CA only creates accounts bound to an account with it (External
    Account Binding, RFC 8555 §7.3.4): pass the key id and HMAC key the CA
    gave you as ``eab`` to :meth:`txacme.client.Client.register`.
    """


class AccountDoesNotExist(ServerError):
    """
    No account exists for the client's key (``accountDoesNotExist``,
    RFC 8555 §7.3.1).  (A deactivated account is refused with a plain
    :class:`ServerError` of code ``unauthorized``.)
    """


class MalformedResponse(acme_errors.ClientError):
    """
    The server's answer does not follow RFC 8555: a wrong content type,
    undecodable JSON or PEM, a missing ``Location`` or ``Replay-Nonce``
    header, an object that lacks a required field, or a certificate body that
    is not a chain.

    :ivar reason: What was wrong, in words.
    :ivar response: The HTTP response, if one was received.
    :ivar transient: Whether the answer looks like a passing fault of the
        network rather than the CA's (a success answer without a nonce, of
        another content type, or with a cut JSON body: what a middlebox or
        a captive portal sends); the transport retries those.
    :ivar method: The HTTP method of the request, when known.
    :ivar url: The URL requested, when known.
    :ivar attempts: How many times the request was sent, when known.
    """

    method: str | None = None
    url: str | None = None
    attempts: int | None = None

    def __init__(
        self,
        reason: str,
        response: IResponse | None = None,
        *,
        transient: bool = False,
    ) -> None:
        super().__init__(reason, response)
        self.reason = reason
        self.response = response
        self.transient = transient

    def __str__(self) -> str:
        parts = [self.reason]
        if self.response is not None:
            parts.append(f"(HTTP {self.response.code})")
        parts.extend(_request_context(self.method, self.url, self.attempts))
        return " ".join(parts)


class NetworkError(acme_errors.ClientError):
    """
    A request to the ACME server got no answer: the connection failed, TLS
    failed, or it timed out.  The original failure is ``__cause__``.

    :ivar method: The HTTP method.
    :ivar url: The URL requested.
    :ivar reason: What went wrong, in words.
    :ivar attempts: How many times the request was sent (retries included),
        when known.
    :ivar transient: Whether the failure may pass, so that sending the
        request again makes sense: true but for a server certificate that
        is not trusted and a URL that cannot be requested (no ``https``
        scheme or no host).
    """

    attempts: int | None = None

    def __init__(
        self, method: str, url: str, reason: str, *, transient: bool = True
    ) -> None:
        super().__init__(method, url, reason)
        self.method = method
        self.url = url
        self.reason = reason
        self.transient = transient

    def __str__(self) -> str:
        text = f"{self.method} {self.url} failed: {self.reason}"
        if self.attempts is not None and self.attempts > 1:
            text += f" ({self.attempts} attempts)"
        return text


class ChainTooLong(acme_errors.ClientError):
    """
    :meth:`txacme.client.Client.fetch_chain` found more issuer certificates
    than its ``max_length`` allows.
    """


class NoSupportedChallenges(Exception):
    """
    No supported challenges were found in an authorization: none of the
    responders handles any challenge type the server offered.

    :ivar authzr: The authorization (the first argument), if given.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        first = args[0] if args else None
        self.authzr: messages.AuthorizationResource | None = (
            first if isinstance(first, messages.AuthorizationResource) else None
        )

    def __str__(self) -> str:
        if self.authzr is None:
            return super().__str__()
        offered = sorted(
            {
                # The JSON "type", also for types acme does not know (whose
                # UnrecognizedChallenge has typ NotImplemented).
                str(challb.to_partial_json().get("type"))
                for challb in self.authzr.body.challenges or ()
            }
        )
        return (
            "No responder for any challenge offered for "
            f"{_describe_identifier(self.authzr.body.identifier)}; "
            f"the server offered: {', '.join(offered) or 'nothing'}"
        )


class AuthorizationFailed(Exception):
    """
    An attempt was made to complete an authorization, but it failed: the
    authorization is no longer ``pending``, ``processing`` or ``valid``.

    :ivar authzr: The final :class:`acme.messages.AuthorizationResource`.
    """

    def __init__(self, authzr: messages.AuthorizationResource) -> None:
        super().__init__(authzr)
        self.authzr = authzr

    @property
    def errors(self) -> list[messages.Error]:
        """The problems the server recorded on the challenges."""
        return [
            challb.error
            for challb in self.authzr.body.challenges or ()
            if challb.error is not None
        ]

    def __str__(self) -> str:
        body = self.authzr.body
        status = body.status.name if body.status is not None else "unknown"
        text = (
            f"Authorization for {_describe_identifier(body.identifier)} "
            f"failed with status {status!r}"
        )
        problems = "; ".join(str(error) for error in self.errors)
        if problems:
            text += f": {problems}"
        return text

    def __repr__(self) -> str:
        return f"<AuthorizationFailed {self}>"


class AuthorizationsNotValid(Exception):
    """
    An order cannot be finalized because some of its authorizations are not
    ``valid``: the names were not authorized first (with
    :meth:`~txacme.client.Client.request_challenges` and
    :func:`~txacme.client.answer_challenge`), or the CA did not reuse the
    earlier authorizations for a new order.

    :ivar authorizations: The authorizations that are not valid.
    """

    def __init__(
        self, authorizations: Sequence[messages.AuthorizationResource]
    ) -> None:
        super().__init__(list(authorizations))
        self.authorizations = list(authorizations)

    def __str__(self) -> str:
        described = ", ".join(
            f"{_describe_identifier(authzr.body.identifier)} "
            f"({authzr.body.status.name if authzr.body.status else 'unknown'}, "
            f"{authzr.uri})"
            for authzr in self.authorizations
        )
        return f"Authorizations not valid, complete them first: {described}"


class OrderFailed(Exception):
    """
    The order became ``invalid`` (RFC 8555 §7.1.6): finalization or
    validation failed.

    :ivar orderr: The final :class:`acme.messages.OrderResource`.
    """

    def __init__(self, orderr: messages.OrderResource) -> None:
        super().__init__(orderr)
        self.orderr = orderr

    def __str__(self) -> str:
        error = self.orderr.body.error
        detail = f": {error}" if error is not None else ""
        return f"Order {self.orderr.uri} is invalid{detail}"


class PollTimeout(Exception):
    """
    A resource stayed ``pending`` or ``processing`` longer than the polling
    policy's timeout.

    :ivar url: The resource that was polled.
    :ivar status: Its last status.
    :ivar waited: Seconds spent polling.
    """

    def __init__(self, url: str, status: str, waited: float) -> None:
        super().__init__(url, status, waited)
        self.url = url
        self.status = status
        self.waited = waited

    def __str__(self) -> str:
        return (
            f"{self.url} was still {self.status!r} after {self.waited:g} s of polling"
        )


class NotOffered(Exception):
    """
    The CA does not offer what was asked for: ``renewalInfo`` (ARI), a
    certificate profile, ``keyChange``...  Raised before anything is sent.

    :ivar feature: What is missing, e.g. ``"renewalInfo"`` or ``"profile"``.
    :ivar detail: An explanation.
    """

    def __init__(self, feature: str, detail: str) -> None:
        super().__init__(feature, detail)
        self.feature = feature
        self.detail = detail

    def __str__(self) -> str:
        return f"Not offered by the CA: {self.feature}: {self.detail}"


# -- dns-01 ------------------------------------------------------------------------
#
# DNSError and DNSLookupError are documented (and exported) by
# txacme.challenges, which re-exports them; they live here so that
# ZoneNotFound can be one class, a DNSLookupError and txacme 0.9's
# txacme.errors.ZoneNotFound, without this module importing the challenges
# package.


class DNSError(Exception):
    """
    Base class of every error of the dns-01 responders' own work: their DNS
    traffic, and the DNS providers' APIs they call.
    """


class DNSLookupError(DNSError):
    """
    A lookup the responder needs (CNAME, SOA, NS or nameserver address) gave
    an error or an unusable answer.

    :ivar name: The name looked up.
    :ivar rcode: The server's RCODE, or ``None`` if the failure was another
        one (a CNAME loop, no address for a nameserver).
    """

    def __init__(self, name: str, message: str, rcode: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.rcode = rcode


class ZoneNotFound(DNSLookupError, ValueError):
    """
    No zone was found for a dns-01 record: for
    :class:`~txacme.challenges.RFC2136Responder`, the server is
    authoritative for no zone containing the record name (no SOA walking up
    to the root); for :class:`~txacme.challenges.LibcloudDNSResponder`, the
    configured zone is not among the provider's zones.

    One class under two names: ``txacme.errors.ZoneNotFound`` (a
    :exc:`ValueError`, as in txacme 0.9) is
    ``txacme.challenges.ZoneNotFound`` (a
    :exc:`~txacme.challenges.DNSLookupError`).

    :ivar zone_name: The zone looked for (the configured zone), or ``None``
        when the responder looked for the zone enclosing :attr:`name`.
    :ivar name: The record name whose zone was looked for, or the zone
        name if that is not known.
    """

    def __init__(
        self,
        zone_name: str | None = None,
        *,
        name: str | None = None,
        message: str | None = None,
    ) -> None:
        if message is None:
            message = (
                f"zone {zone_name} not found"
                if zone_name is not None
                else f"no zone found for {name}"
            )
        super().__init__(name if name is not None else zone_name or "", message)
        self.zone_name = zone_name


class NotInZone(DNSError, ValueError):
    """
    A dns-01 record name is not within the configured zone, or (without a
    configured zone) within any zone of the DNS provider.

    :ivar server_name: The record name (``_acme-challenge.<name>``).
    :ivar zone_name: The configured zone, or ``None`` if the zones of the
        provider were searched.
    """

    def __init__(self, server_name: str, zone_name: str | None = None) -> None:
        if zone_name is None:
            message = f"{server_name} is in no zone of the DNS provider"
        else:
            message = f"{server_name} is not in zone {zone_name}"
        super().__init__(message)
        self.server_name = server_name
        self.zone_name = zone_name
