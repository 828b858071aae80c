"""`medcore train | evaluate | calibrate | federated | gan | predict | models | jobs | users`: the public command line (JSON on stdout).

The release check runs `medcore evaluate xray --data DIR --json` on hidden held-out data, so the
flags here are a contract: add, never rename. Progress and warnings go to stderr; stdout carries
only the JSON result.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from medcore import config, tasks
from medcore.training.options import GanTrainingOptions, add_cli_flags, from_cli


def _emit(obj: dict) -> None:
    print(json.dumps(_finite(obj)), flush=True)


def _finite(obj):
    """NaN is not JSON: write null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _progress_to_stderr(event: dict) -> None:
    print(json.dumps(_finite(event)), file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    """`medcore train xray|notes`: the same trainer the admin page's jobs run."""
    task = tasks.get(args.task_name)
    options = from_cli(task.family.options.resolve(), args)
    meta = task.train(Path(args.data), Path(args.out), options, progress=_progress_to_stderr)
    metrics = meta["metrics"]
    _emit({"model": str(Path(args.out).resolve()), "version": meta["version"], "validation": metrics["validation"],
           **({"baseline": metrics["baseline_validation"]} if "baseline_validation" in metrics else {}),
           "seconds": meta["training"]["seconds"]})
    return 0


def cmd_quality_refit_xray(args: argparse.Namespace) -> int:
    from medcore.training.train_xray import refit_quality_reference

    _emit({"model": args.model, "thresholds": refit_quality_reference(Path(args.model), Path(args.data))})
    return 0


def cmd_calibration_refit_xray(args: argparse.Namespace) -> int:
    from medcore.training.train_xray import refit_calibration

    meta = refit_calibration(Path(args.model), Path(args.data), " ".join(["medcore"] + sys.argv[1:]))
    _emit({"model": args.model, "version": meta["version"], "based_on": meta["refit"]["based_on"],
           "threshold": meta["threshold"], "previous_threshold": meta["refit"]["previous_threshold"],
           "threshold_rule": meta["threshold_rule"], "validation": meta["metrics"]["validation"]})
    return 0


def _model(task: str, model_arg: str | None):
    """The model in --model, or the registry's production model (warnings, e.g. a fallback, to stderr)."""
    from medcore import production

    if model_arg:
        return tasks.get(task).load(Path(model_arg))
    served = production.load(task)
    for warning in served.warnings:
        print(f"medcore: {warning}", file=sys.stderr)
    return served.model


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`medcore evaluate xray|notes`: metrics on labelled data (the release check runs this)."""
    task = tasks.get(args.task_name)
    if getattr(args, "record_external", False):
        from medcore.training.external import record_external

        if not args.model:
            raise ValueError("--record-external needs --model FOLDER (an unregistered model folder).")
        external = record_external(Path(args.model), Path(args.data), "medcore " + " ".join(sys.argv[1:]))
        print(f"medcore: recorded in {args.model} (external.npz, meta.json, model_card.md)", file=sys.stderr)
        result = external["figures"]
    else:
        result = task.evaluate(_model(task.key, args.model), Path(args.data))
    if args.json:
        _emit(result)
    else:
        keys = ("n", "auc", "accuracy", "sensitivity", "specificity", "f1", "macro_f1", "ece", "threshold")
        for key in (k for k in keys if k in result):
            print(f"{key:12s} {result[key]}")
    return 0


def cmd_calibrate_xray(args: argparse.Namespace) -> int:
    """`medcore calibrate xray`: local validation, a new calibration and threshold, registered as a candidate."""
    from medcore.training.local_calibration import calibrate_and_register

    result = calibrate_and_register(Path(args.data), _operator(), config.store_dir() / "local-calibration",
                                    args.min_sensitivity)
    for warning in result["warnings"]:
        print(f"medcore: warning: {warning}", file=sys.stderr)
    if args.json:
        _emit(result)
    else:
        for name in ("before", "after"):
            figures = result[name]
            print(f"{name:7s} sensitivity {figures['sensitivity']:.3f} specificity {figures['specificity']:.3f} "
                  f"ECE {figures['ece']:.3f}")
        print(f"registered {result['version']} ({result['status']}); promote with: medcore models promote xray "
              f"{result['version']}")
    return 0


def cmd_federated_split(args: argparse.Namespace) -> int:
    """`medcore federated split`: three unequal simulated hospitals from one training folder (links, not copies)."""
    from medcore.federated.sites import split_hospitals

    _emit(split_hospitals(Path(args.data), Path(args.out), args.seed))
    return 0


def cmd_federated_xray(args: argparse.Namespace) -> int:
    """`medcore federated xray`: a Flower run across --sites; the model is registered as a candidate version."""
    import time

    from medcore import registry
    from medcore.federated.run import run_federated

    options = from_cli(tasks.XRAY.options.resolve(), args)
    out = Path(args.out) if args.out else config.store_dir() / "federated" / time.strftime("%Y%m%d-%H%M%S")
    meta = run_federated([Path(s) for s in args.sites], out, args.rounds, args.strategy, options, args.local_epochs,
                         args.proximal_mu, progress=_progress_to_stderr, timeout_s=args.timeout,
                         noise_multiplier=args.noise_multiplier, clipping_norm=args.clipping_norm)
    result = {"model": str(out.resolve()), "version": meta["version"], "validation": meta["metrics"]["validation"],
              "federated": {k: v for k, v in meta["federated"].items() if k != "history"},
              "rounds": [r for r in meta["federated"]["history"] if r["kind"] == "validation"],
              "seconds": meta["training"]["seconds"]}
    if not args.out:
        entry = registry.register("xray", out, _cli_user(), origin="federated")
        result.update(model=str(entry.path), status=entry.status)
    if args.json:
        _emit(result)
    else:
        print(f"{meta['version']}: pooled validation AUC {meta['metrics']['validation']['auc']:.4f} after "
              f"{args.rounds} rounds ({meta['training']['seconds'] / 60:.1f} min)")
    return 0


def cmd_gan_train(args: argparse.Namespace) -> int:
    """`medcore gan train`: train, judge and write a film generator; --register makes it a candidate version."""
    from medcore import registry
    from medcore.training.train_gan import train_gan

    out = Path(args.out)
    meta = train_gan(Path(args.data), out, from_cli(GanTrainingOptions, args), progress=_progress_to_stderr)
    result = {"model": str(out.resolve()), "version": meta["version"], "quality": meta["metrics"]["validation"],
              "memorization": {k: v for k, v in meta["memorization"].items() if k != "closest"},
              "seconds": meta["training"]["seconds"]}
    if args.register:
        entry = registry.register("xray_gan", out, _cli_user())
        result.update(model=str(entry.path), status=entry.status)
    if args.json:
        _emit(result)
    else:
        quality = meta["metrics"]["validation"]
        print(f"{meta['version']}: Fréchet ratio {quality['fd_ratio']:.2f}, precision {quality['precision']:.2f}, "
              f"recall {quality['recall']:.2f}, gate accepts {quality['gate_accepted']:.0%} "
              f"({meta['training']['seconds'] / 60:.1f} min) -> {result['model']}")
    return 0


def cmd_gan_sample(args: argparse.Namespace) -> int:
    """`medcore gan sample`: N marked and tagged PNG films of one class (never readable as a patient's film)."""
    from medcore import registry
    from medcore.gan.network import load_generator
    from medcore.imaging.synthetic import mark_synthetic

    if args.model:
        folder = Path(args.model)
    else:
        entry = registry.production("xray_gan")
        if entry is None:
            raise ValueError("No film generator is in production: train one with `medcore gan train --register` "
                             "and promote it, or pass --model DIR.")
        registry.verify(entry)
        folder = entry.path
    generator = load_generator(folder)
    if args.n < 1:
        raise ValueError("--n must be at least 1.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, pixels in enumerate(generator.sample(args.label, args.n, args.seed)):
        path = out / f"synthetic_{args.label}_seed{args.seed}_{i:04d}.png"
        path.write_bytes(mark_synthetic(pixels, generator.version))
        written.append(str(path))
    _emit({"generator": generator.version, "label": args.label, "seed": args.seed, "n": len(written),
           "out": str(out.resolve())})
    return 0


def _cli_user() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _operator():
    """Whoever runs the CLI on the server administers it (auth.operator)."""
    from medcore import auth

    return auth.operator(_cli_user())


def cmd_predict_xray(args: argparse.Namespace) -> int:
    from medcore.audit import content_digest
    from medcore.imaging.service import analyse_file, audit_study

    artifact = _model("xray", args.model)
    for name in args.files:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            _emit({"file": name, "error": f"Cannot read the file: {exc.strerror or exc}"})
            continue
        result = analyse_file(artifact, data, path.name, with_heatmap=False, user=_cli_user())
        audit_study(_cli_user(), result, content_digest(data), "cli")
        row = {"file": name, **result.as_dict()}
        if args.json:
            _emit(row)
        else:
            print(f"{name}: {row.get('decision') or row.get('error')}")
    return 0


def cmd_predict_notes(args: argparse.Namespace) -> int:
    from medcore.notes.explain import ExplanationCache
    from medcore.notes.service import analyse_note
    from medcore.notes.text import NoteRejected, decode_upload

    model = _model(args.task_name, args.model)
    try:
        if args.text is not None:
            text = args.text
        elif args.file and args.file != "-":
            text = decode_upload(Path(args.file).read_bytes())
        elif sys.stdin.isatty():
            raise ValueError("Give the note with --file NOTE.txt, or on standard input (… < NOTE.txt).")
        else:  # standard input: the note stays out of the process list and the shell history
            text = decode_upload(sys.stdin.buffer.read())
    except NoteRejected as exc:
        _emit({"error": str(exc)})
        return 0
    prediction, attribution, error = analyse_note(model, text, ExplanationCache(capacity=1), _cli_user())
    if prediction is None:
        _emit({"error": error})
        return 0
    top = prediction.ranked(3)
    best = model.labels.index(top[0][0])
    words = attribution.top(best, args.top_words) if attribution is not None else []
    result = {"task": model.task, "model_version": model.version, "prediction": top[0][0],
              "finding": prediction.finding, "confidence_threshold": round(prediction.confidence_threshold, 4),
              "top": [{"label": label, "probability": round(p, 4)} for label, p in top],
              "attributions": [{"word": w, "shap": round(v, 4)} for w, v in words],
              **({"explanation_error": error} if error else {}),
              "warnings": prediction.note.warnings}
    if args.json:
        _emit(result)
    else:
        print(f"{prediction.finding}: {top[0][0]} ({top[0][1]:.1%})")
    return 0


def _version_row(entry) -> dict:
    metrics = entry.summary.get("metrics", {}).get("validation", {})
    keys = ("auc", "sensitivity", "specificity", "macro_f1", "accuracy", "ece")
    return {"task": entry.task, "version": entry.version, "status": entry.status, "origin": entry.origin,
            "created_by": entry.created_by, "created_at": _iso(entry.created_at),
            "data_fingerprint": entry.summary.get("data", {}).get("fingerprint"),
            "validation": {k: metrics[k] for k in keys if k in metrics}}


def _iso(timestamp: float | None) -> str | None:
    import datetime

    return None if timestamp is None else datetime.datetime.fromtimestamp(timestamp).isoformat(timespec="seconds")


def cmd_models_list(args: argparse.Namespace) -> int:
    from medcore import registry

    keys = [tasks.get(name).key for name in args.task_name] if args.task_name else tasks.KEYS
    rows = [_version_row(v) for task in keys for v in registry.list_versions(task)]
    return _listing("versions", rows, args.json,
                    lambda row: f"{row['task']:26s} {row['version']:44s} {row['status']:20s} {row['created_at']}")


def _listing(key: str, rows: list[dict], as_json: bool, line) -> int:
    """One JSON object {key: rows}, or one text line per row."""
    if as_json:
        _emit({key: rows})
    else:
        for row in rows:
            print(line(row))
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    from medcore import registry

    task = tasks.get(args.task_name).key
    previous = registry.promote(task, args.version, _operator())
    _emit({"task": task, "production": args.version, "previous": previous})
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from medcore import registry

    task = tasks.get(args.task_name).key
    current = registry.production(task)
    version = registry.rollback(task, _operator(), to=args.to)
    _emit({"task": task, "production": version, "previous": current.version if current else None})
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from medcore import jobs

    rows = [{"id": j.id, "task": j.task, "status": j.status, "created_by": j.created_by,
             "created_at": _iso(j.created_at), "finished_at": _iso(j.finished_at), "data": j.data_label,
             "candidate_version": j.candidate_version, "error": j.error} for j in jobs.list_jobs(args.limit)]
    return _listing("jobs", rows, args.json, lambda row: f"{row['id']:32s} {row['task']:26s} {row['status']:10s} "
                                                         f"{row['candidate_version'] or row['error'] or ''}")


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from medcore import jobs

    jobs.cancel(args.job_id, _operator())
    _emit({"job": args.job_id, "cancel_requested": True})
    return 0


def _read_new_password(name: str) -> str:
    """From MEDCORE_NEW_PASSWORD (scripts), else typed twice without echo."""
    import getpass

    if scripted := config.new_password_from_environment():
        return scripted
    password = getpass.getpass(f"Password for {name}: ")
    if getpass.getpass("Repeat it: ") != password:
        raise ValueError("The two passwords differ; nothing was changed.")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from medcore import audit, auth

    user = auth.add_user(args.name, _read_new_password(args.name), "admin" if args.admin else "clinician", _cli_user())
    audit.record(_cli_user(), "user_add", "created", account=user.name, role=user.role)
    _emit({"user": user.name, "role": user.role})
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from medcore import auth

    _emit({"users": [{"name": u.name, "role": u.role, "disabled": u.disabled} for u in auth.list_users()]})
    return 0


def cmd_users_password(args: argparse.Namespace) -> int:
    from medcore import audit, auth

    auth.set_password(args.name, _read_new_password(args.name))
    audit.record(_cli_user(), "user_password", "changed", account=args.name)
    _emit({"user": args.name, "password": "changed"})
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    from medcore import audit, auth

    auth.set_disabled(args.name, not args.enable)
    audit.record(_cli_user(), "user_disable", "enabled" if args.enable else "disabled", account=args.name)
    _emit({"user": args.name, "disabled": not args.enable})
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    xray_task, notes_names = tasks.get("xray"), tasks.names(tasks.notes_tasks())
    train = commands.add_parser("train", help="train a model").add_subparsers(dest="task", required=True)
    xray = train.add_parser("xray", help=f"{xray_task.title} from {xray_task.family.data_help}")
    xray.set_defaults(func=cmd_train, task_name="xray")
    notes = train.add_parser("notes", help=f"case-note classifier from {tasks.NOTES.data_help}")
    notes.add_argument("--task", dest="task_name", required=True, choices=notes_names)
    notes.set_defaults(func=cmd_train)
    for parser_, family in ((xray, tasks.XRAY), (notes, tasks.NOTES)):
        parser_.add_argument("--data", required=True, help=family.data_help)
        parser_.add_argument("--out", required=True, help="folder to write the model to")
        add_cli_flags(parser_, family.options.resolve())

    evaluate = commands.add_parser("evaluate", help="metrics on labelled data").add_subparsers(
        dest="task", required=True)
    xray = evaluate.add_parser("xray", help="evaluate on NORMAL/ PNEUMONIA/ folders")
    xray.set_defaults(func=cmd_evaluate, task_name="xray")
    notes = evaluate.add_parser("notes", help="evaluate on a CSV with label,text columns")
    notes.add_argument("--task", dest="task_name", required=True, choices=notes_names)
    notes.set_defaults(func=cmd_evaluate)
    for parser_ in (xray, notes):
        parser_.add_argument("--data", required=True)
        parser_.add_argument("--model", help="model folder (default: the production model in the registry)")
        parser_.add_argument("--json", action="store_true", help="print one JSON object")
    xray.add_argument("--record-external", action="store_true",
                      help="also store the scores and figures on these new patients in the --model folder and its "
                           "card (measurement only; not for a registered version)")

    calibrate = commands.add_parser("calibrate", help="local validation and recalibration of production on your "
                                                      "own labelled films").add_subparsers(dest="task", required=True)
    xray = calibrate.add_parser("xray", help="score production on DIR (NORMAL/ PNEUMONIA/), refit its calibration "
                                             "and threshold, register the result as a candidate version")
    xray.add_argument("--data", required=True, help="folder with NORMAL/ and PNEUMONIA/ films of your patients")
    xray.add_argument("--min-sensitivity", type=float, help="sensitivity target of the new threshold "
                                                           "(default: the model's own, 0.95)")
    xray.add_argument("--json", action="store_true", help="print one JSON object")
    xray.set_defaults(func=cmd_calibrate_xray)

    federated = commands.add_parser("federated", help="train across hospitals with Flower; no film leaves its site"
                                    ).add_subparsers(dest="task", required=True)
    split = federated.add_parser("split", help="write three unequal simulated hospitals (by patient, as symbolic "
                                               "links) from one NORMAL/ PNEUMONIA/ training folder")
    split.add_argument("--data", required=True)
    split.add_argument("--out", required=True, help="folder for the sites (outside the repository)")
    split.add_argument("--seed", type=int, default=7)
    split.set_defaults(func=cmd_federated_split)
    xray = federated.add_parser("xray", help="a Flower server and one client process per site; the result is "
                                             "registered as a candidate version")
    xray.add_argument("--sites", nargs="+", required=True, help="one NORMAL/ PNEUMONIA/ folder per hospital")
    xray.add_argument("--rounds", type=int, default=10)
    xray.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    xray.add_argument("--local-epochs", type=int, default=1, help="epochs over its own films per site and round")
    xray.add_argument("--proximal-mu", type=float, default=0.01, help="FedProx's proximal term (fedprox only)")
    xray.add_argument("--noise-multiplier", type=float, default=0.0,
                      help="differential privacy: Gaussian noise multiplier on the clipped updates (0: off)")
    xray.add_argument("--clipping-norm", type=float, default=1.0, help="differential privacy: each site's update "
                      "is clipped to this L2 norm (the run's per-round update norms are in its progress)")
    xray.add_argument("--timeout", type=float, default=3600.0, help="seconds before the run is stopped")
    xray.add_argument("--out", help="write the model here instead of registering it")
    xray.add_argument("--json", action="store_true", help="print one JSON object")
    add_cli_flags(xray, tasks.XRAY.options.resolve())
    xray.set_defaults(func=cmd_federated_xray)

    gan = commands.add_parser("gan", help="synthetic chest films from a class-conditional GAN, judged by numbers"
                              ).add_subparsers(dest="action", required=True)
    gan_train = gan.add_parser("train", help="train a generator on a NORMAL/ PNEUMONIA/ folder, measure its quality "
                                             "and check it copies no patient")
    gan_train.add_argument("--data", required=True)
    gan_train.add_argument("--out", required=True, help="folder for the generator")
    gan_train.add_argument("--register", action="store_true", help="register it as a candidate version")
    gan_train.add_argument("--json", action="store_true", help="print one JSON object")

    add_cli_flags(gan_train, GanTrainingOptions)
    gan_train.set_defaults(func=cmd_gan_train)
    sample = gan.add_parser("sample", help="write N synthetic films of one class as marked, tagged PNGs")
    sample.add_argument("--label", required=True, choices=("NORMAL", "PNEUMONIA"))
    sample.add_argument("--n", type=int, default=16)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True)
    sample.add_argument("--model", help="a generator folder (default: the production generator)")
    sample.set_defaults(func=cmd_gan_sample)

    refit = commands.add_parser("quality-refit", help="recompute a model's out-of-distribution reference")
    xray = refit.add_subparsers(dest="task", required=True).add_parser("xray")
    xray.add_argument("--data", required=True, help="the folder the model was trained on")
    xray.add_argument("--model", required=True)
    xray.set_defaults(func=cmd_quality_refit_xray)

    refit = commands.add_parser("calibration-refit", help="refit an unregistered model's calibration and threshold "
                                "on its own validation films by the current rule, weights untouched (a new version)")
    xray = refit.add_subparsers(dest="task", required=True).add_parser("xray")
    xray.add_argument("--data", required=True, help="the folder the model was trained on")
    xray.add_argument("--model", required=True)
    xray.set_defaults(func=cmd_calibration_refit_xray)

    predict = commands.add_parser("predict", help="predict files").add_subparsers(dest="task", required=True)
    xray = predict.add_parser("xray", help="pneumonia probability for radiographs")
    xray.add_argument("files", nargs="+")
    xray.add_argument("--model")
    xray.add_argument("--json", action="store_true", help="one JSON line per file")
    xray.set_defaults(func=cmd_predict_xray)
    notes = predict.add_parser("notes", help="classes and top SHAP words for one note (from --file, or standard "
                                             "input when neither --file nor --text is given)")
    notes.add_argument("--task", dest="task_name", required=True, choices=notes_names)
    source = notes.add_mutually_exclusive_group()
    source.add_argument("--text", help="the note itself (visible in the process list: prefer --file or stdin)")
    source.add_argument("--file", help="a .txt file, or - for standard input")
    notes.add_argument("--model")
    notes.add_argument("--top-words", type=int, default=10)
    notes.add_argument("--json", action="store_true")
    notes.set_defaults(func=cmd_predict_notes)

    every = (*tasks.TASKS, *tasks.GENERATORS)
    models = commands.add_parser("models", help="the model registry").add_subparsers(dest="action", required=True)
    listing = models.add_parser("list", help="every version with its status and validation metrics")
    listing.add_argument("--task", dest="task_name", action="append", choices=tasks.names(every))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_models_list)
    promote = models.add_parser("promote", help="make a version the production model (atomic)")
    promote.add_argument("task_name", choices=tasks.names(every))
    promote.add_argument("version")
    promote.set_defaults(func=cmd_models_promote)
    rollback = models.add_parser("rollback", help="put an earlier version back in production")
    rollback.add_argument("task_name", choices=tasks.names(every))
    rollback.add_argument("--to", help="version to restore (default: the one production replaced)")
    rollback.set_defaults(func=cmd_models_rollback)

    job_commands = commands.add_parser("jobs", help="background training jobs").add_subparsers(
        dest="action", required=True)
    listing = job_commands.add_parser("list", help="recent jobs, newest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_jobs_list)
    cancel = job_commands.add_parser("cancel", help="stop a running job (nothing is registered)")
    cancel.add_argument("job_id")
    cancel.set_defaults(func=cmd_jobs_cancel)

    users = commands.add_parser("users", help="accounts (passwords are read without echo, stored as bcrypt "
                                              "hashes)").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="create an account (clinician unless --admin)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true")
    add.set_defaults(func=cmd_users_add)
    users.add_parser("list").set_defaults(func=cmd_users_list)
    password = users.add_parser("password", help="set a new password (also clears a lock-out)")
    password.add_argument("name")
    password.set_defaults(func=cmd_users_password)
    disable = users.add_parser("disable", help="block an account at once (its open sessions end)")
    disable.add_argument("name")
    disable.add_argument("--enable", action="store_true", help="unblock it instead")
    disable.set_defaults(func=cmd_users_disable)
    return parser


# commands that neither read nor serve registered models
WITHOUT_REGISTRY = {"train", "quality-refit", "calibration-refit", "users"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from medcore import registry
    from medcore.artifacts import ModelLoadError
    from medcore.registry import RegistryError

    try:  # a clear one-line message, not a traceback, for the failures a user can fix
        if args.command not in WITHOUT_REGISTRY:
            registry.ensure_defaults()  # once, at start: installs the shipped models into a new store
        return args.func(args)
    except ModelLoadError as exc:
        print(f"medcore: {exc}", file=sys.stderr)
        return 3
    except (FileNotFoundError, NotADirectoryError, ValueError, RegistryError) as exc:
        print(f"medcore: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
