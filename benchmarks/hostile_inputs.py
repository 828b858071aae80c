"""The README's hostile-input table, produced by running the corpus (tests/adversarial.py) through the shipped models.

    python benchmarks/hostile_inputs.py [--write-readme]

Each image case goes through `imaging.service.analyse_file` (the X-ray page's and `medcore predict`'s path), each
note through `notes.service.analyse_note`; rogue federated updates through the server's check
(`federated.validation.check_fit`); a model with a NaN weight and a local-validation folder named in Markdown
through the page's functions. The outcome is what a person reads; the time is the median of 3 runs on this
machine. Writes benchmarks/results/hostile_inputs.json and, with --write-readme, the table in README.md between
its markers. tests/test_figures.py fails when the README's table, the JSON or the corpus's outcomes disagree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from readme_blocks import replace_block

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "hostile_inputs.json"
START, END = "<!-- hostile-inputs:start -->", "<!-- hostile-inputs:end -->"


def _timed(run, repeats: int = 3):
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = run()
        times.append((time.perf_counter() - started) * 1000)
    return value, round(statistics.median(times))


MAX_OUTCOME = 200


def _short(text: str) -> str:
    return text if len(text) <= MAX_OUTCOME else text[:MAX_OUTCOME - 1] + "…"


def image_outcome(result) -> str:
    return _short(f"{result.decision} ({result.probability:.1%})" if result.error is None else result.error)


def note_outcome(prediction, error) -> str:
    if prediction is None:
        return _short(str(error))
    label, probability = prediction.ranked(1)[0]
    text = (f"{label} ({probability:.1%})" if prediction.certain else
            f"{prediction.finding} (top {probability:.1%})" if prediction.prediction_set else
            f"uncertain (top: {label}, {probability:.1%})")
    warnings = "; ".join(f"warning: {w}" for w in prediction.note.warnings)
    return _short(text + (f"; {warnings}" if warnings else ""))


def image_rows(model) -> list[dict]:
    from medcore.imaging.service import analyse_file
    from tests.adversarial import image_corpus

    rows = []
    for name, filename, data, _ in image_corpus(model.artifact.quality_reference):
        result, ms = _timed(lambda: analyse_file(model, data, filename))
        rows.append({"group": "film", "case": name, "outcome": image_outcome(result), "ms": ms})
    return rows


def note_rows(model) -> list[dict]:
    from medcore.notes.explain import ExplanationCache
    from medcore.notes.service import analyse_note
    from medcore.notes.text import NoteRejected, decode_upload
    from tests.adversarial import NOTE_CORPUS

    rows = []
    for name, raw, _ in NOTE_CORPUS:
        def run():
            try:
                text = decode_upload(raw) if isinstance(raw, bytes) else raw
            except NoteRejected as exc:
                return None, str(exc)
            prediction, _, error = analyse_note(model, text, ExplanationCache(capacity=1), "benchmark")
            return prediction, error

        (prediction, error), ms = _timed(run)
        rows.append({"group": "note", "case": name, "outcome": note_outcome(prediction, error), "ms": ms})
    return rows


def federated_rows(model) -> list[dict]:
    from medcore.federated import validation
    from tests.adversarial import rogue_federated_updates

    weights = model.artifact.network.get_weights()
    expected = validation.Expected(weights, {"site-1": 1000}, 1024, 64)
    rows = []
    for name, arrays, n, metrics, _ in rogue_federated_updates(weights):
        reason, ms = _timed(lambda: validation.check_fit("site-1", arrays, n, metrics, expected))
        rows.append({"group": "federated update", "case": name, "outcome": f"dropped: {reason}", "ms": ms})
    return rows


def model_rows(model) -> list[dict]:
    """A model with a NaN weight, and a local validation whose folder name is Markdown."""
    from medcore.imaging.service import analyse_file, load_xray_model
    from medcore.reports import xray_banner
    from tests.adversarial import MARKDOWN_FOLDER_NAME
    from tests.synthetic import chest_like, encode

    broken = load_xray_model()
    weights = broken.artifact.network.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)
    broken.artifact.network.set_weights(weights)
    film = encode(chest_like(model.artifact.quality_reference, 512, 512, seed=2), "PNG")
    result, ms = _timed(lambda: analyse_file(broken, film, "film.png"))
    rows = [{"group": "model", "case": "model with a NaN weight", "ms": ms,
             "outcome": image_outcome(result).split(" (Incident")[0]}]
    meta = dict(model.artifact.meta)
    model.artifact.meta["local_validation"] = {"n_normal": 60, "n_pneumonia": 60, "source": MARKDOWN_FOLDER_NAME,
                                               "after": model.validation_metrics}
    try:
        banner, ms = _timed(lambda: xray_banner(model))
    finally:
        model.artifact.meta.clear()
        model.artifact.meta.update(meta)
    shown = "shown as text" if "\\[click\\]" in banner and "<b>" not in banner else "RENDERED AS MARKUP"
    rows.append({"group": "model", "case": "local-validation folder named in Markdown", "ms": ms,
                 "outcome": f"X-ray banner: {shown}"})
    return rows


def pdf_rows(notes_model) -> list[dict]:
    from medcore.notes.explain import ExplanationCache
    from medcore.notes.service import analyse_note
    from medcore.pdf_reports import note_report_pdf
    from tests.adversarial import LONG_WORD

    prediction, attribution, _ = analyse_note(notes_model, f"fever and cough {LONG_WORD} chills",
                                              ExplanationCache(capacity=1), "benchmark")
    pdf, ms = _timed(lambda: note_report_pdf(prediction, attribution, 0, "Disease from symptoms"))
    return [{"group": "PDF", "case": "note with a 5,000-character word", "ms": ms,
             "outcome": f"PDF of {len(pdf) // 1024} kB, the word wrapped over several lines"}]


def measure() -> list[dict]:
    from medcore import tasks
    from medcore.imaging.service import load_xray_model

    xray = load_xray_model()
    notes = tasks.get("notes_symptom2disease")
    notes_model = notes.load(notes.shipped_dir)
    return image_rows(xray) + note_rows(notes_model) + federated_rows(xray) + model_rows(xray) + pdf_rows(notes_model)


def table(results: dict) -> str:
    lines = ["| input | case | outcome (shipped models) | ms |", "|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['case']} | {r['outcome'].replace('|', '/')} | {r['ms']} |"
              for r in results["rows"]]
    return "\n".join(lines)


def readme_block(results: dict) -> str:
    return (f"{START}\n{table(results)}\n\nMeasured by `{results['command']}` on model versions "
            f"{', '.join(f'`{v}`' for v in results['models'])} (milliseconds: median of 3 runs on 2 cores).\n{END}")


def write_readme(results: dict) -> None:
    replace_block(readme_block(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    from medcore import tasks

    rows = measure()
    models = [json.loads((tasks.get(key).shipped_dir / "meta.json").read_text())["version"]
              for key in ("xray", "notes_symptom2disease")]
    results = {"command": "python benchmarks/hostile_inputs.py", "models": models, "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if args.write_readme:
        write_readme(results)
    print(table(results))


if __name__ == "__main__":
    main()
