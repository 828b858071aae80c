"""Do synthetic films help the X-ray classifier on new patients? The measured answer, read and summarised.

benchmarks/gan_usefulness.py trains the classifier twice per seed (real films with class weights; real films
topped up with synthetic ones) and scores both on the external sample. This module turns its rows into the
summary (mean and SD per arm, paired difference) that the README, the X-ray model card and the admin page show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medcore import config

RESULTS_FILE = config.REPO_ROOT / "benchmarks" / "results" / "gan_usefulness.json"
FIGURES = ("auc", "sensitivity", "specificity", "accuracy", "ece")
ARMS = ("real films", "real + synthetic")
PAIRED = "paired difference (synthetic - real)"


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def summarise(rows: dict[str, dict]) -> dict[str, Any]:
    """Per arm: mean and SD over seeds; and the paired (same seed) difference synthetic - real."""
    summary: dict[str, Any] = {}
    for arm in ARMS:
        runs = [r for r in rows.values() if r["arm"] == arm]
        if runs:
            summary[arm] = {k: _mean_sd([r[k] for r in runs]) for k in FIGURES} | {"seeds": len(runs)}
    by_seed = {(r["arm"], r["seed"]): r for r in rows.values()}
    pairs = [(by_seed[(ARMS[0], s)], by_seed[(ARMS[1], s)]) for s in sorted({r["seed"] for r in rows.values()})
             if (ARMS[0], s) in by_seed and (ARMS[1], s) in by_seed]
    if pairs:
        summary[PAIRED] = {k: _mean_sd([b[k] - a[k] for a, b in pairs]) for k in FIGURES} | {"seeds": len(pairs)}
    return summary


def helps(summary: dict[str, Any]) -> bool:
    """Ship synthetic augmentation only if it raises AUC on new patients by more than 2 paired standard errors
    without costing sensitivity."""
    paired = summary.get(PAIRED)
    if not paired or paired["seeds"] < 2:
        return False
    auc, sens = paired["auc"], paired["sensitivity"]
    return auc["mean"] > 2 * auc["sd"] / np.sqrt(paired["seeds"]) and sens["mean"] >= 0


def verdict(results: dict[str, Any]) -> str:
    """The decision the measurements support, in one sentence (the admin page and the model card say the same)."""
    if helps(summarise(results["rows"])):
        return "Synthetic augmentation helps on new patients beyond seed-to-seed noise: the default recipe uses it."
    return ("Synthetic augmentation does not help on new patients beyond seed-to-seed noise: the default recipe keeps "
            "class weights.")


def read_results(path: Path = RESULTS_FILE) -> dict[str, Any] | None:
    """The benchmark's results, or None where it has not been run."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def summary_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm and one for the paired difference: mean ± SD over seeds of each figure on new patients."""
    summary = summarise(results["rows"])
    return [{"training films": name, "seeds": row["seeds"],
             **{k: f"{row[k]['mean']:+.3f} ± {row[k]['sd']:.3f}" if name == PAIRED else
                f"{row[k]['mean']:.3f} ± {row[k]['sd']:.3f}" for k in FIGURES}}
            for name, row in summary.items()]


def usefulness_section(results: dict[str, Any] | None) -> str:
    """The model-card and README table: each run with 95 % intervals, then the summary and the decision."""
    if not results or not results.get("rows"):
        return ""
    runs = "\n".join(
        f"| {name} | " + " | ".join(f"{row[k]:.3f} ({row['intervals'][k][0]:.3f}-{row['intervals'][k][1]:.3f})"
                                    for k in ("auc", "sensitivity", "specificity", "ece")) + " |"
        for name, row in sorted(results["rows"].items(), key=lambda item: (item[1]["seed"], ARMS.index(item[1]["arm"]))))
    summary = "\n".join(f"| {row['training films']} | {row['seeds']} | {row['auc']} | {row['sensitivity']} | "
                        f"{row['specificity']} | {row['ece']} |" for row in summary_table(results))
    return f"""
## Synthetic films as training data (new patients)
`{results['command']}`: generator `{results['generator']}`; recipe {results['recipe']['members']} CNN(s),
{results['recipe']['epochs']} epochs; each seed trains both arms. Scored on the {next(iter(results['rows'].values()))['n']}
films of the external sample (never trained or tuned on), 95 % intervals.

| run | AUC | sensitivity | specificity | ECE |
|---|---|---|---|---|
{runs}

| training films | seeds | AUC | sensitivity | specificity | ECE |
|---|---|---|---|---|---|
{summary}

{verdict(results)}
"""
