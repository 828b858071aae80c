"""The external sample's lockbox (issue 24): split once by patient with a fixed seed; ideas are compared on the
choosing part; the reporting part gives a release's figures, once per model unless forced (and forced uses show)."""

from __future__ import annotations

import json
import shutil

import pytest

from medcore import tasks
from medcore.training import lockbox
from medcore.training.external import record_external
from tests.synthetic import write_opacity_folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory, xray_model):
    root = tmp_path_factory.mktemp("external")
    write_opacity_folder(root, xray_model.artifact.quality_reference, 20, seed=9)
    for path in list((root / "PNEUMONIA").iterdir()):  # each child has one class, as in the real sample
        path.rename(path.with_name(path.name.replace("person", "person10")))
    for label in ("NORMAL", "PNEUMONIA"):  # a few patients with two films: they must stay on one side
        for path in sorted((root / label).iterdir())[:4]:
            shutil.copy(path, path.with_name(path.name.replace("_1.png", "_2.png")))
    return root


def test_the_split_is_by_patient_fixed_and_even(sample):
    parts = lockbox.split(sample)
    again = lockbox.split(sample)
    assert [p.name for p in parts["reporting"].files] == [p.name for p in again["reporting"].files]
    assert not set(parts["choosing"].groups) & set(parts["reporting"].groups)  # no patient on both sides
    for part in parts.values():
        assert set(part.labels.tolist()) == {0, 1} and 0.35 < len(part.files) / 48 < 0.65
    linked = lockbox.materialise(sample, "choosing")
    assert len(list(linked.rglob("*.png"))) == len(parts["choosing"].files)


def test_the_reporting_part_is_scored_once_per_model_unless_forced(sample, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tasks.get("xray").shipped_dir, model)
    choosing = record_external(model, sample, "test", part="choosing")
    record_external(model, sample, "test", part="choosing")  # comparing ideas: as often as wanted
    reporting = record_external(model, sample, "test", part="reporting")
    assert choosing["part"] == "choosing" and reporting["part"] == "reporting"
    assert choosing["fingerprint"] != reporting["fingerprint"]
    with pytest.raises(lockbox.LockboxUsed, match="already scored"):
        record_external(model, sample, "test", part="reporting")
    record_external(model, sample, "again, on purpose", part="reporting", force=True)
    meta = json.loads((model / "meta.json").read_text())
    assert [u["forced"] for u in meta["lockbox"]["uses"]] == [False, True]
    card = (model / "model_card.md").read_text()
    assert "(forced)" in card and "reporting part (the release's figures)" in card and "choosing part" in card


def test_another_samples_reporting_part_has_its_own_record(sample, tmp_path):
    """The shipped model's record for the real external sample does not block a hospital's own lockbox, and the
    earlier record is kept, not overwritten."""
    model = tmp_path / "model"
    shutil.copytree(tasks.get("xray").shipped_dir, model)
    before = json.loads((model / "meta.json").read_text()).get("lockbox")
    record_external(model, sample, "test", part="reporting")
    box = json.loads((model / "meta.json").read_text())["lockbox"]
    assert box["fingerprint"] == lockbox.fingerprint(lockbox.split(sample)["reporting"]) and len(box["uses"]) == 1
    if before:
        assert box["earlier"][-1] == {"fingerprint": before["fingerprint"], "uses": before["uses"]}
        assert f"another sample (fingerprint `{before['fingerprint'][:16]}…`) was scored" in \
            (model / "model_card.md").read_text()  # the earlier record stays in sight
    with pytest.raises(lockbox.LockboxUsed):
        record_external(model, sample, "test", part="reporting")
