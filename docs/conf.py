"""
Sphinx configuration for txacme's documentation.

Build with ``sphinx-build -n -W -b html docs docs/_build/html``: every
cross-reference to a txacme name must resolve.  There is no network access
for intersphinx, so references to the libraries txacme builds on (Twisted,
acme, josepy, cryptography, treq, zope.interface, attrs, pem, libcloud) stay
unlinked on purpose and are silenced below, for those namespaces only.

Three small extensions live here rather than in a dependency:

* the return type of the public ``async def`` methods is shown as the
  ``Deferred`` a caller gets (:func:`_record_annotations`);
* ``autointerface`` documents a :mod:`zope.interface` interface, which
  autodoc cannot (:class:`AutoInterface`);
* the ``:ivar name:`` fields of a class docstring become attribute
  entries, so that ``:attr:`` references to them resolve
  (:func:`_ivars_to_attributes`);
* a name re-exported by another txacme module (``txacme.client.ServerError``
  is ``txacme.errors.ServerError``), or an attribute a class inherits, links
  to where it is documented (:func:`_resolve_elsewhere`).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.nodes import Element, Node
from docutils.parsers.rst import directives
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.domains import ObjType
from sphinx.domains.python import PyClasslike, PythonDomain
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docstrings import prepare_docstring
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode
from sphinx.util.typing import stringify_annotation

_LOGGER = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "src"))

import txacme  # noqa: E402

project = "txacme"
author = "the txacme developers"
project_copyright = "the txacme developers"
release = txacme.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build", "examples"]
nitpicky = True

# -- autodoc -------------------------------------------------------------------

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}

# -- nitpicking: external namespaces only ---------------------------------------

# Without intersphinx nothing outside txacme can resolve.  Only the namespaces
# of txacme's dependencies, the standard library and the builtins are
# ignored: a reference to a txacme name that does not exist fails the build.
_EXTERNAL_PACKAGES = (
    "twisted",
    "treq",
    "acme",
    "josepy",
    "cryptography",
    "zope",
    "attr",
    "attrs",
    "pem",
    "hyperlink",
    "OpenSSL",
    "libcloud",
)
_STANDARD_LIBRARY = (
    "collections",
    "typing",
    "datetime",
    "ipaddress",
    "inspect",
    "os",
    "pathlib",
    "random",
    "types",
)
_BUILTINS = (
    "None",
    "NoneType",
    "str",
    "bytes",
    "int",
    "float",
    "bool",
    "object",
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "type",
    "Exception",
    "BaseException",
    "KeyError",
    "TypeError",
    "ValueError",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_EXTERNAL_PACKAGES)})(\..+)?"),
    (r"py:.*", rf"({'|'.join(_STANDARD_LIBRARY)})\..+"),
    (r"py:.*", rf"({'|'.join(_BUILTINS)})"),
    # Type variables, shown as T (see _ANNOTATION_REWRITES).
    (r"py:class", r"[PRT]"),
]

# -- HTML ----------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"txacme {release}"
html_theme_options = {
    "description": "An ACME (RFC 8555) client for Twisted",
}


# -- annotations -------------------------------------------------------------------

# Annotation types shown by a public name.  The private structural types of
# txacme._types describe the parts of treq's objects txacme uses; a reader
# passes treq's own.  twisted.python.url.URL is hyperlink's class.
_ANNOTATION_REWRITES = (
    (re.compile(r"<InterfaceClass ([\w.]+)>"), r"~\1"),
    (re.compile(r"~?txacme\._types\.HTTPResponse"), "~twisted.web.iweb.IResponse"),
    (re.compile(r"~?txacme\._types\.TreqClient"), "~treq.client.HTTPClient"),
    (re.compile(r"~?hyperlink\._url\.URL"), "~twisted.python.url.URL"),
    (re.compile(r"~?txacme\.\w+\._([PRT])\b"), r"\1"),
)


def _rewrite(annotation: str) -> str:
    for pattern, replacement in _ANNOTATION_REWRITES:
        annotation = pattern.sub(replacement, annotation)
    return annotation


def _is_deferred_async(obj: object) -> bool:
    """
    Whether ``obj`` is an ``async def`` wrapped by
    ``txacme._deferred.deferred_async``: a plain function whose
    ``__wrapped__`` is a coroutine function.
    """
    wrapped = getattr(obj, "__wrapped__", None)
    return (
        wrapped is not None
        and not inspect.iscoroutinefunction(obj)
        and inspect.iscoroutinefunction(wrapped)
    )


_TYPE_CHECKING_IMPORTS: dict[str, dict[str, object]] = {}


def _type_checking_imports(module: types.ModuleType) -> dict[str, object]:
    """
    The names a module imports under ``if TYPE_CHECKING:``, imported now,
    so that annotations using them can be evaluated.
    """
    if module.__name__ in _TYPE_CHECKING_IMPORTS:
        return _TYPE_CHECKING_IMPORTS[module.__name__]
    names: dict[str, object] = {}
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in ast.walk(tree):
        if not isinstance(node, ast.If) or "TYPE_CHECKING" not in ast.unparse(
            node.test
        ):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom) and statement.module:
                source = importlib.util.resolve_name(
                    "." * statement.level + statement.module, module.__package__
                )
                try:
                    imported = importlib.import_module(source)
                except ImportError:
                    continue
                for alias in statement.names:
                    if not hasattr(imported, alias.name):
                        # A submodule not imported yet (``from acme import
                        # messages``).
                        try:
                            importlib.import_module(f"{source}.{alias.name}")
                        except ImportError:
                            continue
                    if hasattr(imported, alias.name):
                        names[alias.asname or alias.name] = getattr(
                            imported, alias.name
                        )
            elif isinstance(statement, ast.Import):
                for alias in statement.names:
                    try:
                        importlib.import_module(alias.name)
                    except ImportError:
                        continue
                    top = alias.name.partition(".")[0]
                    names[alias.asname or top] = sys.modules[
                        alias.name if alias.asname else top
                    ]
    _TYPE_CHECKING_IMPORTS[module.__name__] = names
    return names


def _type_hints(function: Any) -> dict[str, Any] | None:
    """
    The evaluated annotations of ``function`` (of the coroutine function
    for a ``deferred_async`` wrapper), also those naming things imported
    only for type checking; ``None`` if they cannot be evaluated.
    """
    function = inspect.unwrap(function)
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    if module is None:
        return None
    namespace = dict(vars(module))
    try:
        return typing.get_type_hints(function, globalns=namespace)
    except NameError:
        namespace.update(_type_checking_imports(module))
    except Exception:  # not something with annotations
        return None
    try:
        return typing.get_type_hints(function, globalns=namespace)
    except Exception:  # keep autodoc's strings then
        return None


def _record_annotations(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> None:
    """
    Correct the types autodoc recorded for the description fields.

    * Annotations are evaluated also where autodoc leaves them as the
      strings of ``from __future__ import annotations``: for a class's
      ``__init__``, and when they name something imported only under
      ``if TYPE_CHECKING:``.
    * A ``deferred_async`` method returns ``Deferred[T]``, not the ``T``
      that :func:`inspect.signature` finds through ``__wrapped__``.
    * Interfaces, private protocols and TypeVars are shown by a public name.
    """
    current = getattr(app.env, "current_document", None)
    if current is not None:
        annotations = current.autodoc_annotations
    else:  # Sphinx < 8.2
        annotations = app.env.temp_data.get("annotations", {})
    recorded = annotations.get(name)
    if recorded is None:
        return
    is_class = what in ("class", "exception") and isinstance(obj, type)
    is_routine = what in ("function", "method", "decorator") and callable(obj)
    hints = (
        _type_hints(obj.__init__ if is_class else obj)
        if is_class or is_routine
        else None
    )
    for parameter, hint in (hints or {}).items():
        if parameter == "return" and is_class:
            continue
        recorded[parameter] = stringify_annotation(hint, "smart")
    for key, value in list(recorded.items()):
        recorded[key] = _rewrite(value)
    if _is_deferred_async(obj) and "return" in recorded:
        recorded["return"] = f"~twisted.internet.defer.Deferred[{recorded['return']}]"


def _attrs_factory_defaults(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """
    Show an attrs field whose default is a factory as ``name=<factory>``
    (as dataclasses do) rather than attrs' ``NOTHING`` sentinel.
    """
    if signature and "=NOTHING" in signature:
        return signature.replace("=NOTHING", "=<factory>"), return_annotation
    return None


# -- zope.interface ----------------------------------------------------------------


class AutoInterface(SphinxDirective):
    """
    ``.. autointerface:: module.IName``: an interface, its attributes and
    its methods, from their docstrings, as a ``py:interface`` (which
    ``:class:`` references find).
    """

    required_arguments = 1
    has_content = False
    option_spec: typing.ClassVar[dict[str, Any]] = {"no-index": directives.flag}

    def run(self) -> list[Node]:
        module_name, _, interface_name = self.arguments[0].rpartition(".")
        interface = getattr(importlib.import_module(module_name), interface_name)
        lines = [
            f".. py:interface:: {interface_name}",
            f"   :module: {module_name}",
        ]
        if "no-index" in self.options:
            lines.append("   :no-index:")
        lines.append("")
        lines.extend(f"   {line}" for line in prepare_docstring(interface.__doc__))
        for member_name, member in interface.namesAndDescriptions():
            if hasattr(member, "getSignatureString"):
                arguments = member.getSignatureString()
                lines.append(f"   .. py:method:: {member_name}{arguments}")
            else:
                lines.append(f"   .. py:attribute:: {member_name}")
            lines.append("")
            doc = member.getDoc() or ""
            lines.extend(f"      {line}" for line in prepare_docstring(doc))
        self.env.note_dependency(inspect.getfile(importlib.import_module(module_name)))
        return self.parse_text_to_nodes("\n".join(lines))


# -- instance attributes ----------------------------------------------------------

_IVAR = re.compile(r"^:ivar(?:\s+(?P<type>[^:]+?))?\s+(?P<name>\w+):\s*(?P<text>.*)$")


def _ivars_to_attributes(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """
    Turn the ``:ivar name: text`` fields of a class docstring into
    ``.. py:attribute:: name`` entries (with the type of a class-level
    annotation or attrs field, if any), so that the attributes are indexed
    and ``:attr:`name``` finds them.
    """
    if what not in ("class", "exception") or not isinstance(obj, type):
        return
    try:
        hints = typing.get_type_hints(obj)
    except Exception:  # no types then
        hints = {}
    result: list[str] = []
    index = 0
    while index < len(lines):
        match = _IVAR.match(lines[index])
        if match is None:
            result.append(lines[index])
            index += 1
            continue
        attribute = match["name"]
        continuation: list[str] = []
        index += 1
        # The field goes on over indented lines, and over blank lines that
        # an indented line follows.
        while index < len(lines):
            line = lines[index]
            if line.startswith((" ", "\t")):
                continuation.append(line)
            elif (
                not line.strip()
                and lines[index + 1 : index + 2]
                and lines[index + 1].startswith(" ")
            ):
                continuation.append("")
            else:
                break
            index += 1
        body = [match["text"], *textwrap.dedent("\n".join(continuation)).splitlines()]
        result.append(f".. py:attribute:: {attribute}")
        if attribute in hints:
            annotation = _rewrite(stringify_annotation(hints[attribute], "smart"))
            result.append(f"   :type: {annotation}")
        elif match["type"]:
            result.append(f"   :type: {match['type']}")
        result.append("")
        result.extend(f"   {line}" if line else "" for line in body)
        result.append("")
    lines[:] = result


# -- references to re-exported and inherited names -----------------------------------


def _import(dotted: str) -> object:
    """The object a dotted txacme name stands for, or ``None``."""
    module_name, _, attribute = dotted.rpartition(".")
    parts: list[str] = [attribute]
    while module_name:
        try:
            obj: object = importlib.import_module(module_name)
        except ImportError:
            module_name, _, attribute = module_name.rpartition(".")
            parts.insert(0, attribute)
            continue
        try:
            for part in parts:
                obj = getattr(obj, part)
        except AttributeError:
            return None
        return obj
    return None


def _documented_names(env: BuildEnvironment) -> dict[int, str]:
    """The documented txacme objects, by identity: id(object) -> name."""
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    names: dict[int, str] = {}
    for name, entry in objects.items():
        if name.startswith("txacme.") and entry.objtype != "module":
            obj = _import(name)
            if obj is not None and not isinstance(obj, (str, int, float, tuple)):
                names.setdefault(id(obj), name)
    return names


def _candidates(env: BuildEnvironment, node: pending_xref) -> list[str]:
    """Where a txacme name that is not documented under its own name may be."""
    target: str = node["reftarget"]
    module_name = node.get("py:module")
    class_name = node.get("py:class")
    found: list[str] = []
    names = [target]
    if module_name and "." not in target:
        # A docstring names things of the module it was written in, which
        # is not the page's module for a re-exported class.
        context = _import(f"{module_name}.{class_name}") if class_name else None
        home = getattr(context, "__module__", module_name)
        names += [f"{module_name}.{target}", f"{home}.{target}"]
    documented = _documented_names(env)
    for name in names:
        if name.startswith("txacme."):
            obj = _import(name)
            if obj is not None and id(obj) in documented:
                found.append(documented[id(obj)])
    if module_name and class_name and "." not in target:
        # An inherited attribute: RateLimited's retry_after is ServerError's.
        owner = _import(f"{module_name}.{class_name}")
        for base in getattr(owner, "__mro__", ())[1:]:
            found.append(f"{base.__module__}.{base.__qualname__}.{target}")
    return found


def _resolve_elsewhere(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> nodes.reference | None:
    """
    Resolve a reference to a txacme name documented under another name: a
    re-export (``txacme.client.AuthorizationFailed`` is documented as
    ``txacme.errors.AuthorizationFailed``, ``txacme.jws.JWSClient`` as
    ``txacme.client.JWSClient``), a name in the module a re-exported class's
    docstring was written in, or an inherited attribute.  Only objects that
    exist in txacme and are documented are looked at; anything else stays
    unresolved and fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    for candidate in _candidates(env, node):
        entry = objects.get(candidate)
        if entry is not None and candidate != node["reftarget"]:
            return make_refnode(
                app.builder,
                node["refdoc"],
                entry.docname,
                entry.node_id,
                contnode,
                candidate,
            )
    return None


