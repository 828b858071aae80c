"""Chest X-ray speed: one study (predict + Grad-CAM) and batch throughput, on this machine.

Usage: python benchmarks/bench_xray.py [--rounds 5] [--calls 30] [--model DIR --model DIR2 ...] [--real DIR] [--out FILE]
Prints medians over rounds (each round's figure is itself a median of --calls timed calls) and the
ratio against a Keras DenseNet121 (random weights, 224 px) predict-only, measured in the same run,
so figures from noisy machines stay comparable. Real films (--real, default the shared external sample when present):
every film analysed end to end (decode, synthetic-mark and quality checks, network, Grad-CAM) once a round, its
median and 90th percentile over the films; and batches of real films end to end (decode and checks on 2 threads,
then the network with Grad-CAM), images per second. Several --model folders (e.g. the ensemble and a distilled
student) are timed in the same run, round by round in turn, so their ratios share one DenseNet121 figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from timing import median_ms  # noqa: E402

from medcore.imaging import quality  # noqa: E402
from medcore.imaging.io import read_radiograph  # noqa: E402
from medcore.imaging.preprocess import to_model_input  # noqa: E402
from medcore.imaging.service import analyse_file, load_xray_model  # noqa: E402


def synthetic_jpeg(model, size: int = 224, seed: int = 0) -> bytes:
    """A training-like 224 px RGB-encoded grayscale JPEG built from the model's eigen-chest."""
    reference = model.artifact.quality_reference
    rng = np.random.default_rng(seed)
    vector = reference["mean"] + rng.normal(0, 2, 8) @ reference["components"][:8]
    thumb = vector.reshape(32, 32)
    thumb = (thumb - thumb.min()) / (thumb.max() - thumb.min())
    image = Image.fromarray((thumb * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--model", action="append", help="a model folder (default: the shipped model); repeatable")
    parser.add_argument("--out", help="also write the result to this JSON file")
    parser.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
                                              / "external_sample"), help="a folder of real films ('' for none)")
    args = parser.parse_args()
    models = [load_xray_model(Path(m)) for m in args.model] if args.model else [load_xray_model()]
    results = {model.artifact.version: timed(model, args) for model in models} if len(models) == 1 else \
        _interleaved(models, args)
    densenet_ms = statistics.median(r.pop("_densenet") for r in results.values())
    for result in results.values():
        result["densenet121_predict_ms"] = round(densenet_ms, 2)
        for key in [k for k in result if k.endswith("_ms") and k.startswith(("study", "real_study"))]:
            result[key.removesuffix("_ms") + "_vs_densenet121_ratio"] = round(result[key] / densenet_ms, 3)
    output = next(iter(results.values())) if len(results) == 1 else {"models": results}
    print(json.dumps(output, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(output, indent=2) + "\n")


def _interleaved(models, args) -> dict[str, dict]:
    """Each model timed for one round in turn, args.rounds times: machine noise hits all of them alike."""
    per_round = [{m.artifact.version: timed(m, argparse.Namespace(**{**vars(args), "rounds": 1})) for m in models}
                 for _ in range(args.rounds)]
    return {version: {key: (round(statistics.median(r[version][key] for r in per_round), 2)
                            if isinstance(per_round[0][version][key], float) else per_round[0][version][key])
                      for key in per_round[0][version]} | {"rounds": args.rounds}
            for version in per_round[0]}


def timed(model, args) -> dict:
    """One model's figures (and the DenseNet121 reference, under _densenet, measured alongside)."""
    size = model.artifact.image_size
    jpeg = synthetic_jpeg(model)
    one_input = to_model_input(np.zeros((224, 224), np.float32) + np.linspace(0, 1, 224), size)[None]
    batch_jpegs = [synthetic_jpeg(model, seed=i) for i in range(args.batch)]
    from tests.synthetic import (  # a full-size 12-bit DICOM, as a scanner sends it
        chest_like,
        make_dicom,
    )
    dicom = make_dicom((chest_like(model.artifact.quality_reference, 2500, 2048) * 4095).astype(np.uint16), bits=12)

    densenet = keras.applications.DenseNet121(weights=None, input_shape=(224, 224, 3), classes=1,
                                              classifier_activation=None)
    densenet_fn = tf.function(lambda x: densenet(x, training=False))
    dense_input = tf.random.uniform((1, 224, 224, 3))

    def end_to_end_batch() -> None:
        with ThreadPoolExecutor(2) as pool:
            inputs = list(pool.map(lambda b: to_model_input(
                np.asarray(Image.open(io.BytesIO(b)).convert("L"), np.float32) / 255, size), batch_jpegs))
        model.predict_inputs(np.stack(inputs), batch_size=128)

    real = _real_films(args.real)
    real_batch = (real * (args.batch // max(len(real), 1) + 1))[:args.batch] if real else []

    def real_batch_end_to_end() -> None:
        """Decode, refuse synthetic films, quality rules, then the network with Grad-CAM: what a backlog costs."""
        def prepare(data: bytes) -> np.ndarray:
            radiograph = read_radiograph(data)
            quality.rule_reasons(radiograph, model.intended_use)
            return to_model_input(radiograph.pixels, size)

        with ThreadPoolExecutor(2) as pool:
            inputs = list(pool.map(prepare, real_batch))
        model.predict_inputs(np.stack(inputs), batch_size=128)

    batch_inputs = np.repeat(one_input, args.batch, axis=0)
    tasks = {
        "study_ms": lambda: analyse_file(model, jpeg, "bench.jpeg"),  # decode+quality+predict+Grad-CAM
        "study_dicom_2500x2048_ms": lambda: analyse_file(model, dicom, "bench.dcm"),
        "network_gradcam_ms": lambda: model.explainer(one_input),
        "densenet121_predict_ms": lambda: densenet_fn(dense_input),
    }
    for fn in tasks.values():  # warm-up: tracing and first-call allocations
        for _ in range(3):
            fn()
    end_to_end_batch()

    rounds: dict[str, list[float]] = {name: [] for name in tasks}
    rounds["batch_images_per_s"], rounds["batch_network_images_per_s"] = [], []
    if real:
        for data in real[:5]:
            analyse_file(model, data, "real.jpeg")
        real_batch_end_to_end()
        for key in ("real_study_median_ms", "real_study_p90_ms", "real_batch_images_per_s"):
            rounds[key] = []
    for _ in range(args.rounds):
        for name, fn in tasks.items():
            rounds[name].append(median_ms(fn, args.calls))
        if real:
            per_film = []
            for data in real:
                start = time.perf_counter()
                analyse_file(model, data, "real.jpeg")
                per_film.append(1000 * (time.perf_counter() - start))
            rounds["real_study_median_ms"].append(float(np.median(per_film)))
            rounds["real_study_p90_ms"].append(float(np.percentile(per_film, 90)))
            start = time.perf_counter()
            real_batch_end_to_end()
            rounds["real_batch_images_per_s"].append(len(real_batch) / (time.perf_counter() - start))
        start = time.perf_counter()
        end_to_end_batch()
        rounds["batch_images_per_s"].append(args.batch / (time.perf_counter() - start))
        start = time.perf_counter()
        model.predict_inputs(batch_inputs, batch_size=128)
        rounds["batch_network_images_per_s"].append(args.batch / (time.perf_counter() - start))

    result = {name: round(statistics.median(values), 2) for name, values in rounds.items()}
    result["_densenet"] = result.pop("densenet121_predict_ms")
    result.update(model_version=model.artifact.version, image_size=size, rounds=args.rounds, calls=args.calls,
                  batch=args.batch, cpu_threads=os.cpu_count(), real_films=len(real),
                  real_source=Path(args.real).name if real else None)
    return result


def _real_films(folder: str) -> list[bytes]:
    """Every image of a folder (NORMAL/ and PNEUMONIA/), as bytes; none when the folder is absent."""
    if not folder or not Path(folder).is_dir():
        return []
    return [p.read_bytes() for p in sorted(Path(folder).glob("*/*")) if p.suffix.lower() in (".jpeg", ".jpg", ".png")]


if __name__ == "__main__":
    main()
