"""The hospital's PACS over DICOMweb (dicomweb-client): find chest studies (QIDO-RS), fetch films (WADO-RS), store
results (STOW-RS).

The URL and credentials come from config.pacs_settings (environment or configuration file) and never reach a page,
a log line or the audit log: errors name what failed, never the address or the user. https is verified against
the system's CAs or MEDCORE_PACS_CA_BUNDLE. Requests time out; 429/503/504 are retried with exponential back-off
by the library; a partial STOW failure (HTTP 202 with failed SOP instances) is an error, not silence.
"""

from __future__ import annotations

import datetime
import io
import re
from dataclasses import dataclass
from typing import Any, Iterator

import pydicom

from medcore import config

CHEST_MODALITIES = ("CR", "DX")
MEDCORE_MANUFACTURER = "MedCore"  # every series MedCore writes says so: how "already analysed" is recognised
TIMEOUT_S = 20
PAGE = 500  # studies per QIDO-RS page


class PacsUnavailable(RuntimeError):
    """The PACS cannot be reached or refused us; str() is safe to show (no address, no credentials)."""


class PacsNotConfigured(PacsUnavailable):
    """No MEDCORE_PACS_URL (or [pacs] url) is set."""


class FilmTooLarge(ValueError):
    """A film in the PACS is larger than config.MAX_UPLOAD_BYTES (the uploads' limit): it is not fetched. Not
    PacsUnavailable: the PACS works, this film is refused."""


UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # a DICOM UID: digits and dots, at most 64 characters
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# A film is asked for uncompressed on the wire: a 12-bit film deflates by a quarter at most, and Orthanc spends
# ~400 ms gzipping 8 MB (and we ~40 ms inflating it) where loopback or a LAN moves it in ~10 ms.
FILM_ENCODING = "identity"


@dataclass(frozen=True)
class Study:
    """One study as the PACS lists it: what a clinician needs to identify the patient (shown, never logged)."""

    study_uid: str
    patient_name: str
    patient_id: str
    study_date: str  # YYYYMMDD
    accession_number: str
    modalities: tuple[str, ...]
    description: str

    @property
    def when(self) -> str:
        date = self.study_date
        return f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else date


def _value(attributes: dict, tag: str, default: str = "") -> Any:
    values = attributes.get(tag, {}).get("Value")
    if not values:
        return default
    first = values[0]
    if isinstance(first, dict) and "Alphabetic" in first:  # a person name
        return str(first["Alphabetic"])
    return first


def _values(attributes: dict, tag: str) -> tuple[str, ...]:
    return tuple(str(v) for v in attributes.get(tag, {}).get("Value", []))


def _as_file(dataset: pydicom.Dataset) -> pydicom.Dataset:
    import io

    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


