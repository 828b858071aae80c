"""Local validation and recalibration: the step a hospital takes before it relies on the X-ray model.

Production is scored on the hospital's own labelled films (figures with 95 % intervals). A calibration
map is then chosen among intercept / platt / isotonic by cross-validated calibration error (ECE, the figure the
app reports, and what a local recalibration is for; ties go to the map with fewer parameters), refitted on all
of them with a threshold for the sensitivity target, and written as a **new version**: the same weights
with the new map and threshold. It is registered as a candidate and promoted or discarded like any retrain.
The "after" figures are cross-validated (each film judged by a map and threshold fitted without it), so they
are what the next patients can expect, not the fit's own flattering score.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from medcore import audit, auth, calibration, registry, uploads
from medcore.artifacts import LOCAL_FILE, VALIDATION_FILE
from medcore.imaging import folders
from medcore.imaging.service import LoadedXrayModel, load_xray_model, score_files
from medcore.metrics import (
    TARGET_CONFIDENCE_Z,
    binary_figures,
    binary_metrics,
    choose_threshold,
    expected_calibration_error,
)
from medcore.model_card import local_validation_section

METHODS = ("intercept", "platt", "isotonic")
FOLDS = 5
MIN_PER_CLASS = 10  # fewer films of a class and cross-validation cannot run
ADVISED_PER_CLASS = 100  # below this a sensitivity or specificity interval is wider than about +/- 0.07
THRESHOLD_RULE = ("the threshold with the best specificity among those whose sensitivity on the local films "
                  "has a one-sided 80 % Wilson lower bound of at least {target} (the target then holds on the "
                  "next patients about 4 times in 5)")


class LocalDataError(ValueError):
    """The local set cannot be used (missing class, too few films, unreadable)."""


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def cross_validated(logits: np.ndarray, y: np.ndarray, method: str, base: dict, target: float, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold probabilities, out-of-fold decisions) of one method, map and threshold fitted per fold."""
    prob, decisions = np.zeros(len(y)), np.zeros(len(y), dtype=bool)
    for fit_idx, test_idx in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(logits, y):
        params = calibration.fit(method, logits[fit_idx], y[fit_idx], base)
        threshold = choose_threshold(y[fit_idx], calibration.apply(logits[fit_idx], params), target, TARGET_CONFIDENCE_Z)
        prob[test_idx] = calibration.apply(logits[test_idx], params)
        decisions[test_idx] = prob[test_idx] >= threshold
    return prob, decisions


def choose_method(out_of_fold_ece: dict[str, float]) -> str:
    """The map with the lowest out-of-fold ECE (to 4 decimals); a tie goes to the one with fewer parameters.

    On new patients' films log-loss chose platt or intercept 19 times in 20 and left ECE at 0.061 (median of
    20 half-splits); ECE chose isotonic 14 times in 20: ECE 0.048, AUC 0.986 -> 0.982 from isotonic's ties
    (benchmarks/local_calibration.py). min() keeps the first of equals, and METHODS is ordered by parameters.
    """
    return min(METHODS, key=lambda m: round(out_of_fold_ece[m], 4))


MIN_PLAUSIBLE_AUC = 0.85  # below this (upper 95 % bound) the model does not rank these films; do not promote


def warnings_for(counts: tuple[int, int], before: dict | None = None) -> list[str]:
    """What a person must know before promoting: a set too small to trust, a model that does not rank the films."""
    warnings = []
    smallest = min(counts)
    if smallest < ADVISED_PER_CLASS:
        warnings.append(f"Only {smallest} films in the smaller class: sensitivity and specificity intervals are wide "
                        f"(about ±{1.96 * np.sqrt(0.25 / smallest):.0%} at worst). Collect at least "
                        f"{ADVISED_PER_CLASS} films of each class before relying on these figures.")
    if before is not None and before["intervals"]["auc"][1] < MIN_PLAUSIBLE_AUC:
        warnings.append(f"The model barely ranks these films (AUC {before['auc']:.2f}, 95 % CI up to "
                        f"{before['intervals']['auc'][1]:.2f}): recalibration cannot fix that. Check the labels and "
                        "that the films are frontal chest radiographs of the kind the model was made for; do not "
                        "promote this candidate.")
    return warnings


