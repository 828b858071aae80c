"""Adapting production to a hospital's films without labels: batch-normalisation statistics and the prevalence.

Many hospitals have thousands of unlabelled films and few labelled ones. Two corrections need no labels:

- **AdaBN** (Li et al. 2016): the network's batch-normalisation layers normalise with the training films' running
  statistics; re-estimating them, layer by layer, on the local films moves every feature to where the local films
  put it (other equipment, exposure, framing).
- **Prevalence** (Saerens, Latinne & Decaestecker 2002): the calibrated probability assumes the validation films'
  share of pneumonia; EM on the local films' posteriors estimates the local share, and the logit moves by the
  difference of the two log-odds.

The result is a candidate version (weights with the new statistics, the calibration with the prevalence shift, the
same threshold rule), registered like any other and promoted by an admin. Folders are searched recursively and
sub-folder names are never read as labels. Fewer than MIN_FILMS films are refused; a warning says when many films
do not look like chest films (the quality gate's share).
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcore.imaging import quality
from medcore.imaging.folders import IMAGE_SUFFIXES
from medcore.imaging.io import UnreadableImage, read_radiograph
from medcore.imaging.preprocess import to_model_input

MIN_FILMS = 200
ATYPICAL_WARNING = 0.10  # share of films the quality gate calls atypical above which the page warns


class AdaptationRefused(ValueError):
    """Too few films, or nothing readable: the message says what to do."""


@dataclass
class LocalFilms:
    inputs: np.ndarray  # (n, size, size, 1) float32: the model's input
    unreadable: int
    rule_refused: int  # quality-gate rules (colour, flat, body part): not chest films


def unlabelled_films(data_dir: Path, image_size: int, limit: int = 20_000) -> LocalFilms:
    """Every readable film under data_dir, at any depth; folder names are not labels and are never read."""
    paths = sorted(p for p in Path(data_dir).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    inputs, unreadable, refused = [], 0, 0
    for path in paths:
        try:
            radiograph = read_radiograph(path.read_bytes(), path.name)
        except (UnreadableImage, OSError):
            unreadable += 1
            continue
        refused += bool(quality.rule_reasons(radiograph))
        inputs.append(to_model_input(radiograph.pixels, image_size))
    if not inputs:
        raise AdaptationRefused(f"No readable film under {data_dir}.")
    return LocalFilms(np.stack(inputs).astype(np.float32), unreadable, refused)


def adapt_batch_norm(network, images: np.ndarray, batch_size: int = 128) -> int:
    """AdaBN: each batch-normalisation layer's moving mean and variance set to those of its inputs on `images`,
    in the network's order (a layer sees the already-adapted layers before it). Returns the layers adapted."""
    import keras

    layers = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)]  # in order
    for layer in layers:
        probe = keras.Model(network.inputs, layer.input)
        total, squares, count = 0.0, 0.0, 0
        for start in range(0, len(images), batch_size):
            values = np.asarray(probe(images[start:start + batch_size], training=False), np.float64)
            axes = tuple(range(values.ndim - 1))
            total = total + values.sum(axis=axes)
            squares = squares + (values ** 2).sum(axis=axes)
            count += int(np.prod([values.shape[a] for a in axes]))
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(squares / count - mean ** 2, 1e-6).astype(np.float32))
    return len(layers)


def estimate_prevalence(probabilities: np.ndarray, trained_prevalence: float, iterations: int = 200,
                        tolerance: float = 1e-7) -> float:
    """The local share of the positive class by EM on calibrated posteriors (Saerens et al. 2002)."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-6, 1 - 1e-6)
    prior = trained_prevalence
    for _ in range(iterations):
        ratio_pos, ratio_neg = prior / trained_prevalence, (1 - prior) / (1 - trained_prevalence)
        adjusted = ratio_pos * p / (ratio_pos * p + ratio_neg * (1 - p))
        updated = float(adjusted.mean())
        if abs(updated - prior) < tolerance:
            return updated
        prior = updated
    return prior


def logit_shift(local: float, trained: float) -> float:
    """What Bayes' rule adds to every calibrated logit when the prevalence goes from `trained` to `local`."""
    local, trained = np.clip([local, trained], 1e-4, 1 - 1e-4)
    return float(np.log(local / (1 - local)) - np.log(trained / (1 - trained)))


