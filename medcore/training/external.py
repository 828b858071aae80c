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
from medcore.model_card import notes_model_card, xray_model_card
from medcore.training import lockbox


def ensure_unregistered(model_dir: Path) -> Path:
    """model_dir, resolved; ValueError if it is a registered version, which never changes."""
    model_dir = Path(model_dir).resolve()
    if registry.models_dir().resolve() in model_dir.parents:
        raise ValueError(f"{model_dir} is a registered version, and registered versions never change.")
    return model_dir


def add_to_card(model_dir: Path, key: str, value: Any) -> dict:
    """Store a measurement under meta[key] of an unregistered model folder (X-ray or notes) and rewrite its card
    from the metadata (what the benchmarks that fill a card section call); return the metadata."""
    model_dir = ensure_unregistered(model_dir)
    meta = json.loads((model_dir / "meta.json").read_text())
    meta[key] = value
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    (model_dir / "model_card.md").write_text(xray_model_card(meta) if "image_size" in meta else notes_model_card(meta))
    return meta


def record_external(model_dir: Path, data_dir: Path, command: str, part: str = "reporting",
                    force: bool = False, actor: str = "unknown") -> dict:
    """Score the model on one part of the external sample (training.lockbox), store scores and figures in the
    folder, rewrite its card; return the figures.

    part "reporting": the release's new-patient figures (meta["external"], external.npz). A film scored in a
    reporting part before (for any model: the store's film log) is refused unless forced; each scoring's films are
    recorded there, and in meta["lockbox"] for the card. part "choosing": figures for comparing ideas
    (meta["external_choosing"]), as often as wanted (its films are recorded too, as choosing).
    """
    model_dir = ensure_unregistered(model_dir)
    model = load_xray_model(model_dir)
    folder = lockbox.split(Path(data_dir))[part]
    fingerprint = folders.fingerprint(folder.files, folder.labels)
    digests = lockbox.film_digests(folder.files)
    if part == "reporting":
        if not force:  # before the minutes of scoring; made again when the films are recorded
            lockbox.check_unscored(digests)
        box = lockbox.record_use(model.meta, fingerprint, command, force)
    scores = score_files(model, folder.files)
    scored = [digest for digest, readable in zip(digests, scores.readable) if readable]
    lockbox.record_scoring(scored, model.version, part, command, force, actor)
    y_true = folder.labels[scores.readable]
    validation = model.validation_predictions()
    external = {
        "source": f"{Path(data_dir).resolve().name}, {part} part ({len(folder.files)} films of "
                  f"{len(set(folder.groups))} patients; split by patient, seed {lockbox.SEED})",
        "part": part, "fingerprint": fingerprint, "measured_at": time.strftime("%Y-%m-%d"), "command": command,
        "n_unreadable": int((~scores.readable).sum()), "n_atypical": int(scores.atypical.sum()),
        "figures": binary_figures(y_true, scores.probabilities, model.threshold),
        "internal": binary_figures(validation["y_true"], validation["prob"], model.threshold)}
    if part == "choosing":
        return add_to_card(model_dir, "external_choosing", external)["external_choosing"]
    np.savez_compressed(model_dir / EXTERNAL_FILE, y_true=y_true.astype(np.int8), logit=scores.logits.astype(np.float32))
    add_to_card(model_dir, "lockbox", box)
    return add_to_card(model_dir, "external", external)["external"]
