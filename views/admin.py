"""Models & retraining (admin): retrain in the background, compare with production, promote, discard or roll back."""

import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from medcore import auth, charts, config, jobs, registry, tasks
from medcore.artifacts import ModelLoadError
from medcore.training import compare
from medcore.training.local_calibration import LocalDataError, calibrate_and_register
from medcore.training.options import form_specs
from medcore.training.progress import Stage, epoch_label, epoch_step
from medcore.uploads import UploadRejected, save_upload
from medcore.uploads import discard as discard_upload
from views.common import escape_markdown, guarded, require_admin, session_active

admin = require_admin()


def when(timestamp: float | None) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else "–"


def duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@st.fragment(run_every=2)
@guarded("live training progress")
def live_progress(job_id: str) -> None:
    """Redrawn every 2 s from the store, so a reload or another browser shows the same run."""
    job = jobs.get(job_id)
    if not job.active or not session_active():
        st.rerun()  # the whole page: show the result, or the sign-in form once the session has ended
    events = jobs.events(job_id)
    epochs = [e for e in events if e.get("stage") == Stage.EPOCH]
    stage = events[-1]["stage"] if events else Stage.STARTING
    st.subheader(f"Training: {tasks.get(job.task).title}")
    st.caption(f"Job `{job.id}` started {when(job.created_at)} by {escape_markdown(job.created_by)} on "
               f"{escape_markdown(job.data_label)}. It runs in its own process: closing this page does not stop it.")
    if epochs:
        last = epochs[-1]
        text = (f"{epoch_label(last)} · elapsed {duration(last['elapsed_s'])} · "
                f"about {duration(last['eta_s'])} left" if stage == Stage.EPOCH else Stage.describe(stage))
        done, total = epoch_step(last)
        st.progress(done / total, text=text)
        st.plotly_chart(charts.training_curves_figure(epochs), key="live-curves")
        if last.get("federated"):
            st.plotly_chart(charts.federated_rounds_figure(epochs), key="live-federated")
    else:
        st.progress(0.0, text=Stage.describe(stage))
    if st.button("Cancel training", icon=":material/cancel:", disabled=job.cancel_requested):
        try:
            jobs.cancel(job.id, admin)  # re-checks the account: a disabled admin cannot act from an open page
        except (jobs.JobError, auth.NotAllowed) as exc:
            st.error(escape_markdown(str(exc)))
        else:
            st.rerun()


def option_widget(column, name: str, default, spec):
    """The form widget of one training option, built from its declaration (training.options)."""
    if isinstance(default, bool):
        return column.checkbox(spec.label, default, help=spec.help, key=f"option-{name}")
    if spec.choices:
        return column.selectbox(spec.label, spec.choices, index=spec.choices.index(default), help=spec.help,
                                key=f"option-{name}")
    return column.number_input(spec.label, type(default)(spec.minimum), type(default)(spec.maximum), default,
                               help=spec.help, key=f"option-{name}")


def start_form(task: tasks.Task) -> None:
    with st.form("retrain"):
        st.markdown(f"**Labelled data set**: {task.family.data_help}"
                    + (", with exactly the production model's classes." if task.is_notes else "."))
        path = st.text_input("Path on the server", placeholder=str(config.data_dir() / task.example_data))
        upload = st.file_uploader(f"…or upload it ({' or '.join('.' + t for t in task.family.upload_types)})",
                                  type=list(task.family.upload_types), max_upload_size=64)
        st.markdown("**Training options**")
        columns = st.columns(3)
        options = {name: option_widget(columns[i % 3], name, default, spec)
                   for i, (name, default, spec) in enumerate(form_specs(task.family.options.resolve()))}
        submitted = st.form_submit_button("Start retraining", type="primary", icon=":material/play_arrow:")
    if not submitted:
        return
    try:
        if upload is not None:
            data_path, label = save_upload(task.key, upload.name, upload.getvalue()), f"upload {upload.name}"
        elif path.strip():
            data_path, label = Path(path.strip()).expanduser(), path.strip()
        else:
            raise UploadRejected("Give a path on the server or upload the data set.")
        jobs.start(task.key, data_path, options, admin, data_label=label)
    except (jobs.JobError, UploadRejected, auth.NotAllowed) as exc:
        st.error(escape_markdown(str(exc)))
    else:
        st.rerun()


