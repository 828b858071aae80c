"""The hazard log (docs/safety.md) cannot claim what no test shows: every hazard names at least one test, and every
test it names exists (issue 31)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "docs" / "safety.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
REQUIRED = ("missed pneumonia", "false flag", "wrong study", "forged", "intended use", "non-chest", "synthetic film",
            "corrupted", "drift", "unreviewed", "leak", "without a record", "audit trail", "pacs is down",
            "poisoned federated")


def hazard_rows(text: str) -> list[list[str]]:
    """The table's rows (hazard id first), without its header and separator."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"H\d+", cells[0]):
            rows.append(cells)
    return rows


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_hazard_names_a_test_and_every_named_test_exists():
    rows = hazard_rows(LOG.read_text())
    assert len(rows) >= len(REQUIRED)
    missing = []
    for row in rows:
        assert len(row) == 5, f"{row[0]}: a row is id | hazard | cause | control | verified by"
        named = TEST_ID.findall(row[4])
        assert named, f"{row[0]} ({row[1]}) names no test: a control without a test goes under 'Open hazards'"
        for file, name in named:
            if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file):
                missing.append(f"{row[0]}: {file}::{name}")
    assert not missing, f"the hazard log names tests that do not exist: {missing}"


def test_the_log_covers_the_hazards_a_hospital_asks_about():
    hazards = " ".join(row[1].lower() for row in hazard_rows(LOG.read_text()))
    assert [word for word in REQUIRED if word not in hazards] == []


def test_the_checker_fails_on_a_missing_test_and_on_a_hazard_without_one(tmp_path, monkeypatch):
    """The two faults this file guards against, planted: each must fail the check."""
    import pytest

    good = LOG.read_text()
    first = hazard_rows(good)[0]
    for fault in (good.replace(TEST_ID.search(good).group(0), "`tests/test_safety_log.py::test_no_such_test`", 1),
                  good.replace(first[4], "nothing yet", 1)):
        planted = tmp_path / "safety.md"
        planted.write_text(fault)
        monkeypatch.setattr(sys.modules[__name__], "LOG", planted)
        with pytest.raises(AssertionError):
            test_every_hazard_names_a_test_and_every_named_test_exists()
