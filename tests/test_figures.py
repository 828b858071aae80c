"""Published figures come from result files, and a test says when prose is stale (issue 26).

Each table that a script writes into README.md is compared with what the script renders from its result file, and
where the figures can be recomputed cheaply (the hostile-input corpus), with what the code gives today.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import hostile_inputs  # noqa: E402


def test_the_readme_hostile_input_table_is_the_one_its_result_file_renders():
    results = json.loads(hostile_inputs.RESULTS.read_text())
    assert hostile_inputs.readme_block(results) in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def published():
    return {(r["group"], r["case"]): r["outcome"] for r in json.loads(hostile_inputs.RESULTS.read_text())["rows"]}


def test_the_corpus_still_gives_the_published_outcomes(xray_model, notes_models, published):
    """A model, a message or a case that changed without the table being regenerated fails here."""
    rows = (hostile_inputs.image_rows(xray_model) + hostile_inputs.note_rows(notes_models["symptom2disease"])
            + hostile_inputs.federated_rows(xray_model) + hostile_inputs.model_rows(xray_model))
    now = {(r["group"], r["case"]): r["outcome"] for r in rows}
    stale = {case: (published.get(case), outcome) for case, outcome in now.items() if published.get(case) != outcome}
    assert not stale, f"README's hostile-input table is stale; run python benchmarks/hostile_inputs.py " \
                      f"--write-readme: {stale}"
    assert set(published) - set(now) <= {("PDF", "note with a 5,000-character word")}
