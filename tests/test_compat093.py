"""
Tests for ``tools/compat093.py`` (and ``tools/compat093_inside.py``), the
runner of txacme 0.9.3's test suite: rewriting the copy's imports, the
exclusion list and its matching, judging a run, and the placeholders of
missing names.  The run itself is ``tox -e compat093``.
"""

from __future__ import annotations

import ast
import io
import re
import shutil
import sys
import tarfile
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from tools import compat093, compat093_inside
from tools.compat093 import (
    EXCLUSIONS,
    MIGRATION,
    Replacement,
    check_exclusions,
    defer_imports,
    exclusion_for,
    judge,
    reason_problem,
    rename_package,
    report,
    rewrite,
    section_titles,
)
from tools.compat093_inside import Missing, error_summary, import_deferred

from tests.support import TestCase

DEFERRED = {
    "txacme.util.generate_tls_sni_01_cert": "tls-sni-01",
    "txacme.util.not_there": "test",
    "txacme._gone._helper": "private name",
}


def execute(source: str) -> dict[str, Any]:
    """
    Run rewritten source as a module, with ``compat093_inside`` importable
    as the copy imports it; return the module's names.
    """
    namespace: dict[str, Any] = {}
    saved = sys.modules.get("compat093_inside")
    sys.modules["compat093_inside"] = compat093_inside
    try:
        exec(compile(source, "<rewritten>", "exec"), namespace)
    finally:
        if saved is None:
            del sys.modules["compat093_inside"]
        else:
            sys.modules["compat093_inside"] = saved
    return namespace


class RenamePackageTests(TestCase):
    """:func:`rename_package` renames ``txacme.test`` and nothing else."""

    def test_renames(self) -> None:
        """Imports of the package and of its modules are renamed."""
        source = (
            "from txacme.test import strategies as ts\n"
            "from txacme.test.test_client import RSA_KEY_512\n"
            "import txacme.test.matchers\n"
        )
        self.assertEqual(
            rename_package(source),
            "from txacme093_tests import strategies as ts\n"
            "from txacme093_tests.test_client import RSA_KEY_512\n"
            "import txacme093_tests.matchers\n",
        )

    def test_leaves_other_names(self) -> None:
        """``txacme.testing`` and ``txacme.tests_x`` are not the package."""
        source = "from txacme.testing import FakeClient\nx = 'txacme.tests_x'\n"
        self.assertEqual(rename_package(source), source)


class DeferImportsTests(TestCase):
    """
    :func:`defer_imports` binds the deferred names to placeholders when
    missing, keeps the other names, and keeps line numbers.
    """

    def test_mixed_statement(self) -> None:
        """
        A statement importing a present and a deferred name imports the
        first as before and defers the second; the placeholder raises
        ImportError naming it and why, when called.
        """
        source = (
            "from txacme.util import (\n"
            "    decode_csr,\n"
            "    generate_tls_sni_01_cert)\n"
            "x = 1\n"
        )
        rewritten, found = defer_imports(source, DEFERRED)
        self.assertEqual(found, ["txacme.util.generate_tls_sni_01_cert"])
        self.assertEqual(len(rewritten.splitlines()), len(source.splitlines()))
        self.assertEqual(rewritten.splitlines()[3], "x = 1")
        names = execute(rewritten)
        from txacme.util import decode_csr

        self.assertIs(names["decode_csr"], decode_csr)
        placeholder = names["generate_tls_sni_01_cert"]
        self.assertIsInstance(placeholder, Missing)
        error = self.assertRaises(ImportError, placeholder, "a.example")
        self.assertIn("txacme.util.generate_tls_sni_01_cert", str(error))
        self.assertIn("tls-sni-01", str(error))

    def test_missing_module_and_alias(self) -> None:
        """
        A deferred name of a module that does not exist is a placeholder
        too, bound to its ``as`` name; reading an attribute of it raises.
        """
        rewritten, found = defer_imports(
            "from txacme._gone import _helper as helper\n", DEFERRED
        )
        self.assertEqual(found, ["txacme._gone._helper"])
        helper = execute(rewritten)["helper"]
        error = self.assertRaises(ImportError, getattr, helper, "prefix")
        self.assertIn("no module txacme._gone", str(error))

    def test_indented(self) -> None:
        """A statement in a ``try`` block keeps its indentation."""
        source = (
            "try:\n"
            "    from txacme.util import not_there\n"
            "except ImportError:\n"
            "    not_there = None\n"
        )
        rewritten, _ = defer_imports(source, DEFERRED)
        ast.parse(rewritten)
        # The import no longer fails: the test using the name runs, and
        # fails when it uses it, rather than being skipped.
        self.assertIsInstance(execute(rewritten)["not_there"], Missing)

    def test_untouched(self) -> None:
        """
        Statements without deferred names, and imports of other packages,
        are left as they are.
        """
        source = (
            "from txacme.util import decode_csr\n"
            "from acme.challenges import TLSSNI01\n"
            "import txacme.util\n"
        )
        self.assertEqual(defer_imports(source, DEFERRED), (source, []))

    def test_present_deferred_name(self) -> None:
        """A deferred name that exists is imported as usual."""
        deferred = {"txacme.util.decode_csr": "test"}
        names = execute(
            defer_imports("from txacme.util import decode_csr\n", deferred)[0]
        )
        from txacme.util import decode_csr

        self.assertIs(names["decode_csr"], decode_csr)


