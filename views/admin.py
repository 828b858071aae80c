"""Models & retraining (admin): retrain in the background, compare with production, promote, discard or roll back."""

import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from medcore import auth, charts, config, incidents, jobs, registry, settings, tasks
from medcore.imaging.intended_use import ALLOW_OUTSIDE_AGE, IntendedUse
from medcore.artifacts import ModelLoadError
from medcore.gan import retention, usefulness
from medcore.gan.network import load_generator, marked_film
from medcore.training import compare
from medcore.training.adaptation import AdaptationRefused
from medcore.training.local_calibration import LocalDataError, adapt_and_register, calibrate_and_register
from medcore.training.options import form_specs
from medcore.training.progress import Stage, epoch_label, epoch_step
from medcore.uploads import UploadRejected, save_upload
from medcore.uploads import discard as discard_upload
from views.common import escape_markdown, guarded, require_admin, session_active, signed_in

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
        if last.get("gan"):
            st.plotly_chart(charts.gan_curves_figure(epochs), key="live-curves")
        else:
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


def option_widget(column, name: str, default, spec, form: str = "retrain"):
    """The form widget of one training option, built from its declaration (training.options)."""
    key = f"{form}-option-{name}"
    if isinstance(default, bool):
        return column.checkbox(spec.label, default, help=spec.help, key=key)
    if spec.choices:
        return column.selectbox(spec.label, spec.choices, index=spec.choices.index(default), help=spec.help,
                                key=key)
    return column.number_input(spec.label, type(default)(spec.minimum), type(default)(spec.maximum), default,
                               help=spec.help, key=key)


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
        jobs.start(task.key, data_path, options, admin, data_label=label, uploaded=upload is not None)
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


def generator_form() -> None:
    """Train a film generator in the background: the same job machinery as a retrain."""
    gan = tasks.get("xray_gan")
    with st.form("gan"):
        st.markdown(f"**Real films to learn from**: {gan.family.data_help}.")
        path = st.text_input("Folder of real films on the server", placeholder=str(config.data_dir() / gan.example_data))
        columns = st.columns(3)
        options = {name: option_widget(columns[i % 3], name, default, spec, form="gan") for i, (name, default, spec)
                   in enumerate(form_specs(gan.family.options.resolve()))}
        submitted = st.form_submit_button("Train a generator", type="primary", icon=":material/auto_awesome:")
    if not submitted:
        return
    try:
        if not path.strip():
            raise jobs.JobError("Give the folder of real films on the server.")
        jobs.start(gan.key, Path(path.strip()).expanduser(), options, admin, data_label=path.strip())
    except (jobs.JobError, auth.NotAllowed) as exc:
        st.error(escape_markdown(str(exc)))
    else:
        st.rerun()


def generator_report(entry: registry.ModelVersion) -> None:
    """One generator judged by numbers: quality per class, curves, samples, and the memorization check."""
    try:
        generator = load_generator(entry.path)
    except ModelLoadError as exc:
        incident = incidents.report(exc, admin.name, f"loading generator {entry.version}", message_is_safe=True)
        st.error(f"Generator `{entry.version}` cannot be loaded (incident {incident}; the server log has the reason).")
        return
    quality, memo = generator.quality, generator.memorization
    st.markdown(f"**Generator `{generator.version}`** ({entry.status}): {generator.image_size} px, trained on "
                f"{escape_markdown(generator.data_source)}. Judged in the eyes of X-ray model "
                f"`{generator.judged_by}`: a Fréchet ratio of 1 means as close to real films as other "
                "real films are.")
    st.dataframe(pd.DataFrame([{"class": name, "Fréchet distance": q["fd"], "floor (real vs real)": q["fd_floor"],
                                "ratio": q["fd_ratio"], "precision": q["precision"], "recall": q["recall"],
                                "quality gate accepts": q["gate_accepted"]}
                               for name, q in quality["per_class"].items()]).round(3), hide_index=True)
    st.plotly_chart(charts.gan_curves_figure(generator.history), key=f"gan-curves-{entry.version}")
    seed = st.number_input("Seed of the samples", 0, 2**31 - 1, 0, key="gan-seed")
    for label in generator.labels:
        films = generator.sample(label, 8, int(seed))
        st.image([marked_film(film, generator.version) for film in films], width=112,
                 caption=[f"{label} #{i + 1}" for i in range(len(films))])
    st.markdown(f"**Memorization check**: {memo['share_suspicious']:.1%} of {memo['n_generated']} generated films "
                f"are closer to a training film than {100 - memo['percentile']:g} % of training films are to another "
                f"patient's (limit {memo['max_share']:.0%}); the median generated film is {memo['median_ratio']:.2f}× "
                "the typical distance between patients from its nearest training film. The closest pairs:")
    pairs = generator.closest_pairs()
    for pair in pairs[:4]:
        left, right = st.columns(2)
        left.image(marked_film(pair["generated"], generator.version), width=192,
                   caption=f"generated {pair['generated_class']}")
        right.image(pair["training"], width=192, clamp=True,
                    caption=f"nearest training film ({pair['ratio']:.2f}× the typical distance)")
    if pairs:
        st.caption(f"The {len(pairs)} nearest training films are real patients' films (64 px, no file names), kept "
                   "only for this check.")
        st.button("Delete these training-film examples", icon=":material/delete:",
                  key=f"delete-examples-{entry.version}", on_click=decide,
                  args=("delete examples", "xray_gan", entry.version, None))
    else:
        st.caption("The training-film examples of this generator were deleted.")


