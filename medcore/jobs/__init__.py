"""Background training runs: the job store (state, progress, start and cancel) and the runner (the
training process itself, `python -m medcore.jobs JOB_ID`).

Callers use the store's API through this package (`jobs.start`, `jobs.get`, `jobs.cancel`, ...); only
the training process imports the runner, which sits above training in the layers.
"""

from medcore.jobs.store import (  # noqa: F401
    ACTIVE,
    Job,
    JobError,
    cancel,
    events,
    get,
    jobs_dir,
    list_jobs,
    reconcile,
    start,
    validate_data,
)
