"""Every public class and function has a docstring: the names of ``__all__`` of the public modules, and
the public methods and properties of the public classes (the API reference is generated from them)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from types import ModuleType

import pytest

import adcreative_async

#: Modules whose ``__all__`` is the public API (every package module without a leading underscore).
PUBLIC_MODULES = sorted(
    {"adcreative_async"}
    | {
        info.name
        for info in pkgutil.walk_packages(adcreative_async.__path__, "adcreative_async.")
        if not any(part.startswith("_") for part in info.name.split("."))
    }
)


def _public_objects(module: ModuleType) -> Iterator[tuple[str, object]]:
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if not getattr(obj, "__module__", "").startswith("adcreative_async"):
            continue  # a re-exported type alias or constant
        if (inspect.isclass(obj) and isinstance(obj, type)) or inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        yield f"{module.__name__}.{name}.{attr}", member


def _missing(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    return [name for name, obj in _public_objects(module) if not (inspect.getdoc(obj) or "").strip()]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_have_docstrings(module_name: str) -> None:
    assert _missing(module_name) == []


def test_the_walk_finds_the_public_api() -> None:
    assert {"adcreative_async", "adcreative_async.testing", "adcreative_async.cli"} <= set(PUBLIC_MODULES)
    names = [name for name, _ in _public_objects(adcreative_async)]
    assert "adcreative_async.AdCreativeClient.bulk" in names
    assert "adcreative_async.RenderJob.wait_until_complete" in names
