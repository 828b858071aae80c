"""Labelled data sets uploaded on the admin page, unpacked safely under the store and deleted after use.

A zip is checked before anything is written: member count, total unpacked size, compression ratio
(zip bombs), and paths that would escape the target folder (absolute, `..`, links). What is written is only
what the task reads: for image sets, the decoded pixels of each accepted image (a 16-bit PNG, whatever the
member's format or name: a DICOM header with the patient's name never reaches the disk); for notes, the one CSV.
Every other member (a note, a spreadsheet, an unreadable or synthetic film) is dropped and counted.
Each upload is unpacked into a folder of its own, checked and only then renamed to
<store>/uploads/<digest>-<random>/: two uploads of the same file never share a folder, so one user's
refusal or finished job cannot delete a set another job is using. The set belongs to the job (or local
validation) that uses it and is deleted when that ends or is refused (`discard`). Temporary folders left by
a crash are removed at the next upload.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import shutil
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from medcore import config, tasks
from medcore.imaging.folders import IMAGE_SUFFIXES
from medcore.imaging.io import SyntheticFilm, UnreadableImage, read_radiograph

MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 8 * 1024**3
MAX_RATIO = 200  # images and text compress far less; a bomb compresses thousands of times
COMPLETE = ".complete"  # written last, with what was kept and dropped
STALE_TEMP_SECONDS = 6 * 3600  # a temporary folder this old belongs to no upload still running


class UploadRejected(ValueError):
    """The upload cannot be used as a data set; the message says why."""


def uploads_dir() -> Path:
    """On the shared folder: a job that runs on a worker elsewhere reads the upload it was started with."""
    return config.shared_dir() / "uploads"


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
    """The class-folder root (image folders), the folder itself (unlabelled images) or the one CSV (notes) inside an
    unpacked upload."""
    if data_kind == "unlabelled_images":
        if not any(p.suffix == ".png" for p in folder.rglob("*.png")):
            raise UploadRejected("The zip holds no readable film.")
        return folder
    if data_kind == "image_folder":
        for candidate in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
            if (candidate / "NORMAL").is_dir() and (candidate / "PNEUMONIA").is_dir():
                return candidate
        raise UploadRejected("The zip has no folder with NORMAL/ and PNEUMONIA/ sub-folders.")
    csvs = sorted(folder.rglob("*.csv"))
    if len(csvs) != 1:
        raise UploadRejected(f"The zip must hold exactly one CSV file (label,text); it holds {len(csvs)}.")
    return csvs[0]


def _pixels_only(data: bytes, name: str) -> bytes | str:
    """An accepted image as a 16-bit grayscale PNG of its decoded pixels (nothing else of the file survives), or
    why it was dropped ("unreadable", "synthetic")."""
    try:
        pixels = read_radiograph(data, name).pixels
    except SyntheticFilm:
        return "synthetic"
    except UnreadableImage:
        return "unreadable"
    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels * 65535).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def _unpack(archive: zipfile.ZipFile, folder: Path, data_kind: str) -> dict:
    """Write what the task reads (images as pixels only, or CSV files); count what was dropped and why."""
    counts = {"files": 0, "dropped_not_data": 0, "dropped_unreadable": 0, "dropped_synthetic": 0}
    for member in _safe_members(archive):
        relative = PurePosixPath(member.filename.replace("\\", "/"))
        if data_kind in ("image_folder", "unlabelled_images"):
            data = _pixels_only(archive.read(member), relative.name)
            if isinstance(data, str):
                counts[f"dropped_{data}" if relative.suffix.lower() in IMAGE_SUFFIXES else "dropped_not_data"] += 1
                continue
            relative = relative.with_suffix(".png")
        elif relative.suffix.lower() == ".csv":
            data = archive.read(member)
        else:
            counts["dropped_not_data"] += 1
            continue
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        counts["files"] += 1
    return counts


def _remove_stale_temporaries() -> None:
    for folder in uploads_dir().glob(".tmp-*"):
        try:
            if time.time() - folder.stat().st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # removed by another process meanwhile


def save_upload(task: str, name: str, data: bytes, unlabelled: bool = False) -> Path:
    """Store an uploaded zip (any task) or CSV (notes) in a folder of its own; return the data-set path a job can
    train on. The folder belongs to the caller: `discard` it when done. unlabelled: any layout of films (for an
    adaptation without labels), folder names ignored."""
    family = tasks.get(task).family
    data_kind = "unlabelled_images" if unlabelled else family.data_kind
    uploads_dir().mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries()
    tmp = uploads_dir() / f".tmp-{secrets.token_hex(8)}"
    tmp.mkdir()
    try:
        if name.lower().endswith(".csv") and "csv" in family.upload_types:
            (tmp / "data.csv").write_bytes(data)
            counts = {"files": 1}
        elif zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                counts = _unpack(archive, tmp, data_kind)
        else:
            raise UploadRejected("Upload a .zip (X-ray: NORMAL/ and PNEUMONIA/ folders; notes: one CSV) "
                                 "or, for notes, a .csv file.")
        _find_root(tmp, data_kind)
        (tmp / COMPLETE).write_text(json.dumps(counts))
        target = uploads_dir() / f"{hashlib.sha256(data).hexdigest()[:16]}-{secrets.token_hex(4)}"
        tmp.rename(target)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UploadRejected(f"The zip is corrupt: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _find_root(target, data_kind)


class PathNotAllowed(UploadRejected):
    """A path on the server outside the allowed data roots."""


def allowed_data_path(path: Path) -> Path:
    """A data set named by its path on the server, if it and every file in it lie under an allowed root
    (config.data_roots) and not in an upload (another user's); PathNotAllowed otherwise. Links and `..` are
    resolved first, so they cannot lead out."""
    resolved = Path(path).expanduser().resolve()
    roots = [root.resolve() for root in config.data_roots()]

    def inside(candidate: Path) -> bool:
        return any(candidate == root or candidate.is_relative_to(root) for root in roots) and not \
            candidate.is_relative_to(uploads_dir().resolve())

    if not inside(resolved):
        raise PathNotAllowed(f"{path} is outside the folders from which data sets may be read "
                             f"({', '.join(str(root) for root in config.data_roots())}); an administrator of the "
                             "server can add a folder with MEDCORE_DATA_ROOTS.")
    if resolved.is_dir():
        for file in resolved.rglob("*"):
            if file.is_symlink() and not inside(file.resolve()):
                raise PathNotAllowed(f"{path} holds a link to a file outside the allowed data folders "
                                     f"({file.relative_to(resolved)}); refused.")
    return resolved


def own_upload(path: Path) -> Path:
    """The data set of an upload made through save_upload (a folder under <shared>/uploads), or PathNotAllowed."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(uploads_dir().resolve()) or resolved == uploads_dir().resolve():
        raise PathNotAllowed(f"{path} is not an uploaded data set.")
    return resolved


def check_data_source(path: Path, uploaded: bool, operator: bool) -> None:
    """The one rule for a data set an admin action reads: an upload must be one made through save_upload; a path
    typed on a page must lie under the allowed roots (allowed_data_path); the command line's operator is not
    limited. PathNotAllowed otherwise."""
    if uploaded:
        own_upload(path)
    elif not operator:
        allowed_data_path(path)


def discard(path: Path) -> None:
    """Delete the uploaded set that `path` lies in; a path outside <store>/uploads is never touched."""
    root = uploads_dir().resolve()
    try:
        relative = Path(path).resolve().relative_to(root)
    except ValueError:
        return
    if relative.parts:
        shutil.rmtree(root / relative.parts[0], ignore_errors=True)
