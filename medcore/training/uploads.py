"""Labelled data sets uploaded on the admin page, unpacked safely under the store.

A zip is checked before anything is written: member count, total unpacked size, compression ratio
(zip bombs), and paths that would escape the target folder (absolute, `..`, links). The data set
lands in <store>/uploads/<digest>/, so the same upload is unpacked once and a job can refer to it
by path like any data set on the server.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from medcore import config, tasks

MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 8 * 1024**3
MAX_RATIO = 200  # images and text compress far less; a bomb compresses thousands of times


class UploadRejected(ValueError):
    """The upload cannot be used as a data set; the message says why."""


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


def save_upload(task: str, name: str, data: bytes) -> Path:
    """Store an uploaded zip (any task) or CSV (notes) and return the data-set path a job can train on."""
    family = tasks.get(task).family
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = config.store_dir() / "uploads" / digest
    if target.is_dir():
        return _find_root(target, family.data_kind)
    tmp = target.with_name(digest + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if name.lower().endswith(".csv") and "csv" in family.upload_types:
            (tmp / "data.csv").write_bytes(data)
        elif zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in _safe_members(archive):
                    archive.extract(member, tmp)
        else:
            raise UploadRejected("Upload a .zip (X-ray: NORMAL/ and PNEUMONIA/ folders; notes: one CSV) "
                                 "or, for notes, a .csv file.")
        _find_root(tmp, family.data_kind)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UploadRejected(f"The zip is corrupt: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(target)
    return _find_root(target, family.data_kind)
