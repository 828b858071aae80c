"""Does local recalibration hold on the next patients? Calibrate on one half of a local set, test on the other.

Usage:
    python benchmarks/local_calibration.py --model assets/models/xray \
        --data ../shared/data/chest_xray/external_sample [--repeats 20]

Each repeat splits the films by patient into two halves (seed = repeat), runs the same code as
`medcore calibrate xray` on one half and `medcore evaluate xray` on the other, as the release check does
with the external sample and its held-back half. Prints and writes benchmarks/results/local_calibration.json:
per metric the median and the 10th-90th percentile over repeats, before (the model as shipped) and after.
About 10 s a repeat on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcore.imaging import folders  # noqa: E402
from medcore.imaging.service import evaluate_folder, load_xray_model  # noqa: E402
from medcore.metrics import expected_calibration_error  # noqa: E402
from medcore.training.local_calibration import recalibrate_xray  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "local_calibration.json"
KEYS = ("auc", "accuracy", "sensitivity", "specificity", "ece")


def half_folder(root: Path, listing: folders.ImageFolder, indices: np.ndarray) -> Path:
    """A folder of links to some films, in the NORMAL/ PNEUMONIA/ layout."""
    for i in indices:
        target = root / folders.XRAY_CLASSES[listing.labels[i]] / listing.files[i].name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(listing.files[i].resolve(), target)
    return root


def ece_floor(prob: np.ndarray, n: int, rng: np.random.Generator, draws: int = 200) -> float:
    """Median ECE of a perfectly calibrated model with these probabilities on n films: ECE's own noise floor."""
    values = []
    for _ in range(draws):
        p = rng.choice(prob, n)
        values.append(expected_calibration_error((rng.random(n) < p).astype(int), p))
    return float(np.median(values))


def summary(values: list[float]) -> dict:
    return {"median": round(float(np.median(values)), 4), "p10": round(float(np.percentile(values, 10)), 4),
            "p90": round(float(np.percentile(values, 90)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="assets/models/xray")
    parser.add_argument("--data", required=True)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    listing = folders.list_image_folder(Path(args.data))
    shipped = load_xray_model(Path(args.model))
    before, after, methods, floors = {k: [] for k in KEYS}, {k: [] for k in KEYS}, [], []
    rng = np.random.default_rng(0)
    for repeat in range(args.repeats):
        fit_idx, test_idx = folders.split_by_patient(listing, 0.5, seed=repeat)
        with tempfile.TemporaryDirectory() as tmp:
            fit_dir = half_folder(Path(tmp) / "fit", listing, fit_idx)
            test_dir = half_folder(Path(tmp) / "test", listing, test_idx)
            result = recalibrate_xray(Path(args.model), fit_dir, Path(tmp) / "version")
            recalibrated = load_xray_model(Path(tmp) / "version")
            shipped_figures, local_figures = evaluate_folder(shipped, test_dir), evaluate_folder(recalibrated, test_dir)
            with np.load(Path(tmp) / "version" / "local.npz") as npz:
                local_prob = npz["prob"]
        methods.append(result["method"])
        floors.append(ece_floor(local_prob, len(test_idx), rng))
        for key in KEYS:
            before[key].append(shipped_figures[key])
            after[key].append(local_figures[key])
        print(repeat, result["method"], {k: round(local_figures[k], 3) for k in KEYS}, flush=True)
    report = {"model_version": shipped.version, "data": Path(args.data).name, "repeats": args.repeats,
              "split": "by patient, half to calibrate, half to test", "methods": {m: methods.count(m) for m in
                                                                                  set(methods)},
              "before": {k: summary(v) for k, v in before.items()}, "after": {k: summary(v) for k, v in after.items()},
              "ece_floor": {**summary(floors), "meaning": "ECE that a perfectly calibrated model with the same "
                            "probabilities would show on a test half of this size (15 bins): the measurement's noise"},
              "after_targets_met": float(np.mean([after["accuracy"][i] >= 0.92 and after["sensitivity"][i] >= 0.95
                                                  and after["specificity"][i] >= 0.85 and after["ece"][i] <= 0.04
                                                  for i in range(args.repeats)]))}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