def adapt_xray(model_dir: Path, data_dir: Path, out_dir: Path, batch_norm: bool = True, prevalence: bool = True,
               films: LocalFilms | None = None, min_films: int = MIN_FILMS) -> dict:
    """Write the adapted model to out_dir (a new version); return its metadata's `adaptation` record."""
    from medcore import calibration
    from medcore.imaging.gradcam import GradCam
    from medcore.imaging.model import load_artifact
    from medcore.model_card import xray_model_card

    artifact = load_artifact(Path(model_dir))
    films = films or unlabelled_films(Path(data_dir), artifact.image_size)
    if len(films.inputs) < min_films:
        raise AdaptationRefused(f"Only {len(films.inputs)} readable films: adaptation needs at least {min_films} "
                                "(fewer would move the statistics by chance). Add films, or run a local validation "
                                "with labels instead.")
    network = artifact.network
    before_logits = np.concatenate([np.asarray(network(films.inputs[i:i + 256], training=False)).ravel()
                                    for i in range(0, len(films.inputs), 256)])
    layers = adapt_batch_norm(network, films.inputs) if batch_norm else 0
    explain = GradCam(network)
    outputs = [explain(films.inputs[i:i + 256]) for i in range(0, len(films.inputs), 256)]
    logits, features = np.concatenate([o[0] for o in outputs]), np.concatenate([o[2] for o in outputs])
    atypical = float(np.mean([quality.atypicality(x, f, artifact.quality_reference) > 1.0
                              for x, f in zip(films.inputs, features)]))
    meta = json.loads(json.dumps(artifact.meta))
    validation = artifact.validation_predictions()
    trained_prevalence = float(np.mean(validation["y_true"]))
    local = estimate_prevalence(calibration.apply(logits, meta["calibration"]), trained_prevalence)
    shift = logit_shift(local, trained_prevalence) if prevalence else 0.0
    record = {"based_on": artifact.version, "films": int(len(films.inputs)), "unreadable": films.unreadable,
              "batch_norm": {"layers": layers} if batch_norm else None,
              "prevalence": {"trained": round(trained_prevalence, 4), "estimated_local": round(local, 4),
                             "logit_shift": round(shift, 4)} if prevalence else None,
              "atypical_share": round(atypical, 4), "rule_refused": films.rule_refused,
              "warnings": ([f"{atypical:.0%} of the films do not look like the chest films the model was trained "
                            "on (the quality gate's atypicality): adapting to them may adapt to the wrong thing."]
                           if atypical > ATYPICAL_WARNING else []),
              "logits_before": _summary(before_logits), "logits_after": _summary(logits + shift),
              "at": time.strftime("%Y-%m-%d %H:%M")}
    meta["version"] = f"{artifact.version.split('-adapted')[0]}-adapted-{secrets.token_hex(2)}"
    meta["calibration"] = {**meta["calibration"], "prior_logit_shift": shift}
    meta["adaptation"] = record
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(artifact.path, out_dir)
    network.save(out_dir / "model.keras")
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    (out_dir / "model_card.md").write_text(xray_model_card(meta))
    np.savez_compressed(out_dir / "adaptation.npz", logits_before=before_logits.astype(np.float32),
                        logits_after=(logits + shift).astype(np.float32))
    return record


def _summary(logits: np.ndarray) -> dict:
    return {"median": round(float(np.median(logits)), 3), "p10": round(float(np.percentile(logits, 10)), 3),
            "p90": round(float(np.percentile(logits, 90)), 3)}
