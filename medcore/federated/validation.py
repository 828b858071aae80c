"""Every update a site sends is checked before the server uses it; an invalid one is dropped with its reason.

An authenticated site can still send garbage, by fault or on purpose: arrays of the wrong shape, NaN, a claimed
example count of 10^9 that would outweigh every other hospital in the average, or a histogram of logits that drags
the pooled threshold. Each check below answers "why is this update unusable?" (None when it is usable), so the
server can drop it from the round and write the reason into the round's log. What an honest-looking, validly shaped
update from a registered site can still do is stated in the README ("Federated training: what a registered
hospital can still do").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcore.federated import wire

LOGIT_BINS = len(wire.LOGIT_EDGES) - 1
SCORE_BINS = len(wire.SCORE_EDGES) - 1
SHIFT_COPIES = 2  # shift.perturbed_logits scores two perturbed copies of every validation film
MAX_ABS_WEIGHT = 1e4  # no trained network here comes near it; a larger weight is junk, or an attempt to overflow


@dataclass(frozen=True)
class Expected:
    """What the server knows before the run: the global model's arrays and each site's declared number of films."""

    weights: list[np.ndarray]
    declared_films: dict[str, int]
    thumb_dim: int
    feature_dim: int


def _decoded(value: object, name: str) -> tuple[np.ndarray | None, str | None]:
    if not isinstance(value, bytes):
        return None, f"{name} is not an array"
    try:
        return wire.from_bytes(value), None
    except Exception:  # noqa: BLE001 - any decoding failure is the sender's fault, never the server's crash
        return None, f"{name} cannot be decoded"


def _count(num_examples: object, site: str, expected: Expected) -> str | None:
    declared = expected.declared_films.get(site)
    if declared is None:
        return f"{site} is not an expected site"
    if not isinstance(num_examples, (int, np.integer)) or isinstance(num_examples, bool):
        return "the example count is not an integer"
    if not 1 <= int(num_examples) <= declared:
        return f"claims {num_examples} films; the site declared {declared}"
    return None


def _unexpected_keys(metrics: dict, allowed: set[str]) -> str | None:
    extra = sorted(set(metrics) - allowed)
    return f"unexpected fields {extra[:5]}" if extra else None


def check_weights(arrays: list[np.ndarray], expected: Expected) -> str | None:
    """Same number, shapes and dtypes as the global model, every value finite."""
    if len(arrays) != len(expected.weights):
        return f"{len(arrays)} arrays instead of {len(expected.weights)}"
    for i, (got, want) in enumerate(zip(arrays, expected.weights)):
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"array {i} is {got.dtype}{list(got.shape)}, the model's is {want.dtype}{list(want.shape)}"
        if not np.isfinite(got).all():
            return f"array {i} holds non-finite values"
        if got.size and np.abs(got).max() > MAX_ABS_WEIGHT:
            return f"array {i} holds values beyond +/-{MAX_ABS_WEIGHT:g}"
    return None


def check_fit(site: str, arrays: list[np.ndarray], num_examples: object, metrics: dict,
              expected: Expected) -> str | None:
    """A training round's update: weights, the training-film count, and the loss (nothing else may travel)."""
    loss = metrics.get("loss")
    return (_count(num_examples, site, expected) or _unexpected_keys(metrics, {"loss"})
            or (None if isinstance(loss, (int, float)) and np.isfinite(loss) else "the loss is not a finite number")
            or check_weights(arrays, expected))


def _histogram(value: object, name: str, shape: tuple[int, ...], total: int) -> str | None:
    histogram, problem = _decoded(value, name)
    if problem:
        return problem
    if histogram.shape != shape or not np.issubdtype(histogram.dtype, np.integer):
        return f"{name} is {histogram.dtype}{list(histogram.shape)}, not integer counts in the agreed {list(shape)} bins"
    if (histogram < 0).any():
        return f"{name} holds negative counts"
    if histogram.size and int(histogram.max()) > total:  # also keeps the sum below int64's overflow
        return f"{name} has a bin of {int(histogram.max())} films, more than the {total} the site reported"
    if int(histogram.sum()) != total:
        return f"{name} counts {int(histogram.sum())} films, not the {total} the site reported"
    return None


def check_validation(site: str, num_examples: object, loss: object, metrics: dict, expected: Expected) -> str | None:
    """A scoring round's answer: binned validation logits (and, after the last round, of perturbed copies)."""
    problem = (_count(num_examples, site, expected)
               or _unexpected_keys(metrics, {"auc", "histogram", "shift_histogram"})
               or (None if isinstance(loss, (int, float)) and np.isfinite(loss) else "the loss is not a finite number"))
    if problem:
        return problem
    auc = metrics.get("auc")
    if not isinstance(auc, float) or not (np.isnan(auc) or 0.0 <= auc <= 1.0):
        return "the AUC is not a number between 0 and 1"
    n = int(num_examples)
    problem = _histogram(metrics.get("histogram"), "histogram", (2, LOGIT_BINS), n)
    if problem is None and "shift_histogram" in metrics:
        problem = _histogram(metrics["shift_histogram"], "shift_histogram", (2, LOGIT_BINS), SHIFT_COPIES * n)
    return problem


MOMENT_KEYS = ("thumb_sum", "thumb_scatter", "feature_sum", "feature_scatter")
SCORE_KEYS = ("reconstruction", "distance", "gradcam_peak")


def check_moments(site: str, num_examples: object, metrics: dict, expected: Expected) -> str | None:
    """Sums and scatter matrices of thumbnails and features: the agreed shapes, finite."""
    problem = _count(num_examples, site, expected) or _unexpected_keys(metrics, set(MOMENT_KEYS))
    if problem:
        return problem
    shapes = {"thumb_sum": (expected.thumb_dim,), "thumb_scatter": (expected.thumb_dim, expected.thumb_dim),
              "feature_sum": (expected.feature_dim,),
              "feature_scatter": (expected.feature_dim, expected.feature_dim)}
    for key, shape in shapes.items():
        array, problem = _decoded(metrics.get(key), key)
        if problem:
            return problem
        if array.shape != shape or not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
            return f"{key} is not a finite array of real numbers of shape {list(shape)}"
    return None


def check_scores(site: str, num_examples: object, metrics: dict, expected: Expected) -> str | None:
    """Binned quality scores of the site's validation films: agreed bins, one count per film."""
    problem = _count(num_examples, site, expected) or _unexpected_keys(metrics, set(SCORE_KEYS))
    if problem:
        return problem
    for key in SCORE_KEYS:
        problem = _histogram(metrics.get(key), key, (SCORE_BINS,), int(num_examples))
        if problem:
            return problem
    return None
