"""
The state of :class:`txacme.testing.MemoryAcmeServer` that its endpoints
share: the records and their indexes, the routes from paths to them, the
nonces and the certificate authority, with what every endpoint does with
them: make URLs, and authenticate requests (RFC 8555 §6.2 to §6.5).

Private.  The endpoints (``_server_accounts``, ``_server_orders``,
``_server_certificates``, ``_server_dispatch``) are functions of a
:class:`ServerState`; the server's settings are its public attributes, read
from the server on every use, since a test may change them.
"""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from attrs import define, field, frozen
from josepy.b64 import b64encode
from josepy.jwk import JWK
from twisted.logger import Logger

from txacme.testing._server_ca import CertificateAuthority
from txacme.testing._server_http import Incoming
from txacme.testing._server_protocol import (
    ParsedJWS,
    ProblemError,
    check_account_key,
    load_jwk,
    parse_jws,
    signature_algorithm,
)
from txacme.testing._server_records import (
    LoggedRequest,
    MemoryAccount,
    MemoryAuthorization,
    MemoryCertificate,
    MemoryOrder,
)

if TYPE_CHECKING:
    from txacme.testing._server import MemoryAcmeServer

__all__ = [
    "Route",
    "ServerState",
    "Signed",
    "check_owner",
    "check_post_as_get",
    "utc_datetime",
]

_MAX_NONCES = 10_000

# The path of each directory entry, after the server's prefix.
_PATHS = {
    "newNonce": "new-nonce",
    "newAccount": "new-account",
    "newOrder": "new-order",
    "newAuthz": "new-authz",
    "revokeCert": "revoke-cert",
    "keyChange": "key-change",
    "renewalInfo": "renewal-info",
}


def utc_datetime(seconds: float) -> datetime:
    """
    :param seconds: A time from the server's clock.
    :returns: It as an aware UTC datetime in whole seconds, as the records
        and certificates keep times.
    """
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0)


@frozen
class Route:
    """
    What a path leads to: an endpoint kind and the record it concerns.
    """

    kind: str
    record: object = None
    chain_index: int = 0


@frozen
class Signed:
    """
    A verified JWS request: who signed it and what it says.
    """

    jws: ParsedJWS
    key: JWK
    account: MemoryAccount | None


def check_post_as_get(signed: Signed) -> None:
    """
    :raises ProblemError: ``malformed`` unless the request is a POST-as-GET
        (RFC 8555 §6.3).
    """
    if signed.jws.payload_b64 != "":
        raise ProblemError(
            "malformed",
            "this resource is read with POST-as-GET: the payload must be empty",
        )


def check_owner(account: MemoryAccount, owner_url: str) -> None:
    """
    :raises ProblemError: ``unauthorized`` unless ``account`` is the one at
        ``owner_url``.
    """
    if account.url != owner_url:
        raise ProblemError("unauthorized", "this resource belongs to another account")


