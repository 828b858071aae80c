"""Is a synthetic film recognised by its pixels however it was re-encoded, and is no real film refused?

    python benchmarks/synthetic_marks.py --data ../shared/data/chest_xray [--n 500] [--generator DIR]

Synthetic films: the production film generator's samples when one is given (--generator), else real training films
shrunk to the generator's 64 px (what the generator draws) and marked as it marks them. Each is checked as written,
re-saved as PNG without its tag, as JPEG at quality 75, resized to 50 %, and wrapped in DICOM (8-bit and 16-bit,
MONOCHROME2, no tag), all through `imaging.io.read_radiograph`, the path of the X-ray page, `medcore predict` and
every training and validation loader. False positives: every real film of the training folder and the external
sample, through the same function; and the search's cost per real film. Writes
benchmarks/results/synthetic_marks.json.
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

from medcore.imaging import folders  # noqa: E402
from medcore.imaging.io import SyntheticFilm, UnreadableImage, decode_image, read_radiograph  # noqa: E402
from medcore.imaging.preprocess import resize_square  # noqa: E402
from medcore.imaging.synthetic import MARK_THRESHOLD, mark_score, mark_synthetic  # noqa: E402

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
    """The marked film as someone might pass it on: re-encoded (what the issue asks to survive), and moved about
    (what a reviewer tried next: flips, frames, padding, stretching, shifts, small rotations)."""
    from PIL import ImageOps

    pixels = _decoded(marked_png)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    half = image.resize((pixels.shape[1] // 2, pixels.shape[0] // 2), Image.Resampling.LANCZOS)
    width, height = image.size
    moved = {"mirrored left-right": ImageOps.mirror(image), "flipped top-bottom": ImageOps.flip(image),
             "turned 180 degrees": image.rotate(180), "4 px black frame": ImageOps.expand(image, 4, 0),
             "16 px black frame": ImageOps.expand(image, 16, 0),
             "padded 25 % on the right": ImageOps.pad(image, (width * 5 // 4, height), color=0, centering=(0, 0)),
             "stretched 1.3 x in height": image.resize((width, round(height * 1.3))),
             "shifted 8 px": ImageOps.expand(image, (8, 8, 0, 0), 0).crop((0, 0, width, height)),
             "turned 2 degrees": image.rotate(2, fillcolor=0)}
    return {"as written (PNG with tag)": marked_png, "re-saved PNG, no tag": _png(pixels),
            "JPEG quality 75": buffer.getvalue(), "resized to 50 %": _png(np.asarray(half)),
            "DICOM, 8-bit": dicom_wrapped(pixels, 8), "DICOM, 16-bit": dicom_wrapped(pixels, 16),
            **{name: _png(np.asarray(moved_image)) for name, moved_image in moved.items()}}


def synthetic_films(data: Path, n: int, generator_dir: str | None, seed: int) -> tuple[list[np.ndarray], str]:
    if generator_dir:
        from medcore.gan.network import load_generator

        generator = load_generator(Path(generator_dir))
        films = [f for label in generator.labels for f in generator.sample(label, n // len(generator.labels), seed)]
        return films, f"samples of generator {generator.version}"
    listing = folders.list_image_folder(data / "train")
    chosen = np.random.default_rng(seed).choice(len(listing.files), n, replace=False)
    return ([resize_square(read_radiograph(listing.files[i].read_bytes()).pixels, 64) for i in chosen],
            f"{n} real training films shrunk to 64 px (the generator's size), marked as the generator's are")


def refused_as_synthetic(data: bytes) -> bool:
    try:
        read_radiograph(data)
    except SyntheticFilm:
        return True
    except UnreadableImage:
        return False
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the chest_xray folder (train/ and external_sample/)")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--generator", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = Path(args.data)
    started = time.time()
    films, source = synthetic_films(data, args.n, args.generator, args.seed)
    detected: dict[str, int] = {}
    lowest: dict[str, float] = {}
    for film in films:
        for name, encoded in variants(mark_synthetic(film, "benchmark")).items():
            detected[name] = detected.get(name, 0) + refused_as_synthetic(encoded)
            lowest[name] = min(lowest.get(name, 1.0), mark_score(decode_image(encoded).pixels))
    real, seconds = {}, []
    for part in ("train", "external_sample"):
        listing = folders.list_image_folder(data / part)
        scores = []
        for path in listing.files:
            pixels = decode_image(path.read_bytes()).pixels
            started_one = time.perf_counter()
            scores.append(mark_score(pixels))
            seconds.append(time.perf_counter() - started_one)
        real[part] = {"films": len(scores), "refused": int(sum(s >= MARK_THRESHOLD for s in scores)),
                      "highest_score": round(float(max(scores)), 3),
                      "median_score": round(float(np.median(scores)), 3)}
    results = {"command": "python " + " ".join(sys.argv), "threshold": MARK_THRESHOLD, "synthetic_source": source,
               "synthetic": {name: {"films": len(films), "detected": count, "rate": round(count / len(films), 4),
                                    "lowest_score": round(lowest[name], 3)} for name, count in detected.items()},
               "real": real, "ms_per_real_film": {"median": round(1000 * float(np.median(seconds)), 1),
                                                  "p95": round(1000 * float(np.percentile(seconds, 95)), 1)},
               "seconds": round(time.time() - started, 1)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
