"""A griffe extension for the API reference: the docstrings are written with reST roles and literal
blocks (``:class:`X```, ``Example::``), which Markdown shows as they are. This turns the roles into code
spans and ``::`` literal-block markers into ``:``, so the reference reads as the docstrings mean."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|exc|mod|obj):`(~?)([^`<]*?)\s*(?:<([^>]*)>)?`")
_LITERAL_BLOCK = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    tilde, text, target = match.group(1), match.group(2).strip(), match.group(3)
    if text and target:  # :meth:`label <target>`
        return f"`{text}`"
    name = target or text
    return f"`{name.rsplit('.', 1)[-1]}`" if tilde else f"`{name}`"


def rewrite(text: str) -> str:
    """The docstring with reST roles as code spans and ``::`` as ``:``."""
    return _LITERAL_BLOCK.sub(r"\1:", _ROLE.sub(_role, text))


class RstRoles(griffe.Extension):
    """Rewrites every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
