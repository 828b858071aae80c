"""The X-ray recipe across two worker processes on localhost (MultiWorkerMirroredStrategy, TF_CONFIG), against one
process on the same split and seed (issue 22). The measurement on the real training films is
benchmarks/multiworker.py; this checks that the distributed path trains the same recipe end to end."""

from __future__ import annotations

import json

import pytest

from medcore.training.multiworker import train_on_workers
from medcore.training.options import XrayTrainingOptions
from medcore.training.train_xray import train_xray
from tests.synthetic import write_opacity_folder

OPTIONS = XrayTrainingOptions(image_size=64, width=8, members=1, epochs=6, batch_size=16, learning_rate=3e-3,
                              shift_calibration=False)


@pytest.fixture(scope="module")
def films(tmp_path_factory, xray_model):
    return write_opacity_folder(tmp_path_factory.mktemp("films"), xray_model.artifact.quality_reference, 40, seed=3)


def test_two_workers_train_the_recipe_to_the_same_validation_auc(films, tmp_path):
    events = []
    single = train_xray(films, tmp_path / "single", OPTIONS)
    across = train_on_workers(films, tmp_path / "across", OPTIONS, workers=2, progress=events.append)
    assert "2 workers (MultiWorkerMirroredStrategy)" in across["training"]["device"]
    assert across["data"]["fingerprint"] == single["data"]["fingerprint"]
    assert across["data"]["n_val"] == single["data"]["n_val"]  # the same split
    assert abs(across["metrics"]["validation"]["auc"] - single["metrics"]["validation"]["auc"]) <= 0.005
    assert [e["epoch"] for e in events if e["stage"] == "epoch"] == list(range(1, OPTIONS.epochs + 1))  # chief only
    assert json.loads((tmp_path / "across" / "meta.json").read_text())["version"] == across["version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["across", "single"]  # the other worker wrote elsewhere
