"""
The package's architecture, checked: each module imports only from its own
layer and the layers below (as ``docs/architecture.rst`` draws them), no
module uses another module's private names outside its package, every
public import path of txacme 0.9 and of today works, and importing the
client loads neither the responders nor a server.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

from tests.support import TestCase

SRC = Path(__file__).resolve().parent.parent / "src"

#: The layers, lowest first: a module's layer is that of the longest
#: prefix of its name listed here.
LAYERS: list[tuple[str, ...]] = [
    # Values, interfaces, errors, helpers: no behaviour of the protocol.
    (
        "txacme._deferred",
        "txacme._files",
        "txacme._headers",
        "txacme._names",
        "txacme._types",
        "txacme.errors",
        "txacme.interfaces",
        "txacme.messages",
        "txacme.urls",
        "txacme.util",
    ),
    # The transport: JWS, nonces, retries.
    (
        "txacme.jws",
        "txacme._answers",
        "txacme._https",
        "txacme._nonces",
        "txacme._retry",
        "txacme._signing",
    ),
    # The protocol: one module per RFC 8555 resource.
    ("txacme._protocol",),
    # Waiting for the CA, and the client over the protocol.
    ("txacme._polling", "txacme._client"),
    # The issuance workflow, and the client's public facade.
    ("txacme.issuance", "txacme.client"),
    # Responders.
    ("txacme.challenges",),
    # The service and the stores.
    (
        "txacme.store",
        "txacme._shared",
        "txacme._issuer",
        "txacme._renewal",
        "txacme.service",
    ),
    # Endpoints.
    (
        "txacme.endpoint",
        "txacme._endpoint_options",
        "txacme._endpoint_serving",
        "txacme._endpoint_wiring",
    ),
    # Test doubles and harnesses, for applications' tests.
    ("txacme.testing",),
]


def _layer(module: str) -> int:
    if module == "txacme":
        # The package itself: its version.
        return 0
    best = (-1, 0)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(
                prefix
            ) > best[1]:
                best = (index, len(prefix))
    if best[0] < 0:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py")
    return best[0]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / "txacme").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _runtime_imports(path: Path) -> list[tuple[str, list[str], int]]:
    """
    The ``txacme`` imports of a module outside ``if TYPE_CHECKING:`` blocks
    (those are for annotations only): (module, names, line).
    """
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("txacme"):
                found.append(
                    (node.module, [alias.name for alias in node.names], node.lineno)
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("txacme"):
                    found.append((alias.name, [], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _package(module: str) -> str:
    """The top package of a module below txacme (``txacme.testing``...)."""
    parts = module.split(".")
    return ".".join(parts[:2])


class LayerTests(TestCase):
    """The layers of ``docs/architecture.rst``."""

    def test_no_import_from_above(self) -> None:
        """
        No module imports (outside annotations) from a layer above its own:
        the protocol never imports responders, the service or endpoints.
        """
        modules = _modules()
        upward = []
        for module, path in modules.items():
            own = _layer(module)
            for imported, names, line in _runtime_imports(path):
                targets = [imported] + [
                    f"{imported}.{name}"
                    for name in names
                    if f"{imported}.{name}" in modules
                ]
                for target in targets:
                    if _layer(target) > own:
                        upward.append(f"{path.name}:{line} {module} -> {target}")
        self.assertEqual(upward, [])

    def test_no_private_names_across_packages(self) -> None:
        """
        No module imports another's private name (a leading underscore)
        from outside its own package (``txacme.challenges._dns`` may use
        ``txacme.challenges._dns_errors``' names; ``txacme.service`` may
        not use ``txacme.store._helper``).  Private modules are fine: their
        names without underscore are their API within txacme.
        """
        crossing = []
        modules = _modules()
        for module, path in modules.items():
            for imported, names, line in _runtime_imports(path):
                private = [
                    name
                    for name in names
                    if name.startswith("_")
                    and not name.startswith("__")
                    and f"{imported}.{name}" not in modules
                ]
                if private and _package(imported) != _package(module):
                    crossing.append(f"{path.name}:{line} {imported}: {private}")
        self.assertEqual(crossing, [])

    def test_client_loads_no_responder_or_server(self) -> None:
        """
        ``import txacme.client`` loads neither the responders nor
        twisted.web's server, the TLS protocol or DNS code.
        """
        loaded = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, txacme.client; print('\\n'.join(sorted(sys.modules)))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        unwanted = [
            "txacme.challenges",
            "txacme.service",
            "txacme.endpoint",
            "twisted.web.server",
            "twisted.protocols.tls",
            "dns",
        ]
        self.assertEqual([module for module in unwanted if module in loaded], [])


#: Every public import path of txacme 0.9.3 and of today: module, names.
PUBLIC = {
    "txacme.client": [
        "Client",
        "JWSClient",
        "ServerError",
        "AuthorizationFailed",
        "NoSupportedChallenges",
        "answer_challenge",
        "poll_until_valid",
        "fqdn_identifier",
        "JSON_CONTENT_TYPE",
        "JSON_ERROR_CONTENT_TYPE",
        "REPLAY_NONCE_HEADER",
        "DER_CONTENT_TYPE",
        "PollingPolicy",
        "EABCredentials",
        "alg_for_key",
        "issue_certificate",
        "renewal_certificate_id",
        "select_chain",
    ],
    "txacme.jws": ["JWSClient", "RetryPolicy", "Signer", "Answer"],
    "txacme.issuance": [
        "answer_challenge",
        "poll_until_valid",
        "issue_certificate",
        "select_chain",
    ],
    "txacme.service": [
        "AcmeIssuingService",
        "Backoff",
        "IssuingClient",
        "parse_server_names",
    ],
    "txacme.store": [
        "DirectoryStore",
        "MemoryStore",
        "CertificateSummary",
        "ICertificateSummaries",
        "check_server_name",
        "load_or_create_client_key",
        "summarize",
    ],
    "txacme.endpoint": [
        "AutoTLSEndpoint",
        "load_or_create_client_key",
        "AcmeEndpointParser",
        "ServedCertificates",
        "parse_endpoint_options",
        "endpoint_from_options",
    ],
    "txacme.testing": [
        "FakeClient",
        "FakeClientController",
        "MemoryStore",
        "NullResponder",
        "MemoryAcmeServer",
        "FaultPlan",
        "InjectedFault",
    ],
    "txacme.testing.pebble": ["PebbleServer", "PebbleOptions", "ServedSite"],
    "txacme.testing.faultproxy": [
        "FaultProxy",
        "ProxiedRequest",
        "classify_pebble_path",
    ],
    "txacme.challenges": [
        "HTTP01Responder",
        "TLSALPN01Responder",
        "RFC2136Responder",
        "CallableDNS01Responder",
        "LibcloudDNSResponder",
        "ZoneNotFound",
    ],
    "txacme.util": [
        "generate_private_key",
        "csr_for_names",
        "encode_csr",
        "decode_csr",
        "clock_now",
        "check_directory_url_type",
        "const",
        "tap",
        "general_name",
    ],
    "txacme.interfaces": [
        "IResponder",
        "ICertificateStore",
        "ICertificateSummaries",
        "IssuingClient",
    ],
    "txacme.messages": ["CertificateRequest", "CertificateChainResource"],
    "txacme.urls": ["LETSENCRYPT_DIRECTORY", "LETSENCRYPT_STAGING_DIRECTORY"],
    "txacme.errors": ["NotInZone", "ZoneNotFound", "ServerError", "PollTimeout"],
    "twisted.plugins.txacme_endpoint": ["le_parser", "lets_parser"],
}


class PublicPathTests(TestCase):
    """Every public import path keeps working."""

    def test_every_path_imports(self) -> None:
        """Each name of :data:`PUBLIC` is importable from its module."""
        missing = [
            f"{module}.{name}"
            for module, names in PUBLIC.items()
            for name in names
            if not hasattr(importlib.import_module(module), name)
        ]
        self.assertEqual(missing, [])

    def test_every_all_name_exists(self) -> None:
        """Every name in a public module's ``__all__`` exists."""
        missing = []
        for module in _modules():
            if any(part.startswith("_") for part in module.split(".")):
                continue
            imported = importlib.import_module(module)
            for name in getattr(imported, "__all__", ()):
                if not hasattr(imported, name):
                    missing.append(f"{module}.{name}")
        self.assertEqual(missing, [])
