"""Case-note speed: prediction of one note and the SHAP explanation of a 250-word note.

Usage: python benchmarks/bench_notes.py [--rounds 5] [--calls 20] [--models DIR ...]
(--models: time these model folders too, e.g. a BiGRU and a Transformer from `medcore train notes --arch ...`)
Prints medians over rounds (each round: median of --calls timed calls) as JSON. The 250-word note is built
from the task's own vocabulary-bearing text (a fixed synthetic clinical paragraph), so no data is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_ms  # noqa: E402

from medcore import tasks  # noqa: E402
from medcore.notes.explain import explain  # noqa: E402
from medcore.notes.model import load_notes_model  # noqa: E402
from medcore.notes.service import predict_note  # noqa: E402

PARAGRAPH = ("The patient is a 54 year old man admitted with chest pain radiating to the left arm, shortness of "
             "breath and sweating. He has a history of hypertension, type 2 diabetes and smoking. Blood pressure "
             "was elevated and the electrocardiogram showed ST elevation in the anterior leads. Troponin was "
             "raised. He also reports intermittent headaches, fatigue, a dry cough at night and mild fever over "
             "the past week, with itchy skin on both forearms and occasional abdominal discomfort after meals. ")


def note_of(words: int) -> str:
    tokens = (PARAGRAPH * (words // len(PARAGRAPH.split()) + 1)).split()
    return " ".join(tokens[:words])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--models", nargs="*", default=[], help="more model folders to time")
    args = parser.parse_args()
    short, long_note = note_of(60), note_of(250)
    result = {}
    candidates = [(task.name, task.load(task.shipped_dir)) for task in tasks.notes_tasks()]
    for folder in args.models:
        model = load_notes_model(Path(folder))
        candidates.append((f"{Path(folder).name} ({model.meta['options'].get('arch')})", model))
    for label, model in candidates:
        note = predict_note(model, long_note).note
        predict_note(model, short)  # warm-up: tracing
        explain(model, note)
        rounds = {"predict_60_words_ms": [], "predict_250_words_ms": [], "explain_250_words_ms": []}
        for _ in range(args.rounds):
            rounds["predict_60_words_ms"].append(median_ms(lambda: predict_note(model, short), args.calls))
            rounds["predict_250_words_ms"].append(median_ms(lambda: predict_note(model, long_note), args.calls))
            rounds["explain_250_words_ms"].append(median_ms(lambda: explain(model, note), max(3, args.calls // 4)))
        result[label] = {name: round(statistics.median(values), 1) for name, values in rounds.items()}
    result.update(rounds=args.rounds, calls=args.calls, cpu_threads=os.cpu_count())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
