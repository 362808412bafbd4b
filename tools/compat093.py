#!/usr/bin/env python3
"""
Run txacme 0.9.3's own test suite against this txacme: the judge of the
0.9 API's compatibility (issue 9).

Usage (``tox -e compat093`` runs it, in an environment with the old
suite's libraries: testtools, fixtures, testscenarios, hypothesis, eliot,
txsni, apache-libcloud)::

    python tools/compat093.py [--work-directory=DIR] [--sdist=FILE] [TEST ...]

It

#. downloads the source distribution of txacme 0.9.3 from PyPI (``pip
   download --no-deps --no-binary :all: txacme==0.9.3``; or takes
   ``--sdist``) and checks its SHA-256 (:data:`SDIST_SHA256`);
#. extracts the test package ``txacme/test/`` into the work directory
   (a new temporary one unless ``--work-directory`` is given; it is
   emptied first) as the package :data:`TEST_PACKAGE`.  Nothing of 0.9.3
   is kept in this repository, and its ``txacme`` package is not
   extracted: the tests import the txacme installed in the environment;
#. rewrites the copy, and only as :data:`REWRITES` lists (each with its
   reason): the tests' imports of their own package, the imports of the
   names of :data:`DEFERRED_IMPORTS` (which this txacme lacks), and
   tls-sni-01 used only as test data;
#. runs every test with trial in a fresh interpreter
   (``tools/compat093_inside.py``, which also shims the drift of the
   third-party libraries, never of txacme), and
#. judges each test's outcome against :data:`EXCLUSIONS`, the tests that
   cannot pass by design, each with its reason: ``ACME v1 wire format``,
   ``tls-sni-01``, ``private name: <which>``, or ``docs/migration.rst:
   <section title>`` (a section of that page, which documents the change).

A test that is not excluded passes only by passing: a failure, an error, a
skip (a test that did not run) or an import error of a module counts as a
failure.  Excluded tests run too; one that passes is reported, so that the
list stays honest, but does not fail the run.  An exclusion or a deferred
import that matches nothing is an error of this tool's lists.

The last line is ``compat093: N passed, N failed, 0 skipped, N excluded``
(no test of the suite is skipped: each runs, or is excluded by the list);
the exit status is 0 only if no test that is not excluded failed.  Naming
tests (``test_store``, ``test_client.ClientTests``, relative to the package)
runs only those.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent
MIGRATION = REPOSITORY / "docs" / "migration.rst"

#: The release whose tests are run, and its source distribution.
RELEASE = "txacme==0.9.3"
SDIST_NAME = "txacme-0.9.3.tar.gz"
#: The SHA-256 of ``txacme-0.9.3.tar.gz`` as published on PyPI.
SDIST_SHA256 = "bce2d0dfa8fa2cf3f2eb10526c89a8b4f77a021d9e182704e7776fff7bd8bceb"
#: Where the test package is in the source distribution.
SDIST_TESTS = "txacme-0.9.3/src/txacme/test/"

#: The old test package, and what it is called in the copy.
OLD_PACKAGE = "txacme.test"
TEST_PACKAGE = "txacme093_tests"

V1 = "ACME v1 wire format"
TLS_SNI_01 = "tls-sni-01"

#: Names the old tests import from txacme that this txacme does not have
#: (or not yet), with why.  Each import of one is rewritten to bind a
#: placeholder raising ImportError when used (``import_deferred`` of
#: ``tools/compat093_inside.py``), so that the tests using it fail, or are
#: excluded, rather than every test of the module failing to import.
#: A name listed here that exists is imported as usual (and reported).
DEFERRED_IMPORTS: dict[str, str] = {
    "txacme.challenges.TLSSNI01Responder": TLS_SNI_01,
    "txacme.challenges._tls._MergingMappingProxy": "private name (of tls-sni-01)",
    "txacme.util.generate_tls_sni_01_cert": TLS_SNI_01,
    "txacme.client._default_client": "private name",
    "txacme.client._find_supported_challenge": "private name",
    "txacme.client._parse_header_links": "private name",
    "txacme._endpoint_parser._AcmeParser": "private name",
}


@dataclass(frozen=True)
class Replacement:
    """
    A textual rewrite of one file of the copy.

    :ivar path: The file, relative to the package.
    :ivar old: The text replaced; it must occur exactly ``count`` times.
    :ivar new: Its replacement.
    :ivar reason: Why.
    """

    path: str
    old: str
    new: str
    reason: str
    count: int = 1


#: tls-sni-01 used only as test data, swapped for a challenge type that
#: still exists.
REPLACEMENTS: tuple[Replacement, ...] = (
    Replacement(
        "test_service.py",
        "RecordingResponder(set(), u'tls-sni-01')",
        "RecordingResponder(set(), u'http-01')",
        "tls-sni-01 only as test data: the service tests' responder answers "
        "the FakeClient's http-01 challenges (0.9's FakeClient offered "
        "tls-sni-01, which CAs no longer offer)",
    ),
)

#: Every rewrite of the copy, in words.
REWRITES: tuple[str, ...] = (
    f"imports of {OLD_PACKAGE} (the tests' own package) import {TEST_PACKAGE}",
    "imports of the names of DEFERRED_IMPORTS bind a placeholder raising "
    "ImportError when used, if this txacme lacks the name",
    *(
        f"{item.path}: {item.old!r} -> {item.new!r}: {item.reason}"
        for item in REPLACEMENTS
    ),
)

#: The tests that cannot pass by design, by test id relative to the
#: package (a class or module excludes all its tests), with the reason.
EXCLUSIONS: dict[str, str] = {
    # tls-sni-01: gone from RFC 8555, from CAs and from acme.
    "test_challenges.TLSResponderTests": TLS_SNI_01,
    "test_util.GenerateCertTests": TLS_SNI_01,
    "test_challenges.MergingProxyTests": (
        "private name: txacme.challenges._tls._MergingMappingProxy"
    ),
    # The client tests drive 0.9's client through exact ACME v1 exchanges
    # (new-reg, new-authz, new-cert, GET polling, "next"/"up" links,
    # combinations, HEAD for a nonce to the URL about to be POSTed to).
    "test_client.ClientTests.test_register_missing_next": V1,
    "test_client.ClientTests.test_unexpected_update": V1,
    "test_client.ClientTests.test_register": V1,
    "test_client.ClientTests.test_register_existing": V1,
    "test_client.ClientTests.test_register_existing_update": V1,
    "test_client.ClientTests.test_register_error": V1,
    "test_client.ClientTests.test_register_bad_nonce_once": V1,
    "test_client.ClientTests.test_register_bad_nonce_twice": V1,
    "test_client.ClientTests.test_agree_to_tos": V1,
    "test_client.ClientTests.test_from_directory": V1,
    "test_client.ClientTests.test_request_challenges": V1,
    "test_client.ClientTests.test_answer_challenge": V1,
    "test_client.ClientTests.test_poll": V1,
    "test_client.ClientTests.test_tls_sni_01_no_singleton": V1,
    "test_client.ClientTests.test_no_tls_sni_01": V1,
    "test_client.ClientTests.test_only_tls_sni_01": V1,
    "test_client.ClientTests.test_answer_challenge_function": V1,
    "test_client.ClientTests.test_poll_timeout": V1,
    "test_client.ClientTests.test_poll_invalid": V1,
    "test_client.ClientTests.test_poll_valid": V1,
    "test_client.ClientTests.test_request_issuance": V1,
    "test_client.ClientTests.test_fetch_chain_okay": V1,
    "test_client.ClientTests.test_fetch_chain_too_long": V1,
    "test_client.ClientTests.test_directory_url_type": (
        "docs/migration.rst: ``Client.from_url(reactor, url, key, alg=RS256, "
        "jws_client=None, timeout=60.0)``"
    ),
    "test_client.ClientTests.test_default_client": (
        "private name: txacme.client._default_client"
    ),
    "test_client.ClientTests.test_expect_response_wrong_code": (
        "private name: txacme.client.Client._expect_response"
    ),
    "test_client.ClientTests.test_authorization_missing_link": (
        "private name: txacme.client.Client._parse_authorization"
    ),
    "test_client.ClientTests.test_authorization_unexpected_identifier": (
        "private name: txacme.client.Client._check_authorization"
    ),
    "test_client.ClientTests.test_challenge_missing_link": (
        "private name: txacme.client.Client._parse_challenge"
    ),
    "test_client.ClientTests.test_challenge_unexpected_uri": (
        "private name: txacme.client.Client._check_challenge"
    ),
    "test_client.JWSClientTests.test_check_invalid_json": (
        "private name: txacme.client.JWSClient._check_response"
    ),
    "test_client.JWSClientTests.test_check_invalid_error_type": (
        "private name: txacme.client.JWSClient._check_response"
    ),
    "test_client.JWSClientTests.test_check_invalid_error": (
        "private name: txacme.client.JWSClient._check_response"
    ),
    "test_client.JWSClientTests.test_check_valid_error": (
        "private name: txacme.client.JWSClient._check_response"
    ),
    "test_client.JWSClientTests.test_check_expected_bad_json": (
        "private name: txacme.client.JWSClient._check_response"
    ),
    "test_client.JWSClientTests.test_missing_nonce": (
        "private name: txacme.client.JWSClient._add_nonce"
    ),
    "test_client.JWSClientTests.test_bad_nonce": (
        "private name: txacme.client.JWSClient._add_nonce"
    ),
    "test_client.JWSClientTests.test_already_nonce": (
        "private name: txacme.client.JWSClient._nonces"
    ),
    "test_client.LinkParsingTests": "private name: txacme.client._parse_header_links",
    # The parser of 0.9's private module, wrapping txsni's HostDirectoryMap
    # and creating the account key while parsing.
    "test_endpoint.PluginTests.test_parser": (
        "private name: txacme._endpoint_parser._AcmeParser"
    ),
    "test_util.CSRTests.test_common_name_too_long": (
        "docs/migration.rst: Other modules"
    ),
    # decode_csr raises a subclass of DeserializationError (and of
    # ValueError); testtools' ExpectedException wants the exact class.
    "test_util.CSRTests.test_decode_garbage": "docs/migration.rst: Other modules",
}

#: The fixed reasons; the others are ``private name: <which>`` and
#: ``docs/migration.rst: <section title>``.
FIXED_REASONS = frozenset({V1, TLS_SNI_01})

#: A trial outcome that counts as passing.
PASSING = frozenset({"success", "expectedFailure"})


# -- the lists -------------------------------------------------------------------------


def section_titles(rst: str) -> list[str]:
    """
    The section titles of a reStructuredText document: each line followed
    by an underline (a line of one punctuation character repeated, at
    least as long as the title).
    """
    lines = rst.splitlines()
    titles: list[str] = []
    for title, underline in itertools.pairwise(lines):
        underline = underline.rstrip()
        if (
            title.strip()
            and not title.startswith(" ")
            and len(underline) >= len(title.rstrip())
            and re.fullmatch(r"([=\-~^\"'`#*+:.])\1*", underline)
        ):
            titles.append(title.rstrip())
    return titles


def reason_problem(reason: str, titles: Iterable[str]) -> str | None:
    """
    What is wrong with an exclusion's reason, or ``None`` if it is one of
    the four kinds (a ``docs/migration.rst`` one must name a section of
    ``titles``).
    """
    if reason in FIXED_REASONS:
        return None
    kind, separator, detail = reason.partition(": ")
    if not separator or not detail.strip():
        return f"not a reason of a known kind: {reason!r}"
    if kind == "private name":
        return None
    if kind == "docs/migration.rst":
        if detail in set(titles):
            return None
        return f"docs/migration.rst has no section {detail!r}"
    return f"not a reason of a known kind: {reason!r}"


def check_exclusions(exclusions: Mapping[str, str], titles: Iterable[str]) -> list[str]:
    """
    The problems of an exclusion list's reasons (none if all are sound).
    """
    titles = list(titles)
    problems: list[str] = []
    for test, reason in exclusions.items():
        problem = reason_problem(reason, titles)
        if problem is not None:
            problems.append(f"{test}: {problem}")
    return problems


def exclusion_for(test_id: str, exclusions: Mapping[str, str]) -> str | None:
    """
    The entry of ``exclusions`` that excludes ``test_id`` (relative to the
    package), the longest that is the test itself or a dotted prefix of it;
    ``None`` if none does.
    """
    best: str | None = None
    for entry in exclusions:
        if (test_id == entry or test_id.startswith(entry + ".")) and (
            best is None or len(entry) > len(best)
        ):
            best = entry
    return best


# -- rewriting the copy ----------------------------------------------------------------


def rename_package(source: str) -> str:
    """
    ``source`` with the old test package's name (``txacme.test``, not
    ``txacme.testing``) replaced by :data:`TEST_PACKAGE`.
    """
    return re.sub(r"\btxacme\.test\b", TEST_PACKAGE, source)


def defer_imports(source: str, deferred: Mapping[str, str]) -> tuple[str, list[str]]:
    """
    Rewrite each ``from txacme... import`` statement of ``source`` that
    imports a name of ``deferred``: the others are imported as before, and
    each deferred name is bound to ``import_deferred(module, name, why)``
    (``tools/compat093_inside.py``).  The statement is replaced on its
    first line, at its indentation; its other lines are left empty, so
    that line numbers do not change.

    :returns: The new source, and the deferred names found.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    found: list[str] = []
    statements = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.level == 0
        and node.module is not None
        and (node.module == "txacme" or node.module.startswith("txacme."))
    ]
    for node in sorted(statements, key=lambda node: node.lineno, reverse=True):
        module = node.module
        assert module is not None
        late = [alias for alias in node.names if f"{module}.{alias.name}" in deferred]
        if not late:
            continue
        kept = [alias for alias in node.names if alias not in late]
        parts = ["from compat093_inside import import_deferred as _compat093_deferred"]
        if kept:
            names = ", ".join(
                alias.name
                if alias.asname is None
                else f"{alias.name} as {alias.asname}"
                for alias in kept
            )
            parts.append(f"from {module} import {names}")
        for alias in late:
            qualified = f"{module}.{alias.name}"
            found.append(qualified)
            parts.append(
                f"{alias.asname or alias.name} = _compat093_deferred("
                f"{module!r}, {alias.name!r}, {deferred[qualified]!r})"
            )
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        indentation = " " * node.col_offset
        lines[first : last + 1] = ["".join([indentation, "; ".join(parts), "\n"])] + [
            "\n"
        ] * (last - first)
    return "".join(lines), sorted(found)


