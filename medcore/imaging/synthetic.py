"""Synthetic films are never mistaken for a patient: two marks on the pixels, recognised in the pixels.

Every film MedCore generates (for augmentation or demonstration) goes through `mark_synthetic`: it is enlarged to
at least MARK_MIN_SIDE px and gets two marks.
- A fine cross-hatch over the whole film: four gratings at 22.5, 67.5, 112.5 and 157.5 degrees, PATTERN_CYCLES
  periods across the long side. It is what the pixels are judged by: it lives in every part of the film, so a crop
  (up to a quarter of a side), a painted-over corner, a small rotation, JPEG re-encoding, DICOM wrapping,
  inversion, a mirror or a resize leave it in place, and it shows in the film's spectrum as four sharp peaks that
  a real film does not have (`pattern_score`, one small FFT of the film reduced to ANALYSIS_SIDE px).
- The word SYNTHETIC in a white box in the top-left corner, so a printout or a screenshot says it to a person.
  Films marked before release 2 carry only this box: `box_score` still recognises it where it was written (not
  after a crop).
The file also carries a tag (a PNG text chunk, or a JPEG comment) naming the generator, but a tag is easy to lose
and easy to add to a real film, so it decides nothing. `imaging.io` refuses every decoded image (PNG, JPEG or
DICOM) that carries a mark, so a synthetic film is never read, scored, trained on or logged as a study.
benchmarks/synthetic_marks.py measures detection under each change and false alarms on every real film of the
shared data; what it cannot catch is said there.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

from medcore.imaging.preprocess import reduce_film

TAG_KEY = "MedCore-Synthetic"
JPEG_COMMENT_PREFIX = TAG_KEY.encode() + b":"
MARK_MIN_SIDE = 512  # films are enlarged to this before marking, so a 50 % copy is still a readable film
FONT_FRACTION = 1 / 16  # the box's letter size, as a share of the film's width
BOX = (6.2, 1.6)  # the white box, in letter sizes (width, height)
TEMPLATE_WIDTH = MARK_MIN_SIDE  # the box is drawn once at this width, then scaled to each film's

PATTERN_ANGLES = (22.5, 67.5, 112.5, 157.5)  # degrees: off the axes, where film borders and grid lines put energy
PATTERN_CYCLES = 44  # periods across the long side: above what a 64 px generator film holds (32), 11.6 px at 512
PATTERN_AMPLITUDE = 0.08  # the four gratings' sum at most, on the [0, 1] film (each grating a quarter of it)
ANALYSIS_SIDE = 160  # the film is reduced to this long side before its spectrum is taken
PATTERN_THRESHOLD = 1.5  # log contrast of the weakest peak; real films stay below (benchmarks/synthetic_marks.py)
STANDOUT_THRESHOLD = 0.3  # and it must stand out from the rest of its ring by this much (text, grids do not)
BOX_THRESHOLD = 0.7  # correlation with the box where it is written; real films stay below (same benchmark)

# What the spectral search allows: the pattern's period against the long side (a crop shortens the side, a frame
# lengthens it), one axis stretched against the other (a film resized to a square), and a small rotation.
# Steps of half a frequency bin or less at the peaks' radius (a peak's main lobe is about 2 bins wide).
_SCALES = np.arange(0.75, 1.34, 0.5 / PATTERN_CYCLES)
_STRETCHES = np.array([0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.11, 1.18, 1.25, 1.33])
_TURNS = np.deg2rad(np.arange(-4.0, 4.01, 1.0))
_BACKGROUND, _CORE = 9, 3  # the spectrum's local level: a 9 x 9 neighbourhood without its 3 x 3 centre


@dataclass(frozen=True)
class MarkScores:
    pattern: float  # log contrast of the weakest of the four grating peaks over its neighbourhood (nats)
    standout: float  # how far it stands out from the rest of its ring (nats)
    box: float  # |correlation| of the top-left box (any corner, mirrored) with the drawn box, 0 to 1

    @property
    def marked(self) -> bool:
        return (self.pattern >= PATTERN_THRESHOLD and self.standout >= STANDOUT_THRESHOLD) or self.box >= BOX_THRESHOLD


# --- writing the marks -------------------------------------------------------------------------------------------

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


def cross_hatch(height: int, width: int) -> np.ndarray:
    """The four gratings, summed (amplitude PATTERN_AMPLITUDE at most), for a film of this shape."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    frequency = 2 * np.pi * PATTERN_CYCLES / max(height, width)
    return sum(np.cos(frequency * (cols * np.cos(a) + rows * np.sin(a)) + phase)
               for phase, a in enumerate(np.deg2rad(PATTERN_ANGLES))) * PATTERN_AMPLITUDE / len(PATTERN_ANGLES)


