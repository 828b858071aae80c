"""Do the case-note prediction sets keep their coverage on notes the model never saw (issue 32)?

    python benchmarks/notes_conformal_holdout.py [--task medical_abstracts] [--holdout 0.25] [--work DIR]
    python benchmarks/notes_conformal_holdout.py --write-readme

The half-split check in a model's card fits the conformal quantiles on half of the out-of-fold notes and measures
them on the other half: both halves were scored by the cross-validation models. A served model is refitted on every
note, and new notes are scored by that model. This benchmark measures what the card's check cannot: a stratified
part of the training CSV (seed 20261207) is held out, the shipped recipe (`medcore train notes`, its defaults) is
trained on the rest, and the held-out notes are scored by the trained model, with quantiles at level 0.90 (the rule
before) and at the level conformal.choose_level picks from the out-of-fold notes alone. Reported beside the card's
half-split estimate of the same model: coverage, the least-covered class, the mean set size. Writes
benchmarks/results/notes_conformal_holdout.json; `--work DIR` keeps the trained models (a second run only measures).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcore import conformal, config  # noqa: E402
from medcore.notes.data import read_labelled_notes, split_notes  # noqa: E402
from medcore.notes.model import load_notes_model  # noqa: E402
from medcore.training.train_notes import train_notes  # noqa: E402
from readme_blocks import replace_block  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "notes_conformal_holdout.json"
SEED = 20261207
BEGIN, END = "<!-- prediction-sets-holdout: begin -->", "<!-- prediction-sets-holdout: end -->"
CSV = {"medical_abstracts": "medical_abstracts_train.csv", "symptom2disease": "symptom2disease_train.csv"}


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows(rows)


def measure(task: str, holdout: float, work: Path) -> dict:
    source = config.data_dir() / "case_notes" / CSV[task]
    with source.open(newline="") as handle:
        rows = [(row["label"], row["text"]) for row in csv.DictReader(handle)]
    labels = np.array([label for label, _ in rows])
    kept, held = split_notes(np.unique(labels, return_inverse=True)[1], holdout, SEED)
    write_rows(work / "train.csv", [rows[i] for i in kept])
    write_rows(work / "held.csv", [rows[i] for i in held])
    started = time.time()
    if not (work / "model" / "meta.json").exists():  # a run that stopped after training measures again
        train_notes(work / "train.csv", work / "model", task=task)
    model = load_notes_model(work / "model")
    data = read_labelled_notes(work / "held.csv", label_names=model.labels)
    prob = model.predict_words(data.words)
    stored = np.load(work / "model" / "validation.npz")
    fit_prob, fit_y = stored["fit_prob"], stored["fit_y"].astype(int)
    rows = {}
    for name, level in (("level 0.90 (the rule before)", conformal.DEFAULT_LEVEL),
                        ("level by the rule", conformal.choose_level(fit_prob, fit_y, model.labels,
                                                                     seed=model.meta["options"]["seed"])[0])):
        quantiles = conformal.class_quantiles(fit_prob, fit_y, len(model.labels), level)
        check = conformal.split_check(fit_prob, fit_y, model.labels, level, seed=model.meta["options"]["seed"])
        held_out = conformal.evaluate(prob, data.labels, quantiles, model.labels)
        per_class = {k: v for k, v in held_out["set_coverage_per_class"].items() if v is not None}
        rows[name] = {"level": level,
                      "card_half_split": {"coverage": check["coverage"], "lowest_class": check["lowest_class_coverage"],
                                          "mean_set_size": check["mean_set_size"]},
                      "held_out": {"coverage": held_out["set_coverage"], "lowest_class": min(per_class.values()),
                                   "per_class": per_class, "mean_set_size": held_out["mean_set_size"]}}
    return {"task": task, "n_trained": len(kept), "n_held_out": len(data.words), "seconds": round(time.time() - started),
            "model_version": model.version, "rows": rows}


def readme_block(results: dict) -> str:
    """The README's table from the results file."""
    lines = [f"Held out: a stratified {results['holdout']:.0%} of each training CSV (seed {results['seed']}), the recipe "
             "trained on the rest (`python benchmarks/notes_conformal_holdout.py`):", "",
             "| task | level | half-split estimate: coverage, least category, set size | held-out notes (n): coverage, "
             "least category, set size |", "|---|---|---|---|"]
    for task, measured in results["tasks"].items():
        for name, row in measured["rows"].items():
            half, held = row["card_half_split"], row["held_out"]
            lines.append(f"| {task} | {row['level']:.2f}, {name} | {half['coverage']:.3f}, {half['lowest_class']:.3f}, "
                         f"{half['mean_set_size']:.2f} | ({measured['n_held_out']}) {held['coverage']:.3f}, "
                         f"{held['lowest_class']:.3f}, {held['mean_set_size']:.2f} |")
    return f"{BEGIN}\n" + "\n".join(lines) + f"\n{END}"


def main() -> None:
    if "--write-readme" in sys.argv:
        replace_block(readme_block(json.loads(RESULTS.read_text())))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=sorted(CSV))
    parser.add_argument("--holdout", type=float, default=0.25)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    out = {"command": "python benchmarks/notes_conformal_holdout.py " + " ".join(sys.argv[1:]), "seed": SEED,
           "holdout": args.holdout, "tasks": {}}
    for task in args.task or sorted(CSV):
        work = (args.work or Path(tempfile.mkdtemp(prefix="medcore-conformal-"))) / task
        work.mkdir(parents=True, exist_ok=True)
        out["tasks"][task] = measure(task, args.holdout, work)
        print(json.dumps(out["tasks"][task]), flush=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    replace_block(readme_block(out))


if __name__ == "__main__":
    main()
