"""A synthetic film is never mistaken for a patient: it is recognised by the marks on its pixels, however it was
re-encoded (M2, issue 21), cropped, turned or painted over (issue 32), refused by the X-ray service and `medcore
predict`, and never audited as a study; a real film is never refused for a tag alone."""

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

from medcore import audit
from medcore.imaging.io import SyntheticFilm, decode_image, read_radiograph
from medcore.imaging.service import analyse_uploads
from medcore.imaging import folders
from medcore.imaging.synthetic import (
    BOX_THRESHOLD,
    PATTERN_AMPLITUDE,
    PATTERN_THRESHOLD,
    TAG_KEY,
    box_score,
    is_marked,
    mark_scores,
    mark_synthetic,
    pattern_score,
)
from tests.synthetic import chest_like, encode, make_dicom


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def _reencoded(marked: bytes) -> dict[str, bytes]:
    """The same pixels as someone might pass them on: without the tag, as JPEG 75, half size, inside DICOM."""
    pixels = _pixels(marked)
    half = np.asarray(Image.fromarray(pixels).resize((pixels.shape[1] // 2, pixels.shape[0] // 2)))
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=75)
    return {"png": encode(pixels / 255.0, "PNG"), "jpeg75": jpeg.getvalue(), "half": encode(half / 255.0, "PNG"),
            "dicom8": make_dicom(pixels, bits=8), "dicom16": make_dicom(pixels.astype(np.uint16) * 16, bits=12),
            "dicom_monochrome1": make_dicom(255 - pixels, photometric="MONOCHROME1", bits=8)}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_marked_film_is_refused_in_every_re_encoding(fmt):
    film = np.random.default_rng(3).random((64, 64)) * 0.6 + 0.2  # the generator draws 64 px films
    marked = mark_synthetic(film, "gan-test-1", fmt)
    assert min(_pixels(marked).shape) >= 512  # enlarged before marking: a 50 % copy is still a readable film
    for name, data in {"as written": marked, **_reencoded(marked)}.items():
        with pytest.raises(SyntheticFilm, match="SYNTHETIC mark"):
            read_radiograph(data, f"film-{name}")


def test_a_real_film_with_the_tag_added_is_read_as_usual(xray_model):
    film = chest_like(xray_model.artifact.quality_reference, 512, 512, seed=3)
    info = PngImagePlugin.PngInfo()
    info.add_text(TAG_KEY, "gan-forged")
    buffer = io.BytesIO()
    Image.fromarray((film * 255).astype(np.uint8)).save(buffer, format="PNG", pnginfo=info)
    assert read_radiograph(buffer.getvalue()).pixels.shape == (512, 512)  # the tag alone decides nothing


def test_real_looking_films_score_far_below_the_thresholds(xray_model):
    reference = xray_model.artifact.quality_reference
    scores = [mark_scores(decode_image(encode(chest_like(reference, 400 + 37 * s, 512, seed=s), "PNG")).pixels)
              for s in range(20)]
    assert max(s.pattern for s in scores) < PATTERN_THRESHOLD * 0.7 and max(s.box for s in scores) < BOX_THRESHOLD / 2
    marked = mark_scores(decode_image(mark_synthetic(np.full((64, 64), 0.4), "g")).pixels)
    assert marked.pattern > 2 * PATTERN_THRESHOLD and marked.box > 0.95


def _changed(marked: bytes) -> dict[str, Image.Image]:
    """What people do to images (issue 32, item 3): crops up to 20 % of a side, turns up to 3 degrees, a painted
    corner; each then saved as JPEG at quality 70."""
    image = Image.open(io.BytesIO(marked)).convert("L")
    width, height = image.size
    dx, dy = width // 5, height // 5
    painted = image.copy()
    ImageDraw.Draw(painted).rectangle((0, 0, width // 2, height // 6), fill=0)
    return {"top 20 %": image.crop((0, dy, width, height)), "left 20 %": image.crop((dx, 0, width, height)),
            "right 20 %": image.crop((0, 0, width - dx, height)), "bottom 20 %": image.crop((0, 0, width, height - dy)),
            "top and left 20 %": image.crop((dx, dy, width, height)),
            "top 20 %, squashed to 224": image.crop((0, dy, width, height)).resize((224, 224)),
            "turned 3": image.rotate(3, resample=Image.Resampling.BILINEAR, fillcolor=0),
            "turned -3": image.rotate(-3, resample=Image.Resampling.BILINEAR, fillcolor=0),
            "corner painted": painted, "mirrored": ImageOps.mirror(image), "inverted": ImageOps.invert(image)}


@pytest.mark.parametrize("source", ["generator", "sharp"])
def test_the_mark_survives_crops_turns_jpeg_70_dicom_and_a_painted_corner(xray_model, source):
    film = (np.random.default_rng(5).random((64, 64)) * 0.6 + 0.2 if source == "generator"
            else chest_like(xray_model.artifact.quality_reference, 224, 224, seed=6))  # a sharp film is harder
    for name, image in _changed(mark_synthetic(film, "g")).items():
        jpeg = io.BytesIO()
        image.save(jpeg, format="JPEG", quality=70)
        for kind, data in {"JPEG 70": jpeg.getvalue(), "DICOM": make_dicom(np.asarray(image), bits=8)}.items():
            pixels = decode_image(data).pixels
            assert pattern_score(pixels) > PATTERN_THRESHOLD * 1.3, (name, kind)  # the pattern alone decides
            with pytest.raises(SyntheticFilm, match="SYNTHETIC mark"):
                read_radiograph(data, f"{name}.{kind}")


def test_a_film_marked_before_release_2_is_still_recognised_by_its_box():
    """Films written before the cross-hatch carry only the box, in the top-left corner."""
    from medcore.imaging.synthetic import _box, _mark_patch

    image = Image.fromarray(np.full((512, 512), 90, np.uint8))
    rows, cols = _box(512)
    image.paste(_mark_patch().resize((cols, rows), Image.Resampling.LANCZOS), (0, 0))
    jpeg = io.BytesIO()
    image.resize((300, 300)).save(jpeg, format="JPEG", quality=75)
    pixels = decode_image(jpeg.getvalue()).pixels
    assert pattern_score(pixels) < PATTERN_THRESHOLD and box_score(pixels) > 0.9 and is_marked(pixels)


def test_the_marks_are_visible_on_the_pixels():
    film = np.full((512, 512), 0.3)
    pixels = _pixels(mark_synthetic(film, "g")).astype(float) / 255
    corner, elsewhere = pixels[:40, :180], pixels[100:, 100:]
    assert (corner > 0.9).mean() > 0.5 and (corner < 0.1).any()  # white box with dark letters
    assert abs(elsewhere.mean() - 0.3) < 0.005  # the film's level is kept ...
    assert 0.5 * PATTERN_AMPLITUDE < np.abs(elsewhere - 0.3).max() <= PATTERN_AMPLITUDE + 0.01  # ... under a hatch


@pytest.mark.shared_data
def test_no_real_film_of_the_external_sample_is_taken_for_a_synthetic_one(xray_train_dir):
    """False alarms on real films of new patients (the benchmark measures every real film of the shared data)."""
    listing = folders.list_image_folder(xray_train_dir.parent / "external_sample")
    scores = [mark_scores(decode_image(path.read_bytes()).pixels) for path in listing.files]
    assert len(scores) == 312 and not any(s.marked for s in scores)
    assert max(s.pattern for s in scores) < PATTERN_THRESHOLD * 0.8


def test_the_xray_service_refuses_it_and_audits_no_study(store, xray_model):
    film = chest_like(xray_model.artifact.quality_reference, 512, 512, seed=4)
    resaved = encode(_pixels(mark_synthetic(film, "gan-test-2")) / 255.0, "PNG")  # no tag left
    uploads = [("synthetic.png", resaved), ("real.png", encode(film, "PNG"))]
    synthetic, real = analyse_uploads(xray_model, uploads, {}, "dr.test")
    assert synthetic.synthetic and "synthetic film" in synthetic.error and synthetic.probability is None
    assert real.error is None and real.probability is not None
    rows = audit.recent(10)
    assert [r["action"] for r in rows].count("predict_xray") == 1  # only the real film is a study
    assert any(r["action"] == "refused_synthetic_film" for r in rows)


def test_medcore_predict_refuses_a_dicom_wrapped_synthetic_film(store, tmp_path, capsys):
    from medcore.cli import main

    marked = mark_synthetic(np.full((64, 64), 0.5), "gan-test-3")
    path = tmp_path / "study.dcm"
    path.write_bytes(_reencoded(marked)["dicom16"])
    assert main(["predict", "xray", str(path), "--json"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert "SYNTHETIC mark" in line["error"] and "probability" not in line
    assert not [r for r in audit.recent(10) if r["action"] == "predict_xray"]
