"""Adaptation without labels (AdaBN, prevalence by EM, both) measured on the external sample's choosing part.

    python benchmarks/xray_adaptation.py --data ../shared/data/chest_xray/external_sample [--splits 20]

For each variant the production model is adapted on films whose labels it never sees, then scored with their labels
at its own threshold: (1) adapted on the whole choosing part and scored on it; (2) over `--splits` patient
half-splits of the choosing part, adapted on one half and scored on the other (medians and the spread), as
benchmarks/local_calibration.py does; (3) once, adapted on the reporting part and scored on it: the release's figure
(recorded in the results, with the part's fingerprint). The choosing part has fewer films than `medcore adapt`'s
guard (200); the benchmark passes its own minimum and says so. Writes benchmarks/results/xray_adaptation.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcore import tasks  # noqa: E402
from medcore.imaging.io import read_radiograph  # noqa: E402
from medcore.imaging.preprocess import to_model_input  # noqa: E402
from medcore.imaging.service import load_xray_model  # noqa: E402
from medcore.metrics import binary_metrics, intervals  # noqa: E402
from medcore.training import adaptation, lockbox  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "xray_adaptation.json"
VARIANTS = {"production as it is": None, "AdaBN": (True, False), "prevalence (EM)": (False, True),
            "AdaBN + prevalence": (True, True)}


def _inputs(files: list[Path], size: int) -> np.ndarray:
    return np.stack([to_model_input(read_radiograph(p.read_bytes(), p.name).pixels, size) for p in files]
                    ).astype(np.float32)


def _figures(model_dir: Path, variant, adapt_on: np.ndarray, score_on: np.ndarray, labels: np.ndarray,
             scratch: Path, with_intervals: bool = False) -> dict:
    if variant is None:
        model = load_xray_model(model_dir)
    else:
        out = scratch / f"adapted-{time.time_ns()}"
        films = adaptation.LocalFilms(adapt_on, 0, 0)
        adaptation.adapt_xray(model_dir, scratch, out, *variant, films=films, min_films=1)
        model = load_xray_model(out)
    logits, _, _ = model.explain_inputs(score_on)
    probabilities = model.artifact.calibrate(logits)
    figures = binary_metrics(labels, probabilities, model.threshold)  # no bootstrap per split
    kept = {k: figures[k] for k in ("auc", "sensitivity", "specificity", "accuracy", "ece", "n")}
    return {**kept, "intervals": intervals(figures, labels, probabilities)} if with_intervals else kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the external sample (NORMAL/ PNEUMONIA/)")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--model", default=str(tasks.get("xray").shipped_dir))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="medcore-adaptation-"))
    model_dir = Path(args.model)
    size = json.loads((model_dir / "meta.json").read_text())["image_size"]
    parts = lockbox.split(Path(args.data))
    choosing = parts["choosing"]
    x_choose, y_choose = _inputs(choosing.files, size), choosing.labels
    results = {"command": "python " + " ".join(sys.argv), "model": json.loads((model_dir / "meta.json").read_text())
               ["version"], "choosing_films": len(y_choose), "whole_choosing_part": {}, "half_splits": {}}
    for name, variant in VARIANTS.items():
        results["whole_choosing_part"][name] = _figures(model_dir, variant, x_choose, x_choose, y_choose, scratch,
                                                            with_intervals=True)
        print(name, results["whole_choosing_part"][name], flush=True)
    rng = np.random.default_rng(lockbox.SEED + 1)
    patients = np.array(choosing.groups)
    for name, variant in VARIANTS.items():
        rows = []
        for _ in range(args.splits):
            chosen = set(rng.permutation(sorted(set(patients)))[: len(set(patients)) // 2])
            adapt_on = np.array([p in chosen for p in patients])
            rows.append(_figures(model_dir, variant, x_choose[adapt_on], x_choose[~adapt_on], y_choose[~adapt_on],
                                 scratch))
        results["half_splits"][name] = {key: {"median": round(float(np.median([r[key] for r in rows])), 4),
                                              "p10": round(float(np.percentile([r[key] for r in rows], 10)), 4),
                                              "p90": round(float(np.percentile([r[key] for r in rows], 90)), 4)}
                                        for key in ("auc", "sensitivity", "specificity", "ece")}
        print(name, results["half_splits"][name], flush=True)
    reporting = parts["reporting"]
    x_report = _inputs(reporting.files, size)
    results["reporting_part_once"] = {
        "fingerprint": lockbox.fingerprint(reporting), "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        "rows": {name: _figures(model_dir, variant, x_report, x_report, reporting.labels, scratch, with_intervals=True)
                 for name, variant in VARIANTS.items()}}
    shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["reporting_part_once"], indent=2))


if __name__ == "__main__":
    main()