class RewriteTests(TestCase):
    """:func:`rewrite` applies every rewrite, and checks the replacements."""

    def test_replacement(self) -> None:
        """A replacement of the file is made; others' are not."""
        replacements = [
            Replacement("a.py", "'tls-sni-01'", "'http-01'", "test data"),
            Replacement("b.py", "x", "y", "elsewhere"),
        ]
        source, found = rewrite(
            "a.py",
            "from txacme.test.test_client import R\nR(set(), 'tls-sni-01')\n",
            DEFERRED,
            replacements,
        )
        self.assertEqual(
            source, "from txacme093_tests.test_client import R\nR(set(), 'http-01')\n"
        )
        self.assertEqual(found, [])

    def test_replacement_must_apply(self) -> None:
        """A replacement that does not occur as often as it says fails."""
        replacements = [Replacement("a.py", "'tls-sni-01'", "'http-01'", "data")]
        self.assertRaises(ValueError, rewrite, "a.py", "pass\n", {}, replacements)
        self.assertRaises(
            ValueError,
            rewrite,
            "a.py",
            "'tls-sni-01', 'tls-sni-01'\n",
            {},
            replacements,
        )

    def test_real_replacements(self) -> None:
        """Every replacement of the tool names a file and gives its reason."""
        for item in compat093.REPLACEMENTS:
            self.assertTrue(item.path.endswith(".py"))
            self.assertTrue(item.reason)
            self.assertNotEqual(item.old, item.new)


class ExclusionTests(TestCase):
    """The exclusion list: matching, and the kinds of reasons."""

    def test_matching(self) -> None:
        """
        An entry excludes the test itself, or every test of the class or
        module it names; the longest entry wins; a name that merely starts
        the same does not match.
        """
        exclusions = {
            "test_client.ClientTests": "ACME v1 wire format",
            "test_client.ClientTests.test_poll": "tls-sni-01",
            "test_util": "private name: x",
        }
        self.assertEqual(
            exclusion_for("test_client.ClientTests.test_register", exclusions),
            "test_client.ClientTests",
        )
        self.assertEqual(
            exclusion_for("test_client.ClientTests.test_poll", exclusions),
            "test_client.ClientTests.test_poll",
        )
        self.assertEqual(
            exclusion_for("test_util.CSRTests.test_roundtrip", exclusions), "test_util"
        )
        self.assertIsNone(
            exclusion_for("test_client.ClientTestsMore.test_a", exclusions)
        )
        self.assertIsNone(exclusion_for("test_utility.Tests.test_a", exclusions))
        self.assertIsNone(exclusion_for("test_store.Tests.test_a", exclusions))

    def test_reasons(self) -> None:
        """
        A reason is one of four kinds; a ``docs/migration.rst`` reason must
        name a section of that page.
        """
        titles = ["Other modules", "Errors"]
        for sound in (
            "ACME v1 wire format",
            "tls-sni-01",
            "private name: txacme.client._default_client",
            "docs/migration.rst: Other modules",
        ):
            self.assertIsNone(reason_problem(sound, titles), sound)
        for unsound in (
            "flaky",
            "tls-sni-02",
            "private name: ",
            "private name",
            "docs/migration.rst: No such section",
            "docs/other.rst: Errors",
        ):
            self.assertIsNotNone(reason_problem(unsound, titles), unsound)

    def test_section_titles(self) -> None:
        """Section titles are the lines with an underline at least as long."""
        rst = (
            "Title\n=====\n\nText\n\n``call(x)``\n~~~~~~~~~~~\n\n"
            "Short underline\n---\n\n   indented\n   --------\n"
        )
        self.assertEqual(section_titles(rst), ["Title", "``call(x)``"])

    def test_tool_list_is_sound(self) -> None:
        """
        Every exclusion of the tool has a reason of a known kind, and its
        ``docs/migration.rst`` reasons name sections that exist.
        """
        titles = section_titles(MIGRATION.read_text("utf-8"))
        self.assertIn("The txacme 0.9.3 test suite", titles)
        self.assertEqual(check_exclusions(EXCLUSIONS, titles), [])


