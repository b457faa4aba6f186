"""Replace one section of docs/benchmarks.md with a benchmark's new figures (shared by the scripts here)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, text: str, keep: str | None = None, docs: Path = DOCS) -> None:
    """Put ``text`` (starting with ``heading``) in place of the section under ``heading``, up to the next
    ``## `` heading or, when given, the paragraph starting with ``keep`` (kept); appended when absent."""
    old = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
    stop = r"(?=\n" + (re.escape(keep) + r"|\n" if keep else "") + r"## |\Z)"
    pattern = re.compile(re.escape(heading) + r".*?" + stop, re.S)
    new = pattern.sub(lambda _: text.rstrip("\n") + "\n", old, count=1) if pattern.search(old) \
        else old.rstrip("\n") + "\n\n" + text
    docs.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
