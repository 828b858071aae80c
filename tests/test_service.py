"""One study in, one result out; a batch survives bad files; the audit log holds no identity."""

import json
import shutil

import numpy as np
import pytest

from medcore import audit, config
from medcore.imaging.model import ModelLoadError, load_artifact
from medcore.imaging.service import (
    DISPLAY_MAX_SIDE,
    analyse_file,
    analyse_uploads,
    evaluate_folder,
)
from tests.synthetic import chest_like, encode, make_dicom, noise, write_labelled_folder


@pytest.fixture(scope="module")
def chest_png(xray_model):
    return encode(chest_like(xray_model.artifact.quality_reference, seed=3), "PNG")


def test_a_radiograph_gets_a_calibrated_probability_and_heatmap(xray_model, chest_png):
    result = analyse_file(xray_model, chest_png, "film.png")
    assert result.error is None and 0.0 <= result.probability <= 1.0
    assert result.decision == ("PNEUMONIA" if result.probability >= xray_model.artifact.threshold else "NORMAL")
    assert result.heatmap.min() >= 0 and result.heatmap.max() <= 1 and result.heatmap.ndim == 2
    assert result.display.shape == (600, 500)
    assert set(result.as_dict()) == {"probability", "decision", "threshold", "model_version", "atypicality",
                                     "population"}  # a PNG carries no age: the validated population is stated
    assert "children aged 1 to 5" in result.as_dict()["population"]


def test_prediction_is_a_pure_function_of_the_bytes(xray_model, chest_png):
    first = analyse_file(xray_model, chest_png, "a.png").probability
    assert analyse_file(xray_model, chest_png, "b.png").probability == pytest.approx(first, abs=1e-6)


def test_full_size_dicom_is_read_and_shown_downsampled(xray_model):
    image = chest_like(xray_model.artifact.quality_reference, 2500, 2048, seed=4)
    result = analyse_file(xray_model, make_dicom((image * 4095).astype(np.uint16), bits=12), "big.dcm")
    assert result.error is None, result.error
    assert max(result.display.shape) == DISPLAY_MAX_SIDE
    assert result.technical["Modality"] == "DX"


def test_batch_keeps_going_past_bad_files_and_audits_without_identity(xray_model, chest_png):
    uploads = [("Smith_John_chest.png", chest_png), ("broken.png", chest_png[:300]),
               ("noise.png", encode(noise(), "PNG")), ("notes.txt", b"hello")]
    before = len(audit.recent())
    cache: dict = {}
    results = analyse_uploads(xray_model, uploads, cache, user="dr_test")
    assert [r.error is None for r in results] == [True, False, False, False]
    assert "corrupt" in results[1].error and "Refused" in results[2].error and "Not a PNG" in results[3].error
    rows = audit.recent()[: len(audit.recent()) - before]
    assert sorted(r["outcome"] for r in rows) == sorted([results[0].decision, "unreadable", "refused", "unreadable"])
    assert all(r["user"] == "dr_test" and r["model_version"] == xray_model.artifact.version for r in rows)
    assert {json.loads(r["detail"])["study"] for r in rows} == {audit.content_digest(d) for _, d in uploads}
    assert [json.loads(r["detail"])["explanation"] for r in rows if r["outcome"] == results[0].decision] == ["grad-cam"]
    database = b"".join(f.read_bytes() for f in config.store_dir().glob("medcore.sqlite*"))  # with the WAL
    assert audit.content_digest(chest_png).encode() in database  # what is written can be found here
    assert b"Smith" not in database and b"broken.png" not in database
    analyse_uploads(xray_model, uploads, cache, user="dr_test")  # a rerun of the page
    assert len(audit.recent()) == before + len(uploads)


def test_corrupt_or_mismatched_model_is_detected(xray_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(xray_model.artifact.path, copy)
    (copy / "model.keras").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_artifact(copy)
    shutil.copy(xray_model.artifact.path / "model.keras", copy / "model.keras")
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "preprocess_version": "old-v0"}))
    with pytest.raises(ModelLoadError, match="preprocess_version"):
        load_artifact(copy)
    with pytest.raises(ModelLoadError, match="missing"):
        load_artifact(tmp_path / "nowhere")


def test_evaluate_folder_reports_the_release_metrics(xray_model, tmp_path):
    write_labelled_folder(tmp_path, xray_model.artifact.quality_reference, 4, seed=5)
    (tmp_path / "NORMAL" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = evaluate_folder(xray_model, tmp_path)
    for key in ("n", "auc", "accuracy", "sensitivity", "specificity", "f1", "ece", "threshold"):
        assert key in result
    assert result["n"] == 8 and result["n_unreadable"] == 1 and result["n_positive"] == 4
    assert result["tp"] + result["fn"] == 4 and result["threshold"] == xray_model.artifact.threshold
