"""
The network faults shared by the in-memory server and the fault proxy:
the seeded choice of :class:`txacme.testing.FaultPlan`, the answers that
stand in for the CA's, and the proxy's classifier of Pebble's URLs
(:func:`txacme.testing.faultproxy.classify_pebble_path`).  The proxy
itself runs against Pebble in ``tests/integration/test_faultproxy.py``.
"""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from tests.support import TestCase
from txacme.testing import FAULT_KINDS, FaultKind, FaultPlan
from txacme.testing._faults import canned_answer
from txacme.testing.faultproxy import PEBBLE_PATHS, classify_pebble_path


def _draws(plan: FaultPlan, endpoints: list[str]) -> list[FaultKind | None]:
    return [plan.choose(endpoint) for endpoint in endpoints]


class ClassifierTests(TestCase):
    """
    Pebble's paths map to the endpoint kinds of the in-memory server.
    """

    def test_pebble_paths(self) -> None:
        """
        Each path Pebble 2.4 serves (seen in its directory and its
        answers) is recognized: exact paths as they are, prefixes with the
        resource's identifier after them.
        """
        expected = {
            "/dir": "directory",
            "/nonce-plz": "newNonce",
            "/sign-me-up": "newAccount",
            "/order-plz": "newOrder",
            "/rollover-account-key": "keyChange",
            "/revoke-cert": "revokeCert",
            "/my-account/2f1c": "account",
            "/list-orderz/2f1c": "orders",
            "/my-order/Ab3_x": "order",
            "/finalize-order/Ab3_x": "finalize",
            "/authZ/Qx9-k": "authorization",
            "/chalZ/Zz01": "challenge",
            "/certZ/5a1f2b3c": "certificate",
            "/certZ/5a1f2b3c/1": "certificate",
        }
        for path, endpoint in expected.items():
            self.assertEqual(classify_pebble_path(path), endpoint, path)
        self.assertEqual(
            {endpoint for _, endpoint in PEBBLE_PATHS}, set(expected.values())
        )

    def test_query_ignored(self) -> None:
        """
        A query string does not change the endpoint.
        """
        self.assertEqual(classify_pebble_path("/dir?x=1"), "directory")
        self.assertEqual(classify_pebble_path("/my-order/a?cursor=2"), "order")

    def test_unknown(self) -> None:
        """
        Other paths, near misses and bare prefixes are ``"unknown"``.
        """
        for path in (
            "/",
            "",
            "/directory",
            "/dir/",
            "/nonce-plz/extra",
            "/my-order/",
            "/my-orders/a",
            "/roots/0",
            "/authz/a",
        ):
            self.assertEqual(classify_pebble_path(path), "unknown", path)


