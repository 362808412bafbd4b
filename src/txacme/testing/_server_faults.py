"""
The fault switches of :class:`txacme.testing.MemoryAcmeServer`: the faults
queued per endpoint by its
:meth:`~txacme.testing.MemoryAcmeServer.fail_next`,
:meth:`~txacme.testing.MemoryAcmeServer.break_next`,
:meth:`~txacme.testing.MemoryAcmeServer.inject_next` (and
:meth:`~txacme.testing.MemoryAcmeServer.drop_next`,
:meth:`~txacme.testing.MemoryAcmeServer.delay_next`), the random plan of
:meth:`~txacme.testing.MemoryAcmeServer.random_faults`, and the choice of
the fault the next request gets.

Private: the server's methods are the public API, and document the
arguments checked here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeVar, get_args

from attrs import define, field, frozen

from txacme.testing._faults import FAULT_KINDS, FaultKind, FaultPlan
from txacme.testing._server_http import BREAK_KINDS, Outgoing, retry_after
from txacme.testing._server_protocol import ProblemError, default_status
from txacme.testing._server_records import InjectedFault

__all__ = [
    "ENDPOINTS",
    "DropStage",
    "Endpoint",
    "Fault",
    "FaultSwitches",
    "Injection",
    "check_endpoint",
]

# The public aliases are documented where applications find them, in
# txacme.testing.
Endpoint = Literal[
    "directory",
    "newNonce",
    "newAccount",
    "newOrder",
    "newAuthz",
    "revokeCert",
    "keyChange",
    "renewalInfo",
    "account",
    "orders",
    "order",
    "finalize",
    "authorization",
    "challenge",
    "certificate",
]
DropStage = Literal["before", "after"]

ENDPOINTS: frozenset[str] = frozenset(get_args(Endpoint))

_T = TypeVar("_T")


def check_endpoint(endpoint: str) -> None:
    """
    :raises ValueError: Unless ``endpoint`` is an :data:`Endpoint`.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; one of {sorted(ENDPOINTS)}")


def _pop_first(queues: dict[str, list[_T]], kind: str) -> _T | None:
    queue = queues.get(kind)
    return queue.pop(0) if queue else None


@frozen
class Fault:
    """
    An error queued by ``fail_next`` for one request.
    """

    error_type: str | None
    status: int
    detail: str
    retry_after: float | None

    def answer(self) -> Outgoing:
        """
        :returns: The error: a problem document, or plain text without an
            error type.
        """
        if self.error_type is None:
            response = Outgoing.plain(self.status, f"{self.status} {self.detail}\n")
        else:
            response = Outgoing.problem(
                ProblemError(self.error_type, self.detail, self.status)
            )
        if self.retry_after is not None:
            response.headers.append(("Retry-After", retry_after(self.retry_after)))
        return response


@frozen
class Injection:
    """
    A fault of issue 11's kinds, queued or drawn for one request.
    """

    kind: FaultKind
    delay: float = 0.0