def rewrite(
    name: str,
    source: str,
    deferred: Mapping[str, str],
    replacements: Sequence[Replacement],
) -> tuple[str, list[str]]:
    """
    Apply every rewrite to the file ``name`` of the copy.

    :returns: The new source and the deferred names it imports.
    :raises ValueError: If a replacement of the file does not occur
        exactly as often as it says.
    """
    source = rename_package(source)
    for item in replacements:
        if item.path != name:
            continue
        occurrences = source.count(item.old)
        if occurrences != item.count:
            raise ValueError(
                f"{name}: {item.old!r} occurs {occurrences} times, not {item.count}"
            )
        source = source.replace(item.old, item.new)
    return defer_imports(source, deferred)


# -- getting the tests -----------------------------------------------------------------


def download_sdist(directory: Path) -> Path:
    """Download 0.9.3's source distribution from PyPI into ``directory``."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--dest",
        str(directory),
        RELEASE,
    ]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    return directory / SDIST_NAME


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as content:
        for block in iter(lambda: content.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_tests(sdist: Path, destination: Path) -> list[str]:
    """
    Extract the files of the old test package into ``destination``.

    :returns: Their names.
    """
    destination.mkdir(parents=True)
    names: list[str] = []
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.name.startswith(SDIST_TESTS) or not member.isfile():
                continue
            name = member.name[len(SDIST_TESTS) :]
            if "/" in name or not name.endswith(".py"):
                continue
            extracted = archive.extractfile(member)
            assert extracted is not None
            (destination / name).write_bytes(extracted.read())
            names.append(name)
    if "__init__.py" not in names:
        raise ValueError(f"{sdist} has no {SDIST_TESTS}__init__.py")
    return sorted(names)


def prepare(sdist: Path, work: Path) -> list[str]:
    """
    Extract and rewrite the old tests into ``work / TEST_PACKAGE``.

    :returns: The deferred names the copy imports.
    :raises ValueError: If the sdist is not the expected one, or a rewrite
        or a deferred import does not apply.
    """
    digest = sha256(sdist)
    if digest != SDIST_SHA256:
        raise ValueError(f"{sdist}: SHA-256 {digest}, expected {SDIST_SHA256}")
    package = work / TEST_PACKAGE
    names = extract_tests(sdist, package)
    found: list[str] = []
    for name in names:
        path = package / name
        source, deferred = rewrite(
            name, path.read_text("utf-8"), DEFERRED_IMPORTS, REPLACEMENTS
        )
        path.write_text(source, "utf-8")
        found.extend(deferred)
    unused = sorted(set(DEFERRED_IMPORTS) - set(found))
    if unused:
        raise ValueError(f"DEFERRED_IMPORTS not imported by the tests: {unused}")
    unknown = sorted({item.path for item in REPLACEMENTS} - set(names))
    if unknown:
        raise ValueError(f"REPLACEMENTS of files not in the tests: {unknown}")
    return sorted(found)


# -- judging ---------------------------------------------------------------------------


@dataclass
class Verdict:
    """
    The outcomes of a run, judged against the exclusions.

    :ivar passed: Tests not excluded that passed.
    :ivar failed: Tests not excluded that did not pass, with their outcome
        and what was raised.
    :ivar excluded: Excluded tests that did not pass, with their reason.
    :ivar excluded_passing: Excluded tests that passed, with their reason.
    :ivar stale: Exclusions that matched no test.
    """

    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    excluded_passing: list[tuple[str, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def relative_id(test_id: str) -> str:
    """A test id without the package's name."""
    prefix = TEST_PACKAGE + "."
    return test_id[len(prefix) :] if test_id.startswith(prefix) else test_id