def synthetic_films_tab(running: jobs.Job | None, finished: jobs.Job | None) -> None:
    st.markdown("A class-conditional GAN makes synthetic films. It is judged by numbers in our own X-ray network's "
                "eyes, and a generator whose films come closer to a training film than patients come to one another "
                "is not registered. Every synthetic film carries a visible mark and a file tag; the X-ray page "
                "refuses it.")
    if running is not None and running.task == "xray_gan":
        live_progress(running.id)
    elif running is not None:
        st.info("Another training job is running (see the Retrain tab); one training runs at a time.")
    else:
        generator_form()
    if finished is not None and running is None:
        show_result(finished)
    st.markdown("**Do synthetic films help the X-ray model on new patients?**")
    measured = usefulness.read_results()
    if measured and measured.get("rows"):
        st.dataframe(pd.DataFrame(usefulness.summary_table(measured)), hide_index=True, width="stretch")
        st.caption(f"Mean ± SD over seeds on the {next(iter(measured['rows'].values()))['n']} films of the external "
                   f"sample (new patients), generator `{measured['generator']}`; `benchmarks/gan_usefulness.py`. "
                   + usefulness.verdict(measured))
    else:
        st.caption("Not measured yet: `python benchmarks/gan_usefulness.py` trains the classifier with and without "
                   "synthetic films and scores both on new patients.")
    versions = registry.list_versions("xray_gan")  # discarded ones too: their kept examples can be deleted
    if versions:
        default = next((i for i, v in enumerate(versions) if v.status == "production"), 0)
        chosen = st.selectbox("Generator to inspect", [v.version for v in versions], index=default,
                              format_func=lambda v: f"{v} ({next(e.status for e in versions if e.version == v)})",
                              key="gan-inspected")
        generator_report(next(v for v in versions if v.version == chosen))
        st.markdown("**Generator versions**")
        st.dataframe(versions_table(tasks.get("xray_gan"), versions), hide_index=True, width="stretch")


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
        st.markdown(f"Both models scored on the same **{result['n']}** held-out items: "
                    f"{escape_markdown(result['held_out'])}.")
        table = pd.DataFrame(compare.metrics_table(result))
        st.dataframe(table.round(4), hide_index=True)
        if "y_true" in arrays:
            st.plotly_chart(charts.comparison_roc_figure(arrays["y_true"], {
                f"production {result['production_version']}": arrays["prob_production"],
                f"candidate {result['candidate_version']}": arrays["prob_candidate"]}), key="comparison-roc")
    if entry.status == "candidate":
        promote_or_discard(job.task, entry.version)


OUTCOME = "admin-decision-outcome"  # what the last promote / roll back / discard click did, shown on the next draw


def decide(action: str, task_key: str, version: str, expected_production: str | None) -> None:
    """A decision button's callback. Its arguments were fixed when the page drew the button, so it acts on the
    version the admin saw, against the production the page showed; it runs before the page is drawn again, so
    nothing re-read at click time can change what is decided. The registry refuses any mismatch."""
    user = signed_in()  # the session and the account as they are now: an expired session cannot act
    try:
        if user is None:
            raise auth.NotAllowed("Your session has ended; nothing was changed.")
        if action == "discard":
            registry.discard(task_key, version, user)
            done = f"Discarded `{version}`."
        elif action == "delete examples":
            retention.delete_training_examples(version, user)
            done = f"The training-film examples of `{version}` were deleted."
        else:
            registry.put_in_production(task_key, version, user, expected_production)
            done = f"`{version}` is now in production."
    except (registry.RegistryError, ModelLoadError, auth.NotAllowed) as exc:
        st.session_state[OUTCOME] = ("error", escape_markdown(str(exc)))
    else:
        st.session_state[OUTCOME] = ("success", done)


def chosen_key(task_key: str, production: str | None) -> str:
    """The choice's widget key, per production version: after a promotion or rollback the choice starts again at
    the version production replaced, instead of keeping what was chosen before."""
    return f"put-in-production-{task_key}-{production}"


