"""
The network faults of issue 11 ("Issuance that survives the network"), and
the seeded choice of one per request: shared by the in-memory server's
switches (:meth:`txacme.testing.MemoryAcmeServer.inject_next`,
:meth:`~txacme.testing.MemoryAcmeServer.random_faults`) and the HTTPS proxy
in front of Pebble (:class:`txacme.testing.faultproxy.FaultProxy`).

Public through :mod:`txacme.testing` and :mod:`txacme.testing.faultproxy`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping
from typing import Literal, get_args

from attrs import define, field, frozen

__all__ = ["FAULT_KINDS", "CannedAnswer", "FaultKind", "FaultPlan", "canned_answer"]

FaultKind = Literal[
    "drop-before",
    "drop-after",
    "unavailable",
    "truncated-error",
    "rate-limited",
    "delay",
    "captive-portal",
]
# Documented in txacme.testing.

FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
# Documented in txacme.testing.

# Rates are probabilities: their sum may exceed 1 by rounding only.
_RATE_SLACK = 1e-9


def _known_kinds(kinds: Iterable[str]) -> tuple[FaultKind, ...]:
    chosen: list[FaultKind] = []
    for kind in kinds:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {list(FAULT_KINDS)}")
        for known in FAULT_KINDS:
            if known == kind and known not in chosen:
                chosen.append(known)
    return tuple(chosen)


def _check_rates(rates: Mapping[FaultKind, float]) -> dict[FaultKind, float]:
    _known_kinds(rates)
    checked: dict[FaultKind, float] = {}
    for kind in FAULT_KINDS:
        rate = rates.get(kind, 0.0)
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise ValueError(f"the rate of {kind!r} must be between 0 and 1")
        if rate:
            checked[kind] = rate
    if sum(checked.values()) > 1.0 + _RATE_SLACK:
        raise ValueError("the rates of all fault kinds must add up to at most 1")
    return checked


def _endpoint_set(endpoints: Iterable[str] | None) -> frozenset[str] | None:
    if isinstance(endpoints, str):
        raise TypeError("endpoints is a collection of endpoint kinds, not one string")
    return None if endpoints is None else frozenset(endpoints)


@define
class FaultPlan:
    """
    Which fault, if any, to inject into each request: one at most per
    request, drawn from a random generator seeded with :attr:`seed`, so that
    the same requests in the same order get the same faults.

    Each request to an eligible endpoint draws one number ``u`` in [0, 1);
    the kinds, in the order of :data:`~txacme.testing.FAULT_KINDS`, take
    consecutive intervals of the lengths of their rates, and the request
    gets the kind whose interval holds ``u``, or no fault past the last
    one.  Requests to other endpoints draw nothing and get no fault.

    :ivar rates: The probability of each fault kind per eligible request;
        kinds not named have rate 0.  They add up to at most 1.
    :ivar endpoints: The endpoint kinds faults are limited to (the names of
        :data:`txacme.testing.Endpoint`: ``"newOrder"``, ``"finalize"``,
        ...), or ``None`` for every endpoint the server or proxy recognizes.
    :ivar seed: The seed of the random generator (``None``: from the
        operating system, not reproducible).
    :ivar delay: Seconds a ``"delay"`` fault holds the answer back.
    :ivar limit: The most faults to inject, or ``None`` for no limit; once
        reached, requests draw nothing.
    :ivar injected: How many faults were chosen so far.
    """

    rates: Mapping[FaultKind, float] = field(converter=_check_rates)
    endpoints: frozenset[str] | None = field(default=None, converter=_endpoint_set)
    seed: int | None = None
    delay: float = 2.0
    limit: int | None = None
    injected: int = field(default=0, init=False)
    _random: random.Random = field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError("delay must be a finite number of seconds, at least 0")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be at least 0")
        self._random = random.Random(self.seed)

    @classmethod
    def mixed(
        cls,
        rate: float,
        kinds: Iterable[FaultKind] = FAULT_KINDS,
        *,
        endpoints: Iterable[str] | None = None,
        seed: int | None = None,
        delay: float = 2.0,
        limit: int | None = None,
    ) -> FaultPlan:
        """
        A plan that faults ``rate`` of the eligible requests, the kinds
        sharing it equally.

        :param rate: The probability (0 to 1) that an eligible request gets
            a fault.
        :param kinds: The kinds to choose among.
        :param endpoints: See :attr:`endpoints`.
        :param seed: See :attr:`seed`.
        :param delay: See :attr:`delay`.
        :param limit: See :attr:`limit`.
        :raises ValueError: For a rate outside [0, 1], no kinds, or an
            unknown kind.
        """
        chosen = _known_kinds(kinds)
        if not chosen:
            raise ValueError("name at least one fault kind")
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise ValueError("rate must be between 0 and 1")
        return cls(
            dict.fromkeys(chosen, rate / len(chosen)),
            endpoints=_endpoint_set(endpoints),
            seed=seed,
            delay=delay,
            limit=limit,
        )

    @classmethod
    def always(
        cls,
        kind: FaultKind,
        *,
        endpoints: Iterable[str] | None = None,
        delay: float = 2.0,
        limit: int | None = None,
    ) -> FaultPlan:
        """
        A plan that gives every eligible request the fault ``kind`` (up to
        ``limit`` of them).

        :param kind: The fault.
        :param endpoints: See :attr:`endpoints`.
        :param delay: See :attr:`delay`.
        :param limit: See :attr:`limit`.
        """
        return cls(
            {kind: 1.0},
            endpoints=_endpoint_set(endpoints),
            delay=delay,
            limit=limit,
        )

    def eligible(self, endpoint: str) -> bool:
        """
        Whether a request to ``endpoint`` may get a fault now.
        """
        if self.limit is not None and self.injected >= self.limit:
            return False
        return self.endpoints is None or endpoint in self.endpoints

    def choose(self, endpoint: str) -> FaultKind | None:
        """
        The fault for one request to ``endpoint``, or ``None``.

        :param endpoint: The request's endpoint kind.
        """
        if not self.eligible(endpoint):
            return None
        draw = self._random.random()
        bound = 0.0
        for kind in FAULT_KINDS:
            rate = self.rates.get(kind, 0.0)
            if not rate:
                continue
            bound += rate
            if draw < bound:
                self.injected += 1
                return kind
        return None


@frozen
class CannedAnswer:
    """
    The answer a fault of one kind gives in place of the CA's.

    :ivar status: The HTTP status.
    :ivar headers: Header names and values.
    :ivar body: The body.
    :ivar from_ca: Whether it stands for an answer of the CA itself (which
        carries a ``Replay-Nonce``), rather than of a device in between.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    from_ca: bool


