"""The X-ray release table (issue 24, part 5): the ensemble, the distilled student, each adaptation and each threshold
rule, on internal validation, the external sample's choosing part and its reporting part, side by side with 95 %
intervals. Every figure comes from a result file; nothing is typed by hand.

    python benchmarks/xray_release_table.py --student DIR    # once: the student's recorded figures into
                                                              # benchmarks/results/xray_student.json
    python benchmarks/xray_release_table.py --write          # the README block, the shipped model's meta and card

Sources: the shipped model's and release 1's meta.json (its internal, choosing and reporting figures, recorded by `medcore evaluate
xray --record-external --part ...`), benchmarks/results/xray_student.json, xray_adaptation.json and xray_adaptation_release1.json (adapted on each
part's own films without labels) and threshold_rules.json. Choices were made on the choosing part only; the
reporting part was scored once per row, after them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from readme_blocks import replace_block

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
SHIPPED = ROOT / "assets" / "models" / "xray"
RELEASE_1 = ROOT / "assets" / "models" / "earlier" / "xray" / "xray-20261126-203636-176f"
STUDENT = RESULTS / "xray_student.json"
BEGIN, END = "<!-- xray-release-table: begin -->", "<!-- xray-release-table: end -->"
COLUMNS = ("auc", "sensitivity", "specificity", "ece")
PARTS = (("internal", "internal validation"), ("choosing", "new patients, choosing part"),
         ("reporting", "new patients, reporting part"))


def recorded_figures(meta: dict) -> dict[str, dict]:
    """A model folder's own records: internal, choosing part and reporting part (where measured)."""
    found = {}
    for key, part in (("external_choosing", "choosing"), ("external", "reporting")):
        record = meta.get(key)
        if record and record.get("part", part) == part:
            found[part] = record["figures"]
            found.setdefault("internal", record["internal"])
    return found


def student_summary(folder: Path) -> dict:
    """What the release table needs of a distilled student: its version, recipe, and recorded figures."""
    meta = json.loads((folder / "meta.json").read_text())
    return {"version": meta["version"], "distillation": meta.get("distillation"), "epochs": meta["options"]["epochs"],
            "command": meta["training"]
            .get("command"), "seconds": meta["training"].get("seconds"), "parameters": meta["training"].get(
                "parameters"), "figures": recorded_figures(meta), "lockbox": meta.get("lockbox")}


def rows() -> list[tuple[str, dict[str, dict | None]]]:
    """(variant, {part: figures or None}) in the table's order: release 2 (shipped) and its adaptations, then
    release 1 (kept for rollback) with the students, adaptations and threshold rules compared against it."""
    shipped = json.loads((SHIPPED / "meta.json").read_text())
    release_1 = json.loads((RELEASE_1 / "meta.json").read_text())
    table = [(f"release 2: one network, consistent teacher (shipped, `{shipped['version']}`)",
              recorded_figures(shipped))]
    table += _adapted("release 2 adapted without labels", RESULTS / "xray_adaptation.json", shipped["version"])
    table.append((f"release 1: ensemble of 3 (kept for rollback, `{release_1['version']}`)",
                  recorded_figures(release_1)))
    if STUDENT.exists():
        for student in json.loads(STUDENT.read_text())["students"]:
            d = student["distillation"]
            teacher = "consistent teacher, " if d.get("consistent") else ""
            table.append((f"release 1 experiment: distilled student (`{student['version']}`, {teacher}alpha "
                          f"{d['alpha']}, T {d['temperature']}, {student.get('epochs', 12)} epochs)",
                          student["figures"]))
    table += _adapted("release 1 adapted without labels", RESULTS / "xray_adaptation_release1.json",
                      release_1["version"])
    rules = json.loads((RESULTS / "threshold_rules.json").read_text())
    for row in rules["rows"]:
        if row.get("adaptation") and "(shipped)" in row["rule"]:
            continue  # the same figures as "release 1 adapted without labels: AdaBN + prevalence" above
        figures = {part: row.get(part) for part, _ in PARTS}
        if row.get("adaptation"):  # the adapted network was never scored on the validation films
            figures["internal"] = None
        table.append((f"release 1, threshold rule: {row['rule']}", figures))
    return table


def _adapted(label: str, path: Path, version: str) -> list[tuple[str, dict[str, dict | None]]]:
    """The adaptation rows of one model (benchmarks/xray_adaptation.py's result file for it)."""
    adaptation = json.loads(path.read_text())
    if adaptation["model"] != version:
        raise ValueError(f"{path.name} was measured on {adaptation['model']}, not {version}: run the benchmark again.")
    return [(f"{label}: {name}", {"internal": None, "choosing": choosing,
                                  "reporting": adaptation["reporting_part_once"]["rows"][name]})
            for name, choosing in adaptation["whole_choosing_part"].items() if name != "production as it is"]


