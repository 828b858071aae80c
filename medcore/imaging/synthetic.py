"""Synthetic films are never mistaken for a patient: a visible mark on the pixels, recognised in the pixels.

Every film MedCore generates (for augmentation or demonstration) goes through `mark_synthetic`: it is enlarged to
at least MARK_MIN_SIDE px and the word SYNTHETIC, in a white box, is burnt into the top-left corner, so a printout
or a screenshot still says it. The file also carries a tag (a PNG text chunk, or a JPEG comment) naming the
generator for people and tools that read it, but a tag is easy to lose (re-saving, wrapping in DICOM) and easy to
add to a real film, so it decides nothing: the decision is made on the pixels. `mark_score` compares the top-left corner, scaled to the
image's width, with the mark as it is drawn. `imaging.io` refuses every decoded image (PNG, JPEG or DICOM) that carries the mark, so a synthetic
film is never read, scored, trained on or logged as a study. What it cannot catch: a film whose corner was cropped
or painted over (benchmarks/synthetic_marks.py measures detection and false positives).
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

TAG_KEY = "MedCore-Synthetic"
JPEG_COMMENT_PREFIX = TAG_KEY.encode() + b":"
MARK_MIN_SIDE = 512  # films are enlarged to this before marking, so a 50 % copy is still a readable film
FONT_FRACTION = 1 / 16  # the mark's letter size, as a share of the film's width
BOX = (6.2, 1.6)  # the white box, in letter sizes (width, height)
TEMPLATE_WIDTH = MARK_MIN_SIDE  # the mark is drawn once at this width, then scaled to each film's
MARK_THRESHOLD = 0.6  # |correlation| with the drawn mark; real films stay far below (benchmarks/synthetic_marks.py)


@functools.lru_cache(maxsize=1)
def _mark_patch() -> Image.Image:
    """The white box with SYNTHETIC, drawn once at TEMPLATE_WIDTH; every film gets it scaled to its own width, so
    the letters have the same shape at every size (font hinting would otherwise change them)."""
    size = round(TEMPLATE_WIDTH * FONT_FRACTION)
    patch = Image.new("L", _box(TEMPLATE_WIDTH)[::-1], 255)
    ImageDraw.Draw(patch).text((size // 4, size // 4), "SYNTHETIC", fill=0, font_size=size)
    return patch


def _box(width: float) -> tuple[int, int]:
    """(rows, columns) of the mark's box on a film `width` pixels wide."""
    size = width * FONT_FRACTION
    return round(size * BOX[1]), round(size * BOX[0])


def _draw_mark(image: Image.Image) -> None:
    rows, cols = _box(image.width)
    image.paste(_mark_patch().resize((cols, rows), Image.Resampling.LANCZOS), (0, 0))


def _enlarged(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L")
    scale = MARK_MIN_SIDE / max(image.size)
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    return image


def mark_synthetic(pixels: np.ndarray, generator: str, fmt: str = "PNG") -> bytes:
    """A film (2-D, values in [0, 1]) as PNG or JPEG bytes, enlarged, with the visible mark and the tag naming
    `generator`."""
    image = _enlarged(pixels)
    _draw_mark(image)
    buffer = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(TAG_KEY, generator)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        image.save(buffer, format="JPEG", quality=95, comment=JPEG_COMMENT_PREFIX + generator.encode())
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def _template() -> np.ndarray:
    """The mark's box, standardised (for correlation)."""
    box = np.asarray(_mark_patch(), np.float64)
    return (box - box.mean()) / box.std()


def mark_score(pixels: np.ndarray) -> float:
    """How closely the film's top-left corner matches the SYNTHETIC mark (|Pearson correlation|, 0 to 1), on the
    decoded pixels (2-D, any size or scale), whatever the file format or how often it was re-encoded."""
    template = _template()
    rows, cols = _box(pixels.shape[1])
    if rows < 4 or cols < 16 or rows > pixels.shape[0]:
        return 0.0
    corner = Image.fromarray(np.ascontiguousarray(pixels[:rows, :cols], dtype=np.float32), mode="F")
    scaled = np.asarray(corner.resize(template.shape[::-1], Image.Resampling.BILINEAR), np.float64)
    spread = scaled.std()
    if spread < 1e-6:
        return 0.0
    return float(abs(np.mean((scaled - scaled.mean()) / spread * template)))


def is_marked(pixels: np.ndarray) -> bool:
    return mark_score(pixels) >= MARK_THRESHOLD
