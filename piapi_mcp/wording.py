"""How the server writes numbers and joins sentences: the one place every human-readable text asks.

Structured content keeps machine values; only the words a person or a model reads go through here.
Seconds are rounded to a tenth and a whole value drops its ``.0`` (``12 s``, ``12.3 s``); sizes are
in binary units with at most one decimal, never ``.0`` (``2 MB``, ``1.5 MB``, ``512 KB``); money is
``US$`` with cents, or up to three significant digits below a dollar (``US$0.015``). Sentences built
from parts (an upstream's message, then ours) never end in doubled punctuation.
"""

from __future__ import annotations

import inspect
from typing import Final

#: Marks that already end a sentence: nothing is added after them.
SENTENCE_ENDS: Final = (".", "!", "?", "…")
_KB: Final = 1024
_MB: Final = 1024 * 1024


def number(value: float, decimals: int = 1) -> str:
    """``value`` rounded to ``decimals`` places, without trailing zeros: ``12``, ``12.3``, ``1,024``."""
    rounded = round(float(value), decimals)
    if rounded == int(rounded):
        return f"{int(rounded):,}"
    return f"{rounded:,.{decimals}f}".rstrip("0").rstrip(".")


def seconds(value: float) -> str:
    """A duration as texts write it: ``12 s``, ``12.3 s`` (to a tenth, never ``12.0 s``)."""
    return f"{number(max(0.0, value))} s"


def size(nbytes: float) -> str:
    """A size in bytes as texts write it: ``300 bytes``, ``512 KB``, ``2 MB``, ``1.5 MB`` (binary units)."""
    if nbytes >= _MB:
        return f"{number(nbytes / _MB)} MB"
    if nbytes >= _KB:
        return f"{number(nbytes / _KB)} KB"
    return f"{number(nbytes, 0)} bytes"


def usd(amount: float) -> str:
    """An amount as results write it: ``US$0.02``, ``US$0.015``, ``US$0.0003``, ``US$1,234.50``.

    From a dollar up (and zero), cents; below, at least two decimals and up to three significant
    digits, so small per-task prices are not rounded away.
    """
    if abs(amount) >= 1 or amount == 0:
        return f"US${amount:,.2f}"
    text = f"{amount:.3g}"
    if "e" in text:  # below 0.0001: :g switches to exponent notation
        text = f"{amount:.10f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"US${whole}.{decimals.ljust(2, '0')}"


def clause(text: str) -> str:
    """``text`` ready to go on (before ``;``, ``,``, ``)`` or more words): its final ``.`` gone."""
    stripped = text.strip()
    while stripped.endswith(".") and not stripped.endswith("..."):
        stripped = stripped[:-1].rstrip()
    return stripped


def ended(text: str, mark: str = ".") -> str:
    """``text`` as a finished sentence: ``mark`` added unless it already ends with ``.``, ``!``, ``?``."""
    stripped = text.strip()
    return stripped if stripped.endswith(SENTENCE_ENDS) else stripped + mark


def sentences(*parts: str) -> str:
    """Sentences joined by a space, each finished once (``"Bad input." + "No task was created."``)."""
    return " ".join(ended(part) for part in parts if part.strip())


def description(text: str | None) -> str | None:
    """A docstring or description as clients show it: no docstring indentation, no trailing spaces."""
    if text is None:
        return None
    return "\n".join(line.rstrip() for line in inspect.cleandoc(text).splitlines()).strip()