class JudgeTests(TestCase):
    """:func:`judge` and :func:`report`: what counts, and the summary line."""

    OUTCOMES: dict[str, dict[str, object]] = {
        "txacme093_tests.test_a.T.test_pass": {"outcome": "success"},
        "txacme093_tests.test_a.T.test_fail": {"outcome": "failure", "detail": "E: x"},
        "txacme093_tests.test_a.T.test_skip": {"outcome": "skip", "detail": "no lib"},
        "txacme093_tests.test_b": {"outcome": "error", "detail": "ImportError: y"},
        "txacme093_tests.test_c.T.test_v1": {"outcome": "error"},
        "txacme093_tests.test_c.T.test_fixed": {"outcome": "success"},
        "<not in test>": {"outcome": "error", "detail": "CancelledError"},
    }
    EXCLUSIONS = {
        "test_c.T.test_v1": "ACME v1 wire format",
        "test_c.T.test_fixed": "tls-sni-01",
        "test_d": "private name: gone",
    }

    def test_judge(self) -> None:
        """
        Tests not excluded pass only by passing (a skip, a module's import
        error, an error outside any test fail); excluded tests are apart,
        those passing listed; an exclusion matching nothing is stale.
        """
        verdict = judge(self.OUTCOMES, self.EXCLUSIONS)
        self.assertEqual(verdict.passed, ["test_a.T.test_pass"])
        self.assertEqual(
            verdict.failed,
            [
                ("<not in test>", "error: CancelledError"),
                ("test_a.T.test_fail", "failure: E: x"),
                ("test_a.T.test_skip", "skip: no lib"),
                ("test_b", "error: ImportError: y"),
            ],
        )
        self.assertEqual(
            verdict.excluded, [("test_c.T.test_v1", "ACME v1 wire format")]
        )
        self.assertEqual(
            verdict.excluded_passing, [("test_c.T.test_fixed", "tls-sni-01")]
        )
        self.assertEqual(verdict.stale, ["test_d"])
        self.assertEqual(judge(self.OUTCOMES, self.EXCLUSIONS, selected=True).stale, [])

    def test_report(self) -> None:
        """
        The report names the failures and the excluded tests that pass,
        and ends with the summary line ``.ci/run`` adds up: excluded tests
        counted apart from the skipped (none), and stale exclusions count as
        one failure.
        """
        lines = report(
            judge(self.OUTCOMES, self.EXCLUSIONS),
            {"txacme.a.b": True, "txacme.c": False},
        )
        self.assertEqual(
            lines[-1], "compat093: 1 passed, 5 failed, 0 skipped, 2 excluded"
        )
        text = "\n".join(lines)
        self.assertIn("test_c.T.test_fixed (tls-sni-01)", text)
        self.assertIn("  test_a.T.test_fail: failure: E: x", text)
        self.assertIn("DEFERRED_IMPORTS): txacme.a.b", text)
        ci_run = (Path(compat093.REPOSITORY) / ".ci" / "run").read_text("utf-8")
        pattern = re.search(r"/\^\((.*?)\): (.*?)\$/", ci_run)
        assert pattern is not None
        self.assertIn("compat093", pattern.group(1).split("|"))
        self.assertRegex(
            lines[-1],
            "^compat093: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped, "
            "[0-9]+ excluded$",
        )


class TemporaryTestCase(TestCase):
    def temporary(self) -> Path:
        """A path in a new directory removed after the test."""
        directory = Path(tempfile.mkdtemp(prefix="txacme-compat093-"))
        self.addCleanup(shutil.rmtree, directory, True)
        return directory / "path"


