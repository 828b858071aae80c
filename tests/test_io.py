"""Decoding and validating uploads: PNG, JPEG, DICOM (windowing, MONOCHROME1, 16-bit) and bad files."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from medcore import config
from medcore.imaging.io import UnreadableImage, read_radiograph
from tests.synthetic import colour_photo, encode, make_dicom

RAMP = np.tile(np.linspace(0, 1, 128, dtype=np.float32), (96, 1))
NOISY = np.random.default_rng(0).random((256, 256)).astype(np.float32)  # compresses badly: long files


def test_png_and_jpeg_decode_to_grayscale_unit_range():
    png = read_radiograph(encode(RAMP, "PNG"), "a.png")
    assert png.source_format == "PNG" and png.pixels.shape == (96, 128)
    assert png.pixels.dtype == np.float32 and png.pixels.min() == 0 and png.pixels.max() == 1
    rgb_gray = np.repeat((RAMP * 255).astype(np.uint8)[..., None], 3, axis=-1)  # how the training JPEGs are stored
    jpeg = read_radiograph(encode(rgb_gray, "JPEG", quality=95), "b.jpg")
    assert jpeg.source_format == "JPEG" and jpeg.colour_saturation < 0.02
    assert np.abs(jpeg.pixels - RAMP).max() < 0.05


def test_sixteen_bit_png_is_scaled_to_its_range():
    values = (RAMP * 4000 + 100).astype(np.uint16)
    radiograph = read_radiograph(encode(values, "PNG"), "x.png")
    assert radiograph.pixels.min() == 0 and radiograph.pixels.max() == 1
    assert np.abs(radiograph.pixels - RAMP).max() < 1e-3


def test_colour_photo_reports_saturation():
    assert read_radiograph(encode(colour_photo(), "PNG")).colour_saturation > 0.2


def test_format_is_sniffed_from_content_not_extension():
    assert read_radiograph(encode(RAMP, "PNG"), "scan.dcm").source_format == "PNG"
    with pytest.raises(UnreadableImage, match="Not a PNG, JPEG or DICOM"):
        read_radiograph(b"%PDF-1.7 this is a document", "scan.png")


def test_dicom_sixteen_bit_window_is_applied():
    stored = (RAMP * 4095).astype(np.uint16)
    # A window centred at 1024, 1024 wide: everything above 1536 saturates to white.
    radiograph = read_radiograph(make_dicom(stored, bits=12, window=(1024, 1024)), "s.dcm")
    assert radiograph.source_format == "DICOM" and radiograph.pixels.shape == stored.shape
    assert radiograph.pixels[:, -1].min() == 1.0 and radiograph.pixels[:, 0].max() == 0.0
    assert (radiograph.pixels == 1.0).mean() > 0.5  # most of the ramp lies above the window
    without_window = read_radiograph(make_dicom(stored, bits=12), "s.dcm")
    assert np.abs(without_window.pixels - RAMP).max() < 1e-3


def test_dicom_monochrome1_is_inverted():
    stored = (RAMP * 65535).astype(np.uint16)
    mono2 = read_radiograph(make_dicom(stored, "MONOCHROME2"), "m2.dcm").pixels
    mono1 = read_radiograph(make_dicom(stored, "MONOCHROME1"), "m1.dcm").pixels
    assert np.allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_dicom_identifiers_never_leave_the_reader():
    radiograph = read_radiograph(make_dicom((RAMP * 1000).astype(np.uint16), patient_name="Smith^John",
                                            patient_id="MRN-777"), "s.dcm")
    assert radiograph.technical == {"Modality": "DX", "BodyPartExamined": "CHEST", "ViewPosition": "PA",
                                    "PhotometricInterpretation": "MONOCHROME2", "BitsStored": "16"}
    text = repr(radiograph.technical) + repr(radiograph)
    assert "Smith" not in text and "MRN-777" not in text


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (encode(NOISY, "PNG")[:20_000], "corrupt or truncated"),
    (encode(NOISY, "JPEG")[:5_000], "corrupt or truncated"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "corrupt or truncated"),
])
def test_bad_files_get_a_clear_message(data, message):
    with pytest.raises(UnreadableImage, match=message):
        read_radiograph(data, "bad.png")


def test_truncated_dicom_pixel_data():
    data = make_dicom((RAMP * 1000).astype(np.uint16))
    with pytest.raises(UnreadableImage, match="DICOM"):
        read_radiograph(data[: len(data) - 5000], "cut.dcm")


def test_dicom_without_pixels():
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom((RAMP * 1000).astype(np.uint16))))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(UnreadableImage, match="no image"):
        read_radiograph(buffer.getvalue(), "report.dcm")


def test_decompression_bomb_is_refused_before_decoding():
    """A 2 KB PNG that claims 20,000 x 20,000 pixels is refused from its header alone."""
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")
    bomb = buffer.getvalue()
    assert len(bomb) < 200_000
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        read_radiograph(bomb, "bomb.png")


def test_dicom_dimension_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(config, "MAX_PIXELS", 1000)
    with pytest.raises(UnreadableImage, match="pixel limit"):
        read_radiograph(make_dicom((RAMP * 1000).astype(np.uint16)), "big.dcm")


def test_oversized_upload_is_refused_without_reading(monkeypatch):
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(UnreadableImage, match="limit is"):
        read_radiograph(encode(np.random.default_rng(0).random((200, 200)), "PNG"), "x.png")


def test_tiny_image_is_refused():
    with pytest.raises(UnreadableImage, match="at least"):
        read_radiograph(encode(np.zeros((20, 20), np.float32), "PNG"), "tiny.png")


def test_random_bytes_with_png_magic_do_not_crash():
    rng = np.random.default_rng(0)
    for seed in range(20):
        junk = b"\x89PNG\r\n\x1a\n" + zlib.compress(rng.bytes(500 + seed))
        with pytest.raises(UnreadableImage):
            read_radiograph(junk, "junk.png")
