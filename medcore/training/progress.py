"""The stages a training run reports, as one enumeration shared by the trainers, the job runner and the
admin page (which shows each stage's description while a job runs)."""

from __future__ import annotations

from enum import Enum
from typing import Callable

ProgressFn = Callable[[dict], None]


class Stage(str, Enum):
    """A training run's stage; the value is what progress events and the jobs store record."""

    STARTING = "starting"
    LOADING = "loading"
    FEATURES = "features"
    EPOCH = "epoch"
    CALIBRATING = "calibrating"
    DONE = "done"
    COMPARING = "comparing"
    REGISTERED = "registered"
    MLFLOW = "mlflow"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @classmethod
    def describe(cls, value: str) -> str:
        """The description of a recorded stage (its raw value if an older run recorded another)."""
        try:
            return cls(value).description
        except ValueError:
            return value


_DESCRIPTIONS = {
    Stage.STARTING: "Starting the training process…",
    Stage.LOADING: "Reading and preprocessing the images (cached for later runs)…",
    Stage.FEATURES: "Building text features…",
    Stage.EPOCH: "Training…",
    Stage.CALIBRATING: "Calibrating on the validation split…",
    Stage.DONE: "Trained; comparing with production…",
    Stage.COMPARING: "Scoring candidate and production on the same held-out data…",
    Stage.REGISTERED: "Candidate registered.",
    Stage.MLFLOW: "Logging the new version to MLflow…",
}


def event(stage: Stage, **values: object) -> dict:
    """A progress event: {"stage": <value>, ...values}."""
    return {"stage": stage.value, **values}


def epoch_step(row: dict) -> tuple[int, int]:
    """(epochs done, epochs in all) of an epoch event, counting the ensemble's members one after another."""
    members, member = int(row.get("members", 1)), int(row.get("member", 1))
    return (member - 1) * int(row["epochs"]) + int(row["epoch"]), members * int(row["epochs"])


def epoch_label(row: dict) -> str:
    """'Member 2 of 3 · epoch 4 of 12' (or 'Epoch 4 of 12' for one network)."""
    text = f"{'round' if row.get('federated') else 'epoch'} {row['epoch']} of {row['epochs']}"
    if int(row.get("members", 1)) > 1:
        return f"Member {row['member']} of {row['members']} · {text}"
    return text[0].upper() + text[1:]