class FaultPlanTests(TestCase):
    """
    The choice of one fault per request: seeded, at the rates asked for,
    limited to endpoints and in number.
    """

    def test_seeded(self) -> None:
        """
        The same seed chooses the same faults for the same requests; another
        seed other faults.
        """
        endpoints = ["newOrder", "order", "finalize", "certificate"] * 25
        first = _draws(FaultPlan.mixed(0.5, seed=11), endpoints)
        self.assertEqual(first, _draws(FaultPlan.mixed(0.5, seed=11), endpoints))
        self.assertNotEqual(first, _draws(FaultPlan.mixed(0.5, seed=12), endpoints))

    def test_rates(self) -> None:
        """
        Over many requests each kind comes at about its rate, and the rest
        get no fault.
        """
        plan = FaultPlan(
            {"drop-after": 0.1, "delay": 0.2, "captive-portal": 0.05}, seed=5
        )
        counts = Counter(_draws(plan, ["order"] * 20_000))
        expected: list[tuple[FaultKind | None, float]] = [
            ("drop-after", 0.1),
            ("delay", 0.2),
            ("captive-portal", 0.05),
            (None, 0.65),
        ]
        for kind, rate in expected:
            share = counts[kind] / 20_000
            self.assertTrue(abs(share - rate) < 0.015, (kind, share))
        self.assertEqual(set(counts), {"drop-after", "delay", "captive-portal", None})
        self.assertEqual(plan.injected, 20_000 - counts[None])

    def test_mixed_shares(self) -> None:
        """
        ``mixed`` shares the rate equally among the kinds named, in the
        order of ``FAULT_KINDS``.
        """
        plan = FaultPlan.mixed(0.6, ["delay", "drop-before", "delay"])
        self.assertEqual(plan.rates, {"drop-before": 0.3, "delay": 0.3})
        self.assertEqual(
            FaultPlan.mixed(0.7).rates, dict.fromkeys(FAULT_KINDS, 0.7 / 7)
        )

    def test_always(self) -> None:
        """
        ``always`` faults every eligible request with the kind, and carries
        the delay.
        """
        plan = FaultPlan.always("delay", delay=0.5)
        self.assertEqual(_draws(plan, ["directory", "newNonce"]), ["delay", "delay"])
        self.assertEqual(plan.delay, 0.5)

    def test_endpoints(self) -> None:
        """
        Requests to other endpoints get no fault and draw nothing: the
        eligible requests get the same faults with or without them in
        between.
        """
        alone = _draws(
            FaultPlan.mixed(0.5, seed=3, endpoints=["finalize"]), ["finalize"] * 30
        )
        plan = FaultPlan.mixed(0.5, seed=3, endpoints=["finalize"])
        mixed = _draws(plan, ["newNonce", "finalize", "order"] * 30)
        self.assertEqual(mixed[0::3], [None] * 30)
        self.assertEqual(mixed[2::3], [None] * 30)
        self.assertEqual(mixed[1::3], alone)
        self.assertTrue(plan.eligible("finalize"))
        self.assertFalse(plan.eligible("order"))

    def test_limit(self) -> None:
        """
        After ``limit`` faults, requests get none.
        """
        plan = FaultPlan.always("unavailable", limit=2)
        self.assertEqual(
            _draws(plan, ["directory"] * 4), ["unavailable", "unavailable", None, None]
        )
        self.assertFalse(plan.eligible("directory"))

    def test_zero_rate(self) -> None:
        """
        At rate 0 no request gets a fault.
        """
        self.assertEqual(
            set(_draws(FaultPlan.mixed(0.0, seed=1), ["order"] * 500)), {None}
        )

    def test_checks(self) -> None:
        """
        Rates outside [0, 1] or adding up to more than 1, unknown kinds, no
        kinds, a negative delay or limit, and a bare string of endpoints are
        refused.
        """
        self.assertRaises(ValueError, FaultPlan, {"delay": 1.5})
        self.assertRaises(ValueError, FaultPlan, {"delay": -0.1})
        self.assertRaises(ValueError, FaultPlan, {"delay": float("nan")})
        self.assertRaises(ValueError, FaultPlan, {"delay": 0.6, "drop-after": 0.6})
        self.assertRaises(ValueError, FaultPlan, {"flood": 0.1})
        self.assertRaises(ValueError, FaultPlan.mixed, 0.5, [])
        self.assertRaises(ValueError, FaultPlan.mixed, 1.2)
        self.assertRaises(ValueError, FaultPlan, {"delay": 0.1}, delay=-1)
        self.assertRaises(ValueError, FaultPlan, {"delay": 0.1}, limit=-1)
        self.assertRaises(TypeError, FaultPlan, {"delay": 0.1}, endpoints="newOrder")
        FaultPlan(dict.fromkeys(FAULT_KINDS, 1 / 7))

    @given(
        rates=st.dictionaries(
            st.sampled_from(FAULT_KINDS), st.floats(0, 1 / 7), max_size=7
        ),
        seed=st.integers(0, 2**32),
    )
    def test_any_plan_deterministic(
        self, rates: dict[FaultKind, float], seed: int
    ) -> None:
        """
        Any plan with a seed chooses only kinds of positive rate, and the
        same ones again from the same seed.
        """
        endpoints = ["newOrder"] * 50
        first = _draws(FaultPlan(rates, seed=seed), endpoints)
        self.assertEqual(first, _draws(FaultPlan(rates, seed=seed), endpoints))
        chosen = {kind for kind in first if kind is not None}
        self.assertTrue(chosen <= {kind for kind, rate in rates.items() if rate})


class CannedAnswerTests(TestCase):
    """
    The answers that stand in for the CA's.
    """

    def test_kinds(self) -> None:
        """
        503 HTML with ``Retry-After: 1`` and a 200 HTML page from a device
        in between; a cut 500 problem document and a 429 ``rateLimited``
        with ``Retry-After: 1`` from the CA; nothing for the kinds that drop
        or delay the CA's own answer.
        """
        unavailable = canned_answer("unavailable")
        truncated = canned_answer("truncated-error")
        limited = canned_answer("rate-limited")
        portal = canned_answer("captive-portal")
        assert unavailable and truncated and limited and portal
        self.assertEqual(
            (unavailable.status, dict(unavailable.headers), unavailable.from_ca),
            (503, {"Content-Type": "text/html", "Retry-After": "1"}, False),
        )
        self.assertEqual(
            (truncated.status, dict(truncated.headers), truncated.from_ca),
            (500, {"Content-Type": "application/problem+json"}, True),
        )
        self.assertRaises(ValueError, json.loads, truncated.body)
        self.assertTrue(truncated.body.startswith(b'{\n  "type": '))
        self.assertEqual(
            (limited.status, dict(limited.headers), limited.from_ca),
            (
                429,
                {"Content-Type": "application/problem+json", "Retry-After": "1"},
                True,
            ),
        )
        self.assertEqual(
            json.loads(limited.body)["type"], "urn:ietf:params:acme:error:rateLimited"
        )
        self.assertEqual(
            (portal.status, dict(portal.headers), portal.from_ca),
            (200, {"Content-Type": "text/html"}, False),
        )
        self.assertRaises(ValueError, json.loads, portal.body)
        for kind in ("drop-before", "drop-after", "delay"):
            self.assertEqual(canned_answer(kind), None)
