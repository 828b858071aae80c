"""Bytes from an upload -> a validated grayscale radiograph, or a clear reason why not.

PNG and JPEG are decoded with Pillow, DICOM with pydicom (modality LUT, VOI LUT / windowing,
MONOCHROME1 inversion, 8-16 bit). Limits are checked before pixel data is decoded, so a
decompression bomb or a huge DICOM costs nothing. Only technical, non-identifying DICOM
attributes are kept, and the patient's age at the study (in years: the intended-use check needs it);
patient identifiers never leave this module.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medcore import config
from medcore.imaging.intended_use import UnreadableAge, age_from_header
from medcore.imaging.preprocess import reduce_film
from medcore.imaging.synthetic import is_marked

# DICOM attributes that describe the acquisition, never the patient. Everything else is dropped.
TECHNICAL_DICOM_TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation",
                        "BitsStored")


class UnreadableImage(ValueError):
    """The upload cannot be used; str(error) is a message a clinician can act on."""


class SyntheticFilm(UnreadableImage):
    """The upload is a film MedCore generated (imaging.synthetic): refused, and never recorded as a study."""


@dataclass(frozen=True)
class Radiograph:
    """A decoded image: 2-D float32 in [0, 1], 0 = black (air), 1 = white (bone)."""

    pixels: np.ndarray
    source_format: str  # "PNG", "JPEG" or "DICOM"
    colour_saturation: float = 0.0  # mean HSV saturation of the original; 0 for grayscale
    technical: dict[str, str] = field(default_factory=dict)  # non-identifying DICOM attributes
    age_years: float | None = None  # the patient's age at the study (DICOM only): checked, never stored or shown
    age_problem: str | None = None  # the header's age cannot be read or contradicts itself: no decision


def sniff_format(data: bytes, filename: str = "") -> str:
    """Decide the format from the file's magic bytes; the extension alone is never trusted."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) > 132 and data[128:132] == b"DICM":
        return "DICOM"
    if filename.lower().endswith((".dcm", ".dicom")):
        return "DICOM"  # DICOM without the 128-byte preamble: let pydicom try
    raise UnreadableImage("Not a PNG, JPEG or DICOM file (the file's content says otherwise, "
                          "whatever its name).")


def read_radiograph(data: bytes, filename: str = "", max_side: int | None = None) -> Radiograph:
    """Validate and decode one upload, and refuse a synthetic film. Raises UnreadableImage with a clear reason.

    max_side: the film is reduced once, right after decoding (preprocess.reduce_film), and everything after works
    on the reduced film; None keeps it full size."""
    return _refuse_synthetic(_reduced(decode_image(data, filename), max_side))


def read_dataset(dataset, max_side: int | None = None) -> Radiograph:
    """read_radiograph for a DICOM dataset already parsed (a film fetched from the PACS): the same checks and
    decoding, without writing the film back to bytes and parsing it again."""
    try:
        radiograph = _radiograph_from_dataset(dataset)
    except UnreadableImage:
        raise
    except Exception as exc:  # as _read_dicom: a crafted header never escapes as a crash
        raise UnreadableImage(BAD_HEADER) from exc
    return _refuse_synthetic(_reduced(radiograph, max_side))


def _reduced(radiograph: Radiograph, max_side: int | None) -> Radiograph:
    pixels = reduce_film(radiograph.pixels, max_side)
    return radiograph if pixels is radiograph.pixels else replace(radiograph, pixels=pixels)


def _refuse_synthetic(radiograph: Radiograph) -> Radiograph:
    if is_marked(radiograph.pixels):  # on the pixels, whatever the format or how often the film was re-saved
        raise SyntheticFilm("This is a synthetic film made by MedCore's generator (it carries the SYNTHETIC mark), "
                            "not a patient's radiograph: it is not read or recorded as a study.")
    return radiograph


def decode_image(data: bytes, filename: str = "") -> Radiograph:
    """Validate and decode one file (limits, format, pixels), without judging what the image shows."""
    if not data:
        raise UnreadableImage("The file is empty.")
    if len(data) > config.MAX_UPLOAD_BYTES:
        raise UnreadableImage(f"The file is {len(data) / 2**20:.0f} MB; the limit is "
                              f"{config.MAX_UPLOAD_BYTES / 2**20:.0f} MB.")
    fmt = sniff_format(data, filename)
    try:
        return _read_dicom(data) if fmt == "DICOM" else _read_pillow(data, fmt)
    except UnreadableImage:
        raise
    except Exception as exc:  # any other decoding failure is this file's problem, never the batch's
        raise UnreadableImage(f"The {fmt} file cannot be decoded.") from exc


