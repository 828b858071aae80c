"""A demonstration PACS's content: films made into DICOM studies with made-up patients (never real names).

`medcore pacs load-demo --data DIR` turns every film of DIR/NORMAL and DIR/PNEUMONIA (e.g. the external sample)
into one DX study each, with a made-up patient name, id and accession number and today's date, and stores them in
the configured PACS. Tests and benchmarks/pacs.py build their studies with `chest_study`.
"""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from medcore.imaging.folders import list_image_folder
from medcore.imaging.io import read_radiograph


def chest_study(pixels: np.ndarray, patient_name: str, patient_id: str, accession: str,
                study_date: datetime.date | None = None, bits: int = 12, patient_age: str = "",
                view: str = "PA") -> pydicom.Dataset:
    """One DX film (2-D pixels in [0, 1]) as a one-image study of its own (PatientAge e.g. "004Y" when given)."""
    study_date = study_date or datetime.date.today()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.AccessionNumber = patient_name, patient_id, accession
    ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName, ds.StudyID = "", "", "", "1"
    ds.StudyDate = ds.SeriesDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = "090000"
    if patient_age:
        ds.PatientAge = patient_age
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", view
    ds.StudyDescription, ds.SeriesNumber, ds.InstanceNumber = "XR CHEST PA", 1, 1
    ds.Manufacturer = "Demo"
    ds.PresentationIntentType, ds.ImageType = "FOR PRESENTATION", ["ORIGINAL", "PRIMARY"]
    values = np.round(np.clip(pixels, 0, 1) * (2 ** bits - 1)).astype(np.uint16)
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.PixelData = values.tobytes()
    return ds


def demo_studies(data_dir: Path, first: int = 1) -> list[pydicom.Dataset]:
    """Every film of a NORMAL/ PNEUMONIA/ folder as a study of a made-up patient."""
    listing = list_image_folder(Path(data_dir))
    studies = []
    for n, path in enumerate(listing.files, start=first):
        pixels = read_radiograph(path.read_bytes(), path.name).pixels
        studies.append(chest_study(pixels, f"Demo^Patient{n:04d}", f"DEMO{n:04d}", f"ACC{n:06d}"))
    return studies


def as_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
