"""
ACME client API (like :mod:`acme.client`) implementation for Twisted.

This is the API of txacme 0.9's ``txacme.client``, speaking RFC 8555
(ACME v2) on the wire: each method of the ACME v1 era maps onto the RFC 8555
resources as described in :doc:`/migration`.  Every method returns a
:class:`~twisted.internet.defer.Deferred`; cancelling it cancels the requests
in flight.

This module is the facade: :class:`Client` (one method per RFC 8555
exchange, over the protocol modules of ``txacme._protocol``), the issuance
workflow of :mod:`txacme.issuance` (:func:`answer_challenge`,
:func:`poll_until_valid`, :func:`issue_certificate`), the transport
(:class:`JWSClient`), and the names txacme 0.9 exported here.
"""

from __future__ import annotations

from acme import messages

from txacme._client import Client
from txacme._polling import PollingPolicy, PollTiming
from txacme._protocol.accounts import EABCredentials, alg_for_key
from txacme._protocol.renewal_info import renewal_certificate_id
from txacme.errors import AuthorizationFailed, NoSupportedChallenges, ServerError
from txacme.issuance import (
    answer_challenge,
    issue_certificate,
    poll_until_valid,
    select_chain,
)
from txacme.jws import (  # noqa: F401 (txacme 0.9 exported the content types here)
    JSON_CONTENT_TYPE,
    JSON_ERROR_CONTENT_TYPE,
    JWSClient,
)

__all__ = [
    "DER_CONTENT_TYPE",
    "REPLAY_NONCE_HEADER",
    "AuthorizationFailed",
    "Client",
    "EABCredentials",
    "JWSClient",
    "NoSupportedChallenges",
    "PollTiming",
    "PollingPolicy",
    "ServerError",
    "alg_for_key",
    "answer_challenge",
    "fqdn_identifier",
    "issue_certificate",
    "poll_until_valid",
    "renewal_certificate_id",
    "select_chain",
]

#: The ``Replay-Nonce`` header (txacme 0.9 exported this name).
REPLAY_NONCE_HEADER = "Replay-Nonce"
#: The content type of a DER certificate (txacme 0.9 exported this name;
#: RFC 8555 serves PEM chains, :data:`txacme.jws.PEM_CHAIN_TYPE`).
DER_CONTENT_TYPE = "application/pkix-cert"


def fqdn_identifier(fqdn: str) -> messages.Identifier:
    """
    Construct an identifier from an FQDN.

    Trivial implementation, just saves on typing.

    :param fqdn: The domain name.
    :returns: The identifier.
    """
    return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=fqdn)
