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
    """Served through the upload path, every validation film gets the probability recorded at training (to the
    float noise of two input pipelines) and the same decision, except a film whose recorded score is the threshold
    itself (the threshold rule puts it on a validation film's score): that one may fall either side."""
    import numpy as np

    from medcore.imaging.service import score_files

    root, folder = validation_folder
    options = xray_model.artifact.meta["options"]
    _, val_idx = folders.split_by_patient(folder, options["val_fraction"], options["seed"])
    recorded, threshold = xray_model.validation_predictions(), xray_model.threshold
    served = score_files(xray_model, [folder.files[i] for i in val_idx])
    assert served.readable.all() and len(served.probabilities) == len(recorded["prob"])
    assert np.abs(served.probabilities - recorded["prob"]).max() < 5e-4
    borderline = np.abs(recorded["prob"] - threshold) < 1e-4
    assert borderline.sum() <= 1
    assert ((served.probabilities >= threshold) == (recorded["prob"] >= threshold))[~borderline].all()
    figures = xray_model.artifact.meta["metrics"]["validation"]
    result = evaluate_folder(xray_model, root)
    assert result["n"] == figures["n"] and result["n_unreadable"] == 0
    flipped = sum(abs(result[k] - figures[k]) for k in ("tp", "fn", "tn", "fp")) // 2
    assert flipped <= int(borderline.sum())
    assert round(result["auc"], 3) == round(figures["auc"], 3)
    assert result["n_atypical"] / result["n"] <= 0.01  # the gate refuses almost no real film
