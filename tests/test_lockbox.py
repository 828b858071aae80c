"""The external sample's lockbox (issue 24): split once by patient with a fixed seed; ideas are compared on the
choosing part; the reporting part gives a release's figures, once per model unless forced (and forced uses show).
Issue 31: the store keeps each scored film (a digest of its pixels, append-only), so a film scored in a reporting part
cannot be scored in one again unforced, whatever folder it is in, for whichever model."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from sqlalchemy import select

from medcore import store as database
from medcore import tasks
from medcore.store import schema
from medcore.training import lockbox
from medcore.training.external import record_external
from tests.synthetic import chest_like, encode, write_opacity_folder


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


def test_the_reporting_part_is_scored_once_per_model_unless_forced(sample, tmp_path, store):
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


def test_another_samples_reporting_part_has_its_own_record(sample, tmp_path, store):
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


def _model(tmp_path, name: str = "model"):
    """An unregistered copy of the shipped model (a real one, not trained here)."""
    folder = tmp_path / name
    shutil.copytree(tasks.get("xray").shipped_dir, folder)
    return folder


def _medcore(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The command line itself (medcore.cli.main), in this process: exit code, stdout, stderr."""
    from medcore.cli import main

    monkeypatch.setattr(sys, "argv", ["medcore", *args])  # what the lockbox records as the command
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _record(monkeypatch, capsys, model, data, *extra: str) -> tuple[int, str, str]:
    return _medcore(monkeypatch, capsys, "evaluate", "xray", "--model", str(model), "--data", str(data),
                    "--record-external", "--json", *extra)


def _logged() -> list[dict]:
    with database.read() as connection:
        return [dict(row) for row in connection.execute(
            select(schema.lockbox_films).order_by(schema.lockbox_films.c.id)).mappings()]


@pytest.mark.both_engines
def test_the_command_line_refuses_a_second_unforced_scoring_and_records_a_forced_one(
        sample, tmp_path, store, monkeypatch, capsys):
    model = _model(tmp_path)
    reporting = {d for d in lockbox.film_digests(lockbox.split(sample)["reporting"].files) if d}
    code, out, err = _record(monkeypatch, capsys, model, sample)
    assert code == 0, err
    assert json.loads(out)["n"] == len(lockbox.split(sample)["reporting"].files)
    first = _logged()
    assert {r["film"] for r in first} == reporting and {r["part"] for r in first} == {"reporting"}
    assert not any(r["forced"] for r in first) and all(r["actor"].startswith("cli:") for r in first)

    meta = json.loads((model / "meta.json").read_text())
    assert [u["forced"] for u in meta["lockbox"]["uses"]] == [False]  # the card's copy
    del meta["lockbox"]  # meta.json is an editable file: dropping its record must not reopen the lockbox
    (model / "meta.json").write_text(json.dumps(meta))
    code, out, err = _record(monkeypatch, capsys, model, sample)  # the same again, unforced: refused
    assert code == 2 and out == "" and "already scored in a reporting part" in err and "--force" in err
    assert len(_logged()) == len(first) and "lockbox" not in json.loads((model / "meta.json").read_text())

    code, out, err = _record(monkeypatch, capsys, model, sample, "--force")
    assert code == 0, err
    forced = _logged()[len(first):]
    assert {r["film"] for r in forced} == reporting and all(r["forced"] for r in forced)
    assert all("--force" in r["command"] for r in forced)
    assert [u["forced"] for u in json.loads((model / "meta.json").read_text())["lockbox"]["uses"]] == [True]


def test_a_new_patient_or_new_names_do_not_reopen_the_lockbox_for_any_model(sample, tmp_path, store, monkeypatch,
                                                                          capsys, xray_model):
    """Adding one made-up patient changes the split and the part's fingerprint; the films scored before are still
    refused, for another model too, and so are the same films renamed into another folder."""
    assert _record(monkeypatch, capsys, _model(tmp_path, "release-1"), sample)[0] == 0
    grown = tmp_path / "grown"
    shutil.copytree(sample, grown)
    (grown / "NORMAL" / "person777_normal_1.png").write_bytes(
        encode(chest_like(xray_model.artifact.quality_reference, 256, 256, seed=777), "PNG"))
    before, after = lockbox.split(sample)["reporting"], lockbox.split(grown)["reporting"]
    assert lockbox.fingerprint(before) != lockbox.fingerprint(after)  # the old record by fingerprint saw a new part
    assert {p.name for p in before.files} & {p.name for p in after.files}  # but films scored before are in it

    code, out, err = _record(monkeypatch, capsys, _model(tmp_path, "release-2"), grown)
    assert code == 2 and "already scored in a reporting part" in err, err

    renamed = tmp_path / "renamed"  # every film under a new patient name, in another folder
    for path in sample.rglob("*.png"):
        target = renamed / path.parent.name / path.name.replace("person", "child")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    code, out, err = _record(monkeypatch, capsys, _model(tmp_path, "release-3"), renamed)
    assert code == 2 and "already scored in a reporting part" in err, err


def test_plain_evaluate_says_how_many_films_were_scored_in_a_reporting_part(sample, tmp_path, store, monkeypatch,
                                                                          capsys):
    code, out, err = _medcore(monkeypatch, capsys, "evaluate", "xray", "--data", str(sample), "--json")
    assert code == 0 and json.loads(out)["lockbox_films"] == 0 and "reporting part" not in err
    assert _record(monkeypatch, capsys, _model(tmp_path), sample)[0] == 0
    reporting = {d for d in lockbox.film_digests(lockbox.split(sample)["reporting"].files) if d}
    code, out, err = _medcore(monkeypatch, capsys, "evaluate", "xray", "--data", str(sample), "--json")
    result = json.loads(out)
    assert code == 0 and result["lockbox_films"] == len(reporting) and result["n"] == 48  # a warning, not a refusal
    assert f"{len(reporting)} of these films were scored before in a lockbox's reporting part" in err


@pytest.mark.both_engines
def test_the_film_log_is_append_only_in_the_database_itself(store):
    from tests.test_store import assert_append_only

    lockbox.record_scoring(["a" * 64], "xray-test", "reporting", "tests", False, "tests")
    assert_append_only("lockbox_films", "forced = NOT forced")
    assert [(r["film"], r["forced"]) for r in _logged()] == [("a" * 64, False)]
