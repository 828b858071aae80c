"""Metrics, curves and the operating threshold, computed from labels and probabilities only.

Every number the app shows comes from these functions run on stored predictions; nothing is
typed by hand.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score, roc_curve


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |observed rate - mean predicted probability| over equal-width bins."""
    y_true, prob = np.asarray(y_true, dtype=float), np.asarray(prob, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.mean() * abs(y_true[mask].mean() - prob[mask].mean())
    return float(ece)


def format_probability(p: float) -> str:
    """A calibrated probability for people: never "100.0 %" or "0.0 %", which no model can know."""
    if p >= 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%"
    return f"{p:.1%}"


def proportion_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % by default) for a proportion such as a sensitivity: honest for small n."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def operating_figures(metrics: dict) -> str:
    """'sensitivity 98.3 % (95 % CI 96.6-99.2 %), specificity …' from binary_metrics counts."""
    sensitivity = proportion_interval(metrics["tp"], metrics["tp"] + metrics["fn"])
    specificity = proportion_interval(metrics["tn"], metrics["tn"] + metrics["fp"])
    return (f"sensitivity {metrics['sensitivity']:.1%} (95% CI {sensitivity[0]:.1%}-{sensitivity[1]:.1%}), "
            f"specificity {metrics['specificity']:.1%} (95% CI {specificity[0]:.1%}-{specificity[1]:.1%})")


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float,
                   decisions: np.ndarray | None = None) -> dict[str, float]:
    """The release-check metrics for a binary classifier at one operating threshold.

    decisions, when given, replaces `prob >= threshold` (cross-validated figures, where each fold's
    films were judged at the threshold fitted without them).
    """
    y_true = np.asarray(y_true).astype(int)
    pred = (np.asarray(prob) >= threshold if decisions is None else np.asarray(decisions)).astype(int)
    tp = int(((pred == 1) & (y_true == 1)).sum())
    tn = int(((pred == 0) & (y_true == 0)).sum())
    fp = int(((pred == 1) & (y_true == 0)).sum())
    fn = int(((pred == 0) & (y_true == 1)).sum())
    both_classes = len(np.unique(y_true)) == 2
    return {
        "n": int(len(y_true)),
        "auc": float(roc_auc_score(y_true, prob)) if both_classes else float("nan"),
        "accuracy": (tp + tn) / max(len(y_true), 1),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "ppv": tp / max(tp + fp, 1),
        "npv": tn / max(tn + fn, 1),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "ece": expected_calibration_error(y_true, prob),
        "threshold": float(threshold),
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
    }


TARGET_CONFIDENCE_Z = 0.84  # a sensitivity target is kept at its one-sided 80 % Wilson lower bound


def choose_threshold(y_true: np.ndarray, prob: np.ndarray, min_sensitivity: float = 0.95,
                     confidence_z: float = 0.0) -> float:
    """The threshold with the best specificity among those reaching min_sensitivity; among equally
    specific thresholds, the one with the highest sensitivity.

    For a screening aid a missed pneumonia costs more than a second look at a normal film, and the
    sensitivity margin above the target is kept for data that is harder than validation. With
    confidence_z > 0 the Wilson lower bound of the sensitivity must reach the target, not the estimate:
    on a small set the target then still holds on the next patients (z = 0.84: about 80 % of the time).
    """
    fpr, tpr, thresholds = roc_curve(y_true, prob, drop_intermediate=False)
    if confidence_z > 0:
        positives = int(np.sum(np.asarray(y_true) == 1))
        lower = np.array([proportion_interval(round(t * positives), positives, confidence_z)[0] for t in tpr])
        ok = np.flatnonzero(lower >= min_sensitivity)
        if not len(ok):
            ok = np.array([len(tpr) - 1])  # no threshold can promise the target: flag every film
    else:
        ok = np.flatnonzero(tpr >= min_sensitivity)
    best_fpr = fpr[ok].min()
    candidates = ok[fpr[ok] == best_fpr]
    best = candidates[np.argmax(tpr[candidates])]
    return float(min(thresholds[best], 1.0))


