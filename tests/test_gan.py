"""Synthetic films from the conditional GAN: the measures have known answers, a copied patient is caught, a tiny
generator trains, registers and samples, and its films are refused by the X-ray path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medcore.gan import metrics
from tests.synthetic import write_labelled_folder


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    mu, scale = np.array([1.0, -2.0, 0.5, 0.0]), np.array([1.0, 2.0, 0.5, 3.0])
    a = rng.standard_normal((40000, 4))
    b = mu + scale * rng.standard_normal((40000, 4))
    expected = float((mu ** 2).sum() + (1 + scale ** 2 - 2 * scale).sum())  # = 5.25 + 4.25
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Symmetric, and blind to a rotation of both sets (it compares distributions, not coordinates).
    rotation, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    assert metrics.frechet_distance(b, a) == pytest.approx(metrics.frechet_distance(a, b), rel=1e-6)
    assert metrics.frechet_distance(a @ rotation, b @ rotation) == pytest.approx(metrics.frechet_distance(a, b),
                                                                                  rel=1e-6)


def test_precision_and_recall_tell_a_collapsed_generator_from_a_faithful_one():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((600, 8))
    faithful = rng.standard_normal((600, 8))
    collapsed = 0.15 * rng.standard_normal((600, 8))  # every film near the mean: realistic, not varied
    off = rng.standard_normal((600, 8)) + 6.0  # nothing like the real films
    precision, recall = metrics.precision_recall(real, faithful)
    assert precision > 0.8 and recall > 0.8
    precision, recall = metrics.precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.3
    assert metrics.precision_recall(real, off) == (0.0, 0.0)


def test_the_memorization_check_flags_a_planted_copy_of_a_patient():
    rng = np.random.default_rng(2)
    train = rng.standard_normal((300, 64))
    patients = np.repeat(np.arange(150), 2)
    train[1::2] = train[::2] + 0.1 * rng.standard_normal((150, 64))  # each patient's follow-up looks alike
    generated = rng.standard_normal((50, 64))
    generated[17] = train[42] + 0.01 * rng.standard_normal(64)  # a copy of patient 21's film
    check = metrics.memorization_check(train, patients, generated)
    assert check.suspicious[17] and check.closest(1)[0][:2] == (17, 42) and check.closest(1)[0][2] < 0.05
    # By construction about 1 % of honest films fall under the bar (its percentile); the copy is far below it.
    assert check.suspicious.sum() <= 3 and check.distance[17] < 0.1 * check.threshold
    assert check.passed  # one film in fifty is under the limit; a run of copies is not
    copies = train[rng.choice(300, 40, replace=False)] + 0.01 * rng.standard_normal((40, 64))
    assert not metrics.memorization_check(train, patients, np.concatenate([generated, copies])).passed


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory, xray_model):
    """A tiny generator trained for a few steps on synthetic radiograph-like films (seconds on a CPU)."""
    from medcore.training.options import GanTrainingOptions
    from medcore.training.train_gan import train_gan

    root = tmp_path_factory.mktemp("gan")
    write_labelled_folder(root / "data", xray_model.artifact.quality_reference, 16)
    events = []
    meta = train_gan(root / "data", root / "generator",
                     GanTrainingOptions(image_size=32, epochs=3, eval_every=2, eval_films=6, batch_size=8, width=16),
                     progress=events.append, cache_dir=root / "cache", classifier=xray_model)
    return root, meta, events


def test_a_tiny_gan_trains_and_records_its_quality_per_epoch(tiny_generator):
    from medcore.gan.network import load_generator

    root, meta, events = tiny_generator
    epochs = [e for e in events if e["stage"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(np.isfinite(e["loss"]) and np.isfinite(e["d_loss"]) for e in epochs)
    assert "fd_ratio" not in epochs[0] and {"fd_ratio", "precision", "recall", "gate_accepted"} <= set(epochs[1])
    quality = meta["metrics"]["validation"]
    assert set(quality["per_class"]) == {"NORMAL", "PNEUMONIA"}
    assert quality["fd_floor"] > 0 and quality["fd_ratio"] == pytest.approx(
        np.sqrt(np.prod([q["fd"] / q["fd_floor"] for q in quality["per_class"].values()])))  # geometric mean
    assert meta["memorization"]["passed"] and meta["training"]["best_epoch"] in (2, 3)
    generator = load_generator(root / "generator")
    films = generator.sample("PNEUMONIA", 3, seed=5)
    assert films.shape == (3, 32, 32) and 0 <= films.min() and films.max() <= 1
    assert np.array_equal(films, generator.sample("PNEUMONIA", 3, seed=5))  # a seed names the films
    assert not np.array_equal(films, generator.sample("NORMAL", 3, seed=5))
    card = (root / "generator" / "model_card.md").read_text()
    assert meta["version"] in card and "Memorization check" in card and "floor (real vs real)" in card
    curve = card.split("## Per-epoch curve")[1].split("##")[0]
    rows = [line for line in curve.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in rows}) == 1  # measured and unmeasured epochs fill the same columns
    with pytest.raises(ValueError, match="Unknown class"):
        generator.sample("EFFUSION", 1, seed=0)


def test_a_generator_that_copies_patients_is_not_written(tmp_path, xray_model, monkeypatch):
    from medcore.training.options import GanTrainingOptions
    from medcore.training.train_gan import MemorizedPatients, train_gan

    from medcore.gan import judge
    from medcore.training.train_gan import GanTrainer

    write_labelled_folder(tmp_path / "data", xray_model.artifact.quality_reference, 8)
    # A generator that has memorized its training films: it draws them back, each with a faint noise, at the real
    # limits of the check (no threshold changed).
    seen, real_of = {}, judge.RealReference.of

    def remember(classifier, pixels, labels, *args, **kwargs):
        seen.update(pixels=pixels, labels=labels)
        return real_of(classifier, pixels, labels, *args, **kwargs)

    def copies(self, label_index, n, seed):
        films = seen["pixels"][seen["labels"] == label_index]
        noise = np.random.default_rng(seed).normal(0, 0.005, (n, *films.shape[1:]))
        return np.clip(films[np.arange(n) % len(films)] + noise, 0, 1).astype(np.float32)

    monkeypatch.setattr(judge.RealReference, "of", staticmethod(remember))
    monkeypatch.setattr(GanTrainer, "sample", copies)
    with pytest.raises(MemorizedPatients, match="may be copying patients"):
        train_gan(tmp_path / "data", tmp_path / "generator",
                  GanTrainingOptions(image_size=32, epochs=1, eval_films=4, batch_size=8, width=16),
                  cache_dir=tmp_path / "cache", classifier=xray_model)
    assert not (tmp_path / "generator").exists()


def test_a_registered_generator_samples_marked_films_the_xray_path_refuses(tiny_generator, store, tmp_path,
                                                                           xray_model, capsys):
    import shutil

    from medcore import auth, registry
    from medcore.cli import main
    from medcore.imaging.service import analyse_file

    root, meta, _ = tiny_generator
    shutil.copytree(root / "generator", tmp_path / "generator")
    version = registry.register("xray_gan", tmp_path / "generator", "tester").version
    registry.promote("xray_gan", version, auth.operator("tester"))
    assert main(["gan", "sample", "--label", "NORMAL", "--n", "2", "--seed", "3", "--out", str(tmp_path / "films")]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written == {"generator": version, "label": "NORMAL", "seed": 3, "n": 2, "out": str(tmp_path / "films")}
    films = sorted((tmp_path / "films").glob("*.png"))
    assert len(films) == 2
    result = analyse_file(xray_model, films[0].read_bytes(), films[0].name)
    assert result.synthetic and result.probability is None and "SYNTHETIC mark" in result.error


def test_sampling_without_a_generator_says_how_to_get_one(store, tmp_path, capsys):
    from medcore.cli import main

    assert main(["gan", "sample", "--label", "NORMAL", "--out", str(tmp_path)]) == 2
    assert "No film generator is in production" in capsys.readouterr().err


def test_synthetic_films_top_up_the_smaller_class_of_a_classifier_training(tiny_generator, tmp_path, xray_model):
    from medcore.training.options import XrayTrainingOptions
    from medcore.training.train_xray import train_xray

    root, generator_meta, _ = tiny_generator
    data = write_labelled_folder(tmp_path / "data", xray_model.artifact.quality_reference, 20)
    for extra in sorted((data / "NORMAL").glob("*.png"))[8:]:
        extra.unlink()  # 8 NORMAL against 20 PNEUMONIA
    meta = train_xray(data, tmp_path / "model", XrayTrainingOptions(
        image_size=64, members=1, epochs=1, width=8, synthetic_generator=str(root / "generator")),
        cache_dir=tmp_path / "cache")
    counts = meta["data"]["train_counts"]
    synthetic = meta["data"]["synthetic"]
    assert synthetic == {"generator": generator_meta["version"], "class": "NORMAL", "films": counts[1] - counts[0],
                         "generator_size": 32}
    assert synthetic["films"] > 0 and meta["options"]["class_weighting"] is False
    assert sum(meta["data"]["val_counts"]) == meta["data"]["n_val"]  # validation: real films only
    assert f"synthetic NORMAL films from generator `{generator_meta['version']}`" in (
        tmp_path / "model" / "model_card.md").read_text()


def test_usefulness_is_summarised_per_arm_and_paired_by_seed():
    from medcore.gan import usefulness

    def run(arm, seed, auc, sens):
        figures = {"auc": auc, "sensitivity": sens, "specificity": 0.8, "accuracy": 0.9, "ece": 0.05}
        return {"arm": arm, "seed": seed, "n": 312, **figures,
                "intervals": {k: [v - 0.02, v + 0.02] for k, v in figures.items()}}

    real, synthetic = usefulness.ARMS
    rows = {f"{real} seed {s}": run(real, s, auc, 0.95) for s, auc in ((1, 0.950), (2, 0.960), (3, 0.955))}
    rows |= {f"{synthetic} seed {s}": run(synthetic, s, auc, 0.96) for s, auc in ((1, 0.960), (2, 0.971), (3, 0.964))}
    summary = usefulness.summarise(rows)
    assert summary[real]["auc"]["mean"] == pytest.approx(0.955) and summary[real]["seeds"] == 3
    assert summary[usefulness.PAIRED]["auc"]["mean"] == pytest.approx(0.010)  # +0.010, +0.011, +0.009
    assert usefulness.helps(summary)  # +0.010 with a paired SD of 0.001: well beyond noise
    rows[f"{synthetic} seed 2"]["auc"] = 0.950  # now +0.010, -0.010, +0.009: noise
    assert not usefulness.helps(usefulness.summarise(rows))
    results = {"command": "python benchmarks/gan_usefulness.py", "generator": "gan-x", "rows": rows,
               "recipe": {"members": 1, "epochs": 12}}
    section = usefulness.usefulness_section(results)
    assert "| real films seed 1 | 0.950 (0.930-0.970) |" in section and "default recipe keeps class weights" in section
    assert "| paired difference (synthetic - real) | 3 | +0.003 ± " in section
    assert usefulness.usefulness_section(None) == ""
    from medcore.model_card import xray_model_card  # the X-ray model card carries the table once measured

    shipped = json.loads((Path(__file__).parents[1] / "assets/models/xray/meta.json").read_text())
    assert section in xray_model_card({**shipped, "synthetic_usefulness": results})


def test_two_generators_are_compared_on_the_same_real_films_in_the_same_eyes(tiny_generator, tmp_path, xray_model):
    from medcore import charts
    from medcore.training import compare

    root, meta, events = tiny_generator
    result, arrays = compare.compare_generators(root / "generator", root / "generator", root / "data")
    assert arrays == {} and result["candidate"]["fd_ratio"] == pytest.approx(result["production"]["fd_ratio"])
    assert result["n"] == 32 and result["candidate"]["feature_model"] == xray_model.version
    table = {row["metric"]: row for row in compare.metrics_table(result)}
    assert set(table) == {"fd_ratio", "precision", "recall", "gate_accepted"} and table["fd_ratio"]["change"] == 0
    figure = charts.gan_curves_figure([e for e in events if e["stage"] == "epoch"])
    names = [trace.name for trace in figure.data]
    assert names[:2] == ["generator loss", "discriminator loss"] and "Fréchet ratio (geometric mean of classes)" in names


def test_the_generator_draws_the_class_it_is_asked_for():
    """The first full run drew pneumonia-like films for both classes; the class must reach the films."""
    import keras

    from medcore.training.options import GanTrainingOptions
    from medcore.training.train_gan import GanTrainer

    keras.utils.set_random_seed(0)
    trainer = GanTrainer(GanTrainingOptions(image_size=16, width=16, latent_dim=8, learning_rate=1e-3), 2)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (256, 1)).astype(np.int32)
    dark_or_bright = np.where(labels[:, :, None, None] == 1, 0.6, -0.6)  # pixels 0.2 (class 0) and 0.8 (class 1)
    films = (dark_or_bright + 0.1 * rng.standard_normal((256, 16, 16, 1))).astype(np.float32)
    before = trainer.sample(1, 32, seed=1).mean() - trainer.sample(0, 32, seed=1).mean()
    for _ in range(10):
        for start in range(0, 256, 32):
            trainer.step(films[start:start + 32], labels[start:start + 32])
    gap = trainer.sample(1, 32, seed=1).mean() - trainer.sample(0, 32, seed=1).mean()
    assert abs(before) < 0.05 and gap > 0.25


def test_a_generator_keeps_no_file_names_and_an_admin_deletes_its_examples(tiny_generator, store, tmp_path):
    """L6 (issue 21): the nearest training films are kept as pixels only, never with their file names (also not in
    the card that MLflow mirrors), and an admin can delete them: the version stays usable and verified, audited."""
    import shutil

    from medcore import audit, auth, registry
    from medcore.gan.network import load_generator
    from medcore.gan.retention import delete_training_examples

    root, meta, _ = tiny_generator
    names = [p.name for p in (root / "data").rglob("*.png")]
    shutil.copytree(root / "generator", tmp_path / "generator")
    folder_text = "".join(p.read_text(errors="replace") for p in (tmp_path / "generator").glob("*.json")) + (
        tmp_path / "generator" / "model_card.md").read_text()
    assert not [name for name in names if name in folder_text]
    version = registry.register("xray_gan", tmp_path / "generator", "tester").version
    entry = registry.get("xray_gan", version)
    assert load_generator(entry.path).closest_pairs()
    with pytest.raises(auth.NotAllowed):
        delete_training_examples(version, auth.User("nobody", "clinician", False))
    delete_training_examples(version, auth.operator("tester"))
    entry = registry.get("xray_gan", version)
    registry.verify(entry)  # the manifest follows the rewrite
    generator = load_generator(entry.path)
    assert generator.closest_pairs() == [] and generator.sample("NORMAL", 1, 0).shape == (1, 32, 32)
    with np.load(entry.path / "quality.npz") as npz:
        assert "pair_training" not in npz.files
    assert "(deleted)" in (entry.path / "model_card.md").read_text()
    assert audit.recent(1)[0]["action"] == "rewrite:xray_gan"
    with pytest.raises(registry.RegistryError, match="cannot be rewritten"):
        registry.rewrite_files("xray_gan", version, {"model.keras": b"x"}, auth.operator("tester"), "no")


def test_the_time_budget_stops_a_training_and_keeps_what_it_has(tmp_path, xray_model):
    """max_minutes ends the run after the epoch that used it up; that epoch is measured and the generator written."""
    from medcore.training.options import GanTrainingOptions
    from medcore.training.train_gan import train_gan

    write_labelled_folder(tmp_path / "data", xray_model.artifact.quality_reference, 8)
    events = []
    meta = train_gan(tmp_path / "data", tmp_path / "generator",
                     GanTrainingOptions(image_size=32, epochs=50, eval_every=10, eval_films=4, batch_size=8, width=16,
                                        max_minutes=0.001),
                     progress=events.append, cache_dir=tmp_path / "cache", classifier=xray_model)
    epochs = [e for e in events if e["stage"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1] and "fd_ratio" in epochs[0]  # the last epoch is always measured
    assert meta["training"]["best_epoch"] == 1 and (tmp_path / "generator" / "meta.json").is_file()


def test_a_different_candidate_is_compared_as_itself_not_as_production(tiny_generator, tmp_path, xray_model):
    """Two different generators (3 epochs and 1 epoch, other seed): each side of the comparison carries its own
    figures, and swapping the arguments swaps them (a swapped comparison would promote the wrong one)."""
    from medcore.gan.judge import evaluate_generators
    from medcore.gan.network import load_generator
    from medcore.training import compare
    from medcore.training.options import GanTrainingOptions
    from medcore.training.train_gan import train_gan

    root, _, _ = tiny_generator
    train_gan(root / "data", tmp_path / "other", GanTrainingOptions(image_size=32, epochs=1, eval_films=6, batch_size=8,
                                                                    width=16, seed=5),
              cache_dir=root / "cache", classifier=xray_model)
    good, other = root / "generator", tmp_path / "other"
    alone = evaluate_generators([load_generator(good), load_generator(other)], root / "data", xray_model)
    assert alone[0]["fd_ratio"] != pytest.approx(alone[1]["fd_ratio"])
    forward, _ = compare.compare_generators(other, good, root / "data")
    backward, _ = compare.compare_generators(good, other, root / "data")
    assert forward["candidate"]["fd_ratio"] == pytest.approx(alone[1]["fd_ratio"])
    assert forward["production"]["fd_ratio"] == pytest.approx(alone[0]["fd_ratio"])
    assert backward["candidate"] == forward["production"] and backward["production"] == forward["candidate"]
    assert forward["candidate_version"] == load_generator(other).version
