"""`medcore train | evaluate | predict | quality-refit | calibration-refit`: models made, measured and used.

The release check runs `medcore evaluate xray --data DIR --json` on hidden held-out data: these flags are a
contract (add, never rename).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medcore import tasks
from medcore.cli.common import cli_user, emit, progress_to_stderr, served_model
from medcore.training.options import add_cli_flags, from_cli

def cmd_train(args: argparse.Namespace) -> int:
    """`medcore train xray|notes`: the same trainer the admin page's jobs run."""
    task = tasks.get(args.task_name)
    options = from_cli(task.family.options.resolve(), args)
    if getattr(args, "workers", 1) > 1:  # several worker processes on this machine (MultiWorkerMirroredStrategy)
        from medcore.training.multiworker import train_on_workers

        meta = train_on_workers(Path(args.data), Path(args.out), options, args.workers, progress=progress_to_stderr)
    else:
        meta = task.train(Path(args.data), Path(args.out), options, progress=progress_to_stderr)
    metrics = meta["metrics"]
    emit({"model": str(Path(args.out).resolve()), "version": meta["version"], "validation": metrics["validation"],
           **({"baseline": metrics["baseline_validation"]} if "baseline_validation" in metrics else {}),
           "seconds": meta["training"]["seconds"]})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`medcore evaluate xray|notes`: metrics on labelled data (the release check runs this)."""
    task = tasks.get(args.task_name)
    if getattr(args, "record_external", False):
        from medcore.training.external import record_external

        if not args.model:
            raise ValueError("--record-external needs --model FOLDER (an unregistered model folder).")
        external = record_external(Path(args.model), Path(args.data), "medcore " + " ".join(sys.argv[1:]),
                                   part=args.part, force=args.force, actor=cli_user())
        print(f"medcore: recorded in {args.model} (external.npz, meta.json, model_card.md)", file=sys.stderr)
        result = external["figures"]
    else:
        result = task.evaluate(served_model(task.key, args.model), Path(args.data))
        if task.key == "xray":
            result["lockbox_films"] = _lockbox_films(Path(args.data))
    if args.json:
        emit(result)
    else:
        keys = ("n", "auc", "accuracy", "sensitivity", "specificity", "f1", "macro_f1", "ece", "threshold")
        for key in (k for k in keys if k in result):
            print(f"{key:12s} {result[key]}")
    return 0


def _lockbox_films(data_dir: Path) -> int:
    """How many films of a labelled folder were scored before in a lockbox's reporting part (said on stderr too):
    figures on them are not new-patient figures. The evaluation goes on: this is a warning, not a refusal."""
    from medcore.imaging.folders import list_image_folder
    from medcore.training import lockbox

    count = lockbox.reported_films(lockbox.film_digests(list_image_folder(data_dir).files))
    if count:
        print(f"medcore: {count} of these films were scored before in a lockbox's reporting part (a release's "
              "new-patient figures): figures on them are not figures on new patients.", file=sys.stderr)
    return count


def cmd_predict_xray(args: argparse.Namespace) -> int:
    from medcore.audit import content_digest
    from medcore.imaging.service import analyse_file, audit_study

    artifact = served_model("xray", args.model)
    for name in args.files:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            emit({"file": name, "error": f"Cannot read the file: {exc.strerror or exc}"})
            continue
        result = analyse_file(artifact, data, path.name, with_heatmap=False, user=cli_user())
        audit_study(cli_user(), result, content_digest(data), "cli")
        row = {"file": name, **result.as_dict()}
        if args.json:
            emit(row)
        else:
            print(f"{name}: {row.get('decision') or row.get('error')}")
    return 0


def cmd_predict_notes(args: argparse.Namespace) -> int:
    from medcore.notes.explain import ExplanationCache
    from medcore.notes.service import analyse_note
    from medcore.notes.text import NoteRejected, decode_upload

    model = served_model(args.task_name, args.model)
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
        emit({"error": str(exc)})
        return 0
    prediction, attribution, error = analyse_note(model, text, ExplanationCache(capacity=1), cli_user())
    if prediction is None:
        emit({"error": error})
        return 0
    top = prediction.ranked(3)
    best = model.labels.index(top[0][0])
    check = (model.meta.get("conformal") or {}).get("held_out_check", {})  # the sets' measured coverage
    words = attribution.top(best, args.top_words) if attribution is not None else []
    result = {"task": model.task, "model_version": model.version, "prediction": top[0][0],
              "finding": prediction.finding, "confidence_threshold": round(prediction.confidence_threshold, 4),
              "prediction_set": prediction.prediction_set,
              "coverage": check.get("coverage", prediction.level),  # measured on held-out notes, not promised
              "level": prediction.level, **({"coverage_range": check["coverage_range"]} if "coverage_range" in check
                                            else {}),
              "top": [{"label": label, "probability": round(p, 4)} for label, p in top],
              "attributions": [{"word": w, "shap": round(v, 4)} for w, v in words],
              **({"explanation_error": error} if error else {}),
              "warnings": prediction.note.warnings}
    if args.json:
        emit(result)
    else:
        print(f"{prediction.finding}: {top[0][0]} ({top[0][1]:.1%})")
    return 0


def cmd_prediction_sets_refit(args: argparse.Namespace) -> int:
    from medcore.training.train_notes import refit_prediction_sets

    record = refit_prediction_sets(Path(args.model), " ".join(["medcore"] + sys.argv[1:]))
    emit({"model": args.model, "level": record["level"], "previous_level": record["refit"]["previous_level"],
          "held_out_check": record["held_out_check"]})
    return 0


def cmd_quality_refit_xray(args: argparse.Namespace) -> int:
    from medcore.training.train_xray import refit_quality_reference

    emit({"model": args.model, "thresholds": refit_quality_reference(Path(args.model), Path(args.data))})
    return 0


def cmd_calibration_refit_xray(args: argparse.Namespace) -> int:
    from medcore.training.train_xray import refit_calibration

    meta = refit_calibration(Path(args.model), Path(args.data), " ".join(["medcore"] + sys.argv[1:]))
    emit({"model": args.model, "version": meta["version"], "based_on": meta["refit"]["based_on"],
           "threshold": meta["threshold"], "previous_threshold": meta["refit"]["previous_threshold"],
           "threshold_rule": meta["threshold_rule"], "validation": meta["metrics"]["validation"]})
    return 0


def register(commands) -> None:
    xray_task, notes_names = tasks.get("xray"), tasks.names(tasks.notes_tasks())
    train = commands.add_parser("train", help="train a model").add_subparsers(dest="task", required=True)
    xray = train.add_parser("xray", help=f"{xray_task.title} from {xray_task.family.data_help}")
    xray.set_defaults(func=cmd_train, task_name="xray")
    xray.add_argument("--workers", type=int, default=1, help="train with this many worker processes on this machine "
                      "(TensorFlow's MultiWorkerMirroredStrategy; across machines, set TF_CONFIG on each instead)")
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
    xray.add_argument("--part", choices=("choosing", "reporting"), default="reporting",
                      help="with --record-external: the external sample's part (split by patient, fixed seed): "
                           "'choosing' for comparing ideas, 'reporting' for a release's figures (a film scored in a "
                           "reporting part, for any model, is refused there again unless forced)")
    xray.add_argument("--force", action="store_true", help="with --part reporting: score it again (recorded)")

    refit = commands.add_parser("quality-refit", help="recompute a model's out-of-distribution reference")
    xray = refit.add_subparsers(dest="task", required=True).add_parser("xray")
    xray.add_argument("--data", required=True, help="the folder the model was trained on")
    xray.add_argument("--model", required=True)
    xray.set_defaults(func=cmd_quality_refit_xray)

    refit = commands.add_parser("prediction-sets-refit", help="fit an unregistered case-note model's prediction sets "
                                "again by the current level rule, from its stored out-of-fold notes")
    notes = refit.add_subparsers(dest="task", required=True).add_parser("notes")
    notes.add_argument("--model", required=True)
    notes.set_defaults(func=cmd_prediction_sets_refit)

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
