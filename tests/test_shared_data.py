"""With ../shared/data present: the shipped model reproduces its recorded validation figures, and the
quality gate lets real radiographs through. Skipped cleanly where the data are absent."""

import pytest

from medcore.imaging import folders
from medcore.imaging.service import evaluate_folder

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def validation_folder(xray_model, xray_train_dir, tmp_path_factory):
    """The shipped model's own validation split, rebuilt from its recorded seed, as symlinks."""
    options = xray_model.artifact.meta["options"]
    folder = folders.list_image_folder(xray_train_dir)
    _, val_idx = folders.split_by_patient(folder, options["val_fraction"], options["seed"])
    root = tmp_path_factory.mktemp("val")
    for i in val_idx:
        target = root / folder.files[i].parent.name
        target.mkdir(exist_ok=True)
        (target / folder.files[i].name).symlink_to(folder.files[i])
    return root, folder


def test_data_is_the_data_the_model_was_trained_on(xray_model, validation_folder):
    _, folder = validation_folder
    assert folders.fingerprint(folder.files, folder.labels) == xray_model.artifact.meta["data"]["fingerprint"]


def test_shipped_model_reproduces_its_validation_metrics(xray_model, validation_folder):
    root, _ = validation_folder
    recorded = xray_model.artifact.meta["metrics"]["validation"]
    result = evaluate_folder(xray_model, root)
    assert result["n"] == recorded["n"] and result["n_unreadable"] == 0
    # Exactly, to the rounding the figures are shown with: one film decided differently changes tp/fn or tn/fp.
    assert [result[k] for k in ("tp", "fn", "tn", "fp")] == [recorded[k] for k in ("tp", "fn", "tn", "fp")]
    for key in ("auc", "ece", "sensitivity", "specificity", "accuracy"):
        assert round(result[key], 3) == round(recorded[key], 3), key
    assert result["n_atypical"] / result["n"] <= 0.01  # the gate refuses almost no real film
