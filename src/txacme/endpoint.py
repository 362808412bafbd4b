r"""
Server endpoints that serve TLS with certificates from an ACME CA: the
``le:``, ``lets:`` and ``acme:`` endpoint strings, as in txacme 0.9, so that
one option turns a Twisted server into an HTTPS server::

    twistd web --listen le:/srv/www/certs:tcp:443 --path /srv/www/root

The description, in Twisted's endpoint string syntax (``\:`` is a colon
inside a value, ``\=`` an equals sign, ``\\`` a backslash)::

    le:<directory>:<endpoint>[:option=value ...]      Let's Encrypt
    lets:<directory>:<endpoint>[:option=value ...]    Let's Encrypt staging
    acme:<directory>:<endpoint>:directory=<URL>[:option=value ...]

``<directory>`` is the certificate store (a :class:`~txacme.store.DirectoryStore`:
one ``<name>.pem`` file per certificate, and the account key ``client.key``).
``<endpoint>`` is the endpoint to listen on, for example ``tcp:443``: every
positional argument after the directory, joined by colons, and every keyword
argument that is not an option below (``tcp6:443:interface=\:\:1`` works
as is; ``tcp\:443`` is the same as ``tcp:443``).  The directory is created
(mode 0700) when the description is parsed, if it does not exist.  The
options:

``directory=<URL>``
    ``acme:`` only, and required there: the CA's ACME directory URL (https).
``ca=<path>``
    A PEM file of CA certificates to trust for the ACME server's HTTPS
    instead of the platform's (Pebble, a private CA).
``email=<address>``
    The account's contact address.
``domains=<names>``
    Certificates to keep issued besides the store's entries: names separated
    by commas share one certificate (the first names its file), certificates
    are separated by semicolons: ``domains=example.com,www.example.com;example.org``.
    Without it, as in txacme 0.9, the names are the store's entries: create
    an empty ``example.com.pem`` in the directory to ask for a certificate.
``challenge=<types>``
    ``tls-alpn-01`` (the default: answered on the TLS port itself),
    ``http-01``, or both separated by commas, in order of preference.
``http01=<endpoint>``
    Where the http-01 responder listens (default ``tcp:80``); implies
    ``challenge=http-01`` when ``challenge=`` is not given.
``reissue=<duration>``
    Renew a certificate when it expires within this time (default: when a
    third of its lifetime remains).  Durations are seconds, or numbers with
    units ``w``, ``d``, ``h``, ``m``, ``s``: ``30d``, ``1h30m``.
``check=<duration>``
    How often the store is checked and re-read (default ``1d``).

When the endpoint listens it serves TLS with, for each server name (SNI),
the certificate of the store that covers it, answers tls-alpn-01 challenges
on the same port (:class:`~txacme.challenges.TLSALPN01Responder`), and
starts an :class:`~txacme.service.AcmeIssuingService` that issues and renews
the certificates; stopping the port stops the service.  A client asking for
no name or an unknown one gets a default certificate: the first ``domains=``
entry's, else the first entry's by name, else a self-signed one made at
start (so that the port comes up before the first certificate is issued).
Certificates are reloaded as soon as the service stores them, and the whole
store every ``check`` interval (for files changed by hand).

The parts are public: :class:`AutoTLSEndpoint` (the endpoint, built from
Python), :class:`ServedCertificates` (SNI from a store, for any TLS
server), :class:`CertificateMapping` (what txacme 0.9's endpoint served
instead, still accepted), :func:`parse_endpoint_options` and
:func:`endpoint_from_options`.
:func:`~txacme.store.load_or_create_client_key` is importable from here too,
where txacme 0.9 had it.
"""

from __future__ import annotations

# The facade: the option parsing is in txacme._endpoint_options, the
# certificates served by server name in txacme._endpoint_serving, and the
# endpoint and its parser in txacme._endpoint_wiring.
from txacme import _endpoint_options
from txacme._endpoint_options import (
    EndpointOptions,
    parse_duration,
    parse_endpoint_options,
)
from txacme._endpoint_serving import CertificateMapping, ServedCertificates
from txacme._endpoint_wiring import (
    AcmeEndpointParser,
    AutoTLSEndpoint,
    endpoint_from_options,
)
from txacme.store import load_or_create_client_key

__all__ = [
    "CHALLENGE_TYPES",
    "AcmeEndpointParser",
    "AutoTLSEndpoint",
    "CertificateMapping",
    "EndpointOptions",
    "ServedCertificates",
    "acme_parser",
    "endpoint_from_options",
    "le_parser",
    "lets_parser",
    "load_or_create_client_key",
    "parse_duration",
    "parse_endpoint_options",
]

#: The challenge types the endpoints can answer, in the default order.
CHALLENGE_TYPES = _endpoint_options.CHALLENGE_TYPES

#: ``le:``: Let's Encrypt.
le_parser = AcmeEndpointParser("le")
#: ``lets:``: Let's Encrypt's staging environment.
lets_parser = AcmeEndpointParser("lets")
#: ``acme:``: any ACME CA, by ``directory=``.
acme_parser = AcmeEndpointParser("acme")
