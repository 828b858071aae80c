"""PDF reports, rendered to pictures with poppler (as a person would open them) and read back as text."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcore.imaging.service import analyse_file
from medcore.metrics import format_probability
from medcore.notes.explain import ExplanationCache
from medcore.notes.service import analyse_note
from medcore.pdf_reports import note_report_pdf, study_report_pdf
from tests.synthetic import chest_like, encode

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm, pdftotext)")


def rendered(pdf: bytes, tmp_path: Path) -> tuple[np.ndarray, str]:
    """(first page as RGB pixels, all text) of a PDF."""
    source = tmp_path / "report.pdf"
    source.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(source), str(tmp_path / "page")],
                   check=True, timeout=60)
    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("RGB")).astype(int)
    text = subprocess.run(["pdftotext", "-layout", str(source), "-"], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    return page, text


def test_study_report_shows_film_heatmap_probability_threshold_model_and_disclaimer(xray_model, tmp_path):
    film = encode(chest_like(xray_model.artifact.quality_reference, seed=7), "PNG")
    result = analyse_file(xray_model, film, "=HYPERLINK(x).png")
    assert result.probability is not None
    page, text = rendered(study_report_pdf(result, xray_model.operating_evidence(), opacity=0.6), tmp_path)
    flat = " ".join(text.split())
    assert format_probability(result.probability) in flat and f"{result.threshold:.1%}" in flat
    assert result.decision in flat and xray_model.version in flat and "=HYPERLINK(x).png" in flat
    assert "sensitivity" in flat and "specificity" in flat and "internal validation" in flat
    assert "Decision support only" in flat
    # The film is gray; the Grad-CAM overlay beside it is tinted (any hue: mid-scale heat is green): both are on the page.
    colour = page.max(axis=-1) - page.min(axis=-1) > 30
    left, right = colour[:, : page.shape[1] // 2], colour[:, page.shape[1] // 2:]
    gray_dark = (page.max(axis=-1) < 120) & ~colour
    assert right.sum() > 500 and right.sum() > 5 * left.sum() and gray_dark[:, : page.shape[1] // 2].sum() > 500


def test_refused_study_report_says_why(xray_model, tmp_path):
    result = analyse_file(xray_model, b"not an image", "junk.png")
    _, text = rendered(study_report_pdf(result, xray_model.operating_evidence()), tmp_path)
    assert "No prediction" in text and "Not a PNG, JPEG or DICOM" in " ".join(text.split())


def test_note_report_lists_classes_and_colours_the_words(notes_models, tmp_path):
    model = notes_models["symptom2disease"]
    note = ("I have a persistent cough with thick yellow phlegm, high fever and chills, and it hurts to breathe. "
            "<script>alert(1)</script> Über-müde, 咳嗽.")
    prediction, attribution, error = analyse_note(model, note, ExplanationCache(capacity=1), "dr_test")
    assert error is None
    best = model.labels.index(prediction.ranked(1)[0][0])
    page, text = rendered(note_report_pdf(prediction, attribution, best, "Disease from symptoms"), tmp_path)
    flat = " ".join(text.split())
    for label, probability in prediction.ranked(3):
        assert f"{label}: {format_probability(probability)}" in flat
    assert "phlegm" in flat and "<script>" in flat and "alert(1)</script>" in flat and model.version in flat
    assert prediction.finding in flat and prediction.finding.startswith(("most likely", "one of"))
    assert "Über-müde" in flat and "shown as '?'" in flat  # no CJK glyphs in the PDF font: said, not dropped
    reds = (page[..., 0] > 200) & (page[..., 2] < 200) & (page[..., 1] < 200)
    blues = (page[..., 2] > 200) & (page[..., 0] < 200)
    assert reds.sum() > 50 and blues.sum() > 20  # words pushed towards and away from the class



def test_a_word_wider_than_the_page_is_wrapped_and_a_huge_file_name_shortened(notes_models, xray_model, tmp_path):
    """L5 (issue 21): a 5,000-character word is printed in full over several lines, not clipped at the page's edge;
    a 5,000-character file name gives a report (shortened, and said so), not an exception."""
    model = notes_models["symptom2disease"]
    word = "".join("abcdefghij"[i % 10] for i in range(5_000))
    prediction, attribution, error = analyse_note(model, f"cough and fever {word} chills", ExplanationCache(1), "dr")
    assert error is None
    _, text = rendered(note_report_pdf(prediction, attribution, 0, "Disease from symptoms"), tmp_path)
    printed = "".join(ch for ch in text if ch in "abcdefghij")
    assert word in printed  # every character is on the page, in order
    result = analyse_file(xray_model, b"not an image", "x" * 5_000 + ".png")
    (tmp_path / "study").mkdir()
    _, text = rendered(study_report_pdf(result, xray_model.operating_evidence()), tmp_path / "study")
    joined = "".join(text.split())
    assert "xxxxxxxxxx…" in joined and joined.count("x") < 400 and "Noprediction" in joined
