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
MARK_THRESHOLD = 0.7  # |correlation| with the drawn mark; real films stay below (benchmarks/synthetic_marks.py)


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


SCALES = (0.8, 0.85, 0.9, 0.95, 1.0, 1.06, 1.12)  # the mark's width against the film's width, as written = 1.0 (frames, padding)
WHITE = 0.85  # a near-white pixel, on the film's own range
WHITE_SHARE = 0.25  # a corner with fewer near-white pixels than this cannot hold the white box: not searched
ASPECTS = (0.8, 1.0, 1.25)  # its height against its width (a stretched film)
MARGIN = (1.6, 1.35)  # the corner searched, in box heights and widths (a border or shift moves the mark)


@functools.lru_cache(maxsize=1)
def _template() -> np.ndarray:
    """The mark's box as drawn at TEMPLATE_WIDTH, with zero mean and unit norm (for correlation)."""
    box = np.asarray(_mark_patch(), np.float64)
    box -= box.mean()
    return box / np.sqrt((box ** 2).sum())


def _best_match(region: np.ndarray, template: np.ndarray) -> float:
    """The highest |normalised cross-correlation| of the template anywhere inside the region (0 to 1)."""
    from scipy.signal import fftconvolve

    h, w = template.shape
    if region.shape[0] < h or region.shape[1] < w:
        return 0.0
    numerator = fftconvolve(region, template[::-1, ::-1], mode="valid")
    window = np.ones((h, w))
    sums = fftconvolve(region, window, mode="valid")
    spread = np.sqrt(np.maximum(fftconvolve(region ** 2, window, mode="valid") - sums ** 2 / window.size, 0.0))
    valid = spread > 1e-3 * np.sqrt(window.size)
    return float(np.max(np.abs(numerator[valid]) / spread[valid])) if valid.any() else 0.0


def mark_score(pixels: np.ndarray) -> float:
    """How closely the film carries the SYNTHETIC mark (|normalised correlation|, 0 to 1), on the decoded pixels
    (2-D, any size), whatever the file format or how often it was re-encoded: the mark is looked for in each corner
    (a mirrored, flipped or half-turned film carries it in another corner, reversed), a little way in (a frame or a
    shift), a little larger or smaller, and stretched."""
    template = _template()
    t_rows, t_cols = template.shape
    height, width = pixels.shape
    if min(height, width) < 32:
        return 0.0
    low, high = float(pixels.min()), float(pixels.max())
    if high - low < 1e-6:
        return 0.0
    white = low + WHITE * (high - low)
    best = 0.0
    for scale in SCALES:
        for aspect in ASPECTS:
            # the film resized so that a mark drawn at this scale and aspect is exactly the template's size
            fx = TEMPLATE_WIDTH / (width * scale)
            fy = fx / aspect
            rows, cols = round(t_rows * MARGIN[0] / fy), round(t_cols * MARGIN[1] / fx)
            if rows >= height or cols >= width:
                continue
            for corner in (pixels[:rows, :cols], pixels[:rows, -cols:][:, ::-1], pixels[-rows:, :cols][::-1, :],
                           pixels[-rows:, -cols:][::-1, ::-1]):  # each turned so that its corner is top-left
                if np.mean(corner[::2, ::2] >= white) < WHITE_SHARE:  # no white box there: nothing to compare
                    continue
                region = Image.fromarray(np.ascontiguousarray(corner, dtype=np.float32), mode="F").resize(
                    (round(cols * fx), round(rows * fy)), Image.Resampling.BILINEAR)
                best = max(best, _best_match(np.asarray(region, np.float64), template))
                if best >= 0.9:
                    return best
    return best


def is_marked(pixels: np.ndarray) -> bool:
    return mark_score(pixels) >= MARK_THRESHOLD