_UNAVAILABLE_PAGE = b"""\
<html>
<head><title>503 Service Temporarily Unavailable</title></head>
<body><h1>503 Service Temporarily Unavailable</h1>
<p>The server is temporarily unable to service your request.</p></body>
</html>
"""

_PORTAL_PAGE = b"""\
<!DOCTYPE html>
<html><head><title>Welcome to the guest network</title></head>
<body><form action="/login" method="post">
<p>Please accept the terms of use to continue.</p>
<input type="submit" value="Accept"></form></body></html>
"""


def _problem(error_type: str, detail: str, status: int) -> bytes:
    return json.dumps(
        {
            "type": f"urn:ietf:params:acme:error:{error_type}",
            "detail": detail,
            "status": status,
        },
        indent=2,
    ).encode("utf-8")


def canned_answer(kind: FaultKind) -> CannedAnswer | None:
    """
    The answer a fault of ``kind`` gives instead of the CA's, or ``None``
    for the kinds that drop the connection or pass the CA's answer on.
    """
    if kind == "unavailable":
        return CannedAnswer(
            status=503,
            headers=(("Content-Type", "text/html"), ("Retry-After", "1")),
            body=_UNAVAILABLE_PAGE,
            from_ca=False,
        )
    if kind == "truncated-error":
        document = _problem("serverInternal", "injected fault: internal error", 500)
        return CannedAnswer(
            status=500,
            headers=(("Content-Type", "application/problem+json"),),
            body=document[: len(document) // 2],
            from_ca=True,
        )
    if kind == "rate-limited":
        return CannedAnswer(
            status=429,
            headers=(
                ("Content-Type", "application/problem+json"),
                ("Retry-After", "1"),
            ),
            body=_problem("rateLimited", "injected fault: too many requests", 429),
            from_ca=True,
        )
    if kind == "captive-portal":
        return CannedAnswer(
            status=200,
            headers=(("Content-Type", "text/html"),),
            body=_PORTAL_PAGE,
            from_ca=False,
        )
    return None
