"""
Accounts (RFC 8555 §7.3): creation and lookup (``newAccount``), External
Account Binding (§7.3.4), update and deactivation (§7.3.2, §7.3.6), key
change (§7.3.5).
"""

from __future__ import annotations

import json
import re
from typing import Any

from acme import jws as acme_jws
from acme import messages
from attrs import field, frozen, validators
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.b64 import b64decode
from josepy.jwa import ES256, ES384, ES512, HS256, HS384, HS512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA, JWKOct

from txacme._answers import links as response_links
from txacme._protocol._common import Session, location, parse, required_url
from txacme.errors import ExternalAccountRequired, ServerError, TermsOfServiceNotAgreed
from txacme.jws import Answer, Signer
from txacme.util import PrivateKey

__all__ = [
    "EABCredentials",
    "account_error",
    "alg_for_key",
    "as_jwk",
    "change_key",
    "new_account",
    "update_account",
]

# Account fields RFC 8555 §7.3 lets a client send; ACME v1 fields such as
# "agreement", "key" or "resource" are dropped.
_ACCOUNT_REQUEST_FIELDS = (
    "contact",
    "termsOfServiceAgreed",
    "onlyReturnExisting",
    "externalAccountBinding",
)
# What CAs answer a newAccount without termsOfServiceAgreed: Boulder and
# RFC 8555 "malformed" or "userActionRequired", Pebble 2.4 the draft-era
# "agreementRequired".
_TERMS_ERROR_CODES = (
    "malformed",
    "userActionRequired",
    "agreementRequired",
    "unauthorized",
)
# Base64url as CAs print keys; some use the standard alphabet or padding.
_BASE64URL = re.compile(r"[A-Za-z0-9_\-+/]+=*")


@frozen
class EABCredentials:
    """
    External Account Binding credentials (RFC 8555 §7.3.4): what a CA
    such as ZeroSSL, Google Trust Services or Sectigo hands out to bind an
    ACME account to an account with it.

    :ivar key_id: The key identifier.
    :ivar hmac_key: The MAC key: raw bytes, or the base64url text CAs show.
    :ivar alg: The MAC algorithm: ``HS256`` (the usual), ``HS384`` or
        ``HS512``.
    """

    key_id: str
    hmac_key: bytes | str = field(repr=False)
    alg: str = field(
        default="HS256", validator=validators.in_(("HS256", "HS384", "HS512"))
    )

    def binding(self, account_key: JWK, new_account_url: str) -> dict[str, Any]:
        """
        The ``externalAccountBinding`` value: a JWS over the account's
        public key, MACed with the HMAC key.

        :param account_key: The account's public key.
        :param new_account_url: The directory's ``newAccount`` URL.
        """
        if isinstance(self.hmac_key, bytes):
            key_bytes = self.hmac_key
        else:
            text = self.hmac_key.strip()
            # josepy's decoder skips characters outside the alphabet: check
            # first, so that a mangled key fails here, not as a bad MAC.
            if not _BASE64URL.fullmatch(text):
                raise ValueError("The EAB HMAC key is not base64url text")
            key_bytes = b64decode(text.rstrip("=").replace("+", "-").replace("/", "_"))
        if not key_bytes:
            raise ValueError("The EAB HMAC key is empty")
        signed = acme_jws.JWS.sign(
            json.dumps(account_key.public_key().to_partial_json()).encode("utf-8"),
            key=JWKOct(key=key_bytes),
            alg=_HMAC_ALGORITHMS[self.alg],
            nonce=None,
            url=new_account_url,
            kid=self.key_id,
        )
        binding: dict[str, Any] = signed.to_partial_json()
        return binding


_HMAC_ALGORITHMS: dict[str, JWASignature] = {
    "HS256": HS256,
    "HS384": HS384,
    "HS512": HS512,
}


def alg_for_key(key: JWK) -> JWASignature:
    """
    The JWS algorithm for a key: RS256 for RSA, ES256 for P-256, ES384 for
    P-384, ES512 for P-521.

    :raises ValueError: For any other key.
    """
    if isinstance(key, JWKRSA):
        return RS256
    if isinstance(key, JWKEC):
        curve = key.key.curve.name
        algorithms = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}
        if curve in algorithms:
            return algorithms[curve]
    raise ValueError(f"No JWS algorithm for {type(key).__name__} keys of this kind")


def as_jwk(key: JWK | PrivateKey) -> JWK:
    """
    A JWK from a JWK or a ``cryptography`` private key (RSA, ECDSA).

    :raises TypeError: For any other key.
    """
    if isinstance(key, JWK):
        return key
    # josepy's ComparableKey (a JWK's .key) wraps the cryptography key.
    key = getattr(key, "_wrapped", key)
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return JWKEC(key=key)
    raise TypeError(f"Not an RSA or ECDSA private key: {key!r}")


