"""How many studies does each drift check need to warn on films from another period? Measured, not assumed.

    python benchmarks/drift_power.py --data ../shared/data/chest_xray/train \
        --external ../shared/data/chest_xray/external_sample [--draws 400]

The model's validation films are the reference (as the page uses them). "Recent use" is n studies drawn at random
from the external sample's *choosing* part (new patients of a later period, unlabelled as far as the monitor is
concerned); the share of draws in which a check warns (p < drift.ALPHA) is its power at n. The same draws from
held-back validation films (half the validation films as reference, n from the other half) give each check's false
alarm rate, which must stay near ALPHA. Every check is the code the page runs (medcore.drift), fed the per-study
values the audit log holds. Writes benchmarks/results/drift_power.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medcore import config, drift  # noqa: E402
from medcore.imaging import quality  # noqa: E402
from medcore.imaging.service import load_xray_model  # noqa: E402
from medcore.training import datasets, lockbox  # noqa: E402
from readme_blocks import replace_block  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "drift_power.json"
SIZES = (10, 20, 30, 50, 75, 100, 150)
BEGIN, END = "<!-- drift-power: begin -->", "<!-- drift-power: end -->"


def readme_block(results: dict | None = None) -> str:
    """The README's table, from the result file: each check's share of warnings by number of studies."""
    results = results or json.loads(RESULTS.read_text())
    sizes = [n for n in results["power"] if int(n) >= drift.MIN_STUDIES]
    lines = ["| check | " + " | ".join(f"{n} studies" for n in sizes) + " | false alarms (largest) |",
             "|---|" + "---|" * (len(sizes) + 1)]
    for name in results["power"][sizes[0]]:
        alarms = max(results["false_alarm"][n][name] for n in sizes)
        lines.append(f"| {name} | " + " | ".join(f"{results['power'][n][name]:.0%}" for n in sizes)
                     + f" | {alarms:.1%} |")
    return f"{BEGIN}\n" + "\n".join(lines) + f"\n{END}"


def write_readme() -> None:
    replace_block(readme_block())


def per_study(model, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """What the audit log keeps of each study: calibrated probability, atypicality and the feature summary."""
    probabilities, _, features = model.predict_inputs(inputs)
    reference = model.artifact.quality_reference
    return {"probability": probabilities.astype(float),
            "atypicality": np.array([quality.atypicality(x, f, reference) for x, f in zip(inputs, features)]),
            "features": quality.feature_summary(features, reference)}


def warn_rates(recent: dict[str, np.ndarray], reference: dict[str, np.ndarray], threshold: float, n: int,
               draws: int, rng: np.random.Generator, positive: str) -> dict[str, float]:
    """Share of draws of n recent studies in which each check warns."""
    warned: dict[str, int] = {}
    for _ in range(draws):
        idx = rng.choice(len(recent["probability"]), n, replace=False)
        checks = drift.run_checks({k: v[idx] for k, v in recent.items()}, reference, threshold, positive)
        for check in checks:
            warned[check.name] = warned.get(check.name, 0) + int(check.warning)
    return {name: round(count / draws, 3) for name, count in warned.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="assets/models/xray")
    parser.add_argument("--data", help="the model's training folder (its validation films)")
    parser.add_argument("--external")
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--write-readme", action="store_true", help="only rewrite the README table from the results")
    args = parser.parse_args()
    if args.write_readme:
        write_readme()
        return
    model = load_xray_model(Path(args.model))
    x_val, _ = datasets.model_split(model.meta, Path(args.data), config.store_dir() / "cache").validation()
    choosing = lockbox.split(Path(args.external))["choosing"]
    x_new = datasets.load_images(choosing.files, model.artifact.image_size)[0].astype(np.float32)
    validation, new = per_study(model, x_val), per_study(model, x_new)
    rng = np.random.default_rng(0)
    half = rng.permutation(len(x_val))
    ref_half, held_half = half[: len(half) // 2], half[len(half) // 2:]
    power, false_alarm = {}, {}
    for n in SIZES:
        if n > len(x_new):
            break
        power[n] = warn_rates(new, validation, model.threshold, n, args.draws, rng, str(model.positive_label))
        false_alarm[n] = warn_rates({k: v[held_half] for k, v in validation.items()},
                                    {k: v[ref_half] for k, v in validation.items()}, model.threshold, n, args.draws,
                                    rng, str(model.positive_label))
        print(n, "power", power[n], "false alarms", false_alarm[n], flush=True)
    whole = drift.run_checks(new, validation, model.threshold, str(model.positive_label))
    report = {"model_version": model.version, "reference": f"{len(x_val)} validation films",
              "recent": f"the external sample's choosing part ({len(x_new)} films, fingerprint "
                        f"{lockbox.fingerprint(choosing)[:16]})", "alpha": drift.ALPHA, "draws": args.draws,
              "power": power, "false_alarm": false_alarm,
              "whole_choosing_part": {c.name: {"statistic": round(c.recent, 4), "p_value": c.p_value,
                                               "warning": c.warning} for c in whole},
              "medians": {k: {"validation": round(float(np.median(validation[k])), 4),
                              "new patients": round(float(np.median(new[k])), 4)} for k in ("probability", "atypicality")}}
    RESULTS.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["whole_choosing_part"], indent=2))


if __name__ == "__main__":
    main()
