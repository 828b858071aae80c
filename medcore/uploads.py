"""Labelled data sets uploaded on the admin page, unpacked safely under the store and deleted after use.

A zip is checked before anything is written: member count, total unpacked size, compression ratio
(zip bombs), and paths that would escape the target folder (absolute, `..`, links). DICOM members are
stored as pixels only (a 16-bit PNG of the decoded image): patient names and ids never reach the disk.
Each upload is unpacked into a folder of its own, checked, marked complete and only then renamed to
<store>/uploads/<digest>/, so two identical uploads at once cannot share a half-written set. The set
belongs to the training job that uses it and is deleted when that job ends or is refused (`discard`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from medcore import config, tasks
from medcore.imaging.io import UnreadableImage, read_radiograph, sniff_format

MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 8 * 1024**3
MAX_RATIO = 200  # images and text compress far less; a bomb compresses thousands of times
COMPLETE = ".complete"  # written last: a folder without it is a leftover, never used


class UploadRejected(ValueError):
    """The upload cannot be used as a data set; the message says why."""


def uploads_dir() -> Path:
    return config.store_dir() / "uploads"


def _safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_MEMBERS:
        raise UploadRejected(f"The zip holds {len(members)} files; at most {MAX_MEMBERS} are accepted.")
    total = sum(m.file_size for m in members)
    if total > MAX_UNPACKED_BYTES:
        raise UploadRejected(f"The zip would unpack to {total / 1024**3:.1f} GB; at most "
                             f"{MAX_UNPACKED_BYTES / 1024**3:.0f} GB are accepted. Give a path on the server instead.")
    packed = sum(m.compress_size for m in members)
    if total > 10 * 1024**2 and total > MAX_RATIO * max(packed, 1):
        raise UploadRejected("The zip unpacks to far more than its size (a decompression bomb?); refused.")
    for member in members:
        path = PurePosixPath(member.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", member.filename):
            raise UploadRejected(f"The zip holds a path outside its folder ({member.filename!r}); refused.")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise UploadRejected(f"The zip holds a symbolic link ({member.filename!r}); refused.")
    return [m for m in members if not PurePosixPath(m.filename).name.startswith(".")
            and "__MACOSX" not in PurePosixPath(m.filename).parts]


def _find_root(folder: Path, data_kind: str) -> Path:
    """The class-folder root (image folders) or the one CSV (notes) inside an unpacked upload."""
    if data_kind == "image_folder":
        for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
            if (candidate / "NORMAL").is_dir() and (candidate / "PNEUMONIA").is_dir():
                return candidate
        raise UploadRejected("The zip has no folder with NORMAL/ and PNEUMONIA/ sub-folders.")
    csvs = sorted(folder.rglob("*.csv"))
    if len(csvs) != 1:
        raise UploadRejected(f"The zip must hold exactly one CSV file (label,text); it holds {len(csvs)}.")
    return csvs[0]


def _is_dicom(name: str, data: bytes) -> bool:
    try:
        return sniff_format(data, name) == "DICOM"
    except UnreadableImage:
        return False


def _pixels_only(data: bytes, name: str) -> bytes | None:
    """A DICOM as a 16-bit grayscale PNG of its decoded pixels (no header), or None if it cannot be read."""
    try:
        pixels = read_radiograph(data, name).pixels
    except UnreadableImage:
        return None
    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels * 65535).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def _unpack(archive: zipfile.ZipFile, folder: Path) -> dict:
    """Write the members; DICOM as pixels only. Returns counts for the completeness marker."""
    written, skipped = 0, 0
    for member in _safe_members(archive):
        relative = PurePosixPath(member.filename.replace("\\", "/"))
        data = archive.read(member)
        if _is_dicom(relative.name, data):
            data, relative = _pixels_only(data, relative.name), relative.with_suffix(".png")
            if data is None:
                skipped += 1
                continue
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written += 1
    return {"files": written, "unreadable_dicom_skipped": skipped}


def _complete(folder: Path) -> bool:
    try:
        marker = json.loads((folder / COMPLETE).read_text())
    except (OSError, ValueError):
        return False
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE) == marker["files"]


def save_upload(task: str, name: str, data: bytes) -> Path:
    """Store an uploaded zip (any task) or CSV (notes) and return the data-set path a job can train on."""
    family = tasks.get(task).family
    target = uploads_dir() / hashlib.sha256(data).hexdigest()[:16]
    if _complete(target):
        return _find_root(target, family.data_kind)
    tmp = uploads_dir() / f".tmp-{secrets.token_hex(8)}"  # this upload's own folder: no sharing with a twin
    tmp.mkdir(parents=True)
    try:
        if name.lower().endswith(".csv") and "csv" in family.upload_types:
            (tmp / "data.csv").write_bytes(data)
            counts = {"files": 1, "unreadable_dicom_skipped": 0}
        elif zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                counts = _unpack(archive, tmp)
        else:
            raise UploadRejected("Upload a .zip (X-ray: NORMAL/ and PNEUMONIA/ folders; notes: one CSV) "
                                 "or, for notes, a .csv file.")
        _find_root(tmp, family.data_kind)
        (tmp / COMPLETE).write_text(json.dumps(counts))
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UploadRejected(f"The zip is corrupt: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists() and not _complete(target):
        shutil.rmtree(target, ignore_errors=True)  # a leftover of a crash: never reused
    try:
        tmp.rename(target)
    except OSError:  # an identical upload finished first: use its complete copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not _complete(target):
            raise
    return _find_root(target, family.data_kind)


def discard(path: Path) -> None:
    """Delete the uploaded set that `path` lies in; a path outside <store>/uploads is never touched."""
    root = uploads_dir().resolve()
    try:
        relative = Path(path).resolve().relative_to(root)
    except ValueError:
        return
    if relative.parts:
        shutil.rmtree(root / relative.parts[0], ignore_errors=True)