@define(eq=False)
class ServerState:
    """
    The records of one server, and the paths and nonces that lead to them.

    :ivar settings: The server, whose public attributes are the settings.
    :ivar log: The server's logger.
    :ivar origin: The scheme and host of every URL.
    :ivar base_path: The path of ``base_url``, without a trailing slash.
    :ivar prefix: The start of every path but the directory's: the base
        path and a random part.
    :ivar nonce_random: The random choice of rejected nonces.
    :ivar ca: The certificate authority that signs the certificates.
    :ivar routes: What each path leads to.
    :ivar nonces: The nonces issued and not yet used, oldest first.
    :ivar requests: The requests answered, oldest first.
    """

    settings: MemoryAcmeServer
    log: Logger
    origin: str
    base_path: str
    prefix: str = field(init=False)
    nonce_random: random.Random = field(init=False)
    ca: CertificateAuthority = field(init=False)
    routes: dict[str, Route] = field(init=False, factory=dict)
    nonces: dict[str, None] = field(init=False, factory=dict)
    accounts: list[MemoryAccount] = field(init=False, factory=list)
    accounts_by_key: dict[bytes, MemoryAccount] = field(init=False, factory=dict)
    accounts_by_url: dict[str, MemoryAccount] = field(init=False, factory=dict)
    orders: list[MemoryOrder] = field(init=False, factory=list)
    authorizations: list[MemoryAuthorization] = field(init=False, factory=list)
    authorizations_by_url: dict[str, MemoryAuthorization] = field(
        init=False, factory=dict
    )
    certificates: list[MemoryCertificate] = field(init=False, factory=list)
    certificates_by_serial: dict[int, MemoryCertificate] = field(
        init=False, factory=dict
    )
    requests: list[LoggedRequest] = field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        settings = self.settings
        self.prefix = f"{self.base_path}/acme-{secrets.token_hex(4)}"
        self.nonce_random = random.Random(settings.seed)
        self.ca = CertificateAuthority(
            utc_datetime(settings.clock.seconds()),
            settings.chain_length,
            settings.alternate_chains,
        )
        self.routes[f"{self.base_path}/directory"] = Route("directory")
        for kind, offered in [
            ("newNonce", True),
            ("newAccount", True),
            ("newOrder", True),
            ("newAuthz", settings.offer_new_authz),
            ("revokeCert", True),
            ("keyChange", True),
        ]:
            if offered:
                self.routes[self.path_of(kind)] = Route(kind)

    # URLs and routes.

    @property
    def directory_url(self) -> str:
        """
        The URL of the directory.
        """
        return self.url(f"{self.base_path}/directory")

    def path_of(self, kind: str) -> str:
        """
        :param kind: A directory entry, such as ``"newOrder"``.
        :returns: Its path.
        """
        return f"{self.prefix}/{_PATHS[kind]}"

    def url(self, path: str) -> str:
        """
        :returns: The URL of a path on this server.
        """
        return self.origin + path

    def new_path(self, kind: str) -> str:
        """
        :param kind: The kind of resource, such as ``"order"``.
        :returns: A new path for one, with a random part.
        """
        return f"{self.prefix}/{kind}/{secrets.token_urlsafe(12)}"

    def now(self) -> datetime:
        """
        :returns: The clock's time (see :func:`utc_datetime`).
        """
        return utc_datetime(self.settings.clock.seconds())

    def route(self, request: Incoming) -> Route:
        """
        :returns: What the request's URL leads to.
        :raises ProblemError: ``malformed`` (404) for a URL of another host
            or a path this server does not serve.
        """
        if not request.url.startswith(self.origin + "/"):
            raise ProblemError("malformed", "no such host on this server", 404)
        route = self.routes.get(request.path)
        if route is None and self.settings.offer_renewal_info:
            prefix = self.path_of("renewalInfo") + "/"
            if request.path.startswith(prefix):
                route = Route("renewalInfo", request.path[len(prefix) :])
        if route is None:
            raise ProblemError("malformed", f"no resource at {request.path}", 404)
        return route

    # Nonces.

    def new_nonce(self) -> str:
        """
        :returns: A new nonce (RFC 8555 §7.2); the oldest unused one is
            forgotten when there are too many.
        """
        nonce = b64encode(secrets.token_bytes(16)).decode("ascii")
        self.nonces[nonce] = None
        if len(self.nonces) > _MAX_NONCES:
            del self.nonces[next(iter(self.nonces))]
        return nonce

    def use_nonce_quietly(self, request: Incoming) -> None:
        """
        A request refused by an injected fault still uses up its nonce, as
        on a real server that processed it.
        """
        if request.method != "POST":
            return
        try:
            nonce = parse_jws(request.body).protected.get("nonce")
        except ProblemError:
            return
        if isinstance(nonce, str):
            self.nonces.pop(nonce, None)

    def _check_nonce(self, nonce: object) -> None:
        if not isinstance(nonce, str):
            raise ProblemError(
                "badNonce", "the protected header lacks a 'nonce' string"
            )
        if nonce not in self.nonces:
            raise ProblemError(
                "badNonce", "the nonce was not issued by this server or was used"
            )
        del self.nonces[nonce]
        rejection = self.settings.nonce_rejection
        if rejection and self.nonce_random.random() < rejection:
            raise ProblemError("badNonce", "nonce rejected (simulated)")

    # Request authentication (RFC 8555 §6.2 to §6.5).

    def verified(
        self, request: Incoming, signer: Literal["kid", "jwk", "either"]
    ) -> Signed:
        """
        Check a POST's JWS: shape, key, algorithm, signature, nonce, URL.

        :param signer: Which key reference the endpoint accepts.
        :returns: The verified request.
        :raises ProblemError: For any failed check.
        """
        jws = parse_jws(request.body)
        header = jws.protected
        if "crit" in header:
            raise ProblemError("malformed", "no 'crit' header parameters are supported")
        has_jwk, has_kid = "jwk" in header, "kid" in header
        if has_jwk == has_kid:
            raise ProblemError(
                "malformed", "the protected header needs exactly one of jwk and kid"
            )
        if has_jwk and signer == "kid":
            raise ProblemError(
                "malformed",
                "this request must be signed with an account key (kid), not jwk",
            )
        if has_kid and signer == "jwk":
            raise ProblemError("malformed", "newAccount requests carry jwk, not kid")
        account: MemoryAccount | None = None
        if has_kid:
            kid = header["kid"]
            account = self.accounts_by_url.get(kid) if isinstance(kid, str) else None
            if account is None:
                raise ProblemError("accountDoesNotExist", f"no account at {kid!r}")
            key = account.key
        else:
            key = load_jwk(header["jwk"])
        algorithm = signature_algorithm(jws, key)
        if account is None:
            check_account_key(key)
        if not jws.verify(key, algorithm):
            raise ProblemError("malformed", "JWS signature is invalid")
        self._check_nonce(header.get("nonce"))
        url = header.get("url")
        if not isinstance(url, str):
            raise ProblemError("malformed", "the protected header lacks a 'url' string")
        if url != request.url:
            raise ProblemError(
                "unauthorized",
                f"the JWS url {url!r} is not the request URL {request.url!r}",
            )
        if account is not None and account.status != "valid":
            raise ProblemError("unauthorized", f"account is {account.status}")
        return Signed(jws=jws, key=key, account=account)

    def signed_by_account(self, request: Incoming) -> tuple[Signed, MemoryAccount]:
        """
        :returns: The request verified as signed by an account's key
            (``kid``), and that account.
        :raises ProblemError: For any failed check.
        """
        signed = self.verified(request, "kid")
        assert signed.account is not None
        return signed, signed.account
