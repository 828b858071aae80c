"""MedCore's result, in standard DICOM, for the radiologist's own viewer: a structured report and an overlay.

Built with highdicom, both in the original study (same Study Instance UID), each in a new series that says it is
MedCore's (Manufacturer "MedCore", "decision support, not a diagnosis" in the series description):

- a Comprehensive 3D SR with a TID 1500 measurement report: the finding (pneumonia), the calibrated probability,
  the operating threshold and the decision at it, the model version as the algorithm's identification, the source
  film referenced; a film the quality gate refused gets an SR that says why, with no probability;
- a Secondary Capture of the film with its Grad-CAM overlay (RGB), referencing the source instance.

Patient and study attributes are copied from the source film by highdicom (never changed); UIDs are new. The
character set is UTF-8, so non-ASCII names are written declared.

Each SR carries a signature: an HMAC (medcore.keyed, the installation's secret) over the study and the report's
whole content tree (the film referenced, the model version, both copies of every figure, every code and text).
"Manufacturer MedCore" can be written by anyone; the signature cannot, so a report
copied into another study, or made by another device, or by another MedCore installation, does not verify
(`verified_result`) and is never taken as this MedCore's result.
"""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from medcore import keyed
from medcore.pacs.client import MEDCORE_MANUFACTURER

PNEUMONIA = ("233604007", "SCT", "Pneumonia")
NORMAL = ("17621005", "SCT", "Normal")
PRIVATE_SCHEME = "99MEDCORE"
SIGNATURE = ("SIGNATURE", PRIVATE_SCHEME, "MedCore signature")
SIGNED = "medcore-sr-v2"  # the signature's purpose: what is signed, and how (v2: the whole content tree)
DISCLAIMER = "MedCore result: decision support, not a diagnosis"
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
SINGLE_VIEW = ("36554-4", "LN", "XR Chest Single view")  # MedCore reads one frontal film of the study
PATIENT_STUDY_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
                          "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")


def _evidence(source: pydicom.Dataset) -> pydicom.Dataset:
    """The source film as highdicom needs it for evidence: every attribute it copies present (empty if the film has
    none); the film itself is never changed or written back."""
    evidence = copy.copy(source)
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword not in evidence:
            setattr(evidence, keyword, "")
    return evidence


def _code(value: tuple[str, str, str]):
    import highdicom as hd

    return hd.sr.CodedConcept(*value)


def structured_report(source: pydicom.Dataset, model_version: str, probability: float | None, threshold: float,
                      decision: str | None, refusal: str | None, warning: str | None = None) -> pydicom.Dataset:
    """The TID 1500 report: probability, threshold and decision; or, for a refused film, why there is none.
    warning: said in the report's comment (a film scored outside the model's intended use)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    evidence = _evidence(source)
    algorithm = hd.sr.AlgorithmIdentification(name="MedCore chest X-ray", version=model_version)
    if refusal is None:
        measurements = [hd.sr.Measurement(name=codes.DCM.Probability, value=round(float(probability), 4),
                                          unit=codes.UCUM.NoUnits, algorithm_id=algorithm),
                        hd.sr.Measurement(name=_code(("THRESHOLD", PRIVATE_SCHEME, "Operating threshold")),
                                          value=round(float(threshold), 4), unit=codes.UCUM.NoUnits)]
        evaluations = [hd.sr.QualitativeEvaluation(name=codes.DCM.Impression,
                                                   value=_code(PNEUMONIA if decision == "PNEUMONIA" else NORMAL))]
    else:
        measurements = []
        evaluations = [hd.sr.QualitativeEvaluation(
            name=codes.DCM.Impression, value=_code(("NOTANALYSED", PRIVATE_SCHEME, "Not analysed: film refused")))]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="MedCore chest X-ray result"),
        finding_type=_code(PNEUMONIA), algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(evidence)],
        measurements=measurements or None, qualitative_evaluations=evaluations)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(model_version), name="MedCore", manufacturer_name=MEDCORE_MANUFACTURER,
            model_name=model_version))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=observer),
                                     procedure_reported=hd.sr.CodedConcept(*SINGLE_VIEW),
                                     imaging_measurements=[group], title=codes.DCM.ImagingMeasurementReport)
    comment = (DISCLAIMER + (f". Refused: {refusal}" if refusal else
                             f". Calibrated probability of pneumonia {probability:.1%}, operating threshold "
                             f"{threshold:.1%}: {decision}.") + (f" {warning}" if warning else ""))[:1024]
    report[0].ContentSequence.append(hd.sr.TextContentItem(name=codes.DCM.Comment, value=comment,
                                                           relationship_type="CONTAINS"))
    sr = hd.sr.Comprehensive3DSR(
        evidence=[evidence], content=report, series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MEDCORE_MANUFACTURER,
        series_description=DISCLAIMER[:64], is_complete=True, is_final=False)
    sr.SpecificCharacterSet = "ISO_IR 192"
    sr.ContentSequence.append(hd.sr.TextContentItem(name=_code(SIGNATURE), value=signature(sr),
                                                    relationship_type="CONTAINS"))
    _dated(sr)
    return sr


def _dated(dataset: pydicom.Dataset) -> None:
    """When MedCore made the series (viewers sort and show series by it)."""
    import datetime

    now = datetime.datetime.now()
    dataset.SeriesDate, dataset.SeriesTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def device_uid(model_version: str) -> str:
    """One UID per trained model (IHE AI Results: the device that made the result), the same on every run."""
    return pydicom.uid.generate_uid(prefix="1.2.826.0.1.3680043.10.1193.", entropy_srcs=["medcore", model_version])


OUTSIDE_INTENDED_USE_MARK = "OUTSIDE INTENDED USE"  # how a warning starts (service.intended_use_warning)


def report_warning(result: dict) -> str | None:
    """The intended-use warning a report's comment carries (a film scored outside the validated ages), or None."""
    start = result["comment"].find(OUTSIDE_INTENDED_USE_MARK)
    return result["comment"][start:] if start >= 0 else None


