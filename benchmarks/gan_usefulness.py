"""Do synthetic films help the X-ray classifier on new patients? Real films only against real + synthetic, per seed.

    python benchmarks/gan_usefulness.py --data ../shared/data/chest_xray/train \
        --external ../shared/data/chest_xray/external_sample --generator GENERATOR_DIR \
        [--seeds 1 2 3] [--members 1] [--epochs 12] [--write-card assets/models/xray]

Two arms, the same recipe and seeds otherwise: "real films" (class weights for the 1:3 imbalance, as shipped) and
"real + synthetic" (the generator's NORMAL films top up the training split to PNEUMONIA's size, no class weights;
validation stays real). Each model is scored on the external sample (new patients, never trained or tuned on) with
95 % intervals; the summary gives each arm's mean and SD over seeds and the paired difference. Results go to
benchmarks/results/gan_usefulness.json; a finished run is kept, so a rerun resumes. --write-card puts the table into
an X-ray model's metadata and model card (the issue asks for it in the shipped model's card).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcore.gan.usefulness import ARMS, FIGURES, summarise  # noqa: E402
from medcore.imaging.service import evaluate_folder, load_xray_model  # noqa: E402
from medcore.training.external import add_to_card  # noqa: E402
from medcore.training.options import XrayTrainingOptions  # noqa: E402
from medcore.training.train_xray import train_xray  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "gan_usefulness.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--external", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--work", default="/tmp/medcore_gan_usefulness")
    parser.add_argument("--write-card", default="", help="an X-ray model folder whose card gets the table")
    args = parser.parse_args()
    work = Path(args.work)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": {}}
    results.setdefault("command", " ".join(["python", "benchmarks/gan_usefulness.py",
                                            *(a for a in sys.argv[1:] if a != "--write-card" and a != args.write_card)]))
    generator = json.loads((Path(args.generator) / "meta.json").read_text())["version"]
    if results.setdefault("generator", generator) != generator:
        raise SystemExit(f"{RESULTS} holds runs with generator {results['generator']}, not {generator}: move it away "
                         "to measure another generator.")
    results.setdefault("recipe", {"members": args.members, "epochs": args.epochs})
    for seed in args.seeds:
        for arm in ARMS:
            name = f"{arm} seed {seed}"
            if name in results["rows"]:
                continue
            options = XrayTrainingOptions(members=args.members, epochs=args.epochs, seed=seed,
                                          synthetic_generator=args.generator if arm == ARMS[1] else "")
            out = work / name.replace(" ", "_").replace("+", "plus")
            started = time.time()
            meta = train_xray(Path(args.data), out, options, cache_dir=work / "cache")
            figures = evaluate_folder(load_xray_model(out), Path(args.external))
            results["rows"][name] = {
                "arm": arm, "seed": seed, "seconds": round(time.time() - started, 1), "version": meta["version"],
                **{k: figures[k] for k in FIGURES}, "intervals": {k: figures["intervals"][k] for k in FIGURES},
                "n": figures["n"], "internal": {k: meta["metrics"]["validation"][k] for k in FIGURES},
                "synthetic": meta["data"].get("synthetic")}
            results["summary"] = summarise(results["rows"])
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2))
            row = results["rows"][name]
            print(f"{name}: AUC {row['auc']:.4f} sens {row['sensitivity']:.3f} spec {row['specificity']:.3f} "
                  f"ECE {row['ece']:.3f} ({row['seconds'] / 60:.1f} min)", flush=True)
    if args.write_card:
        add_to_card(Path(args.write_card), "synthetic_usefulness", results)


if __name__ == "__main__":
    main()
