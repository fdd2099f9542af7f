"""The install lines the docs and error messages give work from what users can reach: the package is on
no package index yet, so every ``pip install`` names a clone (``.``), a built wheel, or another package,
never the unpublished ``adcreative-async`` by name."""

from __future__ import annotations

import re
from pathlib import Path

import adcreative_async

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "examples").glob("*.py")),
]
INSTALL = re.compile(r"pip install ([^`\n]*)")


def test_no_install_line_names_the_unpublished_package() -> None:
    offenders = []
    for document in DOCUMENTS:
        for number, line in enumerate(document.read_text().splitlines(), 1):
            for match in INSTALL.finditer(line):
                if re.search(r"(^|[\s'\"])adcreative[-_]async(\[|\s|'|\"|$)", match.group(1)):
                    offenders.append(f"{document.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "install lines that need a published package:\n" + "\n".join(offenders)


def test_the_readme_names_the_wheel_of_the_current_version() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"adcreative_async-{adcreative_async.__version__}-py3-none-any.whl" in readme
