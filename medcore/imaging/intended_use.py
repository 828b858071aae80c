"""Who and what an X-ray model was validated for, and the check that keeps it to that.

A model's folder declares its intended use (meta.json "intended_use"), from its training data: the shipped model
learned from frontal chest films (CR/DX, PA or AP) of children aged 1 to 5 (Kermany et al. 2018, Guangzhou Women
and Children's Medical Center), so it says nothing trustworthy about a 45-year-old, a lateral view or a knee. A
film whose DICOM header places it outside gets no decision and a refusal that names the reason; a film that carries
no age (PNG, JPEG, a DICOM without PatientAge or dates) is scored with the population stated beside the result.

Only the age rule may be relaxed, by an administrator (store setting ALLOW_OUTSIDE_AGE), and then every result says
so (page, PDF, SR, audit). View, modality and body part are never relaxed: the network was not trained on them.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import asdict, dataclass

ALLOW_OUTSIDE_AGE = "xray_allow_outside_age"  # the store setting's key ("on" / "off"; default off)
OUTSIDE_INTENDED_USE = "outside intended use"  # the outcome the worklist, the store and the audit use


@dataclass(frozen=True)
class IntendedUse:
    """The population and acquisitions a model was validated on."""

    min_age_years: int
    max_age_years: int  # inclusive, in completed years: 5 covers a child of 5 years and 11 months
    views: tuple[str, ...] = ("PA", "AP")
    modalities: tuple[str, ...] = ("CR", "DX")
    body_parts: tuple[str, ...] = ("CHEST", "THORAX")
    source: str = ""

    @classmethod
    def from_meta(cls, meta: dict) -> "IntendedUse":
        """The folder's declaration; folders made before it was recorded were trained on the same data set."""
        declared = meta.get("intended_use")
        if not declared:
            return SHIPPED_TRAINING_DATA
        return cls(**{**declared, **{k: tuple(declared[k]) for k in ("views", "modalities", "body_parts")
                                     if k in declared}})

    def as_meta(self) -> dict:
        return asdict(self)

    @property
    def population(self) -> str:
        return f"children aged {self.min_age_years} to {self.max_age_years}"

    def statement(self) -> str:
        """One sentence for the page, the card and the reports."""
        return (f"Validated for frontal ({'/'.join(self.views)}) chest radiographs ({'/'.join(self.modalities)}) of "
                f"{self.population} years, the population of its training data.")

    def age_allowed(self, age_years: float) -> bool:
        return self.min_age_years <= math.floor(age_years + 1e-9) <= self.max_age_years

    def age_refusal(self, age_years: float) -> str:
        return f"Patient aged {describe_age(age_years)}: this model is validated for {self.population}."

    def header_refusals(self, technical: dict[str, str]) -> list[str]:
        """Reasons from the DICOM header (modality, body part, view) that no setting relaxes."""
        reasons = []
        modality = technical.get("Modality", "").upper()
        if modality and modality not in self.modalities:
            reasons.append(f"The DICOM modality is {modality}: this model is validated for "
                           f"{'/'.join(self.modalities)} chest radiographs only.")
        body_part = technical.get("BodyPartExamined", "").upper().strip()
        if body_part and body_part not in self.body_parts:  # the whole value: "CHEST_LATERAL" is not the chest
            reasons.append(f"The DICOM body part is {body_part}, not the chest: this model reads chest films only.")
        view = technical.get("ViewPosition", "").upper()
        if view and view not in self.views:
            reasons.append(f"The DICOM view is {view}: this model is validated for frontal "
                           f"({'/'.join(self.views)}) films only.")
        return reasons


SHIPPED_TRAINING_DATA = IntendedUse(
    min_age_years=1, max_age_years=5,
    source="Kermany et al. 2018 (Guangzhou Women and Children's Medical Center): frontal chest films of children "
           "aged 1 to 5")


def describe_age(age_years: float) -> str:
    if age_years < 1:
        months = int(age_years * 12 + 1e-9)
        return f"{months} month{'s' if months != 1 else ''}" if months else "under a month"
    return str(int(math.floor(age_years + 1e-9)))


_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
AGES_DISAGREE_YEARS = 1.0


class UnreadableAge(ValueError):
    """The header gives an age that cannot be read, or two that disagree: no decision without knowing the age."""


def age_from_header(patient_age: object, birth_date: object, study_date: object) -> float | None:
    """The patient's age in years at the study, from PatientAge (nnnD/W/M/Y) and from StudyDate - PatientBirthDate.
    None when the header says neither; UnreadableAge when it says something that cannot be read (a PatientAge such
    as "045", a birth date such as "1980.01.01" or after the study) or two ages that disagree."""
    stated_text, born_text = str(patient_age or "").strip().upper(), str(birth_date or "").strip()
    stated = _stated_age(stated_text) if stated_text else None
    from_dates = None
    if born_text:
        born, studied = _date(born_text), _date(study_date)
        if born is None:
            raise UnreadableAge(f"The DICOM birth date {_plain(born_text)!r} cannot be read, so the patient's age is "
                                "not known: no decision.")
        if studied is not None:
            if studied < born:
                raise UnreadableAge("The DICOM birth date is after the study date, so the patient's age is not known: "
                                    "no decision.")
            from_dates = (studied - born).days / 365.25
    if stated is not None and from_dates is not None and abs(stated - from_dates) > AGES_DISAGREE_YEARS:
        raise UnreadableAge(f"The DICOM PatientAge ({describe_age(stated)}) and birth date (age "
                            f"{describe_age(from_dates)}) disagree: no decision until the header is corrected.")
    return stated if stated is not None else from_dates


def _stated_age(text: str) -> float:
    match = _AGE.match(text)
    if not match:
        raise UnreadableAge(f"The DICOM PatientAge {_plain(text)!r} cannot be read (DICOM writes e.g. 004Y), so the "
                            "patient's age is not known: no decision.")
    return int(match.group(1)) * _UNIT_YEARS[match.group(2)]


def _plain(text: str) -> str:
    """Header text quoted in a message: letters, digits, '.', '-' and space only (it is shown on pages)."""
    return re.sub(r"[^A-Za-z0-9 .-]+", " ", text)[:16].strip()


def _date(value: object) -> datetime.date | None:
    text = str(value or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return datetime.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