def cell(figures: dict | None, key: str) -> str:
    if not figures:
        return "–"
    low, high = figures.get("intervals", {}).get(key, (None, None))
    return f"{figures[key]:.3f}" + (f" ({low:.3f}-{high:.3f})" if low is not None else "")


def cells_and_sources() -> list[tuple[list[str], dict]]:
    """Each rendered row's cells with the figures it was rendered from: what tests/test_figures.py compares."""
    return [(markdown_row(variant, label, figures[part]), figures[part]) for variant, figures in rows()
            for part, label in PARTS if figures.get(part) is not None]


def markdown_row(variant: str, label: str, f: dict) -> list[str]:
    return [variant, label, str(f["n"])] + [cell(f, key) for key in COLUMNS]


def markdown() -> str:
    lines = ["| variant | films scored on | n | AUC | sensitivity | specificity | ECE |",
             "|---|---|---|---|---|---|---|"]
    for variant, figures in rows():
        for part, label in PARTS:
            f = figures.get(part)
            if f is None:  # an adapted network has no internal figures: it was adapted to the part's own films
                continue
            lines.append("| " + " | ".join(markdown_row(variant, label, f)) + " |")
    return "\n".join(lines)


def readme_block() -> str:
    return f"{BEGIN}\n{markdown()}\n{END}"


NOTES = ("Every choice was made on the external sample's choosing part; each row was then scored once on its "
         "reporting part. Adapted networks have no internal row: they were adapted to the part's own films, without "
         "their labels. A distilled student ships only if its AUC on the choosing part is within 0.005 of the "
         "ensemble's and its ECE is no worse: release 1's students failed it (ECE); release 2's student, trained "
         "with the consistent teacher for 20 epochs, passed it, so it ships and the ensemble stays registered for "
         "rollback. Its reporting-part row was scored after that choice (forced: those films had been scored for "
         "release 1). 95 % intervals: Wilson for proportions, bootstrap for AUC and ECE.")


def comparison_record() -> dict:
    """What the shipped model's metadata keeps of the table (its card and the performance page show it)."""
    return {"command": "python benchmarks/xray_release_table.py --write", "notes": NOTES,
            "rows": [{"variant": variant, "part": label, "figures": _kept(figures[part])} for variant, figures in rows()
                     for part, label in PARTS if figures.get(part) is not None]}


def _kept(figures: dict) -> dict:
    keys = [k for k in (*COLUMNS, "accuracy") if k in figures]
    return {"n": figures["n"], **{k: figures[k] for k in keys},
            "intervals": {k: figures["intervals"][k] for k in keys if k in figures.get("intervals", {})}}


SPEED = RESULTS / "bench_xray_release2.json"  # benchmarks/bench_xray.py --model <release 1> --model <release 2>
RULE = ("a distilled student ships only if its AUC on the choosing part is within 0.005 of the ensemble's and its ECE "
        "there is no worse")


def release_record() -> dict:
    """What the card's "why this version ships" section is rendered from: both releases' recorded figures on each
    part, and their speed measured in one run (when benchmarks/results/bench_xray_release2.json exists)."""
    shipped, release_1 = (json.loads((folder / "meta.json").read_text()) for folder in (SHIPPED, RELEASE_1))
    record = {"number": 2, "rule": RULE,
              "figures": {part: _kept(f) for part, f in recorded_figures(shipped).items()},
              "previous": {"version": release_1["version"], "description": "an ensemble of 3 networks",
                           "figures": {part: _kept(f) for part, f in recorded_figures(release_1).items()}}}
    if SPEED.exists():
        models = json.loads(SPEED.read_text())["models"]
        this, previous = models[shipped["version"]], models[release_1["version"]]
        record["speed"] = {key: {"this": this[key], "previous": previous[key]}
                           for key in ("network_gradcam_ms", "batch_network_images_per_s")}
        record["speed"].update(command=f"python benchmarks/bench_xray.py --model ... --model ... ({SPEED.name})",
                               device=f"{this['cpu_threads']} CPU threads")
    return record


def write_card() -> None:
    from medcore.model_card import xray_model_card

    meta = json.loads((SHIPPED / "meta.json").read_text())
    meta["release_comparison"] = comparison_record()
    meta["release"] = release_record()
    (SHIPPED / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    (SHIPPED / "model_card.md").write_text(xray_model_card(meta))


def write() -> None:
    write_card()
    replace_block(readme_block())
    print(markdown())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", action="append", help="a distilled student's model folder (recorded figures)")
    parser.add_argument("--write", action="store_true", help="write the README block")
    args = parser.parse_args()
    if args.student:
        STUDENT.write_text(json.dumps({"students": [student_summary(Path(s)) for s in args.student]}, indent=2)
                           + "\n")
    if args.write:
        write()
    else:
        print(markdown())


if __name__ == "__main__":
    main()
