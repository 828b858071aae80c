"""The external sample, split once into a part to choose on and a part to report on (a lockbox).

Every comparison of ideas (recipe, threshold rule, calibration mix, adaptation) is made on the *choosing* part;
the *reporting* part produces a release's "new patients" figures and nothing else. A figure measured on films
that chose the recipe is optimistic (specificity 0.88 there, 0.79 on other new patients), so the banner, the
performance page and the README take new-patient figures from the reporting part only, and say that the recipe was
chosen on films from the same source.

The split is by patient (each class on its own), fixed by SEED, made in code: the same on every machine. Each film
scored in a part is recorded in the store (schema.lockbox_films, append-only in the database itself), by a digest of
its decoded pixels: a film once scored in a reporting part, for any model, is refused in a reporting part again
unless forced, whatever folder, name or file it arrives in (adding one patient to the sample changes the split, so a
record of the whole part, as before, let most of its films be scored again). Forced scorings are recorded as such.
The model's metadata keeps a copy for its card ("lockbox": fingerprint of the part, when, the command, forced); it
also refuses the part it records, for scorings made before the store kept films.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from medcore import config
from medcore.imaging import folders
from medcore.imaging.io import UnreadableImage, decode_image
from medcore.store import read, schema, serialize, write

SEED = 20261129
PARTS = ("choosing", "reporting")


FILMS = schema.lockbox_films


class LockboxUsed(ValueError):
    """Films of the reporting part were scored in a reporting part before; pass force to score them again
    (recorded)."""


def split(data_dir: Path) -> dict[str, folders.ImageFolder]:
    """The two parts of a labelled folder: whole patients only, half of each class's patients in each part."""
    listing = folders.list_image_folder(Path(data_dir))
    choosing, reporting = folders.split_by_patient(listing, 0.5, SEED)
    return {part: folders.ImageFolder([listing.files[i] for i in idx], listing.labels[idx],
                                      [listing.groups[i] for i in idx])
            for part, idx in (("choosing", choosing), ("reporting", reporting))}


def fingerprint(part: folders.ImageFolder) -> str:
    return folders.fingerprint(part.files, part.labels)


def materialise(data_dir: Path, part: str, out: Path | None = None) -> Path:
    """One part as a NORMAL/ PNEUMONIA/ folder of links (nothing copied), for commands that take a folder."""
    if part not in PARTS:
        raise ValueError(f"The part is one of {', '.join(PARTS)}.")
    out = Path(out or tempfile.mkdtemp(prefix=f"medcore-{part}-"))
    chosen = split(data_dir)[part]
    for label in folders.XRAY_CLASSES:
        (out / label).mkdir(parents=True, exist_ok=True)
    for path, label in zip(chosen.files, chosen.labels):
        link = out / folders.XRAY_CLASSES[int(label)] / path.name
        if not link.exists():
            os.symlink(path.resolve(), link)
    return out


def record_use(meta: dict, part_fingerprint: str, command: str, force: bool) -> dict:
    """The model card's copy of the lockbox record after one more scoring of the reporting part. LockboxUsed when
    the metadata records this very part as scored and force is not given: scorings made before the store kept
    films (check_unscored decides for everything since)."""
    box = dict(meta.get("lockbox") or {"fingerprint": part_fingerprint, "uses": []})
    if box["fingerprint"] != part_fingerprint:  # another sample's lockbox (e.g. a hospital's own): its own record
        earlier = box.get("earlier", []) + ([{"fingerprint": box["fingerprint"], "uses": box["uses"]}]
                                            if box["uses"] else [])
        box = {"fingerprint": part_fingerprint, "uses": [], **({"earlier": earlier} if earlier else {})}
    if box["uses"] and not force:
        when = box["uses"][-1]["at"]
        raise LockboxUsed(f"The reporting part was already scored for this model ({when}); its figures stand. Score "
                          "it again only with --force, which is recorded and shown in the model card.")
    box["uses"] = [*box["uses"], {"at": time.strftime("%Y-%m-%d %H:%M"), "command": command, "forced": bool(force)}]
    box["fingerprint"] = part_fingerprint
    return box


def film_digest(path: Path) -> str | None:
    """SHA-256 of a film's decoded pixels (shape, then float32 values), or None when it cannot be decoded (it is
    then never scored). The pixels, not the file: a film copied, renamed, moved or saved again
    without loss keeps its digest."""
    try:
        pixels = decode_image(Path(path).read_bytes(), Path(path).name).pixels
    except (UnreadableImage, OSError):
        return None
    digest = hashlib.sha256(repr(tuple(pixels.shape)).encode())
    digest.update(np.ascontiguousarray(pixels, dtype="<f4").tobytes())
    return digest.hexdigest()


def film_digests(files: list[Path], workers: int = 4) -> list[str | None]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(film_digest, files))


def _reported(connection, digests: set[str]) -> list:
    """The earliest reporting-part scoring of each of these films that has one (rows: film, at, model_version)."""
    earliest: dict[str, object] = {}
    listed = sorted(digests)
    for start in range(0, len(listed), 500):  # bounded IN lists on both engines
        rows = connection.execute(select(FILMS.c.film, FILMS.c.at, FILMS.c.model_version)
                                  .where(FILMS.c.part == "reporting", FILMS.c.film.in_(listed[start:start + 500]))
                                  .order_by(FILMS.c.id)).all()
        for row in rows:
            earliest.setdefault(row.film, row)
    return list(earliest.values())


def _refusal(found: list, total: int) -> LockboxUsed:
    first = min(found, key=lambda row: row.at)
    return LockboxUsed(
        f"{len(found)} of the {total} films of this reporting part were already scored in a reporting part (first "
        f"on {time.strftime('%Y-%m-%d %H:%M', time.localtime(first.at))}, model {first.model_version}); their figures "
        "stand, whatever folder, name or sample the films are in now. Score them again only with --force, which is "
        "recorded.")


def check_unscored(digests: Iterable[str | None]) -> None:
    """LockboxUsed when any of these films was scored in a reporting part before (for any model)."""
    wanted = {d for d in digests if d}
    with read() as connection:
        found = _reported(connection, wanted)
    if found:
        raise _refusal(found, len(wanted))


def reported_films(digests: Iterable[str | None]) -> int:
    """How many of these films (distinct pixels) were scored in a reporting part before: figures on them are not
    new-patient figures."""
    wanted = {d for d in digests if d}
    with read() as connection:
        return len(_reported(connection, wanted))


def record_scoring(digests: Iterable[str | None], model_version: str, part: str, command: str, force: bool,
                   actor: str) -> None:
    """Record the films just scored in `part`. For the reporting part the check is made again in the same write
    transaction (serialized across servers), so two scorings at once cannot both pass it; LockboxUsed then, and
    nothing is recorded."""
    if part not in PARTS:
        raise ValueError(f"The part is one of {', '.join(PARTS)}.")
    films = sorted({d for d in digests if d})
    now = time.time()
    with write() as connection:
        serialize(connection, "lockbox_films")
        if part == "reporting" and not force:
            found = _reported(connection, set(films))
            if found:
                raise _refusal(found, len(films))
        if films:
            forced, server = bool(force) and part == "reporting", config.server_name()
            connection.execute(insert(FILMS), [
                {"film": film, "model_version": model_version, "part": part, "at": now, "command": command,
                 "forced": forced, "actor": actor, "server": server} for film in films])
