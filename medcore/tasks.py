"""Every model task MedCore serves, declared once: key, title, shipped model, and how it is loaded,
trained, validated, evaluated and compared.

The CLI, the registry, production, the jobs and the pages look tasks up here, so adding a case-note
task is one `Task(...)` entry below plus its data and shipped model. One vocabulary: a task's `key`
("xray", "notes_medical_abstracts") names it everywhere: registry rows, store folders, CLI arguments,
environment pins. The short names the CLI has always accepted ("medical_abstracts") are aliases.

The implementations are named, not imported (`Ref`): listing tasks, signing in or reading the
registry must not import TensorFlow, and this module sits at the bottom of the layers while what it
names sits above it. Who calls what still follows the layers: serving code only ever calls `load` and
`evaluate` (serving modules); `train`, `compare` and the options are called by the job runner and the
CLI, which sit above training. tests/test_tasks.py checks both.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from medcore import config


@dataclass(frozen=True)
class Ref:
    """A callable named by module and attribute, imported on first use."""

    module: str
    name: str

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


@dataclass(frozen=True)
class ModelFamily:
    """What the tasks of one kind of model share.

    load(folder) -> a loaded model (see artifacts.ModelInfo for the face every page uses)
    train(data, out, options, *, task, progress, should_stop) -> the new model's meta
    options: the training-options dataclass (its fields make the CLI flags and the admin form)
    validate(path, expected_labels) -> one line describing a usable data set, or ValueError why not
    evaluate(model, data) -> metrics on labelled data
    compare(candidate_dir, production_dir, data) -> (result, arrays) on the same held-out items
    """

    name: str
    data_kind: str  # "image_folder" (NORMAL/ and PNEUMONIA/ folders) or "notes_csv" (label,text)
    data_help: str
    upload_types: tuple[str, ...]
    load: Ref
    train: Ref
    options: Ref
    validate: Ref
    evaluate: Ref
    compare: Ref
    comparison_metrics: tuple[str, ...]  # the rows of a candidate-against-production table
    listing_metrics: tuple[str, ...]  # the validation figures shown in version listings
    admin_tools: tuple[str, ...] = ()  # what else the admin page offers for it: ADMIN_TOOLS' keys


ADMIN_TOOLS = {  # tool key -> the admin page's tab (or section) title
    "local_validation": "Local validation", "adaptation": "Adaptation (no labels)",
    "synthetic_films": "Synthetic films", "federated": "Federated training across hospitals (Flower)"}


XRAY = ModelFamily(
    name="xray", data_kind="image_folder", upload_types=("zip",),
    data_help="a folder with NORMAL/ and PNEUMONIA/ sub-folders of PNG, JPEG or DICOM films",
    load=Ref("medcore.imaging.service", "load_xray_model"),
    train=Ref("medcore.training.train_xray", "train_xray"),
    options=Ref("medcore.training.options", "XrayTrainingOptions"),
    validate=Ref("medcore.imaging.folders", "describe_training_folder"),
    evaluate=Ref("medcore.imaging.service", "evaluate_folder"),
    compare=Ref("medcore.training.compare", "compare_xray"),
    comparison_metrics=("auc", "accuracy", "sensitivity", "specificity", "f1", "ece", "threshold"),
    listing_metrics=("auc", "sensitivity", "specificity"),
    admin_tools=("local_validation", "adaptation", "synthetic_films", "federated"),
)

NOTES = ModelFamily(
    name="notes", data_kind="notes_csv", upload_types=("zip", "csv"),
    data_help="a CSV with the columns label,text",
    load=Ref("medcore.notes.service", "load_for_serving"),
    train=Ref("medcore.training.train_notes", "train_notes"),
    options=Ref("medcore.training.options", "NotesTrainingOptions"),
    validate=Ref("medcore.notes.data", "describe_training_csv"),
    evaluate=Ref("medcore.notes.service", "evaluate_csv"),
    compare=Ref("medcore.training.compare", "compare_notes"),
    comparison_metrics=("accuracy", "macro_f1", "ece"),
    listing_metrics=("macro_f1", "accuracy"),
)


GAN = ModelFamily(
    name="gan", data_kind="image_folder", upload_types=("zip",),
    data_help="a folder with NORMAL/ and PNEUMONIA/ sub-folders of real films to learn from",
    load=Ref("medcore.gan.network", "load_generator"),
    train=Ref("medcore.training.train_gan", "train_gan"),
    options=Ref("medcore.training.options", "GanTrainingOptions"),
    validate=Ref("medcore.imaging.folders", "describe_training_folder"),
    evaluate=Ref("medcore.gan.judge", "evaluate_generator"),
    compare=Ref("medcore.training.compare", "compare_generators"),
    comparison_metrics=("fd_ratio", "precision", "recall", "gate_accepted"),
    listing_metrics=("fd_ratio", "precision", "recall"),
)


@dataclass(frozen=True)
class Task:
    key: str  # the one name: registry, store folder, CLI argument, MEDCORE_<KEY>_MODEL
    name: str  # what a model folder of this task records as meta["task"]
    title: str
    family: ModelFamily
    example_data: str  # relative to the data directory, for forms and help
    aliases: tuple[str, ...] = ()

    @property
    def shipped_dir(self) -> Path:
        """The shipped default model (MEDCORE_<KEY>_MODEL pins another folder, bypassing the registry)."""
        return config.model_pin(self.key) or config.assets_dir() / "models" / self.key

    @property
    def earlier_shipped_dirs(self) -> list[Path]:
        """Earlier releases' shipped defaults (assets/models/earlier/<key>/<version>/), kept for rollback; none
        when MEDCORE_<KEY>_MODEL pins a folder."""
        if config.model_pin(self.key):
            return []
        return sorted(p for p in (config.assets_dir() / "models" / "earlier" / self.key).glob("*")
                      if (p / "meta.json").is_file())

    @property
    def is_notes(self) -> bool:
        return self.family is NOTES

    def load(self, folder: Path) -> Any:
        """Load a model folder of this task; ModelLoadError if it is unusable or made for another task."""
        from medcore.artifacts import ModelLoadError

        model = self.family.load(Path(folder))
        if model.task != self.name:
            raise ModelLoadError(f"{folder} holds a {model.task!r} model, not one for {self.key!r}.")
        return model

    def options(self, values: dict | None = None) -> Any:
        """The task's training options from a dict; an unknown key is an error, never ignored."""
        try:
            return self.family.options(**(values or {}))
        except TypeError as exc:
            raise ValueError(f"Unknown training option for {self.key}: {exc}") from exc

    def train(self, data: Path, out: Path, options: Any, progress: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict:
        return self.family.train(Path(data), Path(out), options, task=self.name, progress=progress,
                                 should_stop=should_stop)

    def validate(self, path: Path, expected_labels: list[str] | None = None) -> str:
        return self.family.validate(Path(path), expected_labels)

    def evaluate(self, model: Any, data: Path) -> dict:
        return self.family.evaluate(model, Path(data))

    def compare(self, candidate_dir: Path, production_dir: Path, data: Path) -> tuple[dict, dict]:
        return self.family.compare(Path(candidate_dir), Path(production_dir), Path(data))


TASKS: tuple[Task, ...] = (
    Task("xray", "xray", "Chest X-ray (pneumonia)", XRAY, "chest_xray/train"),
    Task("notes_medical_abstracts", "medical_abstracts", "Case notes: condition category (5 classes, clinical text)",
         NOTES, "case_notes/medical_abstracts_train.csv", aliases=("medical_abstracts",)),
    Task("notes_symptom2disease", "symptom2disease", "Case notes: disease from symptoms (24 classes, patient's words)",
         NOTES, "case_notes/symptom2disease_train.csv", aliases=("symptom2disease",)),
)
# Models that serve no prediction: registered, versioned and promoted like the others, but no page predicts with
# them and no shipped default is installed (the production generator is the one synthetic films come from).
GENERATORS: tuple[Task, ...] = (
    Task("xray_gan", "xray_gan", "Synthetic chest films (conditional GAN)", GAN, "chest_xray/train"),
)
KEYS = tuple(task.key for task in TASKS)
NOTES_KEYS = tuple(task.key for task in TASKS if task.is_notes)
_BY_NAME = {name: task for task in (*TASKS, *GENERATORS) for name in (task.key, task.name, *task.aliases)}


class UnknownTask(ValueError):
    """A task name that is neither a key nor an alias."""


def get(name: str) -> Task:
    """The task called `name`: its key, one of its aliases, or the name its model folders record."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownTask(f"Unknown task {name!r}; choose one of {', '.join(KEYS)}.") from None


def names(tasks: tuple[Task, ...] = TASKS) -> list[str]:
    """Every accepted name (keys and aliases), for CLI choices."""
    return [name for task in tasks for name in (task.key, *task.aliases)]


def notes_tasks() -> tuple[Task, ...]:
    return tuple(task for task in TASKS if task.is_notes)
