"""The adversarial corpus (tests/adversarial.py) through the functions the pages and the CLI use: every case
gets a clear message or a correct result, never a crash, never more than a few seconds, never a lost
neighbour in the same batch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from medcore.imaging.service import analyse_file, analyse_uploads
from medcore.notes.explain import ExplanationCache
from medcore.notes.service import analyse_note
from medcore.notes.text import NoteRejected, decode_upload
from tests.adversarial import GOOD, NOTE_CORPUS, image_corpus

SECONDS_PER_CASE = 10  # a bound against hangs, far above the usual tens of milliseconds; not a speed target
MARKUP = re.compile(r"\]\(|!\[|<\w|https?:")


@pytest.fixture(scope="module")
def corpus(xray_model):
    return image_corpus(xray_model.artifact.quality_reference)


def test_every_image_case_gets_a_clear_message_or_a_correct_result(xray_model, corpus):
    for name, filename, data, expected in corpus:
        started = time.perf_counter()
        result = analyse_file(xray_model, data, filename)
        assert time.perf_counter() - started < SECONDS_PER_CASE, name
        if expected is GOOD:
            assert result.error is None and 0.0 <= result.probability <= 1.0, (name, result.error)
            assert result.decision in xray_model.labels and result.heatmap is not None, name
        else:
            assert result.probability is None and result.error, name
            assert re.search(expected, result.error), (name, result.error)
            assert not MARKUP.search(result.error), (name, result.error)  # header text cannot carry links or HTML
            assert "Traceback" not in result.error and "/site-packages/" not in result.error, name


def test_the_whole_corpus_in_one_batch_loses_no_neighbour(xray_model, corpus):
    """In one batch each file gets what it gets alone: the same message for a bad one, the same probability and
    decision for a good one, in its own place; no file changes another's result (issue 34: it asserted only
    accepted or refused)."""
    results = analyse_uploads(xray_model, [(filename, data) for _, filename, data, _ in corpus], {}, "dr_test")
    assert [r.filename for r in results] == [filename for _, filename, _, _ in corpus]
    for (name, filename, data, expected), result in zip(corpus, results):
        alone = analyse_file(xray_model, data, filename)
        if expected is GOOD:
            assert result.error is None and result.decision == alone.decision, (name, result.error)
            assert result.probability == pytest.approx(alone.probability, abs=1e-6), name
        else:
            assert result.probability is None and re.search(expected, result.error), (name, result.error)
            assert result.error.split(" (incident")[0] == alone.error.split(" (incident")[0], name


def test_the_cli_reports_each_file_on_its_own_line(corpus, tmp_path):
    paths = []
    for index, (_, filename, data, _) in enumerate(corpus):
        path = tmp_path / f"{index:02d}-{filename}"
        path.write_bytes(data)
        paths.append(str(path))
    run = subprocess.run([sys.executable, "-m", "medcore.cli", "predict", "xray", *paths, "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [row["file"] for row in rows] == paths
    for (name, _, _, expected), row in zip(corpus, rows):
        assert ("probability" in row) == (expected is GOOD), (name, row)
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("name, raw, expected", NOTE_CORPUS, ids=[case[0] for case in NOTE_CORPUS])
def test_every_note_case_gets_a_clear_message_or_a_correct_result(notes_models, name, raw, expected):
    model = notes_models["symptom2disease"]
    started = time.perf_counter()
    try:
        text = decode_upload(raw) if isinstance(raw, bytes) else raw
    except NoteRejected as exc:
        prediction, error = None, str(exc)
    else:
        prediction, attribution, error = analyse_note(model, text, ExplanationCache(capacity=1), "dr_test")
    assert time.perf_counter() - started < SECONDS_PER_CASE, name
    if expected is GOOD:
        assert error is None and prediction is not None, (name, error)
        assert abs(prediction.probabilities.sum() - 1.0) < 1e-6 and len(attribution.tokens) > 0
    else:
        assert prediction is None and re.search(expected, error), (name, error)


def test_every_rogue_federated_update_is_dropped_with_its_reason(xray_model):
    from medcore.federated import validation
    from tests.adversarial import rogue_federated_updates

    weights = xray_model.artifact.network.get_weights()
    expected = validation.Expected(weights, {"site-1": 1000}, 1024, 64)
    assert validation.check_fit("site-1", weights, 1000, {"loss": 0.3}, expected) is None  # the honest update
    for name, arrays, n, metrics, reason in rogue_federated_updates(weights):
        assert re.search(reason, validation.check_fit("site-1", arrays, n, metrics, expected) or ""), name
