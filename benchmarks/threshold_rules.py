"""Which threshold rule holds sensitivity >= 0.95 on new patients with the best specificity? Measured on the
external sample's choosing part (issue 24, part 4).

    python benchmarks/threshold_rules.py --model assets/models/xray --data ../shared/data/chest_xray/train \
        --external ../shared/data/chest_xray/external_sample

Every rule takes the same trained network and fits only on internal films: the validation films and (where the rule
says) their perturbed copies (medcore.training.shift). "+ adaptation" rows then adapt the network to the choosing
part's films *without their labels*, as `medcore adapt xray` does (AdaBN, then the prevalence by EM, Saerens et al.
2002), keeping the rule's threshold. Only then are the choosing part's labels read, to score. The rule is chosen on
the choosing part alone (the one that holds the sensitivity target with the best specificity); then, once, every row
is scored on the reporting part (adapted on its own films, without labels), so the release's table shows each rule
where no choice was made. 95 % intervals: Wilson for proportions, bootstrap for AUC and ECE
(medcore.metrics.binary_figures). Writes benchmarks/results/threshold_rules.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcore import config  # noqa: E402
from medcore.calibration import apply_platt, fit_platt  # noqa: E402
from medcore.imaging.model import load_artifact  # noqa: E402
from medcore.metrics import TARGET_CONFIDENCE_Z, binary_figures, choose_threshold  # noqa: E402
from medcore.training import adaptation, datasets, lockbox, shift  # noqa: E402
from medcore.training.train_xray import predict_logits  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "threshold_rules.json"
KEPT = ("n", "auc", "accuracy", "sensitivity", "specificity", "ece", "tp", "fn", "tn", "fp", "intervals")


def adapted_logits(model_dir: Path, images: np.ndarray, calibration: dict, trained_prevalence: float
                   ) -> tuple[np.ndarray, dict]:
    """The choosing films' logits after AdaBN on them and the EM prevalence shift, under `calibration`'s map:
    the code of `medcore adapt xray`, on a fresh copy of the network, with no label read."""
    network = load_artifact(model_dir).network
    adaptation.adapt_batch_norm(network, images)
    logits = predict_logits(network, images)
    local = adaptation.estimate_prevalence(apply_platt(logits, calibration), trained_prevalence)
    shift_by = adaptation.logit_shift(local, trained_prevalence)
    # A prior shift adds to the calibrated logit: a * z + b + shift = a * (z + shift / a) + b.
    return logits + shift_by / calibration["a"], {"estimated_prevalence": round(local, 4),
                                                  "logit_shift": round(shift_by, 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="assets/models/xray")
    parser.add_argument("--data", required=True, help="the model's training folder (its validation films)")
    parser.add_argument("--external", required=True)
    args = parser.parse_args()
    model_dir = Path(args.model)
    artifact = load_artifact(model_dir)
    options = artifact.options
    target, z = options["min_sensitivity"], TARGET_CONFIDENCE_Z
    x_val, y_val = datasets.model_split(artifact.meta, Path(args.data), config.store_dir() / "cache").validation()
    parts = lockbox.split(Path(args.external))
    choosing, reporting = parts["choosing"], parts["reporting"]
    x_new = datasets.load_images(choosing.files, artifact.image_size)[0].astype(np.float32)
    y_new = choosing.labels
    x_report = datasets.load_images(reporting.files, artifact.image_size)[0].astype(np.float32)

    val_logits = predict_logits(artifact.network, x_val)
    copy_logits, copy_labels = shift.perturbed_logits(lambda b: predict_logits(artifact.network, b), x_val, y_val,
                                                      options["seed"])
    new_logits = predict_logits(artifact.network, x_new)
    clean_map = fit_platt(val_logits, y_val)
    shifted_map = fit_platt(np.concatenate([val_logits, copy_logits]), np.concatenate([y_val, copy_labels]))

    def bound(y: np.ndarray, logits: np.ndarray, calibration: dict) -> float:
        return choose_threshold(y, apply_platt(logits, calibration), target, z)

    union_y, union_logits = np.concatenate([y_val, copy_labels]), np.concatenate([val_logits, copy_logits])
    rules = {
        "clean validation films only (no perturbed copies)":
            (clean_map, bound(y_val, val_logits, clean_map)),
        "perturbed copies only":
            (shifted_map, bound(copy_labels, copy_logits, shifted_map)),
        "validation films and copies pooled (their union)":
            (shifted_map, bound(union_y, union_logits, shifted_map)),
        "validation films and copies, each on its own (shipped)":
            (shifted_map, min(bound(y_val, val_logits, shifted_map), bound(copy_labels, copy_logits, shifted_map))),
    }
    trained_prevalence = float(np.mean(y_val))

    def scored(images: np.ndarray, labels: np.ndarray, plain_logits: np.ndarray, calibration: dict, threshold: float,
               adapted: bool) -> tuple[dict, dict | None]:
        logits, record = (adapted_logits(model_dir, images, calibration, trained_prevalence) if adapted
                          else (plain_logits, None))
        return ({k: v for k, v in binary_figures(labels, apply_platt(logits, calibration), threshold).items()
                 if k in KEPT}, record)

    variants = [(name, calibration, threshold, adapted) for name, (calibration, threshold) in rules.items()
                for adapted in (False, True) if not adapted or "each on its own" in name or "clean" in name]
    rows = []
    for name, calibration, threshold, adapted in variants:
        choosing_figures, record = scored(x_new, y_new, new_logits, calibration, threshold, adapted)
        rows.append({"rule": name + (" + adaptation (AdaBN and prevalence, no labels)" if adapted else ""),
                     "threshold": round(threshold, 4), "adaptation": record,
                     "internal": {k: v for k, v in binary_figures(y_val, apply_platt(val_logits, calibration),
                                                                  threshold).items() if k in KEPT},
                     "choosing": choosing_figures})
        print(f"{rows[-1]['rule']}: threshold {threshold:.3f} sensitivity {choosing_figures['sensitivity']:.3f} "
              f"specificity {choosing_figures['specificity']:.3f}", flush=True)
    holding = [r for r in rows if r["choosing"]["sensitivity"] >= target]
    best = max(holding, key=lambda r: (r["choosing"]["specificity"], r["choosing"]["sensitivity"]))["rule"] \
        if holding else None
    report_logits = predict_logits(artifact.network, x_report)  # only now, with the choice made
    for row, (name, calibration, threshold, adapted) in zip(rows, variants):
        row["reporting"], row["reporting_adaptation"] = scored(x_report, reporting.labels, report_logits, calibration,
                                                               threshold, adapted)
    report = {"model_version": artifact.version, "target_sensitivity": target, "confidence_z": z,
              "choosing_part": {"films": int(len(y_new)), "fingerprint": lockbox.fingerprint(choosing)},
              "reporting_part": {"films": int(len(reporting.labels)), "fingerprint": lockbox.fingerprint(reporting),
                                 "scored": time.strftime("%Y-%m-%d %H:%M") + ", once, after the rule was chosen"},
              "command": "python benchmarks/threshold_rules.py --model assets/models/xray --data "
                         "../shared/data/chest_xray/train --external ../shared/data/chest_xray/external_sample",
              "rows": rows, "best_holding_target": best}
    RESULTS.write_text(json.dumps(report, indent=2))
    print("best rule that held the target on the choosing part:", best)


if __name__ == "__main__":
    main()
