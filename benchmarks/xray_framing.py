"""Does the X-ray model read tight framing as pneumonia? Internal validation films, cropped and scored again.

    python benchmarks/xray_framing.py --model assets/models/xray --data ../shared/data/chest_xray/train \
        [--model OTHER_MODEL ...]

Each model's own validation films (its split, its input size) are cropped to the central 90, 80 and 70 % of
their height and width (a tighter framing: less shoulder, less abdomen), standardized again as the
preprocessing contract does, and scored. A model that learned the anatomy keeps normal films normal; a model that
learned the framing moves them towards pneumonia. Only internal data: the question came from new patients'
normal films that were framed tightly and scored as pneumonia. Writes benchmarks/results/xray_framing.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcore import config  # noqa: E402
from medcore.calibration import apply_platt  # noqa: E402
from medcore.imaging.model import load_artifact  # noqa: E402
from medcore.metrics import binary_figures  # noqa: E402
from medcore.training import datasets  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "xray_framing.json"
KEEP = (1.0, 0.9, 0.8, 0.7)


def crop_and_standardize(images: np.ndarray, keep: float) -> np.ndarray:
    """The central `keep` share of each film's height and width, resized back and z-scored."""
    import tensorflow as tf

    size = images.shape[1]
    side = int(round(size * keep))
    start = (size - side) // 2
    cropped = tf.image.resize(images[:, start:start + side, start:start + side, :], (size, size),
                              method="area").numpy()
    mean = cropped.mean(axis=(1, 2, 3), keepdims=True)
    return ((cropped - mean) / (cropped.std(axis=(1, 2, 3), keepdims=True) + 1e-6)).astype(np.float32)


def framing_rows(model_dir: Path, data: Path) -> list[dict]:
    artifact = load_artifact(model_dir)
    x, y = datasets.model_split(artifact.meta, data, config.store_dir() / "cache").validation()
    rows = []
    for keep in KEEP:
        logits = artifact.network.predict(x if keep == 1.0 else crop_and_standardize(x, keep), batch_size=256,
                                          verbose=0).ravel()
        figures = binary_figures(y, apply_platt(logits, artifact.meta["calibration"]), artifact.meta["threshold"])
        rows.append({"keep": keep, "normal_mean_logit": float(logits[y == 0].mean()),
                     "pneumonia_mean_logit": float(logits[y == 1].mean()), "auc": figures["auc"],
                     "specificity": figures["specificity"], "sensitivity": figures["sensitivity"]})
        print(f"{artifact.version} keep {keep:.0%}: normal logit {rows[-1]['normal_mean_logit']:+.2f}, pneumonia "
              f"{rows[-1]['pneumonia_mean_logit']:+.2f}, AUC {figures['auc']:.4f}, specificity "
              f"{figures['specificity']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--data", required=True, help="the training folder the models were trained on")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for model in args.model:
        version = json.loads((Path(model) / "meta.json").read_text())["version"]
        results[version] = framing_rows(Path(model), Path(args.data))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
