"""The training process of one job: train into the job folder, compare with production, register the candidate.

Run as `python -m medcore.jobs JOB_ID` (started by jobs.store.start on this machine, or by a worker through the
queue). A job never touches production: the model is written under the job's folder and only registered (as a
candidate) once it is complete, so killing the process at any moment leaves production and the registry as they
were. While it runs, a heartbeat thread renews the job's lease and turns a cancel flag (set from any server) into
a SIGTERM to this process; a job that lost its lease (it stalled and was marked failed) registers nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import traceback
from pathlib import Path

from medcore import audit, incidents, registry, tasks, tracking
from medcore.jobs import store
from medcore.training import compare
from medcore.training.progress import Stage, event


class Cancelled(BaseException):
    """Raised in the training process when the job is cancelled (SIGTERM).

    A BaseException, like KeyboardInterrupt: no `except Exception` on the way (the comparison's, a
    library's) can swallow a cancel and let a cancelled candidate be registered.
    """


class LeaseLost(Cancelled):
    """The job is no longer this process's to finish (marked failed after a stall): it stops, registering nothing."""


def _heartbeat(job_id: str, stop: threading.Event) -> None:
    """Renew the lease; on a cancel flag or a lost lease, SIGTERM this process (its handler raises Cancelled)."""
    signalled = False
    while not stop.wait(store.heartbeat_seconds()):
        try:
            kept, cancelled = store.renew_lease(job_id), store.cancel_requested(job_id)
        except Exception:  # the store unreachable for a moment: the lease has slack; try again
            traceback.print_exc()
            continue
        if (cancelled or not kept) and not signalled:
            signalled = True
            os.kill(os.getpid(), signal.SIGTERM)


def run(job_id: str) -> int:
    """The whole job; returns the process exit code. JobError, before anything is touched, for a malformed id."""
    store.job_folder(job_id)

    def on_sigterm(signum, frame):
        # One cancel is enough. The app's cancel and the heartbeat each send a SIGTERM; a second one raised inside
        # the cleanup below would kill the process before it records "cancelled" (the job then reads "failed").
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Cancelled()

    if not store.claim(job_id):  # cancelled before it started, or already taken: nothing to do
        return 0
    signal.signal(signal.SIGTERM, on_sigterm)
    sys.argv = [sys.argv[0], f"(admin retraining, job {job_id})"]  # what the model card records as the command
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(job_id, stop), daemon=True).start()
    try:
        return _run(job_id)
    finally:
        stop.set()


def _run(job_id: str) -> int:
    job = store.get(job_id)
    out = job.folder / "model"
    try:  # the row may have been written by anyone who can write the store: its paths are checked again
        store.check_paths(job.task, Path(job.data_path), job.options, job.owns_upload)
    except store.JobPathRefused as exc:
        print(f"medcore: job {job_id} refused: {exc}", file=sys.stderr, flush=True)  # the job's log, on the server
        store.finish(job_id, "failed", exc.shown)
        audit.record(job.created_by, f"train:{job.task}", "refused", job=job_id)
        return 1
    try:
        version = _train_compare_register(job, out)
    except Cancelled:
        shutil.rmtree(out, ignore_errors=True)
        store.finish(job_id, "cancelled", "Cancelled by an administrator.")
        audit.record(job.created_by, f"train:{job.task}", "cancelled", job=job_id)
        return 1
    except Exception as exc:
        traceback.print_exc()  # the job's log, on the server
        incident = incidents.report(exc, job.created_by, f"training job {job_id}", message_is_safe=True)
        store.finish(job_id, "failed", f"The training stopped with an error ({type(exc).__name__}, incident "
                                       f"{incident}); production is unchanged. The server log has the details.")
        audit.record(job.created_by, f"train:{job.task}", "failed", job=job_id)
        return 1
    store.finish(job_id, "succeeded", version=version)
    audit.record(job.created_by, f"train:{job.task}", "candidate registered", version, job=job_id)
    return 0


def _train_compare_register(job: store.Job, out: Path) -> str:
    task = tasks.get(job.task)

    def progress(values: dict) -> None:
        store.add_event(job.id, values)

    def should_stop() -> bool:
        return store.cancel_requested(job.id)

    data = Path(job.data_path)
    options = dict(job.options)
    federated = options.pop("federated", None)
    if federated:
        from medcore.federated.run import run_federated

        try:
            run_federated([Path(s) for s in federated["sites"]], out, int(federated["rounds"]), federated["strategy"],
                          task.options(options), progress=progress, should_stop=should_stop,
                          noise_multiplier=float(federated.get("noise_multiplier", 0.0)),
                          clipping_norm=float(federated.get("clipping_norm", 1.0)))
        except RuntimeError:
            if should_stop():
                raise Cancelled() from None
            raise
    else:
        task.train(data, out, task.options(options), progress=progress, should_stop=should_stop)
    if should_stop():
        raise Cancelled()
    progress(event(Stage.COMPARING))
    current = registry.production(task.key)
    if current is not None:
        try:
            result, arrays = task.compare(out, current.path, data)
        except Exception as exc:  # the trained candidate is kept; the page shows why there is no comparison
            traceback.print_exc()
            incident = incidents.report(exc, job.created_by, f"comparing job {job.id}'s candidate",
                                        message_is_safe=True)
            result, arrays = {"error": f"the comparison failed ({type(exc).__name__}, incident {incident}; the "
                                       "server log has the details)"}, {}
        compare.save(out, result, arrays)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here the run finishes: no half-cancelled registration
    if should_stop():  # a cancel that came while comparing, just before SIGTERM was ignored
        raise Cancelled()
    if not store.holds_lease(job.id):  # marked failed meanwhile (a stall): another reader has said it died
        raise LeaseLost()
    entry = registry.register(task.key, out, job.created_by, origin="federated" if federated else "retrained")
    progress(event(Stage.REGISTERED, version=entry.version))
    _mirror(entry, job.id, progress)
    return entry.version


def _mirror(entry: registry.ModelVersion, job_id: str, progress) -> None:
    """Log the new version to MLflow when a tracking URI is configured; a failure is reported, not fatal."""
    try:
        run_id = tracking.mirror_version(entry, job_id)
    except Exception as exc:
        traceback.print_exc()
        incident = incidents.report(exc, "system", f"mirroring {entry.version} to MLflow", message_is_safe=True)
        progress(event(Stage.MLFLOW, error=f"Not logged to MLflow ({type(exc).__name__}, incident {incident})."))
    else:
        if run_id:
            progress(event(Stage.MLFLOW, run_id=run_id))
