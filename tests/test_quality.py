"""The quality gate refuses what is not a frontal chest radiograph, with a reason, and passes films."""

import numpy as np
import pytest
from PIL import Image

from medcore.imaging import quality
from medcore.imaging.io import read_radiograph
from medcore.imaging.preprocess import to_model_input
from tests.synthetic import (
    chest_like,
    colour_photo,
    encode,
    make_dicom,
    noise,
    text_screenshot,
)


def _check(model, data: bytes, name: str = "x.png"):
    radiograph = read_radiograph(data, name)
    model_input = to_model_input(radiograph.pixels, model.artifact.image_size)
    _, _, features = model.predict_inputs(model_input[None])
    return quality.check(radiograph, model_input, features[0], model.artifact.quality_reference)


def test_radiograph_like_images_pass(xray_model):
    reference = xray_model.artifact.quality_reference
    rng = np.random.default_rng(0)
    for seed in range(5):
        image = chest_like(reference, seed=seed, weights=rng.normal(0, 1.5, 6))
        result = _check(xray_model, encode(image, "PNG"))
        assert result.ok, result.reasons
        assert result.atypicality < 1.0


Y, X = np.mgrid[0:400, 0:400] / 400


@pytest.mark.parametrize("make, reason", [
    (lambda: encode(noise(), "PNG"), "unlike the films the model was trained on"),
    (lambda: encode((X * 0.8 + 0.1).astype(np.float32), "PNG"), "unlike the films the model was trained on"),
    (lambda: encode(np.exp(-((X - .5) ** 2 + (Y - .5) ** 2) * 8).astype(np.float32), "PNG"), "unlike the films the model"),
    (lambda: encode(np.asarray(Image.fromarray(colour_photo()).convert("L")), "PNG"), "unlike the films the model"),
    (lambda: encode(text_screenshot(), "PNG"), "one flat tone"),
    (lambda: encode(np.full((300, 300), 0.4, np.float32), "PNG"), "blank"),
    (lambda: encode(colour_photo(), "JPEG"), "colour"),
    (lambda: encode(np.random.default_rng(1).random((100, 400)).astype(np.float32), "PNG"), "elongated"),
])
def test_non_radiographs_are_refused_with_a_reason(xray_model, make, reason):
    result = _check(xray_model, make())
    assert not result.ok
    assert any(reason in r for r in result.reasons), result.reasons


@pytest.mark.parametrize("header, reason", [
    ({"modality": "CT"}, "modality is CT"),
    ({"view": "LL"}, "view is LL: this model is validated for frontal"),
    ({"view": "OBL"}, "view is OBL"),
    ({"modality": "RG"}, "modality is RG"),
    ({"body_part": "KNEE"}, "body part is KNEE"),
])
def test_dicom_headers_for_other_studies_are_refused(xray_model, header, reason):
    image = chest_like(xray_model.artifact.quality_reference, 400, 400)
    result = _check(xray_model, make_dicom((image * 4000).astype(np.uint16), bits=12, **header), "s.dcm")
    assert not result.ok and any(reason in r for r in result.reasons), result.reasons
