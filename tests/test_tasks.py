"""The task declaration (medcore/tasks.py): one place that says how each task is loaded, trained, checked,
evaluated and compared, and one vocabulary of task names."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from medcore import auth, production, registry, tasks
from medcore.training.options import NotesTrainingOptions, XrayTrainingOptions, add_cli_flags, form_specs, from_cli
from tests.synthetic import keyword_notes, write_notes_csv

SERVING_PARTS = ("load", "validate", "evaluate")  # called by serving code: must not live in medcore.training
TRAINING_PARTS = ("train", "options", "compare")


@pytest.mark.parametrize("family", [tasks.XRAY, tasks.NOTES, tasks.GAN], ids=lambda f: f.name)
def test_every_part_of_a_family_resolves_and_serving_parts_do_not_live_in_training(family):
    for part in SERVING_PARTS + TRAINING_PARTS:
        ref = getattr(family, part)
        assert callable(ref.resolve()), f"{family.name}.{part}: {ref}"
    assert not any(getattr(family, part).module.startswith("medcore.training") for part in SERVING_PARTS)


def test_one_vocabulary_keys_and_aliases_name_the_same_task():
    assert tasks.KEYS == ("xray", "notes_medical_abstracts", "notes_symptom2disease")
    assert tasks.get("medical_abstracts") is tasks.get("notes_medical_abstracts")
    assert tasks.get("symptom2disease").name == "symptom2disease"
    assert all(task.shipped_dir.name == task.key and (task.shipped_dir / "meta.json").is_file() for task in tasks.TASKS)
    with pytest.raises(tasks.UnknownTask, match="choose one of xray"):
        tasks.get("notes_nonexistent")


def test_a_model_folder_of_another_task_is_refused():
    from medcore.artifacts import ModelLoadError

    abstracts = tasks.get("notes_medical_abstracts")
    with pytest.raises(ModelLoadError, match="not one for 'notes_medical_abstracts'"):
        abstracts.load(tasks.get("notes_symptom2disease").shipped_dir)


@pytest.mark.parametrize("options_class", [XrayTrainingOptions, NotesTrainingOptions], ids=lambda c: c.__name__)
def test_training_options_make_the_cli_flags_and_the_admin_form(options_class):
    parser = argparse.ArgumentParser()
    add_cli_flags(parser, options_class)
    assert from_cli(options_class, parser.parse_args([])) == options_class()  # same defaults
    changed = parser.parse_args(["--epochs", "3", "--no-class-weights", "--seed", "7"])
    assert from_cli(options_class, changed) == options_class(epochs=3, class_weighting=False, seed=7)
    form = {name for name, _, _ in form_specs(options_class)}
    assert {"epochs", "seed", "class_weighting"} <= form <= {f.name for f in fields(options_class)}


def test_the_old_cli_flags_still_work():
    from medcore.cli import build_parser

    args = build_parser().parse_args(["train", "xray", "--data", "d", "--out", "o", "--image-size", "64",
                                      "--no-augmentation", "--width", "8"])
    assert from_cli(XrayTrainingOptions, args) == XrayTrainingOptions(image_size=64, augmentation=False, width=8)
    args = build_parser().parse_args(["evaluate", "notes", "--task", "medical_abstracts", "--data", "x.csv"])
    assert tasks.get(args.task_name).key == "notes_medical_abstracts"


def test_a_new_notes_task_is_one_entry(tmp_path, monkeypatch):
    """Declare a task, and training, registration, promotion, serving and evaluation work with no other change."""
    new = tasks.Task("notes_demo", "demo", "Case notes: demo", tasks.NOTES, "case_notes/demo.csv", aliases=("demo",))
    monkeypatch.setattr(tasks, "TASKS", (*tasks.TASKS, new))
    monkeypatch.setattr(tasks, "KEYS", (*tasks.KEYS, new.key))
    monkeypatch.setattr(tasks, "_BY_NAME", {**tasks._BY_NAME, "notes_demo": new, "demo": new})
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(tmp_path / "store"))
    data = tmp_path / "demo.csv"
    write_notes_csv(data, keyword_notes(120, seed=3))
    assert "notes in" in new.validate(data)
    tasks.get("demo").train(data, tmp_path / "model", new.options({"epochs": 4, "hidden": 16, "max_features": 500}))
    version = registry.register("demo", tmp_path / "model", "tester").version
    registry.promote("notes_demo", version, auth.operator("tester"))
    served = production.load("demo")
    assert served.version == version and served.model.task == "demo"
    assert new.evaluate(served.model, data)["n"] == 120
