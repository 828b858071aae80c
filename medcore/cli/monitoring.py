"""`medcore drift xray`: the drift monitor's checks on recent use of production, for a script or a cron job."""

from __future__ import annotations

import argparse

from medcore.cli.common import emit, served_model

ADVICE = ("Recent films differ from the validation films: measure the model on them (local validation: medcore "
          "calibrate xray) or adapt it to them without labels (medcore adapt xray), then compare and promote.")


def cmd_drift_xray(args: argparse.Namespace) -> int:
    """Each check with its statistic, reference, p-value and warning; exit status 0 either way (read `warning`)."""
    from medcore import drift

    model = served_model("xray", args.model)
    report = drift.report(model, drift.recent_studies(args.days))
    checks = [{"check": c.name, "statistic": round(c.recent, 4), "reference": round(c.reference, 4),
               "p_value": c.p_value, "warning": c.warning, "test": c.unavailable or c.test} for c in report.checks]
    result = {"model_version": model.version, "days": args.days, "studies": report.n,
              "invalid_outputs": report.invalid_outputs, "alpha": drift.ALPHA, "min_studies": drift.MIN_STUDIES,
              "warning": bool(report.warnings), "checks": checks}
    if report.warnings:
        result["advice"] = ADVICE
    if args.json:
        emit(result)
    else:
        print(f"{model.version}: {report.n} studies in {args.days} days")
        for c in report.checks:
            p = (c.unavailable or "not tested: too few studies") if c.p_value is None else f"p = {c.p_value:.3g}"
            print(f"{'WARNING' if c.warning else 'ok':8s} {c.name}: {round(c.recent, 4)} ({p})")
        if report.warnings:
            print(ADVICE)
    return 0


def _days(text: str) -> int:
    days = int(text)
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError("the period is 1 to 3650 days")
    return days


def register(commands) -> None:
    drift = commands.add_parser("drift", help="is recent use like the validation films? (the performance page's "
                                              "checks)").add_subparsers(dest="task", required=True)
    xray = drift.add_parser("xray", help="the drift checks on the audited X-ray studies of the last N days")
    xray.add_argument("--days", type=_days, default=30, help="look back this many days (default 30)")
    xray.add_argument("--model", help="a model folder instead of the registry's production model")
    xray.add_argument("--json", action="store_true", help="print one JSON object")
    xray.set_defaults(func=cmd_drift_xray)