def federated_form(task: tasks.Task) -> None:
    """Train across hospitals with Flower: each folder stays with its client process; only weights travel."""
    st.markdown("Each hospital's folder (`NORMAL/`, `PNEUMONIA/`) is read only by its own Flower client process; "
                "only model weights and aggregate counts travel to the server. `medcore federated split` writes "
                "three simulated hospitals from one training folder. The result is a **candidate version**, "
                "compared with production on the held-out folder below.")
    with st.form("federated"):
        sites = st.text_area("Hospital folders on the server, one per line",
                             placeholder="/srv/hospitals/hospital_a\n/srv/hospitals/hospital_b\n/srv/hospitals/hospital_c")
        held_out = st.text_input("Held-out folder for the comparison with production",
                                 placeholder=str(config.data_dir() / "chest_xray" / "external_sample"))
        left, middle, right = st.columns(3)
        rounds = left.number_input("Rounds", 1, 100, 10)
        strategy = middle.selectbox("Strategy", ["fedavg", "fedprox"],
                                    help="FedProx adds a proximal term that copes better with unequal hospitals")
        members = right.selectbox("Networks in the ensemble", [1, 2, 3], help="each costs a full network's time")
        noise = left.number_input("Privacy noise multiplier (0: off)", 0.0, 10.0, 0.0, 0.1,
                                  help="differential privacy: each hospital's update is clipped, Gaussian noise "
                                       "is added to the average; the model card states the epsilon it gives")
        clipping = middle.number_input("Clipping norm", 0.01, 100.0, 1.0, 0.1,
                                       help="each hospital's update is clipped to this L2 norm (with privacy on)")
        submitted = st.form_submit_button("Start federated training", type="primary", icon=":material/hub:")
    if not submitted:
        return
    folders_given = [line.strip() for line in sites.splitlines() if line.strip()]
    try:
        if not held_out.strip():
            raise jobs.JobError("Give the held-out folder on which the candidate is compared with production.")
        jobs.start(task.key, Path(held_out.strip()).expanduser(), {"members": members}, admin,
                   data_label=f"federated over {len(folders_given)} hospitals; compared on {held_out.strip()}",
                   federated={"sites": folders_given, "rounds": int(rounds), "strategy": strategy,
                              "noise_multiplier": float(noise), "clipping_norm": float(clipping)})
    except (jobs.JobError, auth.NotAllowed) as exc:
        st.error(escape_markdown(str(exc)))
    else:
        st.rerun()


def show_result(job: jobs.Job) -> None:
    """The last finished run of this task: why it stopped, or the candidate against production."""
    if job.status != "succeeded":
        st.warning(f"Last run `{job.id}` ({when(job.finished_at)}): **{job.status}**. {escape_markdown(job.error or '')}")
        return
    entry = registry.get(job.task, job.candidate_version)
    st.subheader(f"Candidate `{entry.version}`")
    st.caption(f"Trained by job `{job.id}` on {escape_markdown(job.data_label)} in "
               f"{duration(entry.summary.get('seconds') or 0)}; status: **{entry.status}**.")
    stored = compare.load(entry.path)
    if stored is None or "error" in stored[0]:
        st.warning("No comparison with production" + (f": {escape_markdown(stored[0]['error'])}" if stored else "."))
    else:
        result, arrays = stored
        st.markdown(f"Both models scored on the same **{result['n']}** held-out items: {result['held_out']}.")
        table = pd.DataFrame(compare.metrics_table(result))
        st.dataframe(table.round(4), hide_index=True)
        st.plotly_chart(charts.comparison_roc_figure(arrays["y_true"], {
            f"production {result['production_version']}": arrays["prob_production"],
            f"candidate {result['candidate_version']}": arrays["prob_candidate"]}), key="comparison-roc")
    if entry.status == "candidate":
        promote_or_discard(job.task, entry.version)


def promote_or_discard(task_key: str, version: str, key: str = "") -> None:
    """The two decisions on a candidate, each re-checked against the production this page drew."""
    left, right = st.columns(2)
    if left.button("Promote to production", type="primary", icon=":material/publish:", key=f"promote{key}"):
        try:
            registry.promote(task_key, version, admin, expected_production=shown_production)
        except (registry.RegistryError, ModelLoadError, auth.NotAllowed) as exc:
            st.error(escape_markdown(str(exc)))
        else:
            st.rerun()
    if right.button("Discard candidate", icon=":material/delete:", key=f"discard{key}"):
        try:
            registry.discard(task_key, version, admin)
        except (registry.RegistryError, auth.NotAllowed) as exc:
            st.error(escape_markdown(str(exc)))
        else:
            st.rerun()


