"""A griffe extension for the documentation site: our docstrings are written for pydoc and
Sphinx-style readers (``:class:`~ad_buyer_storage.Store```, ``Example::``), and mkdocstrings
renders Markdown. Read-only for the sources: it rewrites the docstrings griffe loaded, in memory.

* ``:class:`~a.b.Name``` (and ``:func:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``,
  ``:exc:``) becomes the code span ``Name`` (a leading ``~``: the last part only);
* a paragraph ending in ``::`` before an indented block ends in ``:`` (the block is code either way).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
LITERAL_MARK = re.compile(r"(\S)::$", re.M)


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown_of(text: str) -> str:
    """*text* with the reST roles and literal-block markers above turned into Markdown."""
    return LITERAL_MARK.sub(r"\1:", ROLE.sub(_role, text))


class RestRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
