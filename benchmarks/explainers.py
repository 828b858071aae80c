"""Speed of the second explainers, on demand beside the first: occlusion for a film (goal <= 1 s) and LIME for a
250-word note (goal <= 2 s), on this machine's cores, with Grad-CAM and SHAP for reference.

    python benchmarks/explainers.py [--rounds 5] [--calls 5]

Medians over rounds (each round: the median of --calls timed calls), shipped models, no data needed (a synthetic
chest-like film; bench_notes' fixed 250-word paragraph). Writes benchmarks/results/explainers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_notes import note_of  # noqa: E402
from timing import median_ms  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "explainers.json"
GOALS_MS = {"occlusion_film_ms": 1000, "lime_250_words_ms": 2000}


def main() -> int:
    from medcore import tasks
    from medcore.imaging.second_opinion import occlusion_opinion
    from medcore.imaging.service import analyse_file
    from medcore.notes.explain import explain
    from medcore.notes.second_opinion import lime_opinion
    from medcore.notes.service import predict_note
    from tests.synthetic import chest_like, encode

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()

    xray = tasks.get("xray").load(tasks.get("xray").shipped_dir)
    film = encode(chest_like(xray.artifact.quality_reference, 1024, 1024, seed=3), "PNG")
    study = analyse_file(xray, film, "bench.png", user="benchmark")
    notes = tasks.get("medical_abstracts")
    model = notes.load(notes.shipped_dir)
    note = predict_note(model, note_of(250)).note
    attribution = explain(model, note)
    best = int(attribution.full_values.argmax())
    timed = {
        "gradcam_film_ms (analysis of a 1024 px PNG, for reference)": lambda: analyse_file(xray, film, "b.png", "b"),
        "occlusion_film_ms": lambda: occlusion_opinion(xray.occlusion, study.model_input, study.heatmap),
        "shap_250_words_ms (for reference)": lambda: explain(model, note),
        "lime_250_words_ms": lambda: lime_opinion(model, note, attribution, best),
    }
    for run in timed.values():
        run()  # warm-up: tracing
    rounds = {name: [median_ms(run, args.calls) for _ in range(args.rounds)] for name, run in timed.items()}
    result = {name: round(statistics.median(values), 1) for name, values in rounds.items()}
    result["meets_goals"] = all(result[name] <= goal for name, goal in GOALS_MS.items())
    result.update(goals_ms=GOALS_MS, rounds=args.rounds, calls=args.calls, cpu_threads=os.cpu_count(),
                  occlusion_passes=len(xray.occlusion.positions(xray.artifact.image_size)) ** 2 + 1)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