def local_validation_form() -> None:
    """Score production on the hospital's own films, refit calibration and threshold, register a candidate."""
    st.markdown("Before relying on the model, score it on your own labelled films: folders `NORMAL/` and "
                "`PNEUMONIA/` (a path on the server, or a zip). Production is measured with 95 % intervals, its "
                "calibration and threshold are refitted on the films (method chosen by cross-validation), and the "
                "result is registered as a **candidate version** with the same weights: promote it or discard it.")
    with st.form("local-validation"):
        path = st.text_input("Folder of local films on the server",
                             placeholder=str(config.data_dir() / "chest_xray" / "local"))
        upload = st.file_uploader("…or upload a zip", type=["zip"], max_upload_size=64)
        target = st.number_input("Sensitivity target of the new threshold", 0.5, 0.999, 0.95, 0.01)
        submitted = st.form_submit_button("Validate and recalibrate", type="primary", icon=":material/tune:")
    if submitted:
        data_path = None
        try:
            if upload is not None:
                data_path = save_upload("xray", upload.name, upload.getvalue())
            elif path.strip():
                data_path = Path(path.strip()).expanduser()
            else:
                raise UploadRejected("Give a path on the server or upload the films.")
            with st.spinner("Scoring production on the local films and refitting…"):
                st.session_state["local_result"] = calibrate_and_register(
                    data_path, admin, config.store_dir() / "local-calibration", target)
        except (LocalDataError, UploadRejected, auth.NotAllowed, registry.RegistryError, ValueError) as exc:
            st.error(escape_markdown(str(exc)))
        finally:
            if upload is not None and data_path is not None:
                discard_upload(data_path)
    result = st.session_state.get("local_result")
    if result is None:
        return
    entry = registry.get("xray", result["version"])
    st.subheader(f"Locally calibrated candidate `{entry.version}`")
    for warning in result["warnings"]:
        st.warning(escape_markdown(warning), icon=":material/warning:")
    st.markdown(f"Same weights as `{result['based_on']}`. Calibration chosen by cross-validated log-loss: "
                f"**{result['method']}** ({', '.join(f'{k} {v:.3f}' for k, v in result['cv_log_loss'].items())}). "
                f"Threshold {result['threshold_before']:.1%} → **{result['threshold_after']:.1%}**. "
                f"{result['n_normal']} NORMAL and {result['n_pneumonia']} PNEUMONIA films; status **{entry.status}**.")
    st.dataframe(pd.DataFrame(charts.figures_table([
        {"title": f"production {result['based_on']}", "source": "as it is now", "metrics": result["before"]},
        {"title": f"candidate {entry.version}", "source": result["after_is"], "metrics": result["after"]}])),
        hide_index=True, width="stretch")
    if entry.status == "candidate":
        promote_or_discard("xray", entry.version, key="-local")


def versions_table(task: tasks.Task, versions: list[registry.ModelVersion]) -> pd.DataFrame:
    rows = []
    for v in versions:
        metrics = v.summary.get("metrics", {}).get("validation", {})
        data = v.summary.get("data", {})
        rows.append({"version": v.version, "status": v.status, "origin": v.origin, "created": when(v.created_at),
                     "by": v.created_by, "validation": ", ".join(f"{k} {metrics[k]:.3f}" for k in
                                                                 task.family.listing_metrics if k in metrics),
                     "data": f"{data.get('source', '?')} · {str(data.get('fingerprint', ''))[:12]}",
                     "options": ", ".join(f"{k}={value}" for k, value in v.summary.get("options", {}).items())})
    return pd.DataFrame(rows)


st.title("Models & retraining")
task = tasks.get(st.selectbox("Model", tasks.KEYS, format_func=lambda key: tasks.get(key).title, key="admin-task"))
current = registry.production(task.key)
shown_production = current.version if current else None  # promote/roll back only if it is still this one
if current is not None:
    st.markdown(f"In production: `{current.version}` ({current.origin}, registered {when(current.created_at)} "
                f"by {escape_markdown(current.created_by)}).")
tab_names = ["Retrain", "Versions and rollback"] + (["Local validation"] if task.key == "xray" else [])
retrain_tab, versions_tab, *local_tab = st.tabs(tab_names)

with retrain_tab:
    all_jobs = jobs.list_jobs()
    running = next((j for j in all_jobs if j.active), None)
    if running is not None:
        live_progress(running.id)
    else:
        start_form(task)
        if task.key == "xray":
            with st.expander("Federated training across hospitals (Flower)", icon=":material/hub:"):
                federated_form(task)
    finished = next((j for j in all_jobs if j.task == task.key and not j.active), None)
    if finished is not None and running is None:
        show_result(finished)

with versions_tab:
    versions = registry.list_versions(task.key)
    st.dataframe(versions_table(task, versions), hide_index=True, width="stretch",
                 column_config={"version": st.column_config.TextColumn(width="large"),
                                "status": st.column_config.TextColumn(width="medium")})
    choices = [v.version for v in versions if v.status in ("candidate", "previous production")]
    if choices:
        chosen = st.selectbox("Version to put in production", choices)
        if st.button("Put in production", icon=":material/history:"):
            entry = registry.get(task.key, chosen)
            try:
                if entry.ever_promoted:
                    registry.rollback(task.key, admin, to=chosen, expected_production=shown_production)
                else:
                    registry.promote(task.key, chosen, admin, expected_production=shown_production)
            except (registry.RegistryError, ModelLoadError, auth.NotAllowed) as exc:
                st.error(escape_markdown(str(exc)))
            else:
                st.rerun()
    st.markdown("**History**")
    st.dataframe(pd.DataFrame([{"when": when(h["at"]), "action": h["action"], "version": h["version"],
                                "replaced": h["previous"] or "", "by": h["by"]} for h in registry.history(task.key)]),
                 hide_index=True, width="stretch")

for tab in local_tab:
    with tab:
        local_validation_form()