def _check_dimensions(width: int, height: int) -> None:
    if width * height > config.MAX_PIXELS:
        raise UnreadableImage(f"The image claims {width} x {height} pixels, more than the "
                              f"{config.MAX_PIXELS:,}-pixel limit (possible decompression bomb).")
    if min(width, height) < config.MIN_SIDE:
        raise UnreadableImage(f"The image is only {width} x {height} pixels; at least "
                              f"{config.MIN_SIDE} px a side is needed to read a chest film.")


def _read_pillow(data: bytes, fmt: str) -> Radiograph:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_dimensions(*image.size)  # header only: nothing decoded yet
            image.load()
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage("The image is too large to decode safely (possible decompression "
                              "bomb).") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"The {fmt} file is corrupt or truncated and cannot be decoded.") from exc
    image = ImageOps.exif_transpose(image)
    saturation = 0.0
    if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA", "PA"):
        rgb = image.convert("RGB")
        saturation = float(np.asarray(rgb.convert("HSV"))[..., 1].mean() / 255.0)
        image = rgb.convert("L")
    pixels = np.asarray(image)
    if pixels.ndim != 2:
        raise UnreadableImage(f"Unsupported {fmt} pixel layout (mode {image.mode}).")
    if pixels.dtype == np.uint8:
        scaled = pixels.astype(np.float32) / 255.0
    else:  # 16-bit or 32-bit grayscale PNG: stretch the stored range
        scaled = _min_max(pixels.astype(np.float32))
    return Radiograph(pixels=scaled, source_format=fmt, colour_saturation=saturation)


def _read_dicom(data: bytes) -> Radiograph:
    """Any failure to decode a DICOM becomes UnreadableImage: a crafted header never escapes as a crash."""
    try:
        return _decode_dicom(data)
    except UnreadableImage:
        raise
    except Exception as exc:  # non-numeric NumberOfFrames / WindowWidth / RescaleSlope, odd VRs, broken LUTs
        raise UnreadableImage(BAD_HEADER) from exc


BAD_HEADER = ("MedCore cannot read this DICOM file's header values (for example a non-numeric frame count, window or "
              "rescale value), so it cannot be used.")


def _decode_dicom(data: bytes) -> Radiograph:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableImage("The DICOM file is corrupt and cannot be read.") from exc
    return _radiograph_from_dataset(ds)


def _radiograph_from_dataset(ds) -> Radiograph:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds:
        raise UnreadableImage("The DICOM file holds no image (no PixelData).")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_dimensions(cols, rows)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise UnreadableImage("Multi-frame DICOM (a series or cine) is not a single radiograph.")
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for bad or unsupported pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = _header_text(getattr(syntax, "name", "unknown"))
        raise UnreadableImage(f"The DICOM pixel data cannot be decoded (transfer syntax: {name}); "
                              "the file may be truncated or use an unsupported compression.") from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if array.ndim == 3 and photometric.startswith(("RGB", "YBR")):
        array = array.astype(np.float32).mean(axis=-1)
    if array.ndim != 2:
        raise UnreadableImage(f"Unsupported DICOM pixel layout with shape {array.shape}.")
    values = apply_modality_lut(array, ds)
    values = apply_voi_lut(values, ds, index=0)  # window centre/width or VOI LUT when present
    pixels = _min_max(np.asarray(values, dtype=np.float32))
    if photometric == "MONOCHROME1":  # 0 means white: flip so that air is black as usual
        pixels = 1.0 - pixels
    technical = {tag: _header_text(ds.get(tag)) for tag in TECHNICAL_DICOM_TAGS if ds.get(tag) not in (None, "")}
    try:
        age, age_problem = age_from_header(ds.get("PatientAge"), ds.get("PatientBirthDate"),
                                           ds.get("StudyDate") or ds.get("AcquisitionDate") or ds.get("ContentDate")), None
    except UnreadableAge as exc:
        age, age_problem = None, str(exc)
    return Radiograph(pixels=pixels, source_format="DICOM", technical={k: v for k, v in technical.items() if v},
                      age_years=age, age_problem=age_problem)


def _header_text(value: object) -> str:
    """A DICOM header value as plain words: letters, digits, space, '-', '_' and '.', at most 32 characters.

    Header text comes from whoever wrote the file; it is shown to clinicians and quoted in messages, so
    nothing that could be markup (links, images, HTML) survives.
    """
    return re.sub(r"[^A-Za-z0-9 ._-]+", " ", str(value)).strip()[:32].strip()


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)
