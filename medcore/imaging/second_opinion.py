"""Occlusion beside Grad-CAM for one study, on demand, with how far the two agree and what that means.

Not part of `analyse_file`: it costs a few hundred forward passes, so the page runs it only when asked
(benchmarks/explainers.py times it). It covers the very input that was scored (StudyResult.model_input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcore.explanation_agreement import evidence_agreement
from medcore.imaging.occlusion import Occlusion

AGREE = (0.5, 0.3)  # rank correlation and top-10 % overlap at or above which the two "point at the same regions"
DISAGREE = 0.2  # rank correlation below which they "point at different regions"


@dataclass(frozen=True)
class SecondOpinion:
    occlusion: np.ndarray  # (grid, grid) drop of the pneumonia logit when each patch is covered; > 0: evidence for it
    rank_correlation: float  # with the study's Grad-CAM, pixel by pixel (explanation_agreement.evidence_agreement)
    top_overlap: float  # IoU of the two maps' hottest 10 % of the film

    @property
    def verdict(self) -> str:
        if self.rank_correlation >= AGREE[0] and self.top_overlap >= AGREE[1]:
            return "agree"
        return "disagree" if self.rank_correlation < DISAGREE else "partly agree"

    def sentence(self) -> str:
        """What a reader should take from the agreement, in one plain sentence."""
        figures = (f"rank correlation {self.rank_correlation:.2f} (1 = the same order of regions, 0 = unrelated); "
                   f"their hottest tenth of the film overlaps {self.top_overlap:.0%}")
        if self.verdict == "agree":
            return (f"The two methods point at the same regions ({figures}): the highlighted area is where the model "
                    "found its evidence.")
        if self.verdict == "disagree":
            return (f"The two methods point at different regions ({figures}): neither map is a reliable guide to "
                    "where the evidence is on this film; read the film without them.")
        return (f"The two methods partly agree ({figures}): trust the regions both highlight, not those only one "
                "does.")

    def display_map(self) -> np.ndarray:
        """Evidence for the positive class only, scaled to [0, 1] by its own peak (for the overlay)."""
        positive = np.clip(self.occlusion, 0.0, None)
        peak = float(positive.max())
        return positive / peak if peak > 0 else positive


def occlusion_opinion(occlusion: Occlusion, model_input: np.ndarray, gradcam: np.ndarray) -> SecondOpinion:
    """The study's occlusion map and its agreement with `gradcam` (the heatmap the page shows)."""
    drop = occlusion(model_input)
    return SecondOpinion(drop, *evidence_agreement(drop, gradcam, model_input.shape[0]))
