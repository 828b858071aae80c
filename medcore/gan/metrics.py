"""How good, how varied and how original generated films are, measured on feature vectors (numpy only).

- Fréchet distance (Heusel et al. 2017) between Gaussian fits of two sets of features: 0 for identical
  distributions; it is biased upwards for finite samples, so it is read against a floor, the distance
  between two halves of the real films of the same size.
- Precision and recall (Kynkäänniemi et al. 2019): the share of generated films inside the real films'
  k-nearest-neighbour manifold (realism), and the share of real films inside the generated films' manifold
  (variety). A generator that collapses to a few good films has high precision and low recall.
- Memorization: each generated film's distance to its nearest training film, against how close training
  films of *different* patients come to one another. A film closer to a training film than almost any two
  patients' films are is suspiciously close: the generator may have copied that patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import linalg

MEMORIZATION_PERCENTILE = 1.0  # "suspiciously close": nearer than 99 % of training films are to another patient's
MAX_SUSPICIOUS_SHARE = 0.05  # a generator with more suspiciously close films than this is not registered


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between the Gaussian fits of two feature sets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(root).all():  # near-singular product: regularise as the reference implementation does
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real))
    return max(value, 0.0)


def principal_projection(reference: np.ndarray, dims: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """Projection onto the reference features' first `dims` principal axes.

    The classifier's pooled features have more dimensions (160 per ensemble member) than a class has films in a
    measurement, so their covariance would be singular; the leading axes hold nearly all the variance.
    """
    reference = np.asarray(reference, np.float64)
    mean = reference.mean(0)
    _, _, axes = np.linalg.svd(reference - mean, full_matrices=False)
    axes = axes[: min(dims, len(reference) - 1)]
    return lambda features: (np.asarray(features, np.float64) - mean) @ axes.T


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and the rows of b, (len(a), len(b))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _manifold_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's distance to its k-th nearest other point: the radius of its ball in the manifold."""
    distances = pairwise_distances(points, points)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def _coverage(queries: np.ndarray, points: np.ndarray, radii: np.ndarray) -> float:
    """Share of queries inside at least one point's ball."""
    return float((pairwise_distances(queries, points) <= radii[None, :]).any(axis=1).mean())


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features against real ones, with k-nearest-neighbour manifolds."""
    precision = _coverage(generated, real, _manifold_radii(real, k))
    recall = _coverage(real, generated, _manifold_radii(generated, k))
    return precision, recall


@dataclass(frozen=True)
class MemorizationCheck:
    """Each generated film's nearest training film and whether it is suspiciously close."""

    nearest: np.ndarray  # index of the nearest training film, per generated film
    distance: np.ndarray  # distance to it
    threshold: float  # MEMORIZATION_PERCENTILE-th percentile of training films' distances to other patients' films
    typical: float  # median of those distances
    suspicious: np.ndarray  # bool per generated film: distance < threshold

    @property
    def share(self) -> float:
        return float(self.suspicious.mean()) if len(self.suspicious) else 0.0

    @property
    def passed(self) -> bool:
        return self.share <= MAX_SUSPICIOUS_SHARE

    def closest(self, n: int) -> list[tuple[int, int, float]]:
        """The n closest (generated index, training index, distance / typical), closest first."""
        order = np.argsort(self.distance)[:n]
        return [(int(i), int(self.nearest[i]), float(self.distance[i] / self.typical)) for i in order]

    def summary(self) -> dict:
        return {"share_suspicious": self.share, "threshold": self.threshold, "typical_distance": self.typical,
                "median_ratio": float(np.median(self.distance) / self.typical) if len(self.distance) else None,
                "percentile": MEMORIZATION_PERCENTILE, "max_share": MAX_SUSPICIOUS_SHARE, "passed": self.passed}


def memorization_check(train: np.ndarray, patients: np.ndarray, generated: np.ndarray,
                       chunk: int = 512) -> MemorizationCheck:
    """Compare generated films' nearest-training-film distances with training films' nearest other patient.

    `patients` names each training film's patient, so that two films of one patient (follow-ups look alike)
    do not set the bar: the reference is how close two different people's films come.
    """
    train, generated, patients = np.asarray(train, np.float32), np.asarray(generated, np.float32), np.asarray(patients)
    between = np.empty(len(train))
    for start in range(0, len(train), chunk):
        distances = pairwise_distances(train[start:start + chunk], train)
        distances[patients[start:start + chunk, None] == patients[None, :]] = np.inf
        between[start:start + chunk] = distances.min(axis=1)
    between = between[np.isfinite(between)]
    nearest, distance = np.empty(len(generated), int), np.empty(len(generated))
    for start in range(0, len(generated), chunk):
        distances = pairwise_distances(generated[start:start + chunk], train)
        nearest[start:start + chunk] = distances.argmin(axis=1)
        distance[start:start + chunk] = distances.min(axis=1)
    threshold = float(np.percentile(between, MEMORIZATION_PERCENTILE))
    return MemorizationCheck(nearest, distance, threshold, float(np.median(between)), distance < threshold)