def judge(
    outcomes: Mapping[str, Mapping[str, object]],
    exclusions: Mapping[str, str],
    selected: bool = False,
) -> Verdict:
    """
    Judge each test's outcome (``{"outcome": ..., "detail": ...}`` by full
    test id, as ``tools/compat093_inside.py`` records them).

    :param selected: Whether only some tests ran (then an exclusion
        matching none is not stale).
    """
    verdict = Verdict()
    used: set[str] = set()
    for test_id in sorted(outcomes):
        test = relative_id(test_id)
        outcome = str(outcomes[test_id].get("outcome"))
        detail = str(outcomes[test_id].get("detail") or "")
        entry = exclusion_for(test, exclusions)
        if entry is not None:
            used.add(entry)
            if outcome in PASSING:
                verdict.excluded_passing.append((test, exclusions[entry]))
            else:
                verdict.excluded.append((test, exclusions[entry]))
        elif outcome in PASSING:
            verdict.passed.append(test)
        else:
            verdict.failed.append((test, f"{outcome}: {detail}" if detail else outcome))
    if not selected:
        verdict.stale = sorted(set(exclusions) - used)
    return verdict


def report(verdict: Verdict, deferred_names: Mapping[str, bool]) -> list[str]:
    """The lines of the report, the summary line last."""
    lines: list[str] = []
    if verdict.excluded:
        lines.append(f"compat093: {len(verdict.excluded)} excluded tests, by reason:")
        by_reason: dict[str, list[str]] = {}
        for test, reason in verdict.excluded:
            by_reason.setdefault(reason, []).append(test)
        for reason in sorted(by_reason):
            lines.append(f"  {reason}: {len(by_reason[reason])}")
    present = sorted(name for name, exists in deferred_names.items() if exists)
    if present:
        lines.append(
            "compat093: deferred imports that this txacme now has (drop them "
            "from DEFERRED_IMPORTS): " + ", ".join(present)
        )
    if verdict.excluded_passing:
        lines.append(
            "compat093: excluded tests that PASS (drop them from EXCLUSIONS; "
            "not counted as failures):"
        )
        lines.extend(
            f"  {test} ({reason})" for test, reason in verdict.excluded_passing
        )
    if verdict.stale:
        lines.append("compat093: exclusions that match no test (fix EXCLUSIONS):")
        lines.extend(f"  {entry}" for entry in verdict.stale)
    if verdict.failed:
        lines.append(f"compat093: {len(verdict.failed)} tests FAILED:")
        lines.extend(f"  {test}: {detail}" for test, detail in verdict.failed)
    failed = len(verdict.failed) + (1 if verdict.stale else 0)
    excluded = len(verdict.excluded) + len(verdict.excluded_passing)
    lines.append(
        f"compat093: {len(verdict.passed)} passed, {failed} failed, 0 skipped, "
        f"{excluded} excluded"
    )
    return lines


