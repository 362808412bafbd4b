"""
The one bridge between ``async def`` and the Deferreds of the public API.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred

_P = ParamSpec("_P")
_T = TypeVar("_T")


def deferred_async(
    function: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Deferred[_T]]:
    """
    Decorate an ``async def`` so that calling it returns a
    :class:`~twisted.internet.defer.Deferred` (through
    :meth:`Deferred.fromCoroutine <twisted.internet.defer.Deferred.fromCoroutine>`).

    Cancelling that Deferred cancels whatever the coroutine awaits.
    """

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        return Deferred.fromCoroutine(function(*args, **kwargs))

    return wrapper
