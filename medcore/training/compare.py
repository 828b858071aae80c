"""Candidate against production on the same held-out data: the evidence an admin promotes on.

The held-out data is the candidate's own validation split, rebuilt from its data set with its
recorded seed (the split is deterministic), so the candidate never trained on it. Production is
scored on exactly the same items. When production was trained on the same data set with the same
split options its validation split is this very split; otherwise production may have trained on
some of these items, which flatters it, and the result says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medcore import tasks
from medcore.artifacts import ModelInfo
from medcore.imaging import folders
from medcore.metrics import binary_metrics, multiclass_metrics
from medcore.notes.data import read_labelled_notes, split_notes

COMPARISON_FILE = "comparison.json"
PREDICTIONS_FILE = "comparison.npz"


def _same_split(candidate_meta: dict, production_meta: dict) -> bool:
    keys = ("val_fraction", "seed")
    return (candidate_meta["data"]["fingerprint"] == production_meta.get("data", {}).get("fingerprint")
            and all(candidate_meta["options"].get(k) == production_meta.get("options", {}).get(k) for k in keys))


def compare_xray(candidate_dir: Path, production_dir: Path, data_dir: Path) -> tuple[dict, dict]:
    from medcore.imaging.service import load_xray_model, score_files

    candidate, production = load_xray_model(candidate_dir), load_xray_model(production_dir)
    options = candidate.options
    folder = folders.list_image_folder(Path(data_dir))
    federated = bool(candidate.meta.get("federated"))
    if federated:  # trained at the hospitals: the folder given for the comparison is held out whole
        val_idx = np.arange(len(folder.files))
    else:
        _, val_idx = folders.split_by_patient(folder, options["val_fraction"], options["seed"])
    files, labels = [folder.files[i] for i in val_idx], folder.labels[val_idx]
    scores_c, scores_p = score_files(candidate, files), score_files(production, files)
    if not np.array_equal(scores_c.readable, scores_p.readable):
        raise ValueError("The two models could not read the same validation images.")
    labels, prob_c, prob_p = labels[scores_c.readable], scores_c.probabilities, scores_p.probabilities
    result, arrays = _result(candidate, production, labels, prob_c, prob_p,
                             binary_metrics(labels, prob_c, candidate.threshold),
                             binary_metrics(labels, prob_p, production.threshold))
    if federated:
        result["held_out"] = ("every film of the folder given for the comparison, which the federated candidate "
                              "never saw; production may have, if the folder comes from its training data")
    return result, arrays


def compare_notes(candidate_dir: Path, production_dir: Path, csv_path: Path) -> tuple[dict, dict]:
    from medcore.notes.model import load_notes_model

    candidate, production = load_notes_model(candidate_dir), load_notes_model(production_dir)
    if candidate.labels != production.labels:
        raise ValueError("The candidate's classes differ from production's; the two cannot be compared.")
    options = candidate.options
    data = read_labelled_notes(Path(csv_path), label_names=candidate.labels)
    _, val_idx = split_notes(data.labels, options["val_fraction"], options["seed"])
    words, labels = [data.words[i] for i in val_idx], data.labels[val_idx]
    prob_c, prob_p = candidate.predict_words(words), production.predict_words(words)
    return _result(candidate, production, labels, prob_c, prob_p,
                   multiclass_metrics(labels, prob_c, candidate.labels),
                   multiclass_metrics(labels, prob_p, production.labels))


def compare_generators(candidate_dir: Path, production_dir: Path, data_dir: Path) -> tuple[dict, dict]:
    """Both generators judged by the shipped classifier against the same real films (all of the folder)."""
    from medcore.gan.judge import evaluate_generators
    from medcore.gan.network import load_generator
    from medcore.imaging.service import load_xray_model

    candidate, production = load_generator(candidate_dir), load_generator(production_dir)
    classifier = load_xray_model()
    figures_c, figures_p = evaluate_generators([candidate, production], data_dir, classifier)
    return {"task": candidate.task, "n": figures_c["n"], "candidate": figures_c, "production": figures_p,
            "candidate_version": candidate.version, "production_version": production.version,
            "same_split_as_production": True,
            "held_out": ("real films of the folder, in two halves of disjoint patients, judged by the shipped "
                         f"classifier {classifier.version}: the same films and the same eyes for both generators")}, {}


def _result(candidate: ModelInfo, production: ModelInfo, labels: np.ndarray, prob_c: np.ndarray,
            prob_p: np.ndarray, metrics_c: dict, metrics_p: dict) -> tuple[dict, dict]:
    """The comparison (metrics of both on the same items, and how the items were chosen) and its arrays."""
    same = _same_split(candidate.meta, production.meta)
    arrays = {"y_true": labels.astype(np.int16), "prob_candidate": prob_c.astype(np.float32),
              "prob_production": prob_p.astype(np.float32)}
    return {"task": candidate.task, "n": int(len(labels)), "candidate": metrics_c, "production": metrics_p,
            "candidate_version": candidate.version, "production_version": production.version,
            "same_split_as_production": same,
            "held_out": ("the validation split of the candidate's data set, which is also production's own "
                         "validation split (same data, seed and fraction)") if same else
                        ("the validation split of the candidate's data set; production was trained on other data "
                         "and may have seen some of these items, which would flatter it")}, arrays


def save(folder: Path, result: dict, arrays: dict) -> None:
    np.savez_compressed(Path(folder) / PREDICTIONS_FILE, **arrays)
    (Path(folder) / COMPARISON_FILE).write_text(json.dumps(result, indent=2, sort_keys=True))


def load(folder: Path) -> tuple[dict, dict] | None:
    folder = Path(folder)
    if not (folder / COMPARISON_FILE).is_file():
        return None
    with np.load(folder / PREDICTIONS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads((folder / COMPARISON_FILE).read_text()), arrays


LOWER_IS_BETTER = {"ece", "fd_ratio", "fd"}


def metrics_table(result: dict) -> list[dict]:
    """Rows of (metric, production, candidate, change) for the page and the audit of a promotion."""
    keys = tasks.get(result["task"]).family.comparison_metrics
    rows = []
    for key in keys:
        production, candidate = result["production"][key], result["candidate"][key]
        better = None if key == "threshold" else (candidate < production if key in LOWER_IS_BETTER
                                                  else candidate > production)
        rows.append({"metric": key, "production": production, "candidate": candidate,
                     "change": candidate - production, "candidate better": better})
    return rows
