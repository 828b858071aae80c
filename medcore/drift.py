"""Drift monitor: is recent use of the X-ray model like the data it was validated on?

Built from the audit log alone (digests, outcomes, probabilities, atypicality scores and an 8-number summary of
where the network places each film: no patient content).
Four checks, each a stated test at a stated level, each only once there are enough studies to mean anything:
- the share of studies flagged positive against the validation share (two-sided exact binomial test);
- the distribution of calibrated probabilities against the validation probabilities (two-sample
  Kolmogorov-Smirnov test);
- the share of films the quality gate calls atypical (atypicality above 1.0) against its design rate: the
  gate's limits are 1.25 x the 99.5th percentile of validation films, so such films exceed 1.0 less than
  0.5 % of the time (one-sided exact binomial test);
- the distribution of the films' feature summaries (the leading principal components of the network's pooled
  features, imaging.quality.feature_summary) against the validation films': a two-sample Kolmogorov-Smirnov test on
  each component, Bonferroni-corrected (the smallest p-value times the number of components). Aggregated
  univariate tests on a reduced representation are what Rabanser, Günnemann and Lipton (NeurIPS 2019, "Failing
  Loudly") found the most reliable detector of shift; on films of a later period (benchmarks/drift_power.py) it
  warns where the first three stay silent, because a change in the films moves the features before it moves the
  decisions.
A film counts once per day and source (the page's uploads, the command line, ...): the same film uploaded ten
times, or scored again by a script, is one study, not ten. Studies on which the model gave no finite output are
counted apart (`invalid_outputs`): any is a fault of the model, not drift.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from medcore import audit
from medcore.artifacts import ModelInfo

ALPHA = 0.01
ADVICE = ("Recent films differ from the films the model was validated on, so its stated figures may not hold for "
          "them. An administrator can measure it on confirmed local films (Local validation) or adapt it to the "
          "local films without labels (Adaptation), then compare the candidate with production and promote it.")
MIN_STUDIES = 30  # fewer and no test has the power to say anything; the page says so instead
ATYPICAL_DESIGN_RATE = 0.005


@dataclass(frozen=True)
class DriftCheck:
    name: str
    recent: float
    reference: float
    p_value: float | None  # None: not tested (too few studies, or `unavailable` says why)
    test: str
    unavailable: str = ""  # why this check cannot run for this model at all

    @property
    def warning(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass
class DriftReport:
    days: list[str]
    studies_per_day: list[int]
    flagged_share_per_day: list[float]
    probabilities: np.ndarray  # recent studies that got a prediction
    reference_probabilities: np.ndarray  # the model's validation predictions
    atypicality: np.ndarray  # recent studies that were read, refused or not
    checks: list[DriftCheck] = field(default_factory=list)
    invalid_outputs: int = 0  # studies on which the model gave NaN or infinity

    @property
    def n(self) -> int:
        return sum(self.studies_per_day)

    @property
    def warnings(self) -> list[DriftCheck]:
        return [check for check in self.checks if check.warning]


def recent_studies(days: int = 30, now: float | None = None) -> list[dict]:
    """The audited X-ray studies of the last `days` days."""
    now = time.time() if now is None else now
    return audit.events("predict_xray", now - days * 86_400)


def report(model: ModelInfo, studies: list[dict]) -> DriftReport:
    """Recent use of `model` (rows from recent_studies, any model version) against its validation reference."""
    validation = model.validation_predictions()
    reference = np.asarray(validation["prob"], dtype=float)
    rows, seen = [], set()
    for row in studies:
        day = datetime.date.fromtimestamp(row["at"]).isoformat()
        key = (day, row["detail"].get("study"), source(row))
        if row["model_version"] == model.version and key not in seen:
            seen.add(key)
            rows.append({**row, "day": day})
    invalid = sum(r["outcome"] == "invalid model output" for r in rows)
    rows = [r for r in rows if r["outcome"] != "invalid model output"]
    per_day: dict[str, list[dict]] = {}
    for row in rows:
        per_day.setdefault(row["day"], []).append(row)
    predicted = [r for r in rows if r["detail"].get("probability") is not None]
    probabilities = np.array([r["detail"]["probability"] for r in predicted], dtype=float)
    atypicality = np.array([r["detail"]["atypicality"] for r in rows if r["detail"].get("atypicality") is not None],
                           dtype=float)
    summaries = [r["detail"]["features"] for r in predicted if r["detail"].get("features")]
    days = sorted(per_day)
    result = DriftReport(
        days=days, studies_per_day=[len(per_day[d]) for d in days],
        flagged_share_per_day=[_share(per_day[d], model.positive_label) for d in days],
        probabilities=probabilities, reference_probabilities=reference, atypicality=atypicality,
        invalid_outputs=invalid)
    recent = {"probability": probabilities, "atypicality": atypicality,
              "features": np.array(summaries, dtype=float) if summaries else None}
    result.checks = run_checks(recent, {"probability": reference, "features": model.feature_summary_reference()},
                               model.threshold, str(model.positive_label))
    return result


def run_checks(recent: dict[str, np.ndarray], reference: dict[str, np.ndarray | None], threshold: float,
               positive: str = "positive") -> list[DriftCheck]:
    """The four checks on per-study values as the audit log keeps them: `probability` (studies that got one),
    `atypicality` (every film read) and `features` ((n, k) summaries; may be empty), against the validation films'
    `probability` and `features` (None: a model whose reference predates the summary)."""
    probabilities, atypicality = recent["probability"], recent["atypicality"]
    reference_probabilities = reference["probability"]
    reference_flagged = float(np.mean(reference_probabilities >= threshold))
    flagged = int(np.sum(probabilities >= threshold))
    ks = stats.ks_2samp(probabilities, reference_probabilities) if len(probabilities) else None
    return [
        DriftCheck("share flagged " + positive, flagged / max(len(probabilities), 1),
                   reference_flagged, _enough(probabilities, lambda: stats.binomtest(
                       flagged, len(probabilities), reference_flagged).pvalue),
                   "two-sided exact binomial test against the validation share"),
        DriftCheck("probability distribution (KS distance)", float(ks.statistic) if ks else 0.0, 0.0,
                   _enough(probabilities, lambda: ks.pvalue),
                   "two-sample Kolmogorov-Smirnov test against the validation probabilities"),
        DriftCheck("share atypical (atypicality > 1.0)", float(np.mean(atypicality > 1.0)) if len(atypicality) else 0.0,
                   ATYPICAL_DESIGN_RATE, _enough(atypicality, lambda: stats.binomtest(
                       int(np.sum(atypicality > 1.0)), len(atypicality), ATYPICAL_DESIGN_RATE,
                       alternative="greater").pvalue),
                   "one-sided exact binomial test against the gate's design rate of 0.5 %"),
        _feature_check(recent.get("features"), reference.get("features")),
    ]


def _feature_check(recent: np.ndarray | None, reference: np.ndarray | None) -> DriftCheck:
    """Bonferroni-corrected KS tests on each component of the feature summary; the statistic is the largest KS
    distance."""
    name = "film features (largest KS distance over components)"
    if reference is None:
        return DriftCheck(name, 0.0, 0.0, None, "", unavailable="not available: this model's quality reference "
                                                                 "predates the feature summary (medcore quality-refit "
                                                                 "xray adds it)")
    components = reference.shape[1]
    test = (f"two-sample Kolmogorov-Smirnov test on each of the {components} principal components of the network's "
            "pooled features against the validation films, Bonferroni-corrected")
    recent = np.empty((0, components)) if recent is None or recent.size == 0 else recent
    if len(recent) < MIN_STUDIES:
        return DriftCheck(name, 0.0, 0.0, None, test)
    results = [stats.ks_2samp(recent[:, i], reference[:, i]) for i in range(components)]
    return DriftCheck(name, float(max(r.statistic for r in results)), 0.0,
                      float(min(1.0, components * min(r.pvalue for r in results))), test)


def source(row: dict) -> str:
    """Where an audited study came from; rows written before the source was recorded: the user says it."""
    return row["detail"].get("source") or ("cli" if str(row.get("user", "")).startswith("cli:") else "upload")


def _share(rows: list[dict], positive: str | None) -> float:
    """The share flagged among the day's studies that got a prediction (refused films have none), as the check."""
    predicted = [r for r in rows if r["detail"].get("probability") is not None]
    return sum(r["outcome"] == positive for r in predicted) / len(predicted) if predicted else 0.0


def _enough(values: np.ndarray, test) -> float | None:
    return float(test()) if len(values) >= MIN_STUDIES else None
