"""The external sample, split once into a part to choose on and a part to report on (a lockbox).

Every comparison of ideas (recipe, threshold rule, calibration mix, adaptation) is made on the *choosing* part;
the *reporting* part produces a release's "new patients" figures and nothing else. A figure measured on films
that chose the recipe is optimistic (specificity 0.88 there, 0.79 on other new patients), so the banner, the
performance page and the README take new-patient figures from the reporting part only, and say that the recipe was
chosen on films from the same source.

The split is by patient (each class on its own), fixed by SEED, made in code: the same on every machine. Each
scoring of the reporting part is recorded in the model's metadata (fingerprint, when, the command); a second
scoring for the same model is refused unless forced, and forced uses are kept and shown.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from medcore.imaging import folders

SEED = 20261129
PARTS = ("choosing", "reporting")


class LockboxUsed(ValueError):
    """The reporting part was already scored for this model; pass force to score it again (recorded)."""


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
    """The lockbox's record in a model's metadata after one more scoring of the reporting part; LockboxUsed when it
    was scored before for this model and force is not given."""
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
