"""
Benchmarks of txacme: against real ACME servers (a local Pebble), and over
large certificate stores.

``python -m benchmarks client`` runs the client benchmark,
:mod:`benchmarks.client_bench`; ``python -m benchmarks service`` the
issuing service's, :mod:`benchmarks.service_bench`; ``tox -e bench`` both.
See ``benchmarks/README.rst``.
"""
