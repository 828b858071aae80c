"""The one README writer the benchmarks share: a rendered block replaces the block between the same markers."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_block(block: str) -> None:
    """`block` is a benchmark's readme_block(): its first line is its begin marker and its last line its end marker."""
    lines = block.splitlines()
    begin, end = lines[0], lines[-1]
    text = README.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"README.md has no {begin} ... {end} block")
    start, stop = text.index(begin), text.index(end) + len(end)
    README.write_text(text[:start] + block + text[stop:])
