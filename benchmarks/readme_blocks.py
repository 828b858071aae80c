"""The one documentation writer the benchmarks share: a rendered block replaces the block between the same markers,
in README.md or whichever page of docs/ holds them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def pages() -> list[Path]:
    """README.md and every Markdown page of the documentation site."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def documentation() -> str:
    """All of it as one text: what the tests that check figures in prose read."""
    return "\n".join(page.read_text() for page in pages())


def replace_block(block: str) -> None:
    """`block` is a benchmark's readme_block(): its first line is its begin marker and its last line its end marker."""
    lines = block.splitlines()
    begin, end = lines[0], lines[-1]
    for page in pages():
        text = page.read_text()
        if begin in text and end in text:
            start, stop = text.index(begin), text.index(end) + len(end)
            page.write_text(text[:start] + block + text[stop:])
            return
    raise SystemExit(f"neither README.md nor docs/ has a {begin} ... {end} block")