def recalibrate_xray(production_dir: Path, data_dir: Path, out_dir: Path, min_sensitivity: float | None = None,
                     seed: int = 0) -> dict[str, Any]:
    """Validate production on local films, refit its calibration and threshold, write the new version to out_dir.

    Returns the JSON-safe result: the new version, the figures before and after with 95 % intervals,
    the method chosen and why, and warnings.
    """
    model = load_xray_model(Path(production_dir))
    folder = folders.list_image_folder(Path(data_dir), tuple(model.labels))
    counts = tuple(int((folder.labels == c).sum()) for c in (0, 1))
    if min(counts) < MIN_PER_CLASS:
        raise LocalDataError(f"The local set has {counts[0]} {model.labels[0]} and {counts[1]} {model.labels[1]} "
                             f"films; at least {MIN_PER_CLASS} of each are needed to validate and recalibrate.")
    scores = score_files(model, folder.files)
    y, logits = folder.labels[scores.readable], scores.logits.astype(np.float64)
    target = float(min_sensitivity if min_sensitivity is not None else model.options.get("min_sensitivity", 0.95))
    base = model.meta["calibration"]
    before = binary_figures(y, scores.probabilities, model.threshold)

    log_loss = {"unchanged": _log_loss(y, scores.probabilities)}
    ece = {"unchanged": expected_calibration_error(y, scores.probabilities)}
    out_of_fold = {}
    for method in METHODS:
        out_of_fold[method] = cross_validated(logits, y, method, base, target, seed)
        log_loss[method] = _log_loss(y, out_of_fold[method][0])
        ece[method] = expected_calibration_error(y, out_of_fold[method][0])
    method = choose_method(ece)
    params = calibration.fit(method, logits, y, base)
    prob_after = calibration.apply(logits, params)
    threshold = choose_threshold(y, prob_after, target, TARGET_CONFIDENCE_Z)
    oof_prob, oof_decisions = out_of_fold[method]
    after = binary_figures(y, oof_prob, threshold, oof_decisions)

    fingerprint = folders.fingerprint(folder.files, folder.labels)
    version = time.strftime("xray-%Y%m%d-%H%M%S-local-") + secrets.token_hex(2)
    local = {
        "based_on": model.version, "source": Path(data_dir).resolve().name, "fingerprint": fingerprint,
        "n_normal": counts[0], "n_pneumonia": counts[1], "n_unreadable": int((~scores.readable).sum()),
        "n_atypical": int(scores.atypical.sum()), "method": method,
        "cv_ece": {k: round(v, 4) for k, v in ece.items()}, "chosen_by": "cross-validated ECE",
        "cv_log_loss": {k: round(v, 4) for k, v in log_loss.items()}, "folds": FOLDS, "seed": seed,
        "min_sensitivity": target, "before": before, "after": after,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "warnings": warnings_for(counts, before),
    }
    _write_version(model, Path(out_dir), version, {"method": method, **params,
                   "fitted_on": f"{len(y)} local films of {local['source']} (fingerprint {fingerprint[:12]})"},
                   threshold, THRESHOLD_RULE.format(target=target), local,
                   {"y_true": y.astype(np.int8), "logit": logits.astype(np.float32),
                    "prob": oof_prob.astype(np.float32), "decision": oof_decisions,
                    "prob_before": scores.probabilities.astype(np.float32)})
    return {"version": version, **{k: local[k] for k in ("based_on", "method", "chosen_by", "cv_ece", "cv_log_loss",
            "n_normal", "n_pneumonia", "n_unreadable", "n_atypical", "warnings", "min_sensitivity")},
            "threshold_before": model.threshold, "threshold_after": threshold,
            "before": before, "after": after, "after_is": "cross-validated on the local films"}