def _marked_image(pixels: np.ndarray) -> Image.Image:
    film = Image.fromarray(np.asarray(np.clip(pixels, 0, 1), np.float32), mode="F")
    scale = MARK_MIN_SIDE / max(film.size)
    if scale > 1:
        film = film.resize((round(film.width * scale), round(film.height * scale)), Image.Resampling.BICUBIC)
    hatched = np.clip(np.asarray(film, np.float64) + cross_hatch(film.height, film.width), 0, 1)
    image = Image.fromarray(np.round(hatched * 255).astype(np.uint8), mode="L")
    rows, cols = _box(image.width)
    image.paste(_mark_patch().resize((cols, rows), Image.Resampling.LANCZOS), (0, 0))
    return image


def mark_synthetic(pixels: np.ndarray, generator: str, fmt: str = "PNG") -> bytes:
    """A film (2-D, values in [0, 1]) as PNG or JPEG bytes, enlarged, with both marks and the tag naming
    `generator`."""
    image = _marked_image(pixels)
    buffer = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(TAG_KEY, generator)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        image.save(buffer, format="JPEG", quality=95, comment=JPEG_COMMENT_PREFIX + generator.encode())
    return buffer.getvalue()


# --- reading them ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _window(height: int, width: int) -> np.ndarray:
    return np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _peak_offsets(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the four peaks may lie, for every allowed scale, stretch and turn: (rows, cols) relative to the
    spectrum's centre, shape (scales, stretches, turns, 4). Peaks in the left half are mirrored through the centre
    (a real film's spectrum is symmetric), so every lookup falls in the half a real FFT computes."""
    radius = PATTERN_CYCLES * _SCALES[:, None, None, None] * side / ANALYSIS_SIDE
    angle = np.deg2rad(PATTERN_ANGLES)[None, None, None, :] + _TURNS[None, None, :, None]
    cols = radius * np.cos(angle) * np.ones((1, len(_STRETCHES), 1, 1))
    rows = radius * np.sin(angle) * _STRETCHES[None, :, None, None]
    flip = cols < 0
    return np.rint(np.where(flip, -rows, rows)).astype(int), np.rint(np.where(flip, -cols, cols)).astype(int)


def _spectral_contrast(pixels: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The film's log spectrum over its local level (nats), rows centred, from one FFT of the reduced film; and the
    FFT's side. None for a film too small or flat to have one."""
    from scipy.fft import rfft2
    from scipy.ndimage import uniform_filter

    film = reduce_film(np.asarray(pixels, np.float32), ANALYSIS_SIDE)
    height, width = film.shape
    if min(height, width) < 32 or float(film.max() - film.min()) < 1e-6:
        return None
    side = max(height, width)
    padded = np.zeros((side, side), np.float32)
    padded[:height, :width] = (film - film.mean()) * _window(height, width)
    level = np.fft.fftshift(np.log(np.abs(rfft2(padded)) + 1e-6), axes=0)  # columns start at frequency 0
    area, core = _BACKGROUND ** 2, _CORE ** 2
    neighbourhood = (uniform_filter(level, _BACKGROUND, mode="nearest") * area
                     - uniform_filter(level, _CORE, mode="nearest") * core) / (area - core)
    return level - neighbourhood, side


def _lookup(contrast: np.ndarray, side: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return contrast[np.clip(rows + side // 2, 0, side - 1), np.clip(cols, 0, contrast.shape[1] - 1)]


@functools.lru_cache(maxsize=1)
def _other_directions() -> np.ndarray:
    """Directions on the ring at least 8 degrees from every grating (radians, 0 to 180 degrees)."""
    return np.deg2rad([a for a in np.arange(0.0, 180.0, 1.5)
                       if min(abs((a - g + 90) % 180 - 90) for g in PATTERN_ANGLES) > 8])


def _rival(contrast: np.ndarray, side: int, scale: float, stretch: float, turn: float) -> float:
    """The strongest contrast on the peaks' ring away from the four gratings, at one scale, stretch and turn."""
    angle = _other_directions() + turn
    radius = PATTERN_CYCLES * scale * side / ANALYSIS_SIDE
    cols, rows = radius * np.cos(angle), radius * np.sin(angle) * stretch
    flip = cols < 0
    rows, cols = np.where(flip, -rows, rows), np.where(flip, -cols, cols)
    return float(_lookup(contrast, side, np.rint(rows).astype(int), np.rint(cols).astype(int)).max())


@dataclass(frozen=True)
class PatternScores:
    weakest: float  # log contrast of the weakest of the four peaks over its neighbourhood, at the best fit (nats)
    standout: float  # the same less the strongest contrast elsewhere on that ring (nats)

    @property
    def marked(self) -> bool:
        return self.weakest >= PATTERN_THRESHOLD and self.standout >= STANDOUT_THRESHOLD


def pattern_scores(pixels: np.ndarray) -> PatternScores:
    """How strongly the film's spectrum holds the cross-hatch. At the scale, stretch and turn that fit best: the log
    contrast of the weakest of its four peaks over its neighbourhood (about 0 to 1 on real films, 2.5 and more on a
    marked one), and how far it stands out from everything else on the same ring (a page of text or a grid, whose
    peaks come in lattices along the axes too, does not stand out)."""
    spectrum = _spectral_contrast(pixels)
    if spectrum is None:
        return PatternScores(0.0, 0.0)
    contrast, side = spectrum
    weakest = _lookup(contrast, side, *_peak_offsets(side)).min(axis=-1)
    scale, stretch, turn = np.unravel_index(int(np.argmax(weakest)), weakest.shape)
    best = float(weakest[scale, stretch, turn])
    return PatternScores(best, best - _rival(contrast, side, _SCALES[scale], _STRETCHES[stretch], _TURNS[turn]))


def pattern_score(pixels: np.ndarray) -> float:
    """The weakest peak's contrast (PatternScores.weakest)."""
    return pattern_scores(pixels).weakest


@functools.lru_cache(maxsize=1)
def _box_template() -> np.ndarray:
    """The box at a quarter of its drawn size, zero mean and unit norm: enough to tell the word from a film."""
    rows, cols = _box(TEMPLATE_WIDTH / 4)
    box = np.asarray(_mark_patch().resize((cols, rows), Image.Resampling.BOX), np.float64)
    box -= box.mean()
    return box / np.sqrt((box ** 2).sum())


def box_score(pixels: np.ndarray) -> float:
    """|correlation| of the white SYNTHETIC box with each corner where `mark_synthetic` writes it (a mirrored,
    flipped or half-turned film carries it in another corner, reversed). No search: a film that was cropped,
    framed or turned is the pattern's to catch."""
    template = _box_template()
    height, width = pixels.shape
    rows, cols = _box(width)
    if rows < 4 or cols < 8 or rows >= height or cols >= width:
        return 0.0
    best = 0.0
    for corner in (pixels[:rows, :cols], pixels[:rows, -cols:][:, ::-1], pixels[-rows:, :cols][::-1, :],
                   pixels[-rows:, -cols:][::-1, ::-1]):  # each turned so that its corner is top-left
        region = np.asarray(Image.fromarray(np.ascontiguousarray(corner, np.float32), mode="F").resize(
            template.shape[::-1], Image.Resampling.BOX), np.float64)
        region -= region.mean()
        spread = np.sqrt((region ** 2).sum())
        if spread > 1e-6:
            best = max(best, abs(float((region * template).sum())) / spread)
    return best


def mark_scores(pixels: np.ndarray) -> MarkScores:
    """Both marks' scores on the decoded pixels (2-D, any size and range), whatever the file format."""
    pattern = pattern_scores(pixels)
    return MarkScores(pattern=pattern.weakest, standout=pattern.standout, box=box_score(pixels))


def is_marked(pixels: np.ndarray) -> bool:
    """True for a film MedCore generated. The pattern is looked at first: it alone decides nearly every marked
    film, and it costs about the same on every film, real or marked."""
    return pattern_scores(pixels).marked or box_score(pixels) >= BOX_THRESHOLD
