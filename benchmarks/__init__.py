"""
Benchmarks of txacme against real ACME servers (a local Pebble).

``python -m benchmarks client`` (or ``tox -e bench``) runs the client
benchmark, :mod:`benchmarks.client_bench`.  See ``benchmarks/README.rst``.
"""
