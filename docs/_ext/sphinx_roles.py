"""Griffe extension: the docstrings' Sphinx roles become checked cross-references.

The docstrings name other objects the Sphinx way (``:func:`defend```,
``:class:`~remix_jax.defense.RemixParams```, ``:mod:`remix_jax.masking```). mkdocstrings
does not read roles, so this extension rewrites each one, before rendering, into an
autorefs link to the object's canonical path: a link where the site documents the
object, plain code where it does not (a private helper, a module the site leaves out).

A role that names nothing in remix_jax (a typo, a renamed or removed object) is logged
as a warning, which fails ``mkdocs build --strict`` and tests/test_api_reference.py.
Roles that name another package's objects (``jax.jit``, imported under any name) are
left as code, unchecked. reST's ``text::`` before an indented block becomes ``text:``.
"""

from __future__ import annotations

import ast
import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?P<role>func|class|mod|meth|attr|data|exc|obj):`(?P<target>[^`]+)`")
LITERAL = re.compile(r"(?<=\S)::$", flags=re.M)
PACKAGE = "remix_jax"
logger = griffe.get_logger("griffe_sphinx_roles")


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring in the loaded package (see the module)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        exports = _exports(pkg)
        for obj in _objects(pkg):
            docstring = obj.docstring
            if docstring is None or ":" not in docstring.value:
                continue
            value = ROLE.sub(
                lambda match, obj=obj: _link(match, obj, loader.modules_collection, exports),
                docstring.value,
            )
            # reST's "text::" before an indented literal block reads "text:" (the
            # block is already Markdown's indented code)
            docstring.value = LITERAL.sub(":", value)


def _objects(obj: griffe.Object):
    """The object and every object defined under it (aliases, i.e. imports, skipped)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _exports(pkg: griffe.Module) -> dict[str, str]:
    """remix_jax's lazily imported names: ``{name: defining module}`` from ``_EXPORTS``."""
    try:
        return ast.literal_eval(str(pkg["_EXPORTS"].value))
    except (KeyError, ValueError, SyntaxError):
        return {}


def _link(match: re.Match, obj: griffe.Object, collection, exports: dict[str, str]) -> str:
    target = match["target"].strip()
    # "~a.b.c" shows "c"; "title <a.b.c>" shows "title"
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<path>[^>]+)>", target)
    if explicit:
        title, target = explicit["title"], explicit["path"]
    else:
        target = target.removeprefix("~")
        title = target.rsplit(".", 1)[-1] if match["target"].startswith("~") else target
    path = _resolve(target.removeprefix("."), obj, collection, exports)
    code = f"<code>{html.escape(title)}</code>"
    if path is None:
        where = f"{obj.relative_filepath}:{obj.docstring.lineno}"
        logger.warning(f"{where}: {match[0]} in {obj.path} names nothing in {PACKAGE}")
        return code
    if not path.startswith(f"{PACKAGE}.") and path != PACKAGE:
        return code  # another package's object: no page here to link to
    return f'<autoref identifier="{path}" optional>{code}</autoref>'


def _resolve(target: str, obj: griffe.Object, collection, exports: dict[str, str]) -> str | None:
    """The canonical path ``target`` names from ``obj``'s scope; None if it names nothing.

    A name outside remix_jax comes back as its full path (it is not checked further).
    """
    head, _, rest = target.partition(".")
    if head == PACKAGE:
        name = rest.partition(".")[0]
        # remix_jax.defend: a lazy export, documented where its module defines it
        full = f"{exports[name]}.{rest}" if name in exports else target
    else:
        try:
            full = obj.resolve(head) + (f".{rest}" if rest else "")
        except griffe.NameResolutionError:
            return None
    if not (full == PACKAGE or full.startswith(f"{PACKAGE}.")):
        return full
    try:
        return collection[full].canonical_path
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
