"""Optional mirror of every registered version to an MLflow tracking server.

MedCore's own registry (registry.py) is the source of truth and needs nothing else. A hospital that
runs MLflow sets MEDCORE_MLFLOW_TRACKING_URI (e.g. http://mlflow.internal:5000) and installs the
`mlflow` extra; each new version is then logged as a run in the experiment `medcore-<task>`, with
its training options as parameters, its validation metrics, the data fingerprint and the model card.
A failure to reach the server is reported, never allowed to fail a training run.
"""

from __future__ import annotations

from numbers import Number

from medcore import config
from medcore.registry import ModelVersion


def tracking_uri() -> str | None:
    return config.mlflow_tracking_uri()


def mirror_version(entry: ModelVersion, job_id: str | None = None) -> str | None:
    """Log one registered version as an MLflow run; return its run id (None when no URI is configured)."""
    uri = tracking_uri()
    if uri is None:
        return None
    try:
        import mlflow
    except ImportError as exc:
        raise RuntimeError("MEDCORE_MLFLOW_TRACKING_URI is set but MLflow is not installed: "
                           "pip install -e '.[mlflow]'") from exc
    client = mlflow.MlflowClient(tracking_uri=uri)
    name = f"medcore-{entry.task}"
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    data = entry.summary.get("data", {})
    run = client.create_run(experiment_id, run_name=entry.version, tags={
        "medcore.version": entry.version, "medcore.task": entry.task, "medcore.origin": entry.origin,
        "medcore.created_by": entry.created_by, "medcore.data_fingerprint": str(data.get("fingerprint", "")),
        "medcore.data_source": str(data.get("source", "")), "medcore.job": job_id or ""})
    for key, value in entry.summary.get("options", {}).items():
        client.log_param(run.info.run_id, key, value)
    for key, value in entry.summary.get("metrics", {}).get("validation", {}).items():
        if isinstance(value, Number):
            client.log_metric(run.info.run_id, f"validation_{key}", float(value))
    card = entry.path / "model_card.md"
    if card.is_file():
        client.log_artifact(run.info.run_id, str(card))
    client.set_terminated(run.info.run_id)
    return run.info.run_id
