"""Writing model folders safely, shared by every model type.

A model folder is written beside its destination and swapped in by renames, so a crash mid-write
never leaves a half-written model where a good one was. Networks are saved without optimizer
state: inference needs only the weights, and Adam's moments would triple the file.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

VALIDATION_FILE = "validation.npz"
EXTERNAL_FILE = "external.npz"  # a binary model's scores on new patients (never fitted on), when measured
LOCAL_FILE = "local.npz"  # a locally recalibrated version's cross-validated scores on the local films
MODEL_CARD_FILE = "model_card.md"


@dataclass
class Evaluation:
    """One set of held-out predictions of a model, with where they come from: what a performance page plots."""

    kind: str  # "internal", "external" or "local"
    title: str
    source: str  # in words: which films, and how honest the figures are
    y_true: np.ndarray
    prob: np.ndarray
    threshold: float
    decisions: np.ndarray | None = None  # cross-validated decisions; None: prob >= threshold


class ModelLoadError(RuntimeError):
    """A model artifact is missing, corrupt or made for another preprocessing contract."""



def command_line() -> str:
    """The command that made an artifact, as a person would retype it: `medcore ...` for the CLI, `python
    path/to/script.py ...` for a benchmark (which trains through the same functions)."""
    import sys

    if not sys.argv or not sys.argv[0]:
        return ""
    program = Path(sys.argv[0])
    if program.suffix == ".py":
        try:
            program = program.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            pass
        return " ".join(["python", str(program), *sys.argv[1:]])
    return " ".join(["medcore", *sys.argv[1:]])

class ModelInfo:
    """The one face of a loaded model of any task, read from its own folder: what pages and charts use.

    A subclass provides `meta` (the folder's meta.json) and `path` (the folder). No page opens a
    model's files or reads its metadata keys; they ask here.
    """

    meta: dict[str, Any]
    path: Path | None

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def positive_label(self) -> str | None:
        """The class a binary model flags (e.g. PNEUMONIA); None for a multi-class model."""
        return self.meta.get("positive_label")

    @property
    def negative_label(self) -> str | None:
        positive = self.positive_label
        return None if positive is None else next(label for label in self.labels if label != positive)

    @property
    def threshold(self) -> float | None:
        """The operating threshold on the positive class's calibrated probability (binary models)."""
        value = self.meta.get("threshold")
        return None if value is None else float(value)

    @property
    def threshold_rule(self) -> str | None:
        return self.meta.get("threshold_rule")

    @property
    def validation_metrics(self) -> dict[str, Any]:
        """Metrics on the model's own validation split (internal validation: same source as training)."""
        return self.meta["metrics"]["validation"]

    def operating_evidence(self) -> dict[str, Any]:
        """What this version's threshold achieves and where that was measured: {"source", "metrics"}.

        Local validation once a hospital has run one (cross-validated on its own films), else internal
        validation: the figures a clinician should read beside every decision.
        """
        local = self.meta.get("local_validation")
        if local:
            return {"source": f"local validation: {local['n_normal'] + local['n_pneumonia']} films of "
                              f"{local['source']}, cross-validated", "metrics": local["after"]}
        return {"source": f"internal validation: {self.validation_metrics['n']} films of children from the training "
                          "source, not seen in training", "metrics": self.validation_metrics}

    def external_metrics(self) -> dict[str, Any] | None:
        """Figures on new patients (the external sample), where they were measured for this version's weights."""
        external = self.meta.get("external")
        if external is None:
            return None
        note = ("later children of the same hospital, the lockbox's reporting part; the recipe was chosen on films "
                "from the same source" if external.get("part") == "reporting" else
                "later children of the same hospital, on which the recipe was chosen: optimistic")
        return {"source": external["source"], "metrics": external["figures"], "part_note": note}

    @property
    def release_comparison(self) -> list[dict[str, str]]:
        """What was compared before this release (issue 24's table), as rows of text; empty where not recorded."""
        from medcore.model_card import release_comparison_rows

        comparison = self.meta.get("release_comparison")
        return [{**row, "variant": row["variant"].replace("`", "")}  # a table cell, not markdown
                for row in release_comparison_rows(comparison)] if comparison else []

    @property
    def release_comparison_notes(self) -> str:
        return (self.meta.get("release_comparison") or {}).get("notes", "")

    @property
    def typical_heatmap_agreement(self) -> dict[str, Any] | None:
        """How closely occlusion and Grad-CAM agreed on new patients' films (median and IQR of their rank
        correlation), where `medcore check-explanations` measured it: the yardstick for one film's agreement."""
        return self.meta.get("explanation_checks", {}).get("agreement", {}).get("rank_correlation")

    @property
    def baseline_metrics(self) -> dict[str, Any] | None:
        """The reference model's metrics on the same validation split, where training recorded one."""
        return self.meta["metrics"].get("baseline_validation")

    @property
    def options(self) -> dict[str, Any]:
        """The training options the model was made with."""
        return self.meta.get("options", {})

    def feature_summary_reference(self) -> np.ndarray | None:
        """The validation films' feature summaries (the drift monitor's reference), where the model keeps them."""
        return None

    def validation_predictions(self) -> dict[str, np.ndarray]:
        """The stored validation labels (`y_true`) and calibrated probabilities (`prob`)."""
        with np.load(Path(self.path) / VALIDATION_FILE) as npz:
            return {key: npz[key] for key in npz.files}

    def evaluations(self) -> list[Evaluation]:
        """Internal validation, new patients (external sample) and local validation, where each was measured.

        External scores are stored as logits and put through this version's own calibration, so a locally
        recalibrated version shows what it does, not what its base did.
        """
        from medcore import calibration

        folder, meta = Path(self.path), self.meta
        val = self.validation_predictions()
        found = [Evaluation("internal", "Internal validation", f"{len(val['y_true'])} held-out films from the "
                            "training data's own source: optimistic for other hospitals", val["y_true"], val["prob"],
                            self.threshold)]
        local = meta.get("local_validation")
        if (folder / EXTERNAL_FILE).is_file():
            with np.load(folder / EXTERNAL_FILE) as npz:
                y_true, logit = npz["y_true"], npz["logit"]
            external = meta.get("external", {})
            source = f"{len(y_true)} films of new patients ({external.get('source', 'external sample')}), never trained on"
            if local and local.get("fingerprint") == external.get("fingerprint"):
                source += "; this version's calibration was fitted on them, so these figures are in-sample"
            found.append(Evaluation("external", "New patients", source, y_true,
                                    calibration.apply(logit, meta["calibration"]), self.threshold))
        if local and (folder / LOCAL_FILE).is_file():
            with np.load(folder / LOCAL_FILE) as npz:
                arrays = {k: npz[k] for k in npz.files}
            found.append(Evaluation("local", "Local validation", f"{len(arrays['y_true'])} local films of "
                                    f"{local['source']}, cross-validated (each film judged by a map and threshold "
                                    "fitted without it)", arrays["y_true"], arrays["prob"], self.threshold,
                                    arrays.get("decision")))
        return found

    def model_card(self) -> str:
        card = Path(self.path) / MODEL_CARD_FILE
        return card.read_text() if card.is_file() else ""


def save_network(network, path: Path) -> None:
    # Rebuilt from its config the network is uncompiled (clone_model would carry the optimizer along).
    clean = network.__class__.from_config(network.get_config())
    clean.set_weights(network.get_weights())
    clean.save(path)


def write_atomically(folder: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_folder), then replace `folder` with it."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def write_model_folder(folder: Path, network, meta: dict[str, Any], arrays: dict[str, dict[str, np.ndarray]],
                       model_card: str = "") -> Path:
    """model.keras + one NAME.npz per entry of arrays + meta.json (+ model_card.md), atomically."""

    def write(tmp: Path) -> None:
        save_network(network, tmp / "model.keras")
        for name, content in arrays.items():
            np.savez_compressed(tmp / f"{name}.npz", **content)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if model_card:
            (tmp / MODEL_CARD_FILE).write_text(model_card)

    return write_atomically(folder, write)


def read_model_folder(folder: Path, arrays: tuple[str, ...], contract_key: str, contract: str | tuple[str, ...]
                      ) -> tuple[Any, dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(network, meta, arrays) of a model folder; ModelLoadError with a clear reason if anything is off.

    contract_key names the meta field that must equal `contract`, or one of them (the preprocessing or feature
    versions the code implements): a model made for another contract is refused, never silently misread.
    """
    import keras

    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        network = keras.models.load_model(folder / "model.keras", compile=False)
        loaded = {}
        for name in arrays:
            with np.load(folder / f"{name}.npz") as npz:
                loaded[name] = {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise ModelLoadError(f"Model files missing in {folder}: {exc.filename}") from exc
    except Exception as exc:  # corrupt zip / json / h5
        raise ModelLoadError(f"Model in {folder} cannot be loaded: {exc}") from exc
    contracts = (contract,) if isinstance(contract, str) else contract
    if meta.get(contract_key) not in contracts:
        raise ModelLoadError(f"Model in {folder} was made for {contract_key} {meta.get(contract_key)!r}; "
                             f"this code implements {' or '.join(map(repr, contracts))}.")
    return network, meta, loaded
