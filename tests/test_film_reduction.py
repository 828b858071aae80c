"""A large film is reduced once after decoding (imaging.preprocess.reduce_film, issue 32): the quality gate's decision,
the refusal and the probability must be those of the full-size film. Checked on real films of the external sample
(224 px JPEGs, left unchanged) and on 2,000 px 12-bit DICOM copies of them, through the upload's and the PACS's entry
points; a few films here, the whole sample by `python benchmarks/pacs.py --check-reduction`."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from medcore import config
from medcore.imaging.io import read_radiograph
from medcore.imaging.preprocess import reduce_film
from medcore.imaging.service import DISPLAY_MAX_SIDE, analyse_dicom, analyse_file
from medcore.pacs.demo import as_bytes, chest_study
from tests.synthetic import text_screenshot

SAMPLE = config.data_dir() / "chest_xray" / "external_sample"
PROBABILITY_TOLERANCE = 0.01  # the network's 128-px input differs only where box windows meet


def _real_films(per_class: int = 3) -> list:
    if not SAMPLE.is_dir():
        pytest.skip(f"shared data not available at {SAMPLE}")
    return [path for label in ("NORMAL", "PNEUMONIA") for path in sorted((SAMPLE / label).iterdir())[:per_class]]


def upscaled_dicom(pixels: np.ndarray, side: int = 2000) -> bytes:
    """A real film as a 2,000 px 12-bit DX file, the size the PACS sends."""
    large = np.asarray(Image.fromarray(pixels.astype(np.float32), mode="F").resize((side, side),
                                                                                   Image.Resampling.BICUBIC))
    return as_bytes(chest_study(np.clip(large, 0, 1), "Reduce^Test", "RT-1", "ACC-RT1"))


def agree(full, reduced) -> None:
    assert (full.error is None) == (reduced.error is None), (full.error, reduced.error)
    assert full.refusal_reasons == reduced.refusal_reasons and full.decision == reduced.decision
    if full.probability is not None:
        assert reduced.probability == pytest.approx(full.probability, abs=PROBABILITY_TOLERANCE)


def test_reduction_is_an_area_average_that_keeps_the_shape_and_leaves_small_films_alone():
    film = np.random.default_rng(0).random((2000, 1600)).astype(np.float32)
    small = reduce_film(film, DISPLAY_MAX_SIDE)
    assert small.shape == (1024, 819) and small.dtype == np.float32
    assert float(small.mean()) == pytest.approx(float(film.mean()), abs=1e-3) and small.std() < film.std()
    assert reduce_film(film[:224, :224], DISPLAY_MAX_SIDE) is not None
    assert reduce_film(film[:224, :224], DISPLAY_MAX_SIDE).shape == (224, 224)
    assert reduce_film(film, None) is film


def test_real_films_and_their_2000_px_copies_get_the_same_decision_reduced_or_full(xray_model):
    for path in _real_films():
        data = path.read_bytes()
        agree(analyse_file(xray_model, data, path.name, max_side=None), analyse_file(xray_model, data, path.name))
        dicom = upscaled_dicom(read_radiograph(data, path.name).pixels)
        full = analyse_file(xray_model, dicom, "big.dcm", max_side=None)
        reduced = analyse_dicom(xray_model, pydicom.dcmread(io.BytesIO(dicom)), "big.dcm")
        agree(full, reduced)
        assert max(reduced.display.shape) == DISPLAY_MAX_SIDE and reduced.display.shape == full.display.shape


def test_a_refused_large_film_is_refused_for_the_same_reasons_reduced(xray_model):
    dicom = as_bytes(chest_study(text_screenshot(2000, 1500), "Reduce^Test", "RT-2", "ACC-RT2"))
    full = analyse_file(xray_model, dicom, "big.dcm", max_side=None)
    reduced = analyse_file(xray_model, dicom, "big.dcm")
    assert full.refusal_reasons and full.refusal_reasons == reduced.refusal_reasons