def decide_chosen(task_key: str, expected_production: str | None) -> None:
    """The versions tab's form: the version is the one submitted with the click, production the one drawn."""
    decide("promote", task_key, st.session_state[chosen_key(task_key, expected_production)], expected_production)


def show_outcome() -> None:
    """Always one slot, filled or not: an element that comes and goes above the tabs would reset the open tab."""
    slot = st.empty()
    if outcome := st.session_state.pop(OUTCOME, None):
        kind, text = outcome
        (slot.error if kind == "error" else slot.success)(text)


def promote_or_discard(task_key: str, version: str) -> None:
    """The two decisions on a candidate; each click carries this version and the production this page drew."""
    expected = shown_productions[task_key]
    left, right = st.columns(2)
    left.button("Promote to production", type="primary", icon=":material/publish:",
                key=f"promote-{task_key}-{version}-over-{expected}", on_click=decide,
                args=("promote", task_key, version, expected))
    right.button("Discard candidate", icon=":material/delete:", key=f"discard-{task_key}-{version}",
                 on_click=decide, args=("discard", task_key, version, expected))


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
                    data_path, admin, config.store_dir() / "local-calibration", target, uploaded=upload is not None)
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
    st.markdown(f"Same weights as `{result['based_on']}`. Calibration chosen by {result['chosen_by']}: "
                f"**{result['method']}** ({', '.join(f'{k} {v:.3f}' for k, v in result['cv_ece'].items())}). "
                f"Threshold {result['threshold_before']:.1%} → **{result['threshold_after']:.1%}**. "
                f"{result['n_normal']} NORMAL and {result['n_pneumonia']} PNEUMONIA films; status **{entry.status}**.")
    st.dataframe(pd.DataFrame(charts.figures_table([
        {"title": f"production {result['based_on']}", "source": "as it is now", "metrics": result["before"]},
        {"title": f"candidate {entry.version}", "source": result["after_is"], "metrics": result["after"]}])),
        hide_index=True, width="stretch")
    if entry.status == "candidate":
        promote_or_discard("xray", entry.version)


def adaptation_form(task: tasks.Task) -> None:
    """Adapt production to the hospital's own films without labels (AdaBN, prevalence): a candidate version."""
    st.markdown("Many hospitals have thousands of films without confirmed findings. Adaptation re-estimates the "
                "network's batch-normalisation statistics on your films (AdaBN) and your share of pneumonia (EM on "
                "the model's probabilities) and registers the result as a **candidate version**, without labels. "
                "Sub-folder names are never read as labels. Check it with a local validation before promoting.")
    with st.form("adaptation"):
        path = st.text_input("Folder of your films on the server (any layout)",
                             placeholder=str(config.data_dir() / "chest_xray" / "local_unlabelled"))
        upload = st.file_uploader("…or upload a zip of films", type=["zip"], max_upload_size=64)
        left, right = st.columns(2)
        batch_norm = left.checkbox("Re-estimate batch-normalisation statistics (AdaBN)", True)
        prevalence = right.checkbox("Re-estimate the share of pneumonia (EM)", True)
        submitted = st.form_submit_button("Adapt", type="primary", icon=":material/tune:")
    if submitted:
        data_path = None
        try:
            if upload is not None:
                data_path = save_upload(task.key, upload.name, upload.getvalue(), unlabelled=True)
            elif path.strip():
                data_path = Path(path.strip()).expanduser()
            else:
                raise UploadRejected("Give a path on the server or upload the films.")
            with st.spinner("Reading your films and adapting…"):
                st.session_state["adaptation_result"] = adapt_and_register(
                    task.key, data_path, admin, config.store_dir() / "adaptation", batch_norm, prevalence,
                    uploaded=upload is not None)
        except (AdaptationRefused, UploadRejected, auth.NotAllowed, registry.RegistryError, ValueError) as exc:
            st.error(escape_markdown(str(exc)))
        finally:
            if upload is not None and data_path is not None:
                discard_upload(data_path)
    result = st.session_state.get("adaptation_result")
    if result is None:
        return
    entry = registry.get(task.key, result["version"])
    record = result["adaptation"]
    st.subheader(f"Adapted candidate `{entry.version}`")
    for warning in record["warnings"]:
        st.warning(escape_markdown(warning), icon=":material/warning:")
    prevalence_text = (f"share of pneumonia {record['prevalence']['trained']:.0%} at training, "
                       f"{record['prevalence']['estimated_local']:.0%} estimated on your films"
                       if record["prevalence"] else "share of pneumonia unchanged")
    st.markdown(f"Based on `{record['based_on']}`, from {record['films']} films ({record['unreadable']} unreadable); "
                f"{prevalence_text}; status **{entry.status}**.")
    st.plotly_chart(charts.adaptation_figure(result["logits_before"], result["logits_after"]), key="adaptation-chart")
    if entry.status == "candidate":
        promote_or_discard(task.key, entry.version)


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
shown_productions = {task.key: shown_production}
tools = task.family.admin_tools  # what this kind of model offers besides retraining (tasks.ADMIN_TOOLS)
if "synthetic_films" in tools:  # the film generator's versions are decided on this page's Synthetic films tab
    generator_in_production = registry.production("xray_gan")
    shown_productions["xray_gan"] = generator_in_production.version if generator_in_production else None
