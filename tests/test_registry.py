"""Registry: shipped models installed once, atomic promote/rollback, corrupt versions detected and skipped."""

import json
import shutil
import subprocess
import sys

import pytest

from medcore import audit, auth, production, registry, tasks
from medcore.artifacts import ModelLoadError

ADMIN = auth.operator("admin")  # an administrator at the server (the CLI's identity)


def retrained_copy(task: str, tmp_path, version: str) -> registry.ModelVersion:
    """A second version of a task: the shipped files under a new version name, registered as a retrain."""
    folder = tmp_path / version
    shutil.copytree(tasks.get(task).shipped_dir, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = version
    (folder / "meta.json").write_text(json.dumps(meta))
    return registry.register(task, folder, "tester")


def _version(folder) -> str:
    return json.loads((folder / "meta.json").read_text())["version"]


def test_shipped_models_are_installed_once_as_production(store):
    registry.ensure_defaults()  # a second call changes nothing
    for task in tasks.KEYS:
        versions = registry.list_versions(task)
        entry = tasks.get(task)
        earlier = [(_version(f), "previous production", "shipped") for f in entry.earlier_shipped_dirs]
        assert [(v.version, v.status, v.origin) for v in versions] == [
            (_version(entry.shipped_dir), "production", "shipped")] + earlier[::-1]
        for version in versions:
            assert version.path.is_relative_to(store)  # a copy: the repo's assets are never served from the store
            registry.verify(version)


def test_release_2_keeps_release_1_for_rollback(store):
    """A new installation replays the releases: the ensemble, then the single network; one rollback returns to
    the ensemble (issue 32)."""
    entry = tasks.get("xray")
    assert [_version(f) for f in entry.earlier_shipped_dirs] == ["xray-20261126-203636-176f"]
    assert registry.production("xray").version == _version(entry.shipped_dir) != "xray-20261126-203636-176f"
    assert [(h["action"], h["by"]) for h in registry.history("xray")] == [("install shipped model", "system")] * 2
    assert registry.rollback("xray", ADMIN) == "xray-20261126-203636-176f"
    assert production.load("xray").version == "xray-20261126-203636-176f"
    registry.ensure_defaults()  # a restart does not undo an admin's rollback
    assert registry.production("xray").version == "xray-20261126-203636-176f"


def test_an_upgraded_installation_follows_the_release_unless_an_admin_chose(tmp_path, monkeypatch):
    """An installation of release 1 (production: the ensemble, put there by the system) moves to release 2 at its
    next start; one whose admin promoted a retrained model keeps it, with release 2 beside it as a candidate."""
    entry = tasks.get("xray")
    release_1, release_2 = entry.earlier_shipped_dirs[0], entry.shipped_dir
    for case in ("kept the shipped model", "promoted its own"):
        monkeypatch.setenv("MEDCORE_STORE_DIR", str(tmp_path / case))
        monkeypatch.setenv("MEDCORE_XRAY_MODEL", str(release_1))  # release 1's layout: one shipped folder
        registry.ensure_defaults()
        assert registry.production("xray").version == _version(release_1)
        if case == "promoted its own":
            monkeypatch.delenv("MEDCORE_XRAY_MODEL")
            own = retrained_copy("xray", tmp_path / case, "xray-hospital-1")
            registry.promote("xray", own.version, ADMIN)
        monkeypatch.delenv("MEDCORE_XRAY_MODEL", raising=False)
        registry.ensure_defaults()  # release 2 starts
        expected = _version(release_2) if case == "kept the shipped model" else "xray-hospital-1"
        assert registry.production("xray").version == expected, case
        assert registry.get("xray", _version(release_2)).status in ("production", "candidate")


def test_promote_and_rollback_move_the_production_pointer(store, tmp_path):
    shipped = registry.production("xray").version
    candidate = retrained_copy("xray", tmp_path, "xray-candidate-1")
    assert candidate.status == "candidate" and registry.production("xray").version == shipped
    assert registry.promote("xray", candidate.version, ADMIN) == shipped
    assert registry.production("xray").version == candidate.version
    assert production.load("xray").version == candidate.version
    assert registry.rollback("xray", ADMIN) == shipped
    assert registry.production("xray").version == shipped
    assert registry.get("xray", candidate.version).status == "previous production"
    assert registry.rollback("xray", ADMIN, to=candidate.version) == candidate.version  # any earlier version
    actions = [(h["action"], h["version"]) for h in registry.history("xray")]
    assert actions[:3] == [("rollback", candidate.version), ("rollback", shipped), ("promote", candidate.version)]


def test_discarded_candidates_cannot_reach_production(store, tmp_path):
    candidate = retrained_copy("notes_symptom2disease", tmp_path, "notes-symptom2disease-c1")
    registry.discard("notes_symptom2disease", candidate.version, ADMIN)
    assert registry.get("notes_symptom2disease", candidate.version).status == "discarded"
    with pytest.raises(registry.RegistryError, match="discarded"):
        registry.promote("notes_symptom2disease", candidate.version, ADMIN)
    with pytest.raises(registry.RegistryError, match="in production"):
        registry.discard("notes_symptom2disease", registry.production("notes_symptom2disease").version, ADMIN)


def test_a_version_is_registered_once_and_for_its_own_task(store, tmp_path):
    retrained_copy("xray", tmp_path, "xray-twice")
    folder = tmp_path / "again"
    shutil.copytree(registry.get("xray", "xray-twice").path, folder)
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register("xray", folder, "tester")
    with pytest.raises(registry.RegistryError, match="not 'medical_abstracts'"):
        registry.register("notes_medical_abstracts", folder, "tester")


def test_a_corrupt_production_model_is_detected_and_the_previous_good_version_serves(store, tmp_path):
    shipped = registry.production("xray").version
    candidate = retrained_copy("xray", tmp_path, "xray-to-corrupt")
    registry.promote("xray", candidate.version, ADMIN)
    weights = candidate.path / "model.keras"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated write, a bad disk
    with pytest.raises(ModelLoadError, match="corrupt"):
        registry.verify(registry.get("xray", candidate.version))
    served = production.load("xray")
    assert served.version == shipped and served.model.artifact.version == shipped
    assert "corrupt" in served.warnings[0] and f"previous good version {shipped}" in served.warnings[-1]
    assert audit.recent(1)[0]["action"] == "model_fallback:xray"
    with pytest.raises(ModelLoadError):  # and it cannot be promoted again while broken
        registry.promote("xray", candidate.version, ADMIN)


def test_with_every_registered_version_broken_the_shipped_model_still_serves(store):
    entry = registry.production("notes_medical_abstracts")
    (entry.path / "featurizer.npz").unlink()
    served = production.load("notes_medical_abstracts")
    assert served.version == entry.version  # the shipped files in assets/, outside the store
    assert "missing" in served.warnings[0] and "shipped model" in served.warnings[-1]


def test_an_unreadable_registry_falls_back_to_the_shipped_model(store):
    from medcore import store as database

    database.forget_engines()  # as a server that starts on a broken store
    (store / database.SQLITE_FILE).write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (store / f"{database.SQLITE_FILE}{suffix}").unlink(missing_ok=True)
    served = production.load("notes_symptom2disease")
    assert served.model.task == "symptom2disease" and "cannot be read" in served.warnings[0]


def test_an_environment_pin_bypasses_the_registry(store, monkeypatch):
    monkeypatch.setenv("MEDCORE_NOTES_SYMPTOM2DISEASE_MODEL", str(tasks.get("notes_symptom2disease").shipped_dir))
    assert production.current_version("notes_symptom2disease").startswith("path:")


def test_models_cli_lists_promotes_and_rolls_back(store, tmp_path):
    candidate = retrained_copy("xray", tmp_path, "xray-cli-candidate")
    env = {"MEDCORE_STORE_DIR": str(store)}

    def medcore(*args):
        import os

        return subprocess.run([sys.executable, "-m", "medcore.cli", *args], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120)

    listed = json.loads(medcore("models", "list", "--task", "xray", "--json").stdout)["versions"]
    assert [(v["version"], v["status"]) for v in listed][0] == (candidate.version, "candidate")
    assert listed[1]["validation"]["auc"] > 0.99 and listed[1]["data_fingerprint"]
    promoted = medcore("models", "promote", "xray", candidate.version)
    assert promoted.returncode == 0 and json.loads(promoted.stdout)["production"] == candidate.version
    rolled = medcore("models", "rollback", "xray")
    assert json.loads(rolled.stdout)["production"] == listed[1]["version"]
    missing = medcore("models", "promote", "xray", "no-such-version")
    assert missing.returncode == 2 and "no version" in missing.stderr and "Traceback" not in missing.stderr


def test_a_broken_shipped_model_does_not_stop_the_start(tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{}")
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MEDCORE_XRAY_MODEL", str(broken))
    registry.ensure_defaults()  # no exception: the other tasks are installed, the X-ray one is reported
    assert registry.production("xray") is None and registry.production("notes_symptom2disease") is not None
    with pytest.raises(ModelLoadError):
        production.load("xray")
