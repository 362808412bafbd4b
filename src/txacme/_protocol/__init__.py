"""
The RFC 8555 protocol core: one module per resource, each function one
exchange with the server (no waiting), taking the :class:`Session` (the
transport, the directory, the clock) and the account's
:class:`~txacme.jws.Signer` as arguments, so that nothing here holds state.

* :mod:`._common`: :class:`Session`, parsing, and the helpers they share;
* :mod:`.directory`: the directory (§7.1.1);
* :mod:`.accounts`: accounts, External Account Binding, key change (§7.3);
* :mod:`.authorizations`: authorizations and challenges (§7.4.1, §7.5);
* :mod:`.orders`: orders and finalization (§7.4);
* :mod:`.certificates`: certificate download and revocation (§7.4.2, §7.6);
* :mod:`.renewal_info`: ACME Renewal Information (RFC 9773).

:class:`txacme.client.Client` is the facade over these; the waiting (for
authorizations and orders) is in :mod:`txacme._polling`.
"""

from txacme._protocol._common import Session

__all__ = ["Session"]
