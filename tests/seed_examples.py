"""Every JSON example of the two seed documents, extracted mechanically.

The seeds (copied verbatim into ``tests/fixtures/seeds``) are the authority for the two features they
document. Tests iterate over :func:`examples` so that no example can be forgotten: each one is a
balanced ``{...}`` or ``[...]`` block that parses as JSON, labelled with the text line that precedes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED_DIR = Path(__file__).parent / "fixtures" / "seeds"
SEEDS = ("background_remover.txt", "adcreative.txt")


@dataclass(frozen=True)
class SeedExample:
    """One JSON example: the seed it comes from, its position, the context lines before it, its value."""

    seed: str
    line: int
    context: tuple[str, ...]
    value: Any

    @property
    def id(self) -> str:
        return f"{self.seed.removesuffix('.txt')}:{self.line}"

    def context_has(self, *needles: str) -> bool:
        """Whether every needle appears in the context lines (case-insensitive)."""
        text = "\n".join(self.context).lower()
        return all(n.lower() in text for n in needles)


def _block_end(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at ``start`` (strings respected), or -1."""
    opener = text[start]
    closer = "}" if opener == "{" else "]"
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1 if ch == closer else -1
    return -1


def extract(seed: str) -> list[SeedExample]:
    """The JSON examples of one seed file, in document order."""
    text = (SEED_DIR / seed).read_text(encoding="utf-8")
    found: list[SeedExample] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        at_line_start = pos == 0 or text[text.rfind("\n", 0, pos) + 1 : pos].strip() == ""
        if ch in "{[" and at_line_start:
            end = _block_end(text, pos)
            if end > 0:
                try:
                    value = json.loads(text[pos:end])
                except json.JSONDecodeError:
                    value = None
                if isinstance(value, (dict, list)) and value:
                    line = text.count("\n", 0, pos) + 1
                    before = [ln.strip() for ln in text[:pos].splitlines() if ln.strip()]
                    found.append(SeedExample(seed, line, tuple(before[-12:]), value))
                    pos = end
                    continue
        pos += 1
    return found


def examples() -> list[SeedExample]:
    """All examples of both seeds."""
    return [ex for seed in SEEDS for ex in extract(seed)]
