"""How alike two explanations are: heatmaps (rank correlation, structural similarity, shared top regions) and word
lists (shared top words).

Used twice, for two questions. Sanity checks (Adebayo et al., NeurIPS 2018): an explanation of the trained model
must be *unlike* that of a model whose weights or labels were randomised, or it explains the input rather than what
was learned. Agreement: two different explainers of the same prediction (Grad-CAM and occlusion; SHAP and LIME)
should point at the same evidence; where they do not, neither should be trusted alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.stats import spearmanr


def resample(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A heatmap at another grid size (bilinear), so that maps of different resolutions can be compared."""
    if heatmap.shape == tuple(shape):
        return heatmap.astype(np.float32)
    image = Image.fromarray(np.asarray(heatmap, np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float32)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho over the cells (b resampled to a's grid); 0 when either map is flat (it ranks nothing)."""
    b = resample(b, a.shape)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _unit(heatmap: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(heatmap)))
    return np.abs(heatmap) / peak if peak > 0 else np.zeros_like(heatmap, dtype=np.float32)


def structural_similarity(a: np.ndarray, b: np.ndarray, size: int = 64) -> float:
    """SSIM (Wang et al. 2004, scikit-image) of the two maps, each scaled by its own peak and drawn at size x size,
    as a reader sees them over the film; 1 = the same picture."""
    from skimage.metrics import structural_similarity as ssim

    a, b = (resample(_unit(m), (size, size)) for m in (a, b))
    return float(ssim(a, b, data_range=1.0))


def top_region_overlap(a: np.ndarray, b: np.ndarray, share: float = 0.1) -> float:
    """Intersection over union of each map's hottest `share` of cells (b resampled to a's grid)."""
    b = resample(b, a.shape)
    k = max(1, round(share * a.size))
    top_a = set(np.argsort(-a.ravel(), kind="stable")[:k])
    top_b = set(np.argsort(-b.ravel(), kind="stable")[:k])
    return len(top_a & top_b) / len(top_a | top_b)


def top_k_overlap(a: list, b: list) -> float:
    """Share of a's items that b also holds (both top-k lists of the same k): 1 = the same words."""
    return len(set(a) & set(b)) / len(a) if a else 1.0


def evidence_agreement(occlusion: np.ndarray, gradcam: np.ndarray, size: int) -> tuple[float, float]:
    """(rank correlation, top-10 % overlap) of two maps of evidence *for* the class, compared pixel by pixel at the
    film's input size, as a reader sees them: the occlusion map keeps its positive part only (Grad-CAM has no
    negative part), and both are drawn bilinearly at size x size, so a coarse grid and a fine one are compared
    over the same area rather than cell by cell."""
    first = resample(np.clip(occlusion, 0.0, None), (size, size))
    second = resample(gradcam, (size, size))
    return rank_correlation(first, second), top_region_overlap(first, second)
