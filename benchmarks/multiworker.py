"""The X-ray recipe on one process against two worker processes (MultiWorkerMirroredStrategy) on this machine.

    python benchmarks/multiworker.py --data ../shared/data/chest_xray/train [--image-size 64 --epochs 8]

Both train one network with the same options, split and seed on the training films; the figures are the
validation split's (internal validation). Writes benchmarks/results/multiworker.json: validation AUC of each, their
difference (goal: within 0.005), wall time of each and the overhead ratio. On this machine the two workers share
the same 2 cores, so the ratio measures the cost of distribution (gradient all-reduce over gRPC on loopback, each
worker's own input pipeline), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcore.training.multiworker import train_on_workers  # noqa: E402
from medcore.training.options import XrayTrainingOptions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "multiworker.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    options = XrayTrainingOptions(image_size=args.image_size, epochs=args.epochs, members=1)
    scratch = Path(tempfile.mkdtemp(prefix="medcore-multiworker-"))
    rows = {}
    for name, workers in (("one process", 1), (f"{args.workers} workers", args.workers)):
        started = time.time()
        if workers == 1:
            from medcore.training.train_xray import train_xray

            meta = train_xray(Path(args.data), scratch / "single", options)
        else:
            meta = train_on_workers(Path(args.data), scratch / "workers", options, workers)
        validation = meta["metrics"]["validation"]
        rows[name] = {"auc": validation["auc"], "sensitivity": validation["sensitivity"],
                      "specificity": validation["specificity"], "n_val": validation["n"],
                      "minutes": round((time.time() - started) / 60, 2), "device": meta["training"]["device"],
                      "best_epoch": meta["training"]["best_epoch"]}
        print(name, rows[name], flush=True)
    one, many = rows["one process"], rows[f"{args.workers} workers"]
    results = {"command": "python " + " ".join(sys.argv), "options": asdict(options), "rows": rows,
               "auc_difference": round(many["auc"] - one["auc"], 4),
               "overhead_ratio": round(many["minutes"] / one["minutes"], 2)}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
