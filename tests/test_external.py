"""Recording new-patient figures and benchmark tables in an unregistered model folder's metadata and card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.synthetic import write_labelled_folder

SHIPPED = Path(__file__).parents[1] / "assets" / "models" / "xray"


def test_new_patient_figures_go_into_the_folder_and_its_card_but_never_a_registered_version(
        tmp_path, store, xray_model):
    from medcore import production
    from medcore.training import lockbox
    from medcore.training.external import add_to_card, record_external

    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    write_labelled_folder(tmp_path / "new_patients", xray_model.artifact.quality_reference, 6)
    figures = record_external(folder, tmp_path / "new_patients", "medcore evaluate xray --record-external")
    meta = json.loads((folder / "meta.json").read_text())
    reporting = lockbox.split(tmp_path / "new_patients")["reporting"]  # the release's part, split by patient
    assert 0 < len(reporting.files) < 12 and figures["figures"]["n"] == len(reporting.files)
    assert meta["external"] == figures and figures["source"].startswith("new_patients, reporting part")
    card = (folder / "model_card.md").read_text()
    assert "## New patients" in card and "`medcore evaluate xray --record-external`" in card

    add_to_card(folder, "synthetic_usefulness", None)  # an empty table leaves the card without that section
    assert "## New patients" in (folder / "model_card.md").read_text()
    registered = production.load("xray").model.artifact.path
    with pytest.raises(ValueError, match="registered versions never change"):
        add_to_card(registered, "ideas", None)