def account_payload(
    body: messages.Registration, update: bool = False
) -> dict[str, Any]:
    """
    The RFC 8555 account object for a newAccount or update request, from a
    registration body that may carry ACME v1 fields.
    """
    jobj = body.to_partial_json()
    payload = {name: jobj[name] for name in _ACCOUNT_REQUEST_FIELDS if name in jobj}
    if update:
        payload.pop("onlyReturnExisting", None)
        payload.pop("externalAccountBinding", None)
        if body.status == messages.STATUS_DEACTIVATED:
            payload["status"] = messages.STATUS_DEACTIVATED.name
    if "contact" in payload:
        payload["contact"] = list(payload["contact"])
    return payload


async def new_account(
    session: Session,
    signer: Signer,
    new_reg: messages.NewRegistration,
    eab: EABCredentials | None,
) -> messages.RegistrationResource:
    """
    ``newAccount`` (RFC 8555 §7.3), signed with ``jwk``: create an account,
    or find the key's existing one (200 with its URL).

    :returns: The registration; its ``uri`` is the account URL.
    :raises TermsOfServiceNotAgreed: If the CA wants its terms agreed to.
    :raises ExternalAccountRequired: If the CA requires ``eab`` and none
        was given (checked before anything is sent).
    """
    directory = session.directory
    url = directory["newAccount"]
    if eab is not None:
        new_reg = new_reg.update(
            external_account_binding=eab.binding(signer.key.public_key(), url)
        )
    elif (
        directory.meta.external_account_required
        and not new_reg.only_return_existing
        and not new_reg.external_account_binding
    ):
        raise ExternalAccountRequired(
            messages.Error.from_json(
                {
                    "type": messages.ERROR_PREFIX + "externalAccountRequired",
                    "detail": "The directory says the CA requires External "
                    "Account Binding: pass eab=EABCredentials(key_id, "
                    "hmac_key) to Client.register",
                }
            ),
            None,
        )
    try:
        answer = await session.post(
            url, account_payload(new_reg), Signer(signer.key, signer.alg, None)
        )
    except ServerError as error:
        raise account_error(directory, error, new_reg) from error
    account_url = location(answer.response, url)
    jobj = answer.json()
    if answer.response.code == 200 and not jobj:
        # An existing account answered with only its URL (RFC 8555
        # §7.3.1 does not require a body): read it.
        answer = await session.post(
            account_url, None, Signer(signer.key, signer.alg, account_url)
        )
        jobj = answer.json()
    return registration_resource(directory, answer, jobj, account_url)


def account_error(
    directory: messages.Directory, error: ServerError, new_reg: messages.Registration
) -> ServerError:
    """
    The error to raise for a refused account request: a
    :exc:`~txacme.errors.TermsOfServiceNotAgreed` when the refusal is for
    want of agreement to the CA's terms.
    """
    terms = directory.meta.terms_of_service
    detail = (error.message.detail or "").lower()
    if (
        not new_reg.terms_of_service_agreed
        and not new_reg.only_return_existing
        and error.code in _TERMS_ERROR_CODES
        and (terms is not None or "terms" in detail)
    ):
        return TermsOfServiceNotAgreed(error.message, error.response, terms)
    return error


def registration_resource(
    directory: messages.Directory,
    answer: Answer,
    jobj: Any,
    uri: str,
    terms_of_service: str | None = None,
) -> messages.RegistrationResource:
    """The registration resource of an account object."""
    body = parse(messages.Registration, jobj, answer.response)
    linked = response_links(answer.response, uri).get("terms-of-service", [])
    terms = (
        (linked[0] if linked else None)
        or terms_of_service
        or directory.meta.terms_of_service
    )
    if terms is None:
        return messages.RegistrationResource(body=body, uri=uri)
    return messages.RegistrationResource(body=body, uri=uri, terms_of_service=terms)


async def update_account(
    session: Session,
    signer: Signer,
    url: str,
    body: messages.Registration,
    terms_of_service: str | None,
) -> messages.RegistrationResource:
    """
    An account update (RFC 8555 §7.3.2; ``status: deactivated``, §7.3.6):
    POST the account's ``contact``, ``termsOfServiceAgreed`` (and status)
    to its URL.
    """
    try:
        answer = await session.post(url, account_payload(body, update=True), signer)
    except ServerError as error:
        raise account_error(
            session.directory, error, body.update(terms_of_service_agreed=True)
        ) from error
    return registration_resource(
        session.directory, answer, answer.json(), url, terms_of_service
    )


async def change_key(session: Session, signer: Signer, new_signer: Signer) -> None:
    """
    ``keyChange`` (RFC 8555 §7.3.5): an inner JWS signed by the new key,
    inside an outer one signed by the account's current key.

    :raises NotOffered: If the directory has no ``keyChange``.
    """
    url = required_url(session.directory, "keyChange")
    inner = acme_jws.JWS.sign(
        json.dumps(
            {"account": signer.kid, "oldKey": signer.key.public_key().to_partial_json()}
        ).encode("utf-8"),
        key=new_signer.key,
        alg=new_signer.alg,
        nonce=None,
        url=url,
    )
    await session.post(
        url, inner.json_dumps().encode("utf-8"), signer, content_type=None
    )