def choose_threshold_for_each(domains: list[tuple[np.ndarray, np.ndarray]], min_sensitivity: float = 0.95,
                              confidence_z: float = TARGET_CONFIDENCE_Z) -> float:
    """The highest threshold at which every domain, a (labels, probabilities) pair, keeps the sensitivity target.

    Why each and not their union: on a pooled set, one domain's margin pays for another's shortfall. The shipped
    model's threshold fitted on validation films and perturbed copies together kept 0.95 overall, but 0.916 on
    the clean films and 0.968 on the copies; new patients fell between (0.938). Held on each domain (and at the
    Wilson lower bound, so that a finite set's luck is not counted on), the target holds wherever the next
    films fall between the domains.
    """
    return min(choose_threshold(y, prob, min_sensitivity, confidence_z) for y, prob in domains)


def bootstrap_interval(y_true: np.ndarray, prob: np.ndarray, statistic, n_resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """95 % bias-corrected bootstrap interval of statistic(y, p), resampling within each class (any number).

    Bias-corrected (Efron 1987) rather than plain percentiles because ECE is biased upwards under
    resampling: plain percentiles can sit entirely above the estimate they are meant to bracket.
    """
    from scipy.stats import norm

    y_true, prob = np.asarray(y_true).astype(int), np.asarray(prob, dtype=float)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y_true == c) for c in np.unique(y_true)]
    values = []
    for _ in range(n_resamples):
        index = np.concatenate([rng.choice(g, len(g)) for g in groups if len(g)])
        values.append(statistic(y_true[index], prob[index]))
    values = np.asarray(values)
    estimate = statistic(y_true, prob)
    below = (np.sum(values < estimate) + 0.5 * np.sum(values == estimate)) / n_resamples
    z0 = norm.ppf(np.clip(below, 1 / (2 * n_resamples), 1 - 1 / (2 * n_resamples)))
    low, high = np.percentile(values, 100 * norm.cdf([2 * z0 - 1.96, 2 * z0 + 1.96]))
    return float(min(low, estimate)), float(max(high, estimate))


def intervals(metrics: dict, y_true: np.ndarray, prob: np.ndarray, n_resamples: int = 1000) -> dict:
    """95 % intervals of binary_metrics: Wilson for sensitivity, specificity and accuracy; bootstrap for AUC, ECE."""
    positives, negatives = metrics["tp"] + metrics["fn"], metrics["tn"] + metrics["fp"]
    result = {"sensitivity": proportion_interval(metrics["tp"], positives),
              "specificity": proportion_interval(metrics["tn"], negatives),
              "accuracy": proportion_interval(metrics["tp"] + metrics["tn"], metrics["n"]),
              "ece": bootstrap_interval(y_true, prob, expected_calibration_error, n_resamples)}
    if positives and negatives:
        result["auc"] = bootstrap_interval(y_true, prob, lambda y, p: float(roc_auc_score(y, p)), n_resamples)
    # Rounded outwards, so a stored interval still contains its unrounded estimate.
    return {key: [float(np.floor(low * 1e4) / 1e4), float(np.ceil(high * 1e4) / 1e4)]
            for key, (low, high) in result.items()}


def binary_figures(y_true: np.ndarray, prob: np.ndarray, threshold: float,
                   decisions: np.ndarray | None = None) -> dict:
    """binary_metrics with their 95 % intervals under "intervals": what every table of figures shows."""
    metrics = binary_metrics(y_true, prob, threshold, decisions)
    return {**metrics, "intervals": intervals(metrics, y_true, prob)}