# -- completeness ---------------------------------------------------------------------


def _check_public_names_documented(app: Sphinx, env: BuildEnvironment) -> None:
    """
    Warn (which fails a ``-W`` build) about any name in the ``__all__`` of
    a documented txacme module that is documented nowhere: neither under
    that module nor, for a re-export, under another name.
    """
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    documented = _documented_names(env)
    modules = sorted(
        name
        for name, entry in objects.items()
        if entry.objtype == "module" and name.startswith("txacme")
    )
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if f"{module_name}.{name}" in objects:
                continue
            obj = getattr(module, name)
            if isinstance(obj, (str, int, float, bytes)) or id(obj) not in documented:
                _LOGGER.warning(
                    "%s.%s is public (in __all__) but documented nowhere",
                    module_name,
                    name,
                )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-signature", _record_annotations, priority=900)
    app.connect("autodoc-process-docstring", _ivars_to_attributes)
    app.connect("env-check-consistency", _check_public_names_documented)
    app.connect("missing-reference", _resolve_elsewhere)
    app.add_directive("autointerface", AutoInterface)
    PythonDomain.object_types.setdefault(
        "interface", ObjType("interface", "class", "obj")
    )
    app.add_directive_to_domain("py", "interface", PyClasslike)
    app.connect("autodoc-process-signature", _attrs_factory_defaults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
