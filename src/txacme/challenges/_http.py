"""
The http-01 responder (RFC 8555 §8.3).
"""

from __future__ import annotations

from acme import challenges
from attrs import define, field
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, NoResource, Resource
from zope.interface import implementer

from txacme.interfaces import IResponder

_log = Logger()


class _TokenResource(Resource):
    """
    Serves one key authorization, for GET and HEAD only.
    """

    isLeaf = True

    def __init__(self, key_authorization: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._key_authorization = key_authorization

    def render_GET(self, request: IRequest) -> bytes:
        # RFC 8555 §8.3 shows application/octet-stream; the body is the key
        # authorization and nothing else.
        request.setHeader(b"content-type", b"application/octet-stream")  # type: ignore[no-untyped-call]
        request.setHeader(b"cache-control", b"no-store")  # type: ignore[no-untyped-call]
        return self._key_authorization

    def render_HEAD(self, request: IRequest) -> bytes:
        return self.render_GET(request)


class _ChallengeDirectory(Resource):
    """
    The resource mounted at ``/.well-known/acme-challenge``: it serves the
    exact tokens being responded to and a 404 for every other path.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.tokens: dict[bytes, Resource] = {}

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        if request.postpath:
            # /.well-known/acme-challenge/<token>/more is not a token path.
            return NoResource()
        token = self.tokens.get(path)
        if token is None:
            return NoResource()
        return token

    def render(self, request: IRequest) -> bytes:
        page: bytes = NoResource().render(request)  # type: ignore[no-untyped-call]
        return page


@implementer(IResponder)
@define
class HTTP01Responder:
    """
    An http-01 challenge responder for ``twisted.web``.

    Mount :attr:`resource` at ``/.well-known/acme-challenge`` of the site that
    serves port 80 for the names being validated.  While a challenge is being
    responded to, ``GET /.well-known/acme-challenge/<token>`` answers the key
    authorization (``application/octet-stream``); every other path under the
    resource, and every token after :meth:`stop_responding`, answers 404.

    :ivar resource: The ``twisted.web`` resource to mount.  By default a
        resource that answers only the pending tokens; an application's own
        :class:`~twisted.web.resource.Resource` may be passed instead, and the
        tokens become its children.
    """

    challenge_type = "http-01"

    resource: Resource = field(factory=_ChallengeDirectory)

    def _tokens(self) -> dict[bytes, Resource]:
        if isinstance(self.resource, _ChallengeDirectory):
            return self.resource.tokens
        # A plain Resource passed in by the application (as txacme 0.9
        # allowed): its static children are the tokens.
        return self.resource.children

    def start_responding(
        self,
        server_name: str,
        challenge: challenges.HTTP01,
        response: challenges.HTTP01Response,
    ) -> None:
        """
        Start serving the key authorization at the challenge's token path.
        """
        token = challenge.encode("token").encode("ascii")
        self._tokens()[token] = _TokenResource(
            response.key_authorization.encode("ascii")
        )
        _log.debug("http-01: responding for {server_name}", server_name=server_name)

    def stop_responding(
        self,
        server_name: str,
        challenge: challenges.HTTP01,
        response: challenges.HTTP01Response,
    ) -> None:
        """
        Stop serving the challenge's token path.  Idempotent; a no-op for a
        challenge that was never started.
        """
        token = challenge.encode("token").encode("ascii")
        self._tokens().pop(token, None)
