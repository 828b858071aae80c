"""The explanation sanity checks and explainer agreement of a shipped model, measured on real data and written into
its folder and card (meta["explanation_checks"]).

Films: cascading model randomisation and a small shuffled-label network (one member of the same architecture,
trained a few epochs on the training films with their labels shuffled) on films of the external sample's choosing
part; Grad-CAM against occlusion on every film of that part. Notes: weight randomisation, a shuffled-label linear
model, and SHAP against LIME, on the model's own validation notes. What is measured, and the thresholds, are in
imaging.sanity and notes.sanity; nothing here is fitted to these films or notes.
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from medcore import config
from medcore.explanation_agreement import evidence_agreement
from medcore.imaging import folders
from medcore.imaging import sanity as film_sanity
from medcore.imaging.occlusion import Occlusion
from medcore.training import datasets, lockbox
from medcore.training.external import add_to_card, ensure_unregistered


def _summary(values: list[float]) -> dict:
    low, median, high = np.percentile(values, [25, 50, 75])
    return {"median": round(float(median), 4), "iqr": [round(float(low), 4), round(float(high), 4)], "n": len(values)}


def shuffled_label_network(train_dir: Path, image_size: int, films: int = 1500, epochs: int = 3, seed: int = 0):
    """One network of the shipped architecture trained on `films` training films whose labels were shuffled."""
    import keras

    from medcore.imaging.model import build_xray_network

    listing = folders.list_image_folder(Path(train_dir))
    loaded = datasets.load_cached(listing, image_size, config.store_dir() / "cache")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(loaded.images), size=min(films, len(loaded.images)), replace=False)
    keras.utils.set_random_seed(seed)
    network = build_xray_network(image_size)
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    labels = rng.permutation(loaded.folder.labels[pick]).astype("float32")[:, None]
    network.fit(loaded.images[pick].astype("float32"), labels, epochs=epochs, batch_size=32, verbose=0)
    return network


def check_xray(model_dir: Path, external_dir: Path, train_dir: Path, films: int = 64, seed: int = 0) -> dict:
    from medcore.imaging.gradcam import GradCam
    from medcore.imaging.service import load_xray_model

    model = load_xray_model(ensure_unregistered(model_dir))
    network, size = model.artifact.network, model.artifact.image_size
    part = lockbox.split(Path(external_dir))["choosing"]
    loaded = datasets.load_cached(part, size, config.store_dir() / "cache")
    images = loaded.images.astype(np.float32)
    sample = images[np.random.default_rng(seed).choice(len(images), size=min(films, len(images)), replace=False)]
    started = time.time()
    cascade = film_sanity.cascading_randomization(network, sample, seed=seed)
    shuffled = film_sanity.data_randomization(network, shuffled_label_network(train_dir, size, seed=seed), sample)
    occlusion, cams = Occlusion(network), GradCam(network)(images)[1]
    pairs = [evidence_agreement(occlusion(x), c, size) for x, c in zip(images, cams)]
    agreement = {"rank_correlation": _summary([rho for rho, _ in pairs]),
                 "top_10pct_overlap": _summary([overlap for _, overlap in pairs]),
                 "films": len(images), "source": f"{Path(external_dir).name}, choosing part (seed {lockbox.SEED})",
                 "occlusion": f"{occlusion.patch} px patches every {occlusion.stride} px at {size} px, set to the "
                              "film's mean"}
    return {"kind": "xray", "measured_at": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started),
            "films_for_randomisation": len(sample),
            "thresholds": {"rank_correlation_below": film_sanity.MAX_RANK_CORRELATION,
                           "ssim_below": film_sanity.MAX_SSIM},
            "cascading_randomization": cascade, "shuffled_labels": shuffled, "agreement": agreement}


def _validation_notes(model, csv_path: Path, notes: int, seed: int) -> list[str]:
    from medcore.notes.data import read_labelled_notes, split_notes

    data = read_labelled_notes(Path(csv_path))
    options = model.meta["options"]
    _, val_idx = split_notes(data.labels, options["val_fraction"], options["seed"])
    long_enough = [i for i in val_idx if len(data.words[i]) >= 20]  # top-5 of a shorter note overlaps by chance
    pick = np.random.default_rng(seed).choice(long_enough, size=min(notes, len(long_enough)), replace=False)
    return [" ".join(data.words[i]) for i in pick]


def shuffled_label_notes_model(model, csv_path: Path, seed: int = 0):
    """A linear model on the same notes with their labels shuffled (vocabulary size as the shipped model's)."""
    from medcore.notes.model import load_notes_model
    from medcore.training.options import NotesTrainingOptions
    from medcore.training.train_notes import train_notes

    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    label_column = header.index("label")
    labels = np.random.default_rng(seed).permutation([row[label_column] for row in body])
    with tempfile.TemporaryDirectory(prefix="medcore-shuffled-") as folder:
        shuffled_csv = Path(folder) / "shuffled.csv"
        with open(shuffled_csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows([*row[:label_column], label, *row[label_column + 1:]] for row, label in zip(body, labels))
        options = NotesTrainingOptions(arch="linear", max_features=model.encoder.size, refit_all=False, seed=seed)
        train_notes(shuffled_csv, Path(folder) / "model", options, task=model.task)
        return load_notes_model(Path(folder) / "model")


def check_notes(model_dir: Path, csv_path: Path, notes: int = 40, seed: int = 0) -> dict:
    from medcore.notes import sanity as note_sanity
    from medcore.notes.explain import explain
    from medcore.notes.second_opinion import TOP_K, lime_opinion
    from medcore.notes.model import load_notes_model
    from medcore.notes.text import prepare

    model = load_notes_model(ensure_unregistered(model_dir))
    texts = _validation_notes(model, csv_path, notes, seed)
    started = time.time()
    result = note_sanity.check(model, texts, shuffled_label_notes_model(model, csv_path, seed))
    overlaps = []
    for text in texts:  # the page's own comparison (notes.second_opinion), for the predicted class
        note = prepare(text)
        attribution = explain(model, note)
        overlaps.append(lime_opinion(model, note, attribution, int(np.argmax(attribution.full_values))).overlap)
    return {"kind": "notes", "measured_at": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - started),
            "source": f"{Path(csv_path).name}, the model's own validation notes of 20 words or more",
            "thresholds": {"randomized_overlap_below": note_sanity.MAX_OVERLAP,
                           "shap_stability_at_least": note_sanity.MIN_STABILITY},
            **result, "agreement": {"shap_lime_top_k_overlap": _summary(overlaps), "top_k": TOP_K}}


def write(model_dir: Path, results: dict) -> dict:
    """Store the results in the (unregistered) model folder's metadata and rewrite its card."""
    return add_to_card(model_dir, "explanation_checks", results)
