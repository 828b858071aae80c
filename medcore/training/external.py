"""Record a model's figures on new patients (an external sample) in its own folder, before it is registered.

The external sample measures generalization only: this writes the scores (as logits, so a later local
recalibration shows its own figures) and the figures with 95 % intervals into the model folder and its
card. Registered versions are immutable, so only an unregistered folder (e.g. `assets/models/xray`
before it ships) can be given.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from medcore import registry
from medcore.artifacts import EXTERNAL_FILE
from medcore.imaging import folders
from medcore.imaging.service import load_xray_model, score_files
from medcore.metrics import binary_figures
from medcore.model_card import xray_model_card


def ensure_unregistered(model_dir: Path) -> Path:
    """model_dir, resolved; ValueError if it is a registered version, which never changes."""
    model_dir = Path(model_dir).resolve()
    if registry.models_dir().resolve() in model_dir.parents:
        raise ValueError(f"{model_dir} is a registered version, and registered versions never change.")
    return model_dir


def add_to_card(model_dir: Path, key: str, value: Any) -> dict:
    """Store a measurement under meta[key] of an unregistered X-ray model folder and rewrite its card from the
    metadata (what the benchmarks that fill a card section call); return the metadata."""
    model_dir = ensure_unregistered(model_dir)
    meta = json.loads((model_dir / "meta.json").read_text())
    meta[key] = value
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    (model_dir / "model_card.md").write_text(xray_model_card(meta))
    return meta


def record_external(model_dir: Path, data_dir: Path, command: str) -> dict:
    """Score the model on data_dir, store scores and figures in the folder, rewrite its card; return the figures."""
    model_dir = Path(model_dir).resolve()
    if registry.models_dir().resolve() in model_dir.parents:
        raise ValueError(f"{model_dir} is a registered version, and registered versions never change.")
    model = load_xray_model(model_dir)
    folder = folders.list_image_folder(Path(data_dir), tuple(model.labels))
    scores = score_files(model, folder.files)
    y_true = folder.labels[scores.readable]
    validation = model.validation_predictions()
    external = {
        "source": Path(data_dir).resolve().name, "fingerprint": folders.fingerprint(folder.files, folder.labels),
        "measured_at": time.strftime("%Y-%m-%d"), "command": command,
        "n_unreadable": int((~scores.readable).sum()), "n_atypical": int(scores.atypical.sum()),
        "figures": binary_figures(y_true, scores.probabilities, model.threshold),
        "internal": binary_figures(validation["y_true"], validation["prob"], model.threshold)}
    np.savez_compressed(model_dir / EXTERNAL_FILE, y_true=y_true.astype(np.int8), logit=scores.logits.astype(np.float32))
    return add_to_card(model_dir, "external", external)["external"]