show_outcome()
if current is not None:
    st.markdown(f"In production: `{current.version}` ({current.origin}, registered {when(current.created_at)} "
                f"by {escape_markdown(current.created_by)}).")
tab_tools = [tool for tool in tools if tool != "federated"]  # federated training sits in the Retrain tab
retrain_tab, versions_tab, *tool_tabs = st.tabs(["Retrain", "Versions and rollback"]
                                                + [tasks.ADMIN_TOOLS[tool] for tool in tab_tools])
all_jobs = jobs.list_jobs()
running = next((j for j in all_jobs if j.active), None)

with retrain_tab:
    if running is not None and running.task == "xray_gan":
        st.info("A film generator is training (see the Synthetic films tab); one training runs at a time.")
    elif running is not None:
        live_progress(running.id)
    else:
        start_form(task)
        if "federated" in tools:
            with st.expander(tasks.ADMIN_TOOLS["federated"], icon=":material/hub:"):
                federated_form(task)
    finished = next((j for j in all_jobs if j.task == task.key and not j.active), None)
    if finished is not None and running is None:
        show_result(finished)

def intended_use_setting() -> None:
    """The X-ray model's intended use, and the one part of it an administrator may relax (off by default). The
    setting changes only on a click (on_change): a page drawn before another admin's change never reverts it."""
    declared = IntendedUse.from_meta(current.summary if current else {})
    st.markdown(f"**Intended use.** {escape_markdown(declared.statement())} Films outside it are refused.")
    st.session_state["allow-outside-age"] = settings.allow_outside_age()  # what the store says now
    st.toggle(f"Score patients outside {declared.population} (each result then carries a warning on the page, the "
              "PDF, the SR and the audit log)", key="allow-outside-age", on_change=change_outside_age)
    if outcome := st.session_state.pop("allow-outside-age-outcome", None):
        (st.success if outcome.startswith("Saved") else st.error)(escape_markdown(outcome))


def change_outside_age() -> None:
    wanted = st.session_state["allow-outside-age"]
    try:
        settings.set_value(ALLOW_OUTSIDE_AGE, "on" if wanted else "off", admin)
        st.session_state["allow-outside-age-outcome"] = "Saved: every server applies it from the next film."
    except auth.NotAllowed as exc:
        st.session_state["allow-outside-age-outcome"] = str(exc)


with versions_tab:
    if task.key == "xray":
        intended_use_setting()
    versions = registry.list_versions(task.key)
    st.dataframe(versions_table(task, versions), hide_index=True, width="stretch",
                 column_config={"version": st.column_config.TextColumn(width="large"),
                                "status": st.column_config.TextColumn(width="medium")})
    # Earlier production versions first, the one production replaced at the top (a rollback's usual target), then
    # candidates, newest first.
    earlier = [v.version for v in registry.fallback_order(task.key) if not v.is_production]
    choices = earlier + [v.version for v in versions if v.status == "candidate" and v.version not in earlier]
    if choices:
        # One form: the version chosen travels with the click itself (a click right after a change of the choice,
        # before the page is drawn again, acts on what the admin sees selected), the production shown in its args.
        with st.form(f"put-in-production-form-{task.key}", border=False):
            st.selectbox("Version to put in production", choices, key=chosen_key(task.key, shown_production))
            st.form_submit_button("Put in production", icon=":material/history:", on_click=decide_chosen,
                                  args=(task.key, shown_production))
    st.markdown("**History**")
    st.dataframe(pd.DataFrame([{"when": when(h["at"]), "action": h["action"], "version": h["version"],
                                "replaced": h["previous"] or "", "by": h["by"]} for h in registry.history(task.key)]),
                 hide_index=True, width="stretch")

for tool, tab in zip(tab_tools, tool_tabs):
    with tab:
        if tool == "local_validation":
            local_validation_form()
        elif tool == "adaptation":
            adaptation_form(task)
        elif tool == "synthetic_films":
            synthetic_films_tab(running, next((j for j in all_jobs if j.task == "xray_gan" and not j.active), None))