def _write_version(model: LoadedXrayModel, out: Path, version: str, params: dict, threshold: float,
                   rule: str, local: dict, local_arrays: dict) -> None:
    """Copy the base version's files, then replace its map, threshold, validation figures and card."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model.path, out)
    for stale in ("comparison.json", "comparison.npz"):
        (out / stale).unlink(missing_ok=True)
    meta = json.loads(json.dumps(model.meta))
    meta.update(version=version, calibration=params, threshold=threshold, threshold_rule=rule,
                local_validation=local, based_on=model.version)
    with np.load(out / VALIDATION_FILE) as npz:
        validation = {k: npz[k] for k in npz.files}
    if "logit" in validation:  # internal validation under the new map, so every page shows this version's figures
        validation["prob"] = calibration.apply(validation["logit"], params).astype(np.float32)
        meta["metrics"]["validation"] = {**meta["metrics"]["validation"],
                                         **binary_metrics(validation["y_true"], validation["prob"], threshold)}
        np.savez_compressed(out / VALIDATION_FILE, **validation)
    np.savez_compressed(out / LOCAL_FILE, **local_arrays)
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    card = out / "model_card.md"
    base_card = card.read_text() if card.is_file() else f"# Model card `{model.version}`\n"
    card.write_text(base_card.replace(f"`{model.version}`", f"`{version}`", 1) + local_validation_section(meta))


def calibrate_and_register(data_dir: Path, user: auth.User, work_dir: Path, min_sensitivity: float | None = None,
                           uploaded: bool = False) -> dict[str, Any]:
    """Local validation of the production X-ray model, registered as a candidate version (admin only).

    uploaded: data_dir is the caller's own upload; otherwise a path typed on the page must lie under the allowed
    data roots (the command line's operator is not limited)."""
    user = auth.require_admin(user)
    try:
        uploads.check_data_source(Path(data_dir), uploaded, user.operator)
    except uploads.PathNotAllowed as exc:
        raise LocalDataError(str(exc)) from exc
    current = registry.production("xray")
    if current is None:
        raise LocalDataError("There is no production X-ray model to validate.")
    out = Path(work_dir) / f"local-{secrets.token_hex(4)}"
    try:
        result = recalibrate_xray(current.path, Path(data_dir), out, min_sensitivity)
        entry = registry.register("xray", out, user.name, origin="local calibration")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    audit.record(user.name, "calibrate:xray", "candidate registered", entry.version, based_on=result["based_on"],
                 method=result["method"], n=result["n_normal"] + result["n_pneumonia"])
    return {**result, "status": entry.status}


def adapt_and_register(task: str, data_dir: Path, user: auth.User, work_dir: Path, batch_norm: bool = True,
                       prevalence: bool = True, uploaded: bool = False) -> dict[str, Any]:
    """Adapt production to unlabelled local films (training.adaptation) and register it as a candidate (admin only).
    Returns the version, the adaptation's record, and the logits before and after (for the page's chart)."""
    from medcore.training.adaptation import adapt_xray

    user = auth.require_admin(user)
    try:
        uploads.check_data_source(Path(data_dir), uploaded, user.operator)
    except uploads.PathNotAllowed as exc:
        raise LocalDataError(str(exc)) from exc
    current = registry.production(task)
    if current is None:
        raise LocalDataError("There is no production model to adapt.")
    registry.verify(current)
    out = Path(work_dir) / f"adapted-{secrets.token_hex(4)}"
    try:
        record = adapt_xray(current.path, Path(data_dir), out, batch_norm, prevalence)
        with np.load(out / "adaptation.npz") as arrays:
            before, after = arrays["logits_before"].tolist(), arrays["logits_after"].tolist()
        entry = registry.register(task, out, user.name, origin="adaptation")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    audit.record(user.name, f"adapt:{task}", "candidate registered", entry.version, based_on=record["based_on"],
                 films=record["films"], batch_norm=bool(batch_norm), prevalence=bool(prevalence))
    return {"version": entry.version, "status": entry.status, "adaptation": record, "logits_before": before,
            "logits_after": after}
