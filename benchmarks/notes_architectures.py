"""Compare the case-note architectures by 5-fold cross-validation of the full training recipe on the training CSV.

    python benchmarks/notes_architectures.py --task medical_abstracts \
        --data ../shared/data/case_notes/medical_abstracts_train.csv [--write-card assets/models/notes_medical_abstracts]

Every fold trains linear, mlp, bigru and transformer with `medcore train notes` defaults and scores the held-out
fold; ensembles average the members' calibrated probabilities. About 45 minutes for medical_abstracts and 15 for
symptom2disease on 2 CPU cores; an interrupted run resumes from its work folder. Writes
benchmarks/results/notes_architectures_<task>.json; --write-card puts the table in that model's card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcore import config  # noqa: E402
from medcore.training.notes_cv import cross_validate_architectures  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ARCHS = ["linear", "mlp", "bigru", "transformer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--data", required=True, help="the task's training CSV (label,text)")
    parser.add_argument("--archs", nargs="+", default=ARCHS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", default=None, help="folder for the fold models, kept so that a rerun resumes "
                                                     "(default: <store>/notes_cv/<task>)")
    parser.add_argument("--write-card", metavar="MODEL_DIR", help="record the table in this model's meta and card")
    args = parser.parse_args()
    work = Path(args.work) if args.work else config.store_dir() / "notes_cv" / args.task
    table = cross_validate_architectures(Path(args.data), args.task, args.archs, work, args.folds, args.seed)
    table["command"] = (f"python benchmarks/notes_architectures.py --task {args.task} --data "
                        f"../shared/data/case_notes/{Path(args.data).name}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"notes_architectures_{args.task}.json").write_text(json.dumps(table, indent=2))
    for name, row in sorted(table["rows"].items(), key=lambda r: -r[1]["macro_f1"]["mean"]):
        f1 = row["macro_f1"]
        print(f"{name:45s} macro-F1 {f1['mean']:.4f} ± {f1['sd']:.4f}  ECE {row['ece']['mean']:.4f}")
    if args.write_card:
        from medcore.model_card import notes_model_card

        meta_path = Path(args.write_card) / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["architectures"] = table
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
        (Path(args.write_card) / "model_card.md").write_text(notes_model_card(meta))


if __name__ == "__main__":
    main()