def legend_lines(probability: float, threshold: float, decision: str, model_version: str,
                 warning: str | None = None) -> list[str]:
    """What the overlay says in words, for viewers that show the image but not the SR."""
    lines = [f"MedCore decision: {decision}",
             f"Calibrated probability of pneumonia {probability:.1%} (operating threshold {threshold:.1%})",
             f"Model {model_version}", "Decision support, not a diagnosis"]
    return ([OUTSIDE_INTENDED_USE_MARK] if warning else []) + lines


def with_legend(overlay_rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """The overlay with a black band below the film holding the legend: outside the lungs, never over the film."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = overlay_rgb.shape[:2]
    size = max(10, width // 45)
    band = int(size * 1.35 * len(lines) + size)
    canvas = Image.new("RGB", (width, height + band), (0, 0, 0))
    canvas.paste(Image.fromarray(np.ascontiguousarray(overlay_rgb.astype(np.uint8))), (0, 0))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=size)
    for index, line in enumerate(lines):
        colour = (255, 80, 80) if line == OUTSIDE_INTENDED_USE_MARK else (255, 255, 255)
        draw.text((size // 2, height + size // 2 + int(index * size * 1.35)), line, fill=colour, font=font)
    return np.asarray(canvas)


def overlay_capture(source: pydicom.Dataset, overlay_rgb: np.ndarray, model_version: str,
                    legend: list[str] | None = None) -> pydicom.Dataset:
    """The film with its Grad-CAM overlay as a Secondary Capture in a new series of the same study, with the legend
    burned in below the film when given."""
    import highdicom as hd

    pixels = np.ascontiguousarray((with_legend(overlay_rgb, legend) if legend else overlay_rgb).astype(np.uint8))
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=_evidence(source), pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
        series_number=SC_SERIES_NUMBER, instance_number=1, manufacturer=MEDCORE_MANUFACTURER,
        patient_orientation=("L", "F"), series_description=(DISCLAIMER + " (Grad-CAM)")[:64],
        manufacturer_model_name=model_version[:64])
    reference = pydicom.Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    capture.SourceImageSequence = [reference]
    capture.ImageComments = DISCLAIMER
    capture.Laterality = ""  # type 2C: the chest is not a paired part
    capture.SpecificCharacterSet = "ISO_IR 192"
    _dated(capture)
    return capture


def signature(sr: pydicom.Dataset) -> str:
    """The installation's signature over the whole report as a viewer would read it, in its study: every content
    item (relationship, type, concept, value: both copies of each number, the code and the words of each coded
    value, every text) in order, at every depth, except the signature itself. A copied, edited, reordered or
    extended report does not verify."""
    return keyed.sign(SIGNED, str(sr.get("StudyInstanceUID", "")), json.dumps(_canonical(sr)))


def _canonical(node) -> list:
    return [[str(item.get("RelationshipType", "")), str(item.get("ValueType", "")),
             _code_words(item.get("ConceptNameCodeSequence")), _item_value(item), _canonical(item)]
            for item in getattr(node, "ContentSequence", []) if not _is_signature(item)]


def _is_signature(item: pydicom.Dataset) -> bool:
    names = item.get("ConceptNameCodeSequence")
    return bool(names) and names[0].get("CodeValue") == SIGNATURE[0] and \
        names[0].get("CodingSchemeDesignator") == SIGNATURE[1]


def _code_words(sequence) -> list[str]:
    return [f"{code.get('CodeValue', '')}|{code.get('CodingSchemeDesignator', '')}|{code.get('CodeMeaning', '')}"
            for code in (sequence or [])]


def _item_value(item: pydicom.Dataset) -> list:
    kind = str(item.get("ValueType", ""))
    if kind == "NUM":
        return [[repr(float(value.NumericValue)) if "NumericValue" in value else "",
                 repr(float(value.FloatingPointValue)) if "FloatingPointValue" in value else "",
                 _code_words(value.get("MeasurementUnitsCodeSequence"))]
                for value in item.get("MeasuredValueSequence", [])]
    if kind == "CODE":
        return _code_words(item.get("ConceptCodeSequence"))
    if kind == "IMAGE":
        return [[str(ref.get("ReferencedSOPClassUID", "")), str(ref.get("ReferencedSOPInstanceUID", ""))]
                for ref in item.get("ReferencedSOPSequence", [])]
    keywords = ("TextValue", "UID", "DateTime", "Date", "Time", "PersonName", "ContinuityOfContent")
    return [str(item.get(keyword, "")) for keyword in keywords]


def verified_result(dataset: pydicom.Dataset, study_uid: str) -> dict | None:
    """What a report says, if this installation's MedCore wrote it for this very study and nobody changed it; None
    for anything else (a copy from another study, another device's or installation's report, an edited one, a junk
    or unreadable object)."""
    try:
        if str(dataset.get("StudyInstanceUID", "")) != study_uid:
            return None
        signatures = [item for item in dataset.get("ContentSequence", []) if _is_signature(item)]
        if len(signatures) != 1 or not keyed.verify(str(signatures[0].get("TextValue", "")), SIGNED, study_uid,
                                                     json.dumps(_canonical(dataset))):
            return None
        return read_result(dataset)
    except Exception:  # whatever a device wrote: unreadable means unverifiable, never "done"
        return None


def read_result(data: bytes | pydicom.Dataset) -> dict:
    """What a MedCore SR says (for tests, and to show "already reported"): probability, threshold, decision, model."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    report = hd.sr.srread(io.BytesIO(data if isinstance(data, bytes) else _bytes(data)))
    group = report.content.get_image_measurement_groups()[0]
    values = {m.name.meaning: float(m.value) for m in group.get_measurements()}
    impression = group.get_qualitative_evaluations()[0].value.meaning
    versions = [item for item in _items(report) if item.ConceptNameCodeSequence[0].CodeValue ==
                codes.DCM.AlgorithmVersion.value and "TextValue" in item]
    texts = {code: [str(item.TextValue) for item in report.content[0].ContentSequence
                    if item.ConceptNameCodeSequence[0].CodeValue == code and "TextValue" in item]
             for code in (codes.DCM.Comment.value,)}
    return {"probability": values.get("Probability"), "threshold": values.get("Operating threshold"),
            "impression": impression, "model_version": str(versions[0].TextValue) if versions else None,
            "source_sop_instance_uid": group.source_images[0].referenced_sop_instance_uid
            if group.source_images else None, "comment": (texts[codes.DCM.Comment.value] or [""])[0]}


def _items(node):
    """Every content item under a node, depth first."""
    for item in getattr(node, "ContentSequence", []):
        yield item
        yield from _items(item)


def _bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
