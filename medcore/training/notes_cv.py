"""Which note architecture to ship: k-fold cross-validation of the whole training recipe on the training CSV.

Each fold runs `train_notes` unchanged (its own inner validation split, early stopping, calibration and
"uncertain" threshold) on k-1 parts and scores the held-out part, so a row measures the recipe a retrain would
run, not a network tuned on the fold it is scored on. Ensembles (the mean of the members' calibrated
probabilities) reuse the members' fold predictions. Results are saved after every fold and a rerun resumes.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from medcore.metrics import multiclass_metrics
from medcore.notes.data import read_labelled_notes
from medcore.training.options import NotesTrainingOptions


def _fold_files(csv_path: Path, folds: int, seed: int, work: Path) -> list[tuple[Path, Path]]:
    """The training CSV cut into stratified folds: (train part, held-out part) files per fold, in `work`."""
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    files = []
    for k, (train_rows, test_rows) in enumerate(splitter.split(frame, frame["label"])):
        train_csv, test_csv = work / f"fold{k}_train.csv", work / f"fold{k}_test.csv"
        frame.iloc[train_rows].to_csv(train_csv, index=False)
        frame.iloc[test_rows].to_csv(test_csv, index=False)
        files.append((train_csv, test_csv))
    return files


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values, ddof=1)), 4) if len(values) > 1
            else 0.0, "min": round(float(np.min(values)), 4), "max": round(float(np.max(values)), 4)}


def cross_validate_architectures(csv_path: Path, task: str, archs: list[str], work: Path, folds: int = 5,
                                 seed: int = 42, log: Callable[[str], None] = print) -> dict:
    """Per architecture and per ensemble of them: macro-F1, accuracy and ECE over the folds (mean, sd, range)."""
    from medcore.notes.model import load_notes_model
    from medcore.training.train_notes import train_notes

    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "folds.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    files = _fold_files(Path(csv_path), folds, seed, work)
    labels = None
    for k, (train_csv, test_csv) in enumerate(files):
        for arch in archs:
            key = f"{arch}/{k}"
            if key in state:
                continue
            started = time.time()
            out = work / f"{arch}_fold{k}"
            train_notes(train_csv, out, NotesTrainingOptions(arch=arch, seed=seed), task=task)
            model = load_notes_model(out)
            test = read_labelled_notes(test_csv, label_names=model.labels)
            prob = model.predict_words(test.words)
            np.savez_compressed(work / f"{arch}_fold{k}_test.npz", prob=prob, y_true=test.labels)
            state[key] = {"seconds": round(time.time() - started, 1), "labels": model.labels}
            state_path.write_text(json.dumps(state, indent=1))
            log(f"{task} fold {k} {arch}: {time.time() - started:.0f} s")
    rows = {}
    combos = [(arch,) for arch in archs] + [c for r in range(2, len(archs) + 1) for c in itertools.combinations(archs, r)]
    for combo in combos:
        per_fold = []
        for k in range(folds):
            stored = [np.load(work / f"{arch}_fold{k}_test.npz") for arch in combo]
            labels = state[f"{combo[0]}/{k}"]["labels"]
            prob = np.mean([s["prob"] for s in stored], axis=0)
            per_fold.append(multiclass_metrics(stored[0]["y_true"], prob, labels))
        name = combo[0] if len(combo) == 1 else "ensemble: " + " + ".join(combo)
        rows[name] = {"members": list(combo), "macro_f1": _summary([m["macro_f1"] for m in per_fold]),
                      "accuracy": _summary([m["accuracy"] for m in per_fold]),
                      "ece": _summary([m["ece"] for m in per_fold]),
                      "macro_f1_per_fold": [round(m["macro_f1"], 4) for m in per_fold],
                      "train_seconds": _summary([state[f"{a}/{k}"]["seconds"] for a in combo for k in range(folds)])
                      if len(combo) == 1 else None}
    best_single = max(archs, key=lambda a: rows[a]["macro_f1"]["mean"])
    reference = np.array(rows[best_single]["macro_f1_per_fold"])
    for row in rows.values():  # the same folds for all: the paired difference is far less noisy than the spread
        row["paired_vs_best_single"] = _summary(list(np.array(row["macro_f1_per_fold"]) - reference))
    return {"task": task, "folds": folds, "seed": seed, "source": Path(csv_path).name, "rows": rows,
            "best_single": best_single, "best_overall": max(rows, key=lambda r: rows[r]["macro_f1"]["mean"])}
