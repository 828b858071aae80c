"""Synthetic inputs made inside the tests: no patient data ever enters the repository."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    """float [0, 1] or integer array -> encoded image bytes."""
    if array.dtype.kind == "f":
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def chest_like(reference: dict[str, np.ndarray], height: int = 600, width: int = 500, seed: int = 0,
               weights: np.ndarray | None = None) -> np.ndarray:
    """A smooth radiograph-like image built from the model's own "eigen-chest" reference.

    The mean training thumbnail (plus optional principal components) is upsampled to full size,
    so it lies inside the chest subspace that the quality gate accepts, like a real film does.
    """
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(reference["mean"].size))
    vector = reference["mean"].astype(np.float64).copy()
    if weights is not None:
        vector += weights @ reference["components"][: len(weights)]
    thumb = vector.reshape(side, side)
    thumb = (thumb - thumb.min()) / (thumb.max() - thumb.min())
    image = Image.fromarray(thumb.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(image) + rng.normal(0, 0.01, (height, width))
    return np.clip(pixels, 0, 1).astype(np.float32)


def write_labelled_folder(root, reference: dict[str, np.ndarray], per_class: int, seed: int = 0):
    """NORMAL/ and PNEUMONIA/ folders of radiograph-like PNGs, in the layout `medcore evaluate` reads."""
    rng = np.random.default_rng(seed)
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = chest_like(reference, 256, 256, seed=i, weights=rng.normal(0, 1.5, 6))
            (root / label / f"person{i}_{label.lower()}_1.png").write_bytes(encode(image, "PNG"))
    return root


def write_opacity_folder(root, reference: dict[str, np.ndarray], per_class: int, seed: int = 0):
    """Like write_labelled_folder, but learnable: every PNEUMONIA film carries a broad bright opacity."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:256, 0:256]
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = chest_like(reference, 256, 256, seed=seed * 1000 + i, weights=rng.normal(0, 1.0, 6))
            if label == "PNEUMONIA":
                cy, cx = rng.integers(80, 180), rng.choice([80, 176]) + rng.integers(-15, 15)
                image = np.clip(image + 0.45 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 28.0 ** 2)), 0, 1)
            (root / label / f"person{i}_{label.lower()}_1.png").write_bytes(encode(image, "PNG"))
    return root


def noise(size: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size)).astype(np.float32)


def text_screenshot(width: int = 800, height: int = 600) -> np.ndarray:
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for line in range(0, height - 20, 18):
        draw.text((10, line + 4), "Lorem ipsum dolor sit amet, consectetur adipiscing elit " * 2, fill=0)
    return np.asarray(image, dtype=np.float32) / 255.0


def colour_photo(size: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([x, y, 1 - x * y], axis=-1) * 0.7 + rng.random((size, size, 3)) * 0.3
    return (rgb * 255).astype(np.uint8)


def make_dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 16,
               window: tuple[float, float] | None = None, modality: str = "DX", view: str = "PA",
               body_part: str = "CHEST", patient_name: str = "Doe^Jane", patient_id: str = "MRN-0042") -> bytes:
    """An uncompressed DICOM file with patient identifiers, as a scanner would send it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient_name, patient_id, "20150101"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = modality, view, body_part
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    dtype = np.uint16 if bits > 8 else np.uint8
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def lesion_dataset(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of smooth background texture; positives carry one bright blob ("lesion") at a random place.

    Returns (images (n, size, size) in [0, 1], labels, lesion centres (n, 2) in pixels; -1 if none).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    images, labels, centres = [], [], []
    for i in range(n):
        coarse = rng.random((8, 8)).astype(np.float32)
        background = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))
        image = 0.3 + 0.3 * background + rng.normal(0, 0.03, (size, size))
        label = i % 2
        centre = (-1, -1)
        if label:
            centre = tuple(rng.integers(10, size - 10, 2))
            image += 0.6 * np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * 3.0 ** 2))
        images.append(np.clip(image, 0, 1))
        labels.append(label)
        centres.append(centre)
    return np.stack(images).astype(np.float32), np.array(labels), np.array(centres)


FILLER = ("patient reports feeling the last few days and also some mild general with after before during "
          "morning evening night week today often sometimes rarely since when then also more less very "
          "quite rather slightly noticed started continued stopped better worse same different around "
          "near left right upper lower side area body home work family sleep food water walk rest").split()
KEYWORDS = {"alpha": "zorblax", "beta": "quintessa", "gamma": "vexillum"}


def keyword_notes(n: int, seed: int = 0, words: int = 30, keywords: dict[str, str] | None = None
                  ) -> list[tuple[str, str]]:
    """(label, text) pairs: filler words plus one class keyword (label -> keyword) at a random position."""
    rng = np.random.default_rng(seed)
    keywords = keywords or KEYWORDS
    labels = list(keywords)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        text = list(rng.choice(FILLER, words))
        text.insert(int(rng.integers(0, words)), keywords[label])
        rows.append((label, " ".join(text)))
    return rows


def write_notes_csv(path, rows) -> None:
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows(rows)


def train_lesion_network(size: int = 64, shuffle_labels: bool = False, seed: int = 0):
    """A small network of the production architecture trained to find the planted blob (lesion_dataset); with
    shuffle_labels, the same recipe on labels shuffled among the images (a model that can learn nothing real)."""
    import keras

    from medcore.imaging.model import build_xray_network
    from medcore.imaging.preprocess import to_model_input

    keras.utils.set_random_seed(seed)
    images, labels, _ = lesion_dataset(640, size, seed=1)
    if shuffle_labels:
        labels = np.random.default_rng(seed).permutation(labels)
    inputs = np.stack([to_model_input(image, size) for image in images])
    network = build_xray_network(size, width=8, dropout=0.0)
    network.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    network.fit(inputs, labels[:, None].astype("float32"), epochs=10, batch_size=16, verbose=0)
    return network
