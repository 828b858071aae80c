"""A corpus of hostile and broken inputs, generated here (never downloaded), with the outcome each must get.

Each case is (name, file name, bytes, expected): expected is a regular expression the refusal message must
match, or None where a correct result is due. Used by tests/test_adversarial.py (the functions the pages and
the CLI call) and by the README's reliability table.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.synthetic import chest_like, colour_photo, encode, make_dicom, noise, text_screenshot

SYNTHETIC = r"SYNTHETIC mark"

GOOD = None  # a correct result: a probability and a decision


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny compressed row: a decompression bomb's shape."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def _png_bomb() -> bytes:
    """A real PNG of 12,000 x 12,000 black pixels: about 100 kB on disk, 144 MB decoded."""
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _dicom_with(film: np.ndarray, *elements: tuple[int, str, str], drop_pixels: bool = False,
                syntax: str | None = None, **kwargs) -> bytes:
    """A scanner-like DICOM, then header elements forced in as written (a text VR where a number belongs)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom((film * 4000).astype(np.uint16), bits=12, **kwargs)))
    for tag, vr, value in elements:
        ds.add_new(tag, vr, value)
    if drop_pixels:
        del ds.PixelData
    if syntax:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + bytes(200)])  # not a decodable codestream
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _multi_frame(film: np.ndarray) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom((film * 4000).astype(np.uint16), bits=12)))
    frames = np.stack([(film * 4000).astype(np.uint16)] * 3)
    ds.NumberOfFrames, ds.PixelData = 3, frames.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def image_corpus(reference: dict[str, np.ndarray]) -> list[tuple[str, str, bytes, str | None]]:
    film = chest_like(reference, 600, 500, seed=11)
    png, jpeg = encode(film, "PNG"), encode(film, "JPEG", quality=92)
    markdown_attack = "[click](http://evil.example) ![x](http://evil.example/p.png) <img src=x onerror=alert(1)>"
    return [
        ("good PNG film", "film.png", png, GOOD),
        ("good JPEG film", "film.jpg", jpeg, GOOD),
        ("good DICOM film", "film.dcm", _dicom_with(film), GOOD),
        ("truncated JPEG", "cut.jpg", jpeg[: len(jpeg) // 3], r"corrupt or truncated"),
        ("truncated PNG", "cut.png", png[: len(png) // 3], r"corrupt or truncated"),
        ("corrupt PNG (flipped bytes)", "flip.png", png[:100] + bytes(b ^ 0xFF for b in png[100:400]) + png[400:],
         r"corrupt or truncated"),
        ("0-byte file", "empty.png", b"", r"empty"),
        ("PNG named .dcm", "film.dcm", png, GOOD),
        ("JPEG named .png", "film.png", jpeg, GOOD),
        ("text file named .jpg", "notes.jpg", b"patient notes, not an image" * 10, r"Not a PNG, JPEG or DICOM"),
        ("PNG decompression bomb", "bomb.png", _png_bomb(), r"decompression bomb"),
        ("20,000 x 20,000 PNG header", "huge.png", _png_header_only(20_000, 20_000), r"decompression bomb"),
        ("16-bit PNG film", "film16.png", encode((film * 65535).astype(np.uint16), "PNG"), GOOD),
        ("RGBA PNG film", "rgba.png", encode(np.dstack([(film * 255).astype(np.uint8)] * 3 +
                                                        [np.full(film.shape, 255, np.uint8)]), "PNG"), GOOD),
        ("palette PNG film", "palette.png", _palette(film), GOOD),
        ("DICOM without pixel data", "nopixels.dcm", _dicom_with(film, drop_pixels=True), r"no image"),
        ("DICOM, undecodable compression", "j2k.dcm", _dicom_with(film, syntax="1.2.840.10008.1.2.4.90"),
         r"cannot be decoded|cannot read"),
        ("DICOM MONOCHROME1", "mono1.dcm", _dicom_with(1.0 - film, photometric="MONOCHROME1"), GOOD),
        ("multi-frame DICOM", "cine.dcm", _multi_frame(film), r"[Mm]ulti-frame"),
        ("DICOM NumberOfFrames='abc'", "frames.dcm", _dicom_with(film, (0x00280008, "LO", "abc")),
         r"header|cannot"),
        ("DICOM WindowWidth='wide'", "ww.dcm", _dicom_with(film, (0x00281050, "DS", "500"),
                                                          (0x00281051, "LO", "wide")), r"header|cannot"),
        ("DICOM RescaleSlope='x'", "slope.dcm", _dicom_with(film, (0x00281052, "DS", "0"),
                                                            (0x00281053, "LO", "x")), r"header|cannot"),
        ("DICOM Rows='zz'", "rows.dcm", _dicom_with(film, (0x00280010, "LO", "zz")), r"header|cannot"),
        ("DICOM BodyPartExamined with links and HTML", "part.dcm", _dicom_with(film, body_part=markdown_attack),
         r"body part"),
        ("DICOM Modality with markdown", "mod.dcm", _dicom_with(film, modality="**MR** [x](http://evil.example)"),
         r"modality"),
        ("non-chest: noise", "noise.png", encode(noise(300), "PNG"), r"Refused"),
        ("non-chest: text screenshot", "shot.png", encode(text_screenshot(), "PNG"), r"Refused"),
        ("non-chest: colour photo", "photo.jpg", encode(colour_photo(300), "JPEG"), r"Refused"),
        *_synthetic_cases(reference),
    ]


def _synthetic_cases(reference: dict[str, np.ndarray]) -> list[tuple[str, str, bytes, str | None]]:
    """A generator's film (64 px, marked as MedCore marks it) passed on without its tag in four ways."""
    from medcore.imaging.synthetic import mark_synthetic

    marked = np.asarray(Image.open(io.BytesIO(mark_synthetic(chest_like(reference, 64, 64, seed=12), "gan-x"))))
    half = np.asarray(Image.fromarray(marked).resize((marked.shape[1] // 2, marked.shape[0] // 2)))
    jpeg = io.BytesIO()
    Image.fromarray(marked).save(jpeg, format="JPEG", quality=75)
    return [("synthetic film, re-saved PNG without its tag", "syn.png", encode(marked / 255.0, "PNG"), SYNTHETIC),
            ("synthetic film, JPEG quality 75", "syn.jpg", jpeg.getvalue(), SYNTHETIC),
            ("synthetic film, resized to 50 %", "syn-half.png", encode(half / 255.0, "PNG"), SYNTHETIC),
            ("synthetic film, wrapped in DICOM", "syn.dcm", make_dicom(marked.astype(np.uint16) * 16, bits=12),
             SYNTHETIC)]


def rogue_federated_updates(weights: list[np.ndarray]) -> list[tuple[str, list[np.ndarray], int, dict, str]]:
    """Updates a site might send (medcore.federated.validation), each with the reason it must be dropped for."""
    shapes = [np.full(w.size, 7.0, w.dtype) for w in weights]
    return [
        ("wrong shapes, 10^9 films claimed", shapes, 10**9, {"loss": 0.1}, r"claims 1000000000 films"),
        ("wrong shapes, honest count", shapes, 50, {"loss": 0.1}, r"array 0 is"),
        ("NaN weights", [np.full_like(w, np.nan) for w in weights], 50, {"loss": 0.1}, r"non-finite"),
        ("float64 weights", [w.astype(np.float64) for w in weights], 50, {"loss": 0.1}, r"float64"),
        ("one array missing", weights[:-1], 50, {"loss": 0.1}, r"arrays instead of"),
        ("its folder name in the metrics", weights, 50, {"loss": 0.1, "site": "hospital_a"}, r"unexpected fields"),
        ("infinite loss", weights, 50, {"loss": float("inf")}, r"loss is not a finite"),
    ]


def _palette(film: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((film * 255).astype(np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE).save(buffer, "PNG")
    return buffer.getvalue()


MARKDOWN_FOLDER_NAME = "[click](http://evil.example) ![x](http://evil.example/p.png) <b>local</b>"
LONG_WORD = "".join("abcdefghij"[i % 10] for i in range(5_000))


NOTE_CORPUS: list[tuple[str, str | bytes, str | None]] = [
    ("empty note", "", r"empty"),
    ("whitespace only", " \n\t  ", r"empty"),
    ("100,000 characters", "fever cough chills " * 5_300, GOOD),
    ("HTML and script", "<script>alert('x')</script><img src=x onerror=alert(1)> high fever and a cough", GOOD),
    ("a few control characters", "High fever\x00 for three days, \x1b[31mdry cough\x1b[0m, chills and aching "
                                 "muscles; short of breath on stairs.\x7f", GOOD),
    ("mostly control characters", "fever\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c cough", r"binary"),
    ("non-UTF-8 bytes (Latin-1 upload)", "fièvre, toux sèche, frissons depuis trois jours".encode("latin-1"), GOOD),
    ("binary upload", b"\x00\x01\x02\x03" * 50, r"binary"),
    ("non-English", "高烧三天，咳嗽，胸痛，呼吸困难", GOOD),
    ("punctuation only", "!!! ??? ... ---", r"no words|empty|word"),
    ("a 5,000-character word", f"fever and cough {LONG_WORD} chills", GOOD),
]
