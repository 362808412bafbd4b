"""
Issuing one entry of :class:`~txacme.service.AcmeIssuingService`'s store:
the private key (made off the reactor thread), the order (or the one a
crash or restart interrupted, from the store's
:class:`~txacme.interfaces.IOrderJournal`), and storing the result.  When
to issue, and what to do about failures, is the service's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import pem
from acme import messages
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from txacme._protocol.renewal_info import renewal_certificate_id
from txacme.errors import (
    AccountDoesNotExist,
    AuthorizationFailed,
    AuthorizationsNotValid,
    NoSupportedChallenges,
    OrderFailed,
    ServerError,
)
from txacme.interfaces import (
    ICertificateStore,
    IOrderJournal,
    IResponder,
    IssuingClient,
)
from txacme.issuance import issue_certificate
from txacme.jws import RetryPolicy
from txacme.store import CertificateSummary, OrderRecord
from txacme.util import PrivateKey, csr_for_names

__all__ = ["EntryIssuer", "key_object"]

_log = Logger("txacme.service")
_T = TypeVar("_T")


def key_object(private_key: PrivateKey) -> pem.AbstractPEMObject:
    """
    A private key as the store keeps it: PEM in the traditional OpenSSL
    format of its type, as txacme 0.9 wrote keys (``BEGIN RSA PRIVATE
    KEY``, ``BEGIN EC PRIVATE KEY``), or PKCS#8 for a type that has none.
    """
    try:
        key_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    except ValueError:
        key_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    [stored] = pem.parse(key_pem)
    return stored


def _definitive(error: BaseException) -> bool:
    """
    Whether a failed issuance's order is finished with: the CA refused it
    (an error it does not send for a passing fault, an invalid order or
    authorization), so that there is nothing to resume; not after a passing
    fault, a timeout or a lost answer, after which the CA may yet issue.
    """
    if isinstance(
        error,
        OrderFailed
        | AuthorizationFailed
        | AuthorizationsNotValid
        | NoSupportedChallenges,
    ):
        return True
    return isinstance(error, ServerError) and not _TRANSIENCE.is_transient(error)


#: Tells a passing error from a definitive one.
_TRANSIENCE = RetryPolicy()


@frozen
class EntryIssuer:
    """
    Issues the entries of a store.

    :ivar store: The store.
    :ivar clock: The reactor (threads for key work, when it has them), or
        a clock.
    :ivar responders: The responders, in order of preference.
    :ivar generate_key: Makes a certificate's private key.
    :ivar profile: The certificate profile asked for, or ``None``.
    :ivar preferred_chain: The issuer name of the chain wanted, or ``None``.
    """

    store: ICertificateStore
    clock: IReactorTime
    responders: Sequence[IResponder]
    generate_key: Callable[[], PrivateKey]
    profile: str | None = None
    preferred_chain: str | None = None

    async def issue(
        self, client: IssuingClient, key: str, names: tuple[str, ...]
    ) -> CertificateSummary:
        """
        Issue ``key``'s certificate: go on with its order in flight if the
        store's journal has one (after a crash or a restart), or order.
        """
        journal = IOrderJournal(self.store, None)
        if journal is not None:
            pending = await journal.pending_order(key)
            if pending is not None:
                resumed = await self._resume(client, key, names, journal, pending)
                if resumed is not None:
                    return resumed
        private_key = await self.new_key()
        stored_key = key_object(private_key)
        csr = csr_for_names(list(names), private_key)
        replaces: str | None = None
        old = await self.current_certificate(key)
        if old is not None:
            try:
                replaces = renewal_certificate_id(old)
            except ValueError:
                replaces = None
        _log.debug(
            "Ordering a certificate for {names} (replacing {replaces})",
            names=list(names),
            replaces=replaces,
        )

        async def record(orderr: messages.OrderResource) -> None:
            if journal is not None:
                await journal.record_order(
                    key, OrderRecord(orderr.uri, names, stored_key.as_bytes())
                )

        try:
            chain = await issue_certificate(
                client,
                self.clock,
                csr,
                self.responders,
                preferred_chain=self.preferred_chain,
                profile=self.profile,
                replaces=replaces,
                on_order=record,
            )
        except Exception as error:
            if journal is not None and _definitive(error):
                # The CA refused: nothing to resume.
                await journal.forget_order(key)
            raise
        summary = await self._store_chain(key, stored_key, chain)
        if journal is not None:
            await journal.forget_order(key)
        return summary

    async def _resume(
        self,
        client: IssuingClient,
        key: str,
        names: tuple[str, ...],
        journal: IOrderJournal,
        pending: OrderRecord,
    ) -> CertificateSummary | None:
        """
        Go on with the order in flight a crash or a restart interrupted:
        download the certificate the CA issued meanwhile (or finish the
        order), rather than order again.

        :returns: The certificate's summary once stored; ``None`` if the
            order cannot be resumed (other names, or the CA has forgotten
            it or failed it): then the record is forgotten, and the caller
            orders anew.
        """
        if set(pending.names) != set(names):
            await journal.forget_order(key)
            return None
        _log.info(
            "Resuming the order {order_url} for {server_name}",
            order_url=pending.order_url,
            server_name=key,
        )
        private_key = await self._load_key(pending.key_pem)
        try:
            chain = await issue_certificate(
                client,
                self.clock,
                csr_for_names(list(pending.names), private_key),
                self.responders,
                preferred_chain=self.preferred_chain,
                order=pending.order_url,
            )
        except (OrderFailed, AccountDoesNotExist) as error:
            gone: Exception | None = error
        except ServerError as error:
            if error.status != 404:
                if _definitive(error):
                    await journal.forget_order(key)
                raise
            gone = error
        except Exception as error:
            if _definitive(error):
                await journal.forget_order(key)
            raise
        else:
            gone = None
        if gone is not None:
            _log.warn(
                "The order {order_url} for {server_name} cannot be resumed "
                "({error}); ordering anew",
                order_url=pending.order_url,
                server_name=key,
                error=str(gone),
            )
            await journal.forget_order(key)
            if isinstance(gone, AccountDoesNotExist):
                raise gone
            return None
        [stored_key] = pem.parse(pending.key_pem)
        summary = await self._store_chain(key, stored_key, chain)
        await journal.forget_order(key)
        return summary

    async def _store_chain(
        self, key: str, stored_key: pem.AbstractPEMObject, chain: str
    ) -> CertificateSummary:
        """Store the key and the chain as the entry ``key``."""
        certificates = [
            obj
            for obj in pem.parse(chain.encode("ascii"))
            if isinstance(obj, pem.Certificate)
        ]
        if not certificates:
            raise ValueError("The CA's answer holds no certificate")
        await self.store.store(key, [stored_key, *certificates])
        leaf = x509.load_pem_x509_certificate(certificates[0].as_bytes())
        return CertificateSummary.from_certificate(leaf)

    async def current_certificate(self, key: str) -> x509.Certificate | None:
        """
        The entry's certificate, read from the store; ``None`` if there is
        none, or if the store cannot be read by name (txacme 0.9 needed
        only ``store``, and applications' own stores may have no ``get``).
        """
        get = getattr(self.store, "get", None)
        if get is None:
            return None
        try:
            objects = await self.store.get(key)
        except KeyError:
            return None
        except CancelledError:
            raise
        except Exception as error:
            _log.warn(
                "Reading the certificate of {server_name} from the store "
                "failed: {error}",
                server_name=key,
                error=str(error) or type(error).__name__,
            )
            return None
        for obj in objects:
            if isinstance(obj, pem.Certificate):
                try:
                    return x509.load_pem_x509_certificate(obj.as_bytes())
                except ValueError:
                    return None
        return None

    async def new_key(self) -> PrivateKey:
        return await self._off_reactor(self.generate_key)

    async def _load_key(self, key_pem: bytes) -> PrivateKey:
        """A private key from PEM (checking an RSA key takes a while)."""

        def load() -> PrivateKey:
            return cast(
                PrivateKey, serialization.load_pem_private_key(key_pem, password=None)
            )

        return await self._off_reactor(load)

    async def _off_reactor(self, work: Callable[[], _T]) -> _T:
        """
        Do CPU work in the reactor's thread pool when ``clock`` is a reactor
        with threads, synchronously otherwise (a ``Clock`` in tests).
        """
        if IReactorThreads.providedBy(self.clock):
            reactor = cast(IReactorThreads, self.clock)
            return await deferToThreadPool(reactor, reactor.getThreadPool(), work)
        return work()
