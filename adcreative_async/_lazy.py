"""Public names of a package imported on first use, for its module ``__getattr__`` and ``__dir__``.

A package lists its rarely used names in a ``{name: relative module}`` mapping and delegates to
:func:`load_lazy` and :func:`lazy_dir`, keeping its own ``def __getattr__`` (so that type checkers
see a module ``__getattr__``) and its ``if TYPE_CHECKING:`` imports of the lazy names.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, MutableMapping


def load_lazy(
    package: str, lazy: Mapping[str, str], namespace: MutableMapping[str, object], name: str
) -> object:
    """The value of ``name`` from its module in ``lazy`` (relative to ``package``), imported now and kept
    in ``namespace`` (the package's ``globals()``) so that it is looked up once; AttributeError for a
    name not in ``lazy``."""
    module_name = lazy.get(name)
    if module_name is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, package), name)
    namespace[name] = value
    return value


def lazy_dir(namespace: Iterable[str], public: Iterable[str]) -> list[str]:
    """A package's ``dir()``: what it holds now and its public names, loaded or not."""
    return sorted({*namespace, *public})
