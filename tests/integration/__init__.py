"""
Integration tests against a real ACME server: Pebble and pebble-challtestsrv,
started per test class by :mod:`tests.integration.pebble`.
"""