class ExtractTests(TemporaryTestCase):
    """:func:`compat093.extract_tests` takes the test package and nothing else."""

    def tarball(self, files: dict[str, bytes]) -> Path:
        path = self.temporary()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as archive:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        return path

    def test_extracts_the_package(self) -> None:
        """
        Only the ``.py`` files directly in ``src/txacme/test/`` are
        extracted: not txacme itself, not other paths.
        """
        tests = compat093.SDIST_TESTS
        sdist = self.tarball(
            {
                tests + "__init__.py": b"",
                tests + "test_a.py": b"x = 1\n",
                tests + "data/file.py": b"",
                tests + "notes.txt": b"",
                "txacme-0.9.3/src/txacme/client.py": b"",
                "../evil.py": b"",
            }
        )
        destination = self.temporary()
        self.assertEqual(
            compat093.extract_tests(sdist, destination), ["__init__.py", "test_a.py"]
        )
        self.assertEqual(
            sorted(path.name for path in destination.iterdir()),
            ["__init__.py", "test_a.py"],
        )

    def test_unpreparable(self) -> None:
        """
        A run whose tests cannot be prepared (no such archive) fails, with
        the summary line of one failure.
        """
        output, errors = io.StringIO(), io.StringIO()
        with redirect_stdout(output), redirect_stderr(errors):
            status = compat093.main(
                [
                    f"--work-directory={self.temporary()}",
                    f"--sdist={self.temporary()}",
                ]
            )
        self.assertEqual(status, 1)
        self.assertIn("could not prepare the tests", errors.getvalue())
        self.assertEqual(
            output.getvalue().splitlines()[-1],
            "compat093: 0 passed, 1 failed, 0 skipped, 0 excluded",
        )

    def test_checks_the_digest(self) -> None:
        """Another archive than 0.9.3's published sdist is refused."""
        tests = compat093.SDIST_TESTS
        sdist = self.tarball({tests + "__init__.py": b""})
        error = self.assertRaises(
            ValueError, compat093.prepare, sdist, self.temporary()
        )
        self.assertIn("SHA-256", str(error))


class InsideTests(TemporaryTestCase):
    """The helpers of ``tools/compat093_inside.py``."""

    def test_import_deferred(self) -> None:
        """
        A name that exists is imported; a missing name or module gives a
        placeholder; a module failing to import for another reason raises.
        """
        from txacme import util

        self.assertIs(
            import_deferred("txacme.util", "decode_csr", "x"), util.decode_csr
        )
        self.assertIsInstance(import_deferred("txacme.util", "nope", "x"), Missing)
        self.assertIsInstance(import_deferred("txacme.nope", "nope", "x"), Missing)
        # A module that exists but imports one that does not: its error is
        # not hidden.
        directory = self.temporary()
        directory.mkdir(parents=True)
        (directory / "txacme_compat_broken.py").write_text("import no_such_module\n")
        sys.path.insert(0, str(directory))
        self.addCleanup(sys.path.remove, str(directory))
        self.addCleanup(sys.modules.pop, "txacme_compat_broken", None)
        error = self.assertRaises(
            ModuleNotFoundError, import_deferred, "txacme_compat_broken", "x", "y"
        )
        self.assertEqual(error.name, "no_such_module")

    def test_placeholder(self) -> None:
        """A placeholder raises ImportError on use, not on being looked at."""
        missing = Missing("txacme.x.y", "why")
        self.assertEqual(repr(missing), "<missing txacme.x.y>")
        self.assertRaises(ImportError, missing)
        self.assertRaises(ImportError, getattr, missing, "typ")
        self.assertFalse(hasattr(missing, "__wrapped__"))

    def test_error_summary(self) -> None:
        """
        What was raised is taken from the last traceback, its message's
        lines joined up to a blank line.
        """
        text = (
            "Traceback (most recent call last):\n"
            '  File "a.py", line 1, in f\n'
            "    g()\n"
            "ValueError: bad\n"
            "  more detail\n"
            "\n"
            "Failing explicit example: f()\n"
        )
        self.assertEqual(error_summary(text), "ValueError: bad more detail")
        hypothesis = "AssertionError: 0 != 1\nFailing explicit example: f(x=1)\n"
        self.assertEqual(
            error_summary("Traceback (most recent call last):\n" + hypothesis),
            "AssertionError: 0 != 1",
        )
        self.assertEqual(error_summary("just a message\n"), "just a message")
        self.assertEqual(error_summary(""), "")
        self.assertEqual(len(error_summary("x" * 1000)), 300)
