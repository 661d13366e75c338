"""A benchmark's Markdown report: printed, and written where the results are kept."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def publish(lines: Iterable[str], path: Path) -> None:
    """Print the report and write it to ``path`` (creating its folder)."""
    text = "\n".join(lines) + "\n"
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
