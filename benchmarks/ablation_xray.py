"""What class weighting and augmentation change: three short trainings on the same split and seed.

Usage: python benchmarks/ablation_xray.py --data ../shared/data/chest_xray/train [--epochs 12]
Writes benchmarks/results/xray_ablation.json. About 10 minutes a configuration on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcore.training.options import XrayTrainingOptions  # noqa: E402
from medcore.training.train_xray import train_xray  # noqa: E402

CONFIGS = {
    "recipe (class weights + augmentation)": {},
    "no class weights": {"class_weighting": False},
    "no augmentation": {"augmentation": False},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "xray_ablation.json"))
    args = parser.parse_args()
    results = {}
    for name, change in CONFIGS.items():
        with tempfile.TemporaryDirectory() as out:
            meta = train_xray(Path(args.data), Path(out), XrayTrainingOptions(epochs=args.epochs, **change))
        val = meta["metrics"]["validation"]
        history = meta["training"]["history"]
        results[name] = {
            "best_val_auc": round(val["auc"], 4), "best_epoch": meta["training"]["best_epoch"],
            "val_auc_last_epoch": round(history[-1]["val_auc"], 4),
            "val_auc_range_after_epoch_3": [round(min(h["val_auc"] for h in history[3:]), 4),
                                            round(max(h["val_auc"] for h in history[3:]), 4)],
            "sensitivity": round(val["sensitivity"], 4), "specificity": round(val["specificity"], 4),
            "ece_raw": round(val["ece_uncalibrated"], 4), "ece_calibrated": round(val["ece"], 4),
            "platt": meta["calibration"], "minutes": round(meta["training"]["seconds"] / 60, 1)}
        print(name, json.dumps(results[name]), flush=True)
    Path(args.out).write_text(json.dumps({"epochs": args.epochs, "seed": 42, "results": results}, indent=2))


if __name__ == "__main__":
    main()