def curves(y_true: np.ndarray, prob: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """ROC, precision-recall and reliability points for plotting."""
    fpr, tpr, roc_thr = roc_curve(y_true, prob)
    precision, recall, _ = precision_recall_curve(y_true, prob)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    mean_pred, observed, counts = [], [], []
    for b in range(bins):
        mask = index == b
        if mask.any():
            mean_pred.append(float(np.mean(prob[mask])))
            observed.append(float(np.mean(np.asarray(y_true)[mask])))
            counts.append(int(mask.sum()))
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "roc_thresholds": roc_thr.tolist(),
            "precision": precision.tolist(), "recall": recall.tolist(),
            "reliability_predicted": mean_pred, "reliability_observed": observed,
            "reliability_count": counts}


def multiclass_metrics(y_true: np.ndarray, prob: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class F1, top-label ECE and the confusion matrix."""
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true, dtype=int)
    pred = np.argmax(prob, axis=1)
    per_class = f1_score(y_true, pred, labels=list(range(len(labels))), average=None, zero_division=0)
    confidence = prob[np.arange(len(pred)), pred]
    return {
        "n": int(len(y_true)),
        "accuracy": float((pred == y_true).mean()),
        "macro_f1": float(np.mean(per_class)),
        "per_class_f1": {label: float(f) for label, f in zip(labels, per_class)},
        "ece": expected_calibration_error((pred == y_true).astype(int), confidence),
        "confusion": confusion_matrix(y_true, pred, labels=list(range(len(labels)))).tolist(),
        "labels": list(labels),
    }


def _macro_f1(y_true: np.ndarray, prob: np.ndarray) -> float:
    """macro-F1 of the top class over every class column, from counts (fast enough to bootstrap)."""
    k, pred = prob.shape[1], prob.argmax(axis=1)
    tp = np.bincount(y_true[pred == y_true], minlength=k)
    fp, fn = np.bincount(pred, minlength=k) - tp, np.bincount(y_true, minlength=k) - tp
    denominator = 2 * tp + fp + fn
    return float(np.mean(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)))


def _top_label_ece(y_true: np.ndarray, prob: np.ndarray) -> float:
    pred = prob.argmax(axis=1)
    return expected_calibration_error((pred == y_true).astype(int), prob[np.arange(len(pred)), pred])


def multiclass_intervals(y_true: np.ndarray, prob: np.ndarray, n_resamples: int = 1000) -> dict[str, list[float]]:
    """95 % intervals of multiclass_metrics' accuracy (Wilson), macro-F1 and top-label ECE (class-stratified
    bias-corrected bootstrap): on a few hundred notes both move by several points between samples."""
    y_true, prob = np.asarray(y_true, dtype=int), np.asarray(prob, dtype=float)
    result = {"accuracy": proportion_interval(int((prob.argmax(axis=1) == y_true).sum()), len(y_true)),
              "macro_f1": bootstrap_interval(y_true, prob, _macro_f1, n_resamples),
              "ece": bootstrap_interval(y_true, prob, _top_label_ece, n_resamples)}
    return {key: [float(np.floor(low * 1e4) / 1e4), float(np.ceil(high * 1e4) / 1e4)]
            for key, (low, high) in result.items()}


def confidence_threshold(y_true: np.ndarray, prob: np.ndarray, min_precision: float = 0.9) -> dict[str, float]:
    """The lowest top-class probability at which a finding is shown as "most likely" (below it: "uncertain").

    Chosen so that, on these notes, at least min_precision of the findings shown are correct while as many
    notes as possible get one: {"threshold", "precision", "coverage"} (coverage: share of notes with a finding).
    """
    y_true = np.asarray(y_true, dtype=int)
    confidence = prob.max(axis=1)
    correct = prob.argmax(axis=1) == y_true
    order = np.argsort(-confidence, kind="stable")
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= min_precision)
    if not len(ok):
        return {"threshold": 1.0, "precision": float("nan"), "coverage": 0.0}
    k = int(ok[-1]) + 1
    return {"threshold": float(confidence[order][k - 1]), "precision": float(precision[k - 1]),
            "coverage": k / len(order)}