@define
class FaultSwitches:
    """
    The faults waiting for the next requests to each endpoint kind, and
    those injected so far.

    :ivar failures: The errors of ``fail_next``, by endpoint kind.
    :ivar breaks: The ways of ``break_next`` to spoil answers, by endpoint
        kind.
    :ivar injections: The faults of ``inject_next``, by endpoint kind.
    :ivar plan: The plan of ``random_faults``, if on.
    :ivar injected: The faults of issue 11's kinds injected so far, oldest
        first.
    """

    failures: dict[str, list[Fault]] = field(factory=dict)
    breaks: dict[str, list[str]] = field(factory=dict)
    injections: dict[str, list[Injection]] = field(factory=dict)
    plan: FaultPlan | None = None
    injected: list[InjectedFault] = field(factory=list)

    # What the server's switches queue; their arguments are documented
    # there.

    def fail_next(
        self,
        endpoint: Endpoint,
        error_type: str | None,
        *,
        status: int | None,
        detail: str,
        retry_after: float | None,
        count: int,
    ) -> None:
        """
        Queue errors for ``count`` requests.

        :raises ValueError: For an unknown endpoint.
        """
        check_endpoint(endpoint)
        if status is None:
            status = 503 if error_type is None else default_status(error_type)
        fault = Fault(error_type, status, detail, retry_after)
        self.failures.setdefault(endpoint, []).extend([fault] * count)

    def break_next(self, endpoint: Endpoint, kind: str, count: int) -> None:
        """
        Queue spoilt answers for ``count`` requests.

        :raises ValueError: For an unknown endpoint or kind.
        """
        check_endpoint(endpoint)
        if kind not in BREAK_KINDS:
            raise ValueError(
                f"unknown break kind {kind!r}; one of {sorted(BREAK_KINDS)}"
            )
        self.breaks.setdefault(endpoint, []).extend([kind] * count)

    def drop_next(self, endpoint: Endpoint, stage: DropStage, count: int) -> None:
        """
        Queue dropped connections for ``count`` requests.

        :raises ValueError: For an unknown endpoint or stage.
        """
        if stage not in ("before", "after"):
            raise ValueError(f"stage must be 'before' or 'after', not {stage!r}")
        self.inject_next(
            endpoint,
            "drop-before" if stage == "before" else "drop-after",
            count,
            delay=0.0,
        )

    def delay_next(self, endpoint: Endpoint, seconds: float, count: int) -> None:
        """
        Queue delayed answers for ``count`` requests.

        :raises ValueError: For an unknown endpoint or a delay that is not
            positive.
        """
        if not seconds > 0:
            raise ValueError("seconds must be more than 0")
        self.inject_next(endpoint, "delay", count, delay=seconds)

    def inject_next(
        self, endpoint: Endpoint, kind: FaultKind, count: int, *, delay: float
    ) -> None:
        """
        Queue a fault of issue 11 for ``count`` requests.

        :raises ValueError: For an unknown endpoint or kind.
        """
        check_endpoint(endpoint)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {list(FAULT_KINDS)}")
        injection = Injection(kind, delay if kind == "delay" else 0.0)
        self.injections.setdefault(endpoint, []).extend([injection] * count)

    def random_faults(
        self,
        rate: float,
        kinds: Iterable[FaultKind],
        *,
        endpoints: Iterable[Endpoint] | None,
        seed: int | None,
        delay: float,
        limit: int | None,
    ) -> FaultPlan | None:
        """
        Switch the random plan on (or off, for a rate of 0).

        :returns: The plan in use, or ``None`` when switched off.
        :raises ValueError: For a rate outside [0, 1], or an unknown kind or
            endpoint.
        """
        if endpoints is not None:
            endpoints = list(endpoints)
            for endpoint in endpoints:
                check_endpoint(endpoint)
        plan = FaultPlan.mixed(
            rate, kinds, endpoints=endpoints, seed=seed, delay=delay, limit=limit
        )
        self.plan = plan if rate else None
        return self.plan

    # What the next request gets.

    def next_injection(self, kind: str) -> Injection | None:
        """
        The fault of issue 11 for the next request to ``kind``: a queued
        one, or one drawn by the random plan for a request with no queued
        fault of any switch.
        """
        queued = _pop_first(self.injections, kind)
        if queued is not None:
            return queued
        plan = self.plan
        if plan is None or self.failures.get(kind) or self.breaks.get(kind):
            return None
        chosen = plan.choose(kind)
        if chosen is None:
            return None
        return Injection(chosen, plan.delay if chosen == "delay" else 0.0)

    def next_failure(self, kind: str) -> Fault | None:
        """
        :returns: The error queued for the next request to ``kind``, if
            any, taken off its queue.
        """
        return _pop_first(self.failures, kind)

    def next_break(self, kind: str) -> str | None:
        """
        :returns: The way to spoil the answer to the next request to
            ``kind``, if any, taken off its queue.
        """
        return _pop_first(self.breaks, kind)
