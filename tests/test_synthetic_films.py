"""A synthetic film is never mistaken for a patient: visible mark, file tag, refused by the X-ray service and
never audited as a study."""

import io

import numpy as np
import pytest
from PIL import Image

from medcore import audit
from medcore.imaging.io import SyntheticFilm, read_radiograph
from medcore.imaging.service import analyse_uploads
from medcore.imaging.synthetic import mark_synthetic, synthetic_tag
from tests.synthetic import chest_like, encode


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_tagged_film_is_refused_with_a_clear_message(fmt, xray_model):
    film = chest_like(xray_model.artifact.quality_reference, 512, 512, seed=3)
    data = mark_synthetic(film, "gan-test-1", fmt)
    assert synthetic_tag(Image.open(io.BytesIO(data))) == "gan-test-1"
    with pytest.raises(SyntheticFilm, match="synthetic film made by MedCore's generator"):
        read_radiograph(data)
    read_radiograph(encode(film, fmt))  # the same pixels without the tag are read as usual


def test_the_mark_is_visible_on_the_pixels():
    film = np.full((512, 512), 0.3)
    pixels = np.asarray(Image.open(io.BytesIO(mark_synthetic(film, "g")))).astype(float) / 255
    corner, elsewhere = pixels[:40, :180], pixels[100:, 100:]
    assert (corner > 0.9).mean() > 0.5 and (corner < 0.1).any()  # white box with dark letters
    assert np.allclose(elsewhere, 0.3, atol=0.01)  # the film itself is untouched


def test_the_xray_service_refuses_it_and_audits_no_study(store, xray_model):
    film = chest_like(xray_model.artifact.quality_reference, 512, 512, seed=4)
    uploads = [("synthetic.png", mark_synthetic(film, "gan-test-2")), ("real.png", encode(film, "PNG"))]
    synthetic, real = analyse_uploads(xray_model, uploads, {}, "dr.test")
    assert synthetic.synthetic and "synthetic film" in synthetic.error and synthetic.probability is None
    assert real.error is None and real.probability is not None
    rows = audit.recent(10)
    assert [r["action"] for r in rows].count("predict_xray") == 1  # only the real film is a study
    assert any(r["action"] == "refused_synthetic_film" for r in rows)
