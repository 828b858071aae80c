"""What may travel between a hospital and the server, besides the network's weights: aggregate statistics.

Calibration, the operating threshold and the quality gate need more than weights, but never a film or a file
name: each site sends counts of its validation logits per class in fixed bins (LOGIT_BINS), sums and scatter
matrices of its training films' thumbnails and network features (the sufficient statistics of a mean and a
covariance), and counts of its validation films' quality scores in fixed bins. Arrays travel as `.npy` bytes.
"""

from __future__ import annotations

import io

import numpy as np

# 0.05-wide bins: Platt and the threshold lose nothing visible. Wide, because an early round's averaged network
# can score far outside what a trained one does, and films clipped into one end bin would lose their ranking.
LOGIT_EDGES = np.linspace(-60.0, 60.0, 2401)
SCORE_EDGES = np.concatenate([[0.0], np.geomspace(1e-6, 1e6, 1200)])  # quality scores span many decades


def to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def logit_histogram(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(2, bins) counts of the logits of each class's films."""
    clipped = np.clip(logits, LOGIT_EDGES[0], LOGIT_EDGES[-1] - 1e-9)
    return np.stack([np.histogram(clipped[labels == c], LOGIT_EDGES)[0] for c in (0, 1)]).astype(np.int64)


def histogram_samples(histogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) at the bin centres, one per counted film: what the central recipe's functions take."""
    centres = (LOGIT_EDGES[:-1] + LOGIT_EDGES[1:]) / 2
    logits = np.concatenate([np.repeat(centres, histogram[c]) for c in (0, 1)])
    labels = np.concatenate([np.full(int(histogram[c].sum()), c) for c in (0, 1)])
    return logits, labels


def score_histogram(scores: np.ndarray) -> np.ndarray:
    """Counts of quality scores in SCORE_EDGES; every film is counted, however far out (a diverged network's NaN or
    huge scores land in the last bin), so the pooled quantiles stay defined."""
    top = SCORE_EDGES[-1]
    scores = np.clip(np.nan_to_num(np.asarray(scores, np.float64), nan=top, posinf=top, neginf=0.0), 0.0, top * 0.999)
    return np.histogram(scores, SCORE_EDGES)[0]


def score_quantile(histogram: np.ndarray, q: float) -> float:
    """The q-quantile of pooled scores from their binned counts (upper bin edge: conservative)."""
    if histogram.sum() == 0:
        raise ValueError("No quality scores arrived from the sites: the quality gate's thresholds cannot be set.")
    cumulative = np.cumsum(histogram) / histogram.sum()
    return float(SCORE_EDGES[1:][min(int(np.searchsorted(cumulative, q)), len(SCORE_EDGES) - 2)])
