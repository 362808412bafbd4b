"""
The part of ``tools/compat093.py`` that runs inside the prepared copy of
txacme 0.9.3's test suite, in an interpreter of its own.

``tools/compat093.py`` starts it as::

    python -c 'import compat093_inside ...' RESULTS.json PACKAGE [TEST ...]

with ``PYTHONPATH`` holding the directory of the rewritten copy (the
package ``PACKAGE``) and ``tools/``.  It

#. shims the drift of the *third-party* libraries that the old tests use
   (:func:`install_shims`; each shim says what it stands in for), never
   txacme;
#. runs the tests with trial, printing trial's usual report, and writes
   each test's outcome to ``RESULTS.json`` (:class:`RecordingReporter`).

The rewritten copy imports :func:`import_deferred` from here: a name that
this txacme lacks (and that ``tools/compat093.py`` lists) is bound to a
:class:`Missing` placeholder, so that only the tests using it fail (with
an :class:`ImportError` naming it), not every test of the module.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

#: The hypothesis profile the old tests load (their ``__init__`` loads the
#: profile named by ``HYPOTHESIS_PROFILE``).
HYPOTHESIS_PROFILE = "compat093"

#: What each outcome is called in the results.
OUTCOMES = (
    "success",
    "failure",
    "error",
    "skip",
    "expectedFailure",
    "unexpectedSuccess",
)


class Missing:
    """
    Stands for a name that this txacme (or a library) no longer has:
    calling it, or reading any attribute, raises :class:`ImportError`
    saying which name and why.
    """

    def __init__(self, qualified_name: str, why: str) -> None:
        self._qualified_name = qualified_name
        self._why = why

    def __repr__(self) -> str:
        return f"<missing {self._qualified_name}>"

    def _fail(self) -> NoReturn:
        raise ImportError(f"{self._qualified_name} does not exist: {self._why}")

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        self._fail()

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        self._fail()


#: The deferred names asked for, and whether this txacme has them.
deferred_names: dict[str, bool] = {}


def import_deferred(module_name: str, name: str, why: str) -> object:
    """
    ``from module_name import name``, or a :class:`Missing` placeholder if
    the module or the name does not exist.

    :param module_name: The module, such as ``"txacme.client"``.
    :param name: The name in it.
    :param why: Why it may be missing, for the placeholder's error.
    """
    qualified_name = f"{module_name}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise
        deferred_names[qualified_name] = False
        return Missing(qualified_name, f"no module {missing} ({why})")
    if not hasattr(module, name):
        deferred_names[qualified_name] = False
        return Missing(qualified_name, f"{module_name} has no {name} ({why})")
    deferred_names[qualified_name] = True
    value: object = getattr(module, name)
    return value


def install_shims() -> list[str]:
    """
    Make today's third-party libraries look as the old tests expect.

    :returns: What was shimmed, one line each.
    """
    shims: list[str] = []

    import twisted.python.compat as compat

    if not hasattr(compat, "_PY3"):
        compat._PY3 = True  # type: ignore[attr-defined]
        shims.append("twisted.python.compat._PY3 = True (removed from Twisted)")

    import service_identity.hazmat

    sys.modules.setdefault("service_identity._common", service_identity.hazmat)
    shims.append("service_identity._common is service_identity.hazmat (renamed there)")

    import acme.challenges

    if not hasattr(acme.challenges, "TLSSNI01"):
        removed: Any = Missing(
            "acme.challenges.TLSSNI01", "tls-sni-01 was removed from acme"
        )
        acme.challenges.TLSSNI01 = removed  # type: ignore[attr-defined]
        shims.append(
            "acme.challenges.TLSSNI01 is a placeholder raising ImportError "
            "(tls-sni-01 was removed from acme)"
        )

    from hypothesis import HealthCheck, settings

    # The old tests share test methods between two classes (a mixin), which
    # hypothesis 6 refuses (differing_executors) and hypothesis 4 allowed.
    # No database: nothing is written beside the copy, and every run
    # draws the same examples (derandomize), so that a CI run is repeatable.
    settings.register_profile(
        HYPOTHESIS_PROFILE,
        suppress_health_check=[HealthCheck.differing_executors],
        database=None,
        derandomize=True,
        deadline=None,
    )
    os.environ["HYPOTHESIS_PROFILE"] = HYPOTHESIS_PROFILE
    shims.append(
        f"hypothesis profile {HYPOTHESIS_PROFILE!r}: differing_executors "
        "allowed (a check hypothesis 4 did not have), no database, "
        "derandomized, no deadline"
    )
    return shims


#: Lines after an exception's message that are not part of it (hypothesis's
#: report of the example).
_NOT_THE_MESSAGE = ("Failing explicit example:", "Failing test case:", "Explanation:")


def error_summary(text: str) -> str:
    """
    What an error report says was raised: the exception's message after the
    last traceback's frames (up to a blank line, its lines joined), or the
    last line.

    :param text: A formatted error (a traceback, or a message).
    :returns: One line, at most 300 characters.
    """
    lines = text.splitlines()
    marker = "Traceback (most recent call last):"
    starts = [index for index, line in enumerate(lines) if line.strip() == marker]
    message: list[str] = []
    if starts:
        frames = iter(lines[starts[-1] + 1 :])
        for line in frames:
            if line.strip() and not line.startswith((" ", "\t")):
                message.append(line)
                break
        for line in frames:
            if not line.strip() or line.startswith(_NOT_THE_MESSAGE):
                break
            message.append(line)
    if not message:
        message = [line for line in lines if line.strip()][-1:]
    summary = " ".join(" ".join(line.split()) for line in message)
    return summary if len(summary) <= 300 else summary[:297] + "..."


def _error_text(error: Any) -> str:
    from twisted.python.failure import Failure

    if isinstance(error, tuple):
        error = Failure(error[1], error[0], error[2])  # type: ignore[no-untyped-call]
    if isinstance(error, Failure):
        # testtools hands trial its errors as the whole formatted report.
        message = error.getErrorMessage()
        if "Traceback (most recent call last):" in message:
            return str(message)
        return f"{getattr(error.type, '__name__', 'Error')}: {message}"
    return str(error)


def _recording_reporter(
    results: dict[str, dict[str, Any]],
) -> Any:
    """
    A trial reporter factory whose reporters print trial's tree report and
    record each test's outcome in ``results``.
    """
    from twisted.trial.reporter import TreeReporter

    class RecordingReporter(TreeReporter):
        """Trial's tree reporter, recording outcomes by test id."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
            self._started: dict[str, float] = {}

        def _record(self, test: Any, outcome: str, detail: str = "") -> None:
            test_id = test.id()
            started = self._started.pop(test_id, None)
            earlier = results.get(test_id)
            if earlier is not None:
                # An error logged (or collected) after the test's outcome:
                # the test fails, and keeps its first outcome's detail.
                if earlier["outcome"] not in ("success", "expectedFailure"):
                    detail = f"{earlier['detail']} (then also {outcome}: {detail})"
                    outcome = str(earlier["outcome"])
                seconds = float(earlier["seconds"])
            else:
                seconds = 0.0 if started is None else time.monotonic() - started
            results[test_id] = {
                "outcome": outcome,
                "detail": detail,
                "seconds": seconds,
            }

        def startTest(self, test: Any) -> None:
            self._started[test.id()] = time.monotonic()
            super().startTest(test)  # type: ignore[no-untyped-call]

        def addSuccess(self, test: Any) -> None:
            super().addSuccess(test)  # type: ignore[no-untyped-call]
            self._record(test, "success")

        def addFailure(self, test: Any, fail: Any) -> None:
            super().addFailure(test, fail)  # type: ignore[no-untyped-call]
            self._record(test, "failure", error_summary(_error_text(fail)))

        def addError(self, test: Any, error: Any) -> None:
            super().addError(test, error)  # type: ignore[no-untyped-call]
            self._record(test, "error", error_summary(_error_text(error)))

        def addSkip(self, test: Any, reason: Any) -> None:
            super().addSkip(test, reason)  # type: ignore[no-untyped-call]
            self._record(test, "skip", str(reason))

        def addExpectedFailure(self, test: Any, error: Any, todo: Any = None) -> None:
            super().addExpectedFailure(test, error, todo)  # type: ignore[no-untyped-call]
            self._record(test, "expectedFailure", error_summary(_error_text(error)))

        def addUnexpectedSuccess(self, test: Any, todo: Any = None) -> None:
            super().addUnexpectedSuccess(test, todo)  # type: ignore[no-untyped-call]
            self._record(test, "unexpectedSuccess")

    return RecordingReporter


def run(results_path: str, tests: Sequence[str], stream: TextIO = sys.stdout) -> int:
    """
    Shim, run ``tests`` with trial, and write the outcomes to
    ``results_path``.

    :returns: 0 if trial's run was successful, else 1.
    """
    shims = install_shims()
    for shim in shims:
        print(f"compat093: shim: {shim}", file=stream, flush=True)

    from twisted.trial.runner import TestLoader, TrialRunner

    results: dict[str, dict[str, Any]] = {}
    # Garbage collection after each test: an error logged by a Deferred
    # that failed unhandled is then reported as the error of the test that
    # left it, not of no test.
    runner = TrialRunner(
        _recording_reporter(results),
        stream=stream,
        workingDirectory=os.path.abspath("_trial_temp"),
        forceGarbageCollection=True,
    )
    suite = TestLoader().loadByNames(list(tests), recurse=True)
    result = runner.run(suite)
    with open(results_path, "w", encoding="utf-8") as output:
        json.dump(
            {"tests": results, "deferred_names": deferred_names},
            output,
            indent=1,
            sort_keys=True,
        )
    successful: bool = result.wasSuccessful()  # type: ignore[no-untyped-call]
    return 0 if successful else 1


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