class PacsClient:
    """One PACS connection (a requests session with the credentials); cheap to make, safe to share per process."""

    def __init__(self, settings: dict[str, str | None] | None = None) -> None:
        from dicomweb_client import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass

        settings = settings or config.pacs_settings()
        if not settings.get("url"):
            raise PacsNotConfigured("No PACS is configured (MEDCORE_PACS_URL).")
        session = (create_session_from_user_pass(settings["user"], settings["password"] or "")
                   if settings.get("user") else create_session())
        if settings.get("ca_bundle"):
            session.verify = settings["ca_bundle"]
        self._client = DICOMwebClient(url=str(settings["url"]).rstrip("/"), session=session, timeout=TIMEOUT_S)
        self._client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=200)

    def _call(self, what: str, function, *args, **kwargs):
        import requests

        try:
            return function(*args, **kwargs)
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            if status in (401, 403):
                raise PacsUnavailable(f"The PACS refused MedCore's credentials ({what}: HTTP {status}).") from None
            raise PacsUnavailable(f"The PACS could not {what} (HTTP {status}).") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            raise PacsUnavailable(f"The PACS cannot be reached ({what}: {type(exc).__name__}).") from None

    def _studies(self, what: str, search_filters: dict) -> list[dict]:
        """Every matching study, page by page (limit/offset), stopping when a page brings nothing new: a PACS that
        ignores `offset` (some do) answers the same page again, which must not loop for ever."""
        rows, seen = [], set()
        while True:
            page = self._call(what, self._client.search_for_studies, search_filters=search_filters, limit=PAGE,
                              offset=len(rows), fields=["PatientName", "PatientID", "StudyDate", "AccessionNumber",
                                                        "ModalitiesInStudy", "StudyDescription"])
            new = [row for row in page if str(_value(row, "0020000D")) not in seen]
            seen.update(str(_value(row, "0020000D")) for row in new)
            rows += new
            if len(page) < PAGE or not new:
                return rows

    def chest_studies(self, first_day: datetime.date, last_day: datetime.date) -> list[Study]:
        """Studies with a CR or DX series between two dates (inclusive), every page of them."""
        found: dict[str, Study] = {}
        for modality in CHEST_MODALITIES:
            rows = self._studies("list studies", {"ModalitiesInStudy": modality,
                                                  "StudyDate": f"{first_day:%Y%m%d}-{last_day:%Y%m%d}"})
            for row in rows:
                uid = str(_value(row, "0020000D"))
                found[uid] = Study(uid, str(_value(row, "00100010")), str(_value(row, "00100020")),
                                   str(_value(row, "00080020")), str(_value(row, "00080050")),
                                   _values(row, "00080061"), str(_value(row, "00081030")))
        return sorted(found.values(), key=lambda s: (s.study_date, s.study_uid))

    def patient_chest_studies(self, patient_id: str) -> list[Study]:
        """Every chest study of one patient (for the prior film beside a new one)."""
        found = []
        for modality in CHEST_MODALITIES:
            rows = self._studies("list the patient's studies", {"PatientID": patient_id,
                                                                "ModalitiesInStudy": modality})
            found += [Study(str(_value(r, "0020000D")), str(_value(r, "00100010")), str(_value(r, "00100020")),
                            str(_value(r, "00080020")), str(_value(r, "00080050")), _values(r, "00080061"),
                            str(_value(r, "00081030"))) for r in rows]
        return sorted({s.study_uid: s for s in found}.values(), key=lambda s: s.study_date)

    def study(self, study_uid: str) -> Study | None:
        rows = self._call("find the study", self._client.search_for_studies,
                          search_filters={"StudyInstanceUID": study_uid},
                          fields=["PatientName", "PatientID", "StudyDate", "AccessionNumber", "ModalitiesInStudy",
                                  "StudyDescription"])
        if not rows:
            return None
        row = rows[0]
        return Study(study_uid, str(_value(row, "00100010")), str(_value(row, "00100020")),
                     str(_value(row, "00080020")), str(_value(row, "00080050")), _values(row, "00080061"),
                     str(_value(row, "00081030")))

    def series(self, study_uid: str) -> list[dict]:
        """Each series of the study: uid, modality, manufacturer, description (MedCore's own are recognisable)."""
        rows = self._call("list series", self._client.search_for_series, study_instance_uid=study_uid,
                          fields=["Modality", "Manufacturer", "SeriesDescription", "SeriesNumber"])
        return [{"series_uid": str(_value(r, "0020000E")), "modality": str(_value(r, "00080060")),
                 "manufacturer": str(_value(r, "00080070")), "description": str(_value(r, "0008103E"))}
                for r in rows]

    def instances(self, study_uid: str, series_uid: str) -> list[str]:
        rows = self._call("list instances", self._client.search_for_instances, study_instance_uid=study_uid,
                          series_instance_uid=series_uid)
        return [str(_value(r, "00080018")) for r in rows]

    def instance(self, study_uid: str, series_uid: str, sop_uid: str) -> pydicom.Dataset:
        """One instance by WADO-RS, streamed: FilmTooLarge as soon as more than config.MAX_UPLOAD_BYTES have arrived
        (or the server announces more), before anything is parsed. dicomweb-client's retrieve_instance reads the
        whole body into memory first; this GET goes through its session and retries all the same."""
        return self.instance_and_bytes(study_uid, series_uid, sop_uid)[0]

    def instance_and_bytes(self, study_uid: str, series_uid: str, sop_uid: str) -> tuple[pydicom.Dataset, bytes]:
        """The instance and the bytes the PACS sent for it (the film's digest is taken of those, never re-encoded)."""
        if not all(isinstance(uid, str) and len(uid) <= 64 and UID.fullmatch(uid)
                   for uid in (study_uid, series_uid, sop_uid)):
            raise ValueError("A study, series or instance UID is malformed (DICOM UIDs are digits and dots).")
        return self._call("fetch the film", self._fetch_instance, study_uid, series_uid, sop_uid)

    def _fetch_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> tuple[pydicom.Dataset, bytes]:
        from dicomweb_client.web import _Transaction

        url = self._client._get_instances_url(_Transaction.RETRIEVE, study_uid, series_uid, sop_uid)
        response = self._client._http_get(url, headers={"Accept": WADO_ACCEPT, "Accept-Encoding": FILM_ENCODING},
                                          stream=True)
        with response:
            limit = config.MAX_UPLOAD_BYTES
            announced = response.headers.get("Content-Length", "")
            if announced.strip().isdigit() and int(announced) > limit:
                raise FilmTooLarge(_too_large(limit, int(announced)))
            body = _Limited(response, limit)
            if response.headers.get("Content-Type", "").lower().startswith("application/dicom"):
                parts = [b"".join(body.iter_content(chunk_size=2**16))]  # a PACS that sends the part bare
            else:
                parts = list(self._client._decode_multipart_message(body, stream=True))
        if len(parts) != 1:
            raise PacsUnavailable(f"The PACS sent {len(parts)} objects for one film.")
        return pydicom.dcmread(io.BytesIO(parts[0])), parts[0]

    def store(self, datasets: list[pydicom.Dataset]) -> None:
        """STOW-RS into the study the datasets name; PacsUnavailable when any instance was refused.

        Each object travels as a DICOM file (128-byte preamble, "DICM", file meta): some PACSs (Orthanc) keep and
        return exactly what they received, and a reader expects a file."""
        response = self._call("store the result", self._client.store_instances,
                              datasets=[_as_file(dataset) for dataset in datasets])
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsUnavailable(f"The PACS refused {len(failed)} of {len(datasets)} result objects "
                                  f"(failure reasons {', '.join(reasons)}).")

    def view_position(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """The film's ViewPosition from its metadata (WADO-RS, no pixels): '' when the header has none."""
        metadata = self._call("read the film's header", self._client.retrieve_instance_metadata,
                              study_instance_uid=study_uid, series_instance_uid=series_uid, sop_instance_uid=sop_uid)
        return str(_value(metadata or {}, "00185101")).strip().upper()

    def medcore_series(self, study_uid: str) -> list[dict]:
        """The series MedCore wrote into this study (structured reports and overlays)."""
        return medcore_only(self.series(study_uid))


def medcore_only(series: list[dict]) -> list[dict]:
    """Of a study's series (PacsClient.series), those whose Manufacturer says MedCore."""
    return [one for one in series if one["manufacturer"] == MEDCORE_MANUFACTURER]


def _too_large(limit: int, announced: int | None = None) -> str:
    size = f"; the PACS announces {announced / 2**20:.1f} MB" if announced else ""
    return (f"The film in the PACS is larger than the {limit / 2**20:g} MB limit for a film "
            f"(MEDCORE_MAX_UPLOAD_MB{size}); it was not fetched.")


class _Limited:
    """A streamed response as dicomweb-client's multipart decoder reads it, raising FilmTooLarge once more than
    `limit` bytes have arrived: the rest of the body is never read."""

    def __init__(self, response, limit: int) -> None:
        self.headers, self._response, self._limit, self.received = response.headers, response, limit, 0

    def iter_content(self, chunk_size: int = 2**16) -> Iterator[bytes]:
        for chunk in self._response.iter_content(chunk_size=min(chunk_size, 2**20)):
            self.received += len(chunk)
            if self.received > self._limit:
                raise FilmTooLarge(_too_large(self._limit))
            yield chunk

    @property
    def content(self) -> bytes:  # the decoder's path for a multipart body without a boundary
        return b"".join(self.iter_content())

    def __enter__(self) -> "_Limited":
        return self

    def __exit__(self, *exc) -> None:
        self._response.close()
