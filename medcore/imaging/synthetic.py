"""Synthetic films are never mistaken for a patient: a visible mark on the pixels and a tag in the file.

Every film MedCore generates (for augmentation or demonstration) goes through `mark_synthetic`: the word
SYNTHETIC is burnt into the top-left corner, so a printout or a screenshot still says it, and the file carries
a tag (a PNG text chunk, or a JPEG comment) naming the generator. `imaging.io` refuses any upload with the tag,
so a synthetic film is never read, scored or logged as a study.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, PngImagePlugin

TAG_KEY = "MedCore-Synthetic"
JPEG_COMMENT_PREFIX = TAG_KEY.encode() + b":"


def mark_synthetic(pixels: np.ndarray, generator: str, fmt: str = "PNG") -> bytes:
    """A film (2-D, values in [0, 1]) as PNG or JPEG bytes, with the visible mark and the tag naming `generator`."""
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L")
    draw = ImageDraw.Draw(image)
    size = max(10, image.width // 16)
    box = (0, 0, int(size * 6.2), int(size * 1.6))
    draw.rectangle(box, fill=255)
    draw.text((size // 4, size // 4), "SYNTHETIC", fill=0, font_size=size)
    buffer = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(TAG_KEY, generator)
        image.save(buffer, format="PNG", pnginfo=info)
    else:
        image.save(buffer, format="JPEG", quality=95, comment=JPEG_COMMENT_PREFIX + generator.encode())
    return buffer.getvalue()


def synthetic_tag(image: Image.Image) -> str | None:
    """The generator named by a decoded file's tag, or None for a film with no tag."""
    if TAG_KEY in image.info:
        return str(image.info[TAG_KEY])
    comment = image.info.get("comment", b"")
    if isinstance(comment, bytes) and comment.startswith(JPEG_COMMENT_PREFIX):
        return comment[len(JPEG_COMMENT_PREFIX):].decode(errors="replace")
    return None
