"""What a clinician takes away from the X-ray page: the batch summary (table and spreadsheet-safe CSV) and a
short, self-contained HTML report for one study (images embedded, every text escaped). PDF: pdf_reports."""

from __future__ import annotations

import base64
import html
import io
import time

import numpy as np
from PIL import Image

from medcore import conformal
from medcore.artifacts import ModelInfo
from medcore.imaging.gradcam import overlay
from medcore.imaging.intended_use import IntendedUse
from medcore.imaging.service import StudyResult
from medcore.markup import escape_markdown
from medcore.metrics import format_probability, operating_figures
from medcore.spreadsheet import to_csv


THRESHOLD_PROMISE = ("The threshold keeps the stated sensitivity on films like the validation films; it is not a "
                     "promise for another hospital's films, which a local validation (admin page) checks.")


def xray_banner(model: ModelInfo) -> str:
    """The X-ray page's standing statement: threshold, what it achieves with intervals and where measured."""
    evidence, external = model.operating_evidence(), model.external_metrics()
    metrics, positive = evidence["metrics"], model.positive_label
    text = (f"**Operating threshold {model.threshold:.1%}.** A study whose calibrated {positive.lower()} probability "
            f"is at or above it is flagged **{escape_markdown(positive)}**. "
            f"{escape_markdown(evidence['source'].capitalize())}: "
            f"{operating_figures(metrics)}, AUC {metrics['auc']:.3f}.")
    if external and not model.meta.get("local_validation"):
        text += (f" On {external['metrics']['n']} new patients ({escape_markdown(external['part_note'])}): "
                 f"{operating_figures(external['metrics'])}.")
    elif not model.meta.get("local_validation"):
        text += " On new patients from elsewhere expect a lower specificity."
    return text + (f" Model `{model.version}`. {escape_markdown(IntendedUse.from_meta(model.meta).statement())} "
                   "Films outside it are refused. Decision support, not a diagnosis.")


def notes_summary(model: ModelInfo) -> str:
    """The Case notes page's standing statement: the model against its baseline, and what it says when one class is not enough."""
    deep, baseline = model.validation_metrics, model.baseline_metrics
    text = (f"Model `{model.version}`: validation macro-F1 {deep['macro_f1']:.3f} (accuracy {deep['accuracy']:.1%}, "
            f"n = {deep['n']})")
    if baseline:
        name = model.meta.get("baseline", {}).get("model", "TF-IDF + logistic regression")
        text += f"; baseline ({name}) on the same notes: macro-F1 {baseline['macro_f1']:.3f}"
    confidence, sets = model.meta.get("confidence"), model.meta.get("conformal")
    if sets and "held_out_check" in sets:
        check = sets["held_out_check"]
        text += (f". When one category is not enough it names a set of categories; such sets "
                 f"{escape_markdown(conformal.coverage_sentence(sets))}, averaged {check['mean_set_size']:.2f} "
                 f"categories and {check['singletons']:.0%} named one")
    elif confidence:
        text += (f". Below a top probability of {confidence['threshold']:.0%} it says \"uncertain\": "
                 f"{confidence['coverage']:.0%} of validation notes got a finding, {confidence['precision']:.0%} "
                 "of those correct")
    return text + ". Decision support only."


def summary_rows(results: list[StudyResult], positive: str) -> list[dict]:
    """One row per study: file, decision (or "no prediction"), calibrated probability, why not."""
    return [{"file": r.filename, "decision": r.decision or "no prediction",
             f"{positive.lower()} probability": None if r.probability is None else round(r.probability, 4),
             "note": r.error or ""} for r in results]


def summary_csv(rows: list[dict]) -> str:
    """The summary as CSV; a file name like `=HYPERLINK(...)` is written as text, not run as a formula."""
    return to_csv(rows, list(rows[0]) if rows else ["file", "decision", "note"])


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 RGB or float [0, 1] grayscale array -> PNG bytes."""
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _img_tag(image: np.ndarray, alt: str) -> str:
    encoded = base64.b64encode(png_bytes(image)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}" style="max-width:48%">'


def intended_use_rows(result: StudyResult) -> list[tuple[str, str]]:
    """What a report says about the population: a warning for a film scored outside it, or the population stated
    for a film that carries no age."""
    if result.intended_use_warning:
        return [("Intended use", result.intended_use_warning)]
    return [("Validated population", result.population_note)] if result.population_note else []


def study_report_html(result: StudyResult, evidence: dict, opacity: float = 0.5) -> str:
    """The report a clinician can attach to a case: inputs, result, threshold, model, caveats."""
    name = html.escape(result.filename)
    rows = [("File", name), ("Model version", html.escape(result.model_version)),
            ("Generated", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))]
    if result.error:
        body = f"<p><b>No prediction.</b> {html.escape(result.error)}</p>"
    else:
        rows += [(label, f"<b>{html.escape(text)}</b>") for label, text in intended_use_rows(result)]
        rows += [("Pneumonia probability (calibrated)", format_probability(result.probability)),
                 ("Operating threshold", f"{result.threshold:.1%}"),
                 ("Decision", f"<b>{html.escape(result.decision or '')}</b>"),
                 ("At this threshold",
                  f"{html.escape(operating_figures(evidence['metrics']))} ({html.escape(evidence['source'])})")]
        images = ""
        if result.display is not None and result.heatmap is not None:
            images = (_img_tag(result.display, "original radiograph") + " " +
                      _img_tag(overlay(result.display, result.heatmap, opacity), "Grad-CAM overlay"))
        body = (f"<p>{images}</p><p style='font-size:90%'>Left: the image as uploaded. Right: Grad-CAM, "
                "regions that raised the pneumonia score (red = strongest).</p>")
    table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{v}</td></tr>"
                    for k, v in rows)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>MedCore report: {name}</title></head>"
            f"<body style='font-family:sans-serif;max-width:900px'><h2>MedCore chest X-ray report</h2>"
            f"<table>{table}</table>{body}<p style='color:#555;font-size:85%'>Decision support only: "
            "trained on paediatric frontal chest films from one centre (Kermany et al. 2018); it does not "
            "replace a radiologist's reading.</p></body></html>")
