"""
Directory URLs of well-known ACME certificate authorities.

All of them are RFC 8555 (ACME v2) directories; the ACME v1 URLs that
txacme 0.9 carried were switched off by their CAs.
"""

from twisted.python.url import URL

LETSENCRYPT_DIRECTORY: URL = URL.fromText(
    "https://acme-v02.api.letsencrypt.org/directory"
)
"""Let's Encrypt's production directory."""

LETSENCRYPT_STAGING_DIRECTORY: URL = URL.fromText(
    "https://acme-staging-v02.api.letsencrypt.org/directory"
)
"""Let's Encrypt's staging directory: untrusted certificates, generous limits."""

ZEROSSL_DIRECTORY: URL = URL.fromText("https://acme.zerossl.com/v2/DV90")
"""ZeroSSL's directory (requires External Account Binding)."""

GOOGLE_DIRECTORY: URL = URL.fromText("https://dv.acme-v02.api.pki.goog/directory")
"""Google Trust Services' production directory (requires EAB)."""

GOOGLE_STAGING_DIRECTORY: URL = URL.fromText(
    "https://dv.acme-v02.test-api.pki.goog/directory"
)
"""Google Trust Services' staging directory (requires EAB)."""

__all__ = [
    "GOOGLE_DIRECTORY",
    "GOOGLE_STAGING_DIRECTORY",
    "LETSENCRYPT_DIRECTORY",
    "LETSENCRYPT_STAGING_DIRECTORY",
    "ZEROSSL_DIRECTORY",
]