# -- running ---------------------------------------------------------------------------


#: The summary line of a run that could not judge any test.
NOTHING_JUDGED = "compat093: 0 passed, 1 failed, 0 skipped, 0 excluded"


def run(work: Path, sdist: Path | None, tests: Sequence[str]) -> int:
    """
    Check the lists, prepare the copy in ``work``, run ``tests`` (all if
    none), print the report.

    :returns: The exit status: 0 if no test that is not excluded failed.
    """
    problems = check_exclusions(
        EXCLUSIONS, section_titles(MIGRATION.read_text("utf-8"))
    )
    if problems:
        print("compat093: unsound EXCLUSIONS:", *problems, sep="\n  ", file=sys.stderr)
        print(NOTHING_JUDGED, flush=True)
        return 1
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        if sdist is None:
            sdist = download_sdist(work / "download")
        deferred = prepare(sdist, work)
    except (
        OSError,
        ValueError,
        subprocess.CalledProcessError,
        tarfile.TarError,
    ) as error:
        print(f"compat093: could not prepare the tests: {error}", file=sys.stderr)
        print(NOTHING_JUDGED, flush=True)
        return 1
    print(f"compat093: {TEST_PACKAGE} prepared in {work}; rewrites:", flush=True)
    for line in REWRITES:
        print(f"  {line}", flush=True)
    print(f"  deferred imports: {', '.join(deferred)}", flush=True)

    results = work / "results.json"
    names = [f"{TEST_PACKAGE}.{test}" for test in tests] or [TEST_PACKAGE]
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(work), str(TOOLS), *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment.pop("HYPOTHESIS_PROFILE", None)
    command = [
        sys.executable,
        "-c",
        "import sys, compat093_inside; sys.exit(compat093_inside.main(sys.argv[1:]))",
        str(results),
        *names,
    ]
    subprocess.run(command, cwd=work, env=environment, stdin=subprocess.DEVNULL)
    recorded = json.loads(results.read_text("utf-8")) if results.exists() else {}
    if not recorded.get("tests"):
        print("compat093: the test run recorded no test", file=sys.stderr)
        print(NOTHING_JUDGED, flush=True)
        return 1
    verdict = judge(recorded["tests"], EXCLUSIONS, selected=bool(tests))
    lines = report(verdict, recorded.get("deferred_names", {}))
    print("\n".join(lines), flush=True)
    return 1 if verdict.failed or verdict.stale else 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Run txacme 0.9.3's test suite against this txacme."
    )
    parser.add_argument(
        "--work-directory",
        type=Path,
        help="where the copy is made (emptied first); default: a new temporary one",
    )
    parser.add_argument(
        "--sdist", type=Path, help=f"use this {SDIST_NAME} instead of downloading it"
    )
    parser.add_argument("tests", nargs="*", help="tests relative to the package")
    arguments = parser.parse_args(argv)
    if arguments.work_directory is not None:
        return run(arguments.work_directory.resolve(), arguments.sdist, arguments.tests)
    with tempfile.TemporaryDirectory(prefix="txacme-compat093-") as work:
        return run(Path(work) / "work", arguments.sdist, arguments.tests)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
