"""The command line is a public contract: the release check runs `medcore evaluate` on hidden data."""

import json
import subprocess
import sys

import pytest

from tests.synthetic import chest_like, encode, lesion_dataset, write_labelled_folder


def medcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medcore.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory, xray_model):
    return write_labelled_folder(tmp_path_factory.mktemp("labelled"), xray_model.artifact.quality_reference, 3)


def test_predict_prints_one_json_line_per_file_and_survives_bad_ones(tmp_path, xray_model):
    good = tmp_path / "good.png"
    good.write_bytes(encode(chest_like(xray_model.artifact.quality_reference), "PNG"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff broken jpeg")
    done = medcore("predict", "xray", str(good), str(bad), str(tmp_path / "missing.png"), "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(good), str(bad), str(tmp_path / "missing.png")]
    assert 0 <= rows[0]["probability"] <= 1 and rows[0]["decision"] in ("NORMAL", "PNEUMONIA")
    assert "corrupt" in rows[1]["error"] and "Cannot read" in rows[2]["error"]
    from medcore import audit  # the subprocess shares this test session's store
    logged = [r for r in audit.recent(10) if r["user"].startswith("cli:") and r["action"] == "predict_xray"]
    assert {r["outcome"] for r in logged[:2]} == {rows[0]["decision"], "unreadable"}


def test_evaluate_prints_one_json_object_with_the_contract_keys(labelled_folder, xray_model):
    done = medcore("evaluate", "xray", "--data", str(labelled_folder), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("n", "auc", "accuracy", "sensitivity", "specificity", "f1", "ece", "threshold"):
        assert key in result
    assert result["n"] == 6 and result["threshold"] == pytest.approx(xray_model.threshold)
    assert result["model_version"] == xray_model.version
    # The values, not only the keys: recomputed here from `medcore predict` on the same films.
    from sklearn.metrics import roc_auc_score

    files = sorted(labelled_folder.glob("*/*.png"))
    done = medcore("predict", "xray", *map(str, files), "--json")
    rows = {row["file"]: row for row in map(json.loads, done.stdout.splitlines())}
    truth = [int(f.parent.name == "PNEUMONIA") for f in files]
    prob = [rows[str(f)]["probability"] for f in files]
    said = [int(p >= result["threshold"]) for p in prob]
    assert [rows[str(f)]["decision"] for f in files] == ["PNEUMONIA" if s else "NORMAL" for s in said]
    counts = {"tp": sum(t and s for t, s in zip(truth, said)), "fn": sum(t and not s for t, s in zip(truth, said)),
              "tn": sum(not t and not s for t, s in zip(truth, said)), "fp": sum(not t and s for t, s in zip(truth, said))}
    assert {k: result[k] for k in counts} == counts
    assert result["sensitivity"] == pytest.approx(counts["tp"] / 3) and result["specificity"] == pytest.approx(counts["tn"] / 3)
    assert result["accuracy"] == pytest.approx((counts["tp"] + counts["tn"]) / 6)
    assert result["auc"] == pytest.approx(roc_auc_score(truth, prob), abs=1e-4)


def test_evaluate_explains_a_wrong_folder(tmp_path):
    done = medcore("evaluate", "xray", "--data", str(tmp_path), "--json")
    assert done.returncode == 2 and "NORMAL" in done.stderr and "Traceback" not in done.stderr
    done = medcore("evaluate", "xray", "--data", str(tmp_path), "--model", str(tmp_path / "none"), "--json")
    assert done.returncode == 3 and "missing" in done.stderr


def test_train_writes_a_model_that_evaluate_and_predict_accept(tmp_path):
    """A short real training run on synthetic lesion images through the same command as production."""
    images, labels, _ = lesion_dataset(96, 96, seed=0)
    for label in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "data" / label).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = "PNEUMONIA" if label else "NORMAL"
        (tmp_path / "data" / folder / f"person{i}_x_1.png").write_bytes(encode(image, "PNG"))
    out = tmp_path / "model"
    done = medcore("train", "xray", "--data", str(tmp_path / "data"), "--out", str(out), "--epochs", "4",
                   "--image-size", "64", "--width", "8", "--members", "2")  # 2 epochs sometimes learn nothing
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["validation"]["n"] > 0 and (out / "model.keras").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["image_size"] == 64 and len(meta["training"]["history"]) == 8  # 2 members x 4 epochs
    assert [h["member"] for h in meta["training"]["history"]] == [1] * 4 + [2] * 4
    assert "perturbed copies" in meta["calibration"]["fitted_on"] and "simulated_shift" in summary["validation"]
    assert meta["data"]["fingerprint"] and meta["calibration"]["method"] == "platt"
    done = medcore("evaluate", "xray", "--data", str(tmp_path / "data"), "--model", str(out), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["model_version"] == meta["version"]

    # A refit of calibration and threshold on the model's own films reproduces training's (same split, same perturbed
    # copies; the reloaded network's logits may differ from the in-memory one's in the last float bits), as a new version; a stale operating point and figures measured at it are replaced.
    stale = {**meta, "threshold": 0.5, "external": {"figures": "measured at 0.5"}}
    (out / "meta.json").write_text(json.dumps(stale))
    done = medcore("calibration-refit", "xray", "--data", str(tmp_path / "data"), "--model", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    refit = json.loads(done.stdout)
    assert refit["based_on"] == meta["version"] != refit["version"] and refit["previous_threshold"] == 0.5
    assert refit["threshold"] == pytest.approx(meta["threshold"], abs=1e-4)
    refitted = json.loads((out / "meta.json").read_text())
    assert {k: v for k, v in refitted["calibration"].items() if k not in "ab"} == {
        k: v for k, v in meta["calibration"].items() if k not in "ab"} and "external" not in refitted
    assert [refitted["calibration"][k] for k in "ab"] == pytest.approx([meta["calibration"][k] for k in "ab"], abs=1e-4)
    assert "calibration-refit" in (out / "model_card.md").read_text()
    first = sorted((tmp_path / "data" / "NORMAL").iterdir())[0]
    (first.parent / "person999_x_1.png").write_bytes(first.read_bytes())  # another data set now
    done = medcore("calibration-refit", "xray", "--data", str(tmp_path / "data"), "--model", str(out))
    assert done.returncode != 0 and "fingerprint" in done.stderr and "Traceback" not in done.stderr
