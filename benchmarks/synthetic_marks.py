"""Is a synthetic film recognised by its pixels however it was re-encoded, and is no real film refused?

    python benchmarks/synthetic_marks.py --data ../shared/data/chest_xray [--n 200] [--generator DIR]

Synthetic films, two sources: real training films at their 224 px, and the production generator's samples when one
is given (--generator), else the same films shrunk to the generator's 64 px; each marked as the generator marks
them. Each is checked as written, re-encoded (PNG without its tag, JPEG 70, DICOM 8- and 16-bit), resized, cropped
by 20 % of a side, turned by 3 degrees, its corner painted over, and moved about, all through
`imaging.io.read_radiograph`, the path of the X-ray page, `medcore predict`, the PACS watcher and every training and
validation loader. False alarms: every real film of the training folder and the external sample; and the check's
cost per real film (median, 90th and 99th percentile). Writes benchmarks/results/synthetic_marks.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from medcore.imaging import folders  # noqa: E402
from medcore.imaging.io import SyntheticFilm, UnreadableImage, decode_image, read_radiograph  # noqa: E402
from medcore.imaging.preprocess import resize_square  # noqa: E402
from medcore.imaging.synthetic import (  # noqa: E402
    BOX_THRESHOLD,
    PATTERN_THRESHOLD,
    STANDOUT_THRESHOLD,
    is_marked,
    mark_scores,
    mark_synthetic,
    pattern_scores,
)

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic_marks.json"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def dicom_wrapped(pixels: np.ndarray, bits: int) -> bytes:
    """The pixels as a plain secondary-capture DICOM file, as a PACS export or a converter would write them."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    values = pixels.astype(np.uint16) * 257 if bits == 16 else pixels.astype(np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "DX", "Test^Synthetic", "SYN1"
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    ds.PixelData = values.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def variants(marked_png: bytes) -> dict[str, bytes]:
    """The marked film as someone might pass it on: re-encoded, cropped (up to 20 % of a side), turned (up to 3
    degrees), its corner painted over, and moved about (flips, frames, padding, stretching, shifts)."""
    from PIL import ImageDraw, ImageOps

    pixels = _decoded(marked_png)
    image = Image.fromarray(pixels)
    width, height = image.size
    half = image.resize((width // 2, height // 2), Image.Resampling.LANCZOS)
    painted = image.copy()
    ImageDraw.Draw(painted).rectangle((0, 0, width // 2, height // 6), fill=0)
    dx, dy = width // 5, height // 5
    moved = {"cropped 20 % off the top": image.crop((0, dy, width, height)),
             "cropped 20 % off the left": image.crop((dx, 0, width, height)),
             "cropped 20 % off the right": image.crop((0, 0, width - dx, height)),
             "cropped 20 % off the bottom": image.crop((0, 0, width, height - dy)),
             "cropped 20 % off the top and left": image.crop((dx, dy, width, height)),
             "cropped 20 % off the top, then squashed to 224 x 224": image.crop((0, dy, width, height)).resize(
                 (224, 224), Image.Resampling.LANCZOS),
             "turned 3 degrees": image.rotate(3, resample=Image.Resampling.BILINEAR, fillcolor=0),
             "turned -3 degrees": image.rotate(-3, resample=Image.Resampling.BILINEAR, fillcolor=0),
             "corner painted over": painted,
             "mirrored left-right": ImageOps.mirror(image), "flipped top-bottom": ImageOps.flip(image),
             "turned 180 degrees": image.rotate(180), "16 px black frame": ImageOps.expand(image, 16, 0),
             "padded 25 % on the right": ImageOps.pad(image, (width * 5 // 4, height), color=0, centering=(0, 0)),
             "stretched 1.3 x in height": image.resize((width, round(height * 1.3))),
             "inverted": ImageOps.invert(image)}
    return {"as written (PNG with tag)": marked_png, "re-saved PNG, no tag": _png(pixels),
            "JPEG quality 70": _jpeg(image, 70), "resized to 50 %": _png(np.asarray(half)),
            "resized to 224 x 224": _png(np.asarray(image.resize((224, 224), Image.Resampling.LANCZOS))),
            "DICOM, 8-bit": dicom_wrapped(pixels, 8), "DICOM, 16-bit": dicom_wrapped(pixels, 16),
            **{name: _png(np.asarray(moved_image)) for name, moved_image in moved.items()},
            "cropped 20 % off the top and left, turned 3 degrees, JPEG quality 70": _jpeg(
                image.crop((dx, dy, width, height)).rotate(3, resample=Image.Resampling.BILINEAR, fillcolor=0), 70)}


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def synthetic_films(data: Path, n: int, generator_dir: str | None, seed: int) -> dict[str, list[np.ndarray]]:
    """The films to mark, by source: the generator's samples (--generator), else real training films shrunk to the
    generator's 64 px; and real training films at their own 224 px (sharper films: a harder case for the mark)."""
    listing = folders.list_image_folder(data / "train")
    chosen = np.random.default_rng(seed).choice(len(listing.files), n, replace=False)
    films = [read_radiograph(listing.files[i].read_bytes()).pixels for i in chosen]
    sources = {"224 px real training films, marked": films}
    if generator_dir:
        from medcore.gan.network import load_generator

        generator = load_generator(Path(generator_dir))
        sources[f"samples of generator {generator.version}"] = [
            f for label in generator.labels for f in generator.sample(label, n // len(generator.labels), seed)]
    else:
        sources["real training films shrunk to 64 px (the generator's size), marked"] = [
            resize_square(film, 64) for film in films]
    return sources


def refused_as_synthetic(data: bytes) -> bool:
    try:
        read_radiograph(data)
    except SyntheticFilm:
        return True
    except UnreadableImage:
        return False
    return False


BEGIN, END = "<!-- synthetic-marks: begin -->", "<!-- synthetic-marks: end -->"


def readme_block(results: dict | None = None) -> str:
    """The README's table, rendered from the result file: every change, each source's detections and lowest
    pattern score, then the false alarms on every real film and the check's cost."""
    results = results or json.loads(RESULTS.read_text())
    sources = list(results["synthetic"])
    names = list(results["synthetic"][sources[0]])
    lines = [BEGIN, "| synthetic film passed on as | " + " | ".join(
        f"{source}: detected (lowest pattern score / standout)" for source in sources) + " |",
        "|---|" + "---|" * len(sources)]
    for name in names:
        cells = [f"{results['synthetic'][s][name]['detected']} of {results['synthetic'][s][name]['films']} "
                 f"({results['synthetic'][s][name]['lowest_pattern_score']:.2f} / "
                 f"{results['synthetic'][s][name]['lowest_standout']:.2f})" for s in sources]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    real, cost = results["real"], results["ms_per_real_film"]
    thresholds = results["thresholds"]
    lines += ["", f"False alarms (a film is marked when its pattern score reaches {thresholds['pattern']} and stands out "
              f"from its ring by {thresholds['standout']}, or its box scores {thresholds['box']}): "
              f"{real['train']['refused']} of {real['train']['films']:,} training films and "
              f"{real['external_sample']['refused']} of {real['external_sample']['films']} external-sample films "
              f"(highest pattern score {max(r['highest_pattern_score'] for r in real.values()):.2f}, highest standout "
              f"{max(r['highest_standout'] for r in real.values()):.2f}, highest box "
              f"score {max(r['highest_box_score'] for r in real.values()):.2f}). The check costs {cost['median']:.2f} "
              f"ms per real film (median; 90th percentile {cost['p90']:.2f} ms, 99th {cost['p99']:.2f} ms, on 2 cores "
              "shared with other jobs).", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the chest_xray folder (train/ and external_sample/)")
    parser.add_argument("--n", type=int, default=200, help="films marked per source")
    parser.add_argument("--generator", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = Path(args.data)
    started = time.time()
    synthetic = {}
    for source, films in synthetic_films(data, args.n, args.generator, args.seed).items():
        detected: dict[str, int] = {}
        lowest: dict[str, tuple[float, float]] = {}
        for film in films:
            for name, encoded in variants(mark_synthetic(film, "benchmark")).items():
                detected[name] = detected.get(name, 0) + refused_as_synthetic(encoded)
                scores = pattern_scores(decode_image(encoded).pixels)
                low = lowest.get(name, (99.0, 99.0))
                lowest[name] = (min(low[0], scores.weakest), min(low[1], scores.standout))
        synthetic[source] = {name: {"films": len(films), "detected": count, "rate": round(count / len(films), 4),
                                    "lowest_pattern_score": round(lowest[name][0], 2),
                                    "lowest_standout": round(lowest[name][1], 2)} for name, count in detected.items()}
    real, seconds = {}, []
    for part in ("train", "external_sample"):
        listing = folders.list_image_folder(data / part)
        pattern, standout, box = [], [], []
        for path in listing.files:
            pixels = decode_image(path.read_bytes()).pixels
            started_one = time.perf_counter()
            is_marked(pixels)
            seconds.append(time.perf_counter() - started_one)
            scores = mark_scores(pixels)
            pattern.append(scores.pattern)
            standout.append(scores.standout)
            box.append(scores.box)
        real[part] = {"films": len(pattern), "refused": int(sum(
                          (p >= PATTERN_THRESHOLD and s >= STANDOUT_THRESHOLD) or b >= BOX_THRESHOLD
                          for p, s, b in zip(pattern, standout, box))),
                      "highest_pattern_score": round(float(max(pattern)), 2),
                      "highest_standout": round(float(max(standout)), 2),
                      "median_pattern_score": round(float(np.median(pattern)), 2),
                      "highest_box_score": round(float(max(box)), 3)}
    results = {"command": "python " + " ".join(sys.argv),
               "thresholds": {"pattern": PATTERN_THRESHOLD, "standout": STANDOUT_THRESHOLD, "box": BOX_THRESHOLD},
               "synthetic": synthetic,
               "real": real, "ms_per_real_film": {"median": round(1000 * float(np.median(seconds)), 2),
                                                  "p90": round(1000 * float(np.percentile(seconds, 90)), 2),
                                                  "p99": round(1000 * float(np.percentile(seconds, 99)), 2)},
               "seconds": round(time.time() - started, 1)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    from readme_blocks import replace_block

    replace_block(readme_block(results))


if __name__ == "__main__":
    main()
