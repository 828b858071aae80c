"""Simulated hospitals: the shared training films split by patient into deliberately unequal sites.

Each site is a folder of NORMAL/ and PNEUMONIA/ holding symbolic links to the original films (nothing is
copied, nothing lands in the repository), plus `split.json` with the seed and counts, so a run can be
reproduced exactly. Sites differ in size and in their share of pneumonia, as real hospitals do.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcore.imaging import folders


@dataclass(frozen=True)
class SitePlan:
    name: str
    normal_share: float  # share of all NORMAL patients' films that this site receives
    pneumonia_rate: float  # share of pneumonia among the site's films


DEFAULT_PLAN = (SitePlan("hospital_a", 0.50, 0.20), SitePlan("hospital_b", 0.35, 0.50),
                SitePlan("hospital_c", 0.15, 0.85))


def split_hospitals(data_dir: Path, out_dir: Path, seed: int = 7, plan: tuple[SitePlan, ...] = DEFAULT_PLAN
                    ) -> dict:
    """Write one folder per site (whole patients only; no patient at two sites); return the split's record."""
    folder = folders.list_image_folder(Path(data_dir))
    patients: dict[int, dict[str, list[Path]]] = {0: defaultdict(list), 1: defaultdict(list)}
    for path, label in zip(folder.files, folder.labels):
        patients[int(label)][folders.patient_id(path)].append(path)
    rng = np.random.default_rng(seed)
    queues = {label: [patients[label][p] for p in rng.permutation(sorted(patients[label]))] for label in (0, 1)}
    n_normal = sum(len(files) for files in queues[0])
    out_dir = Path(out_dir)
    record = {"seed": seed, "source": str(Path(data_dir).resolve()), "sites": {}}
    for site in plan:
        targets = {0: int(site.normal_share * n_normal)}
        targets[1] = int(targets[0] * site.pneumonia_rate / (1 - site.pneumonia_rate))
        counts = {}
        for label, class_name in enumerate(folders.XRAY_CLASSES):
            target_dir = out_dir / site.name / class_name
            target_dir.mkdir(parents=True, exist_ok=True)
            taken = 0
            while queues[label] and taken < targets[label]:
                for path in queues[label].pop():
                    link = target_dir / path.name
                    if not link.exists():
                        link.symlink_to(path.resolve())
                    taken += 1
            counts[class_name] = taken
        if min(counts.values()) == 0:
            raise ValueError(f"{data_dir} has too few films of a class for site {site.name}.")
        record["sites"][site.name] = {"films": counts, "pneumonia_rate": round(counts["PNEUMONIA"] /
                                                                                sum(counts.values()), 3)}
    (out_dir / "split.json").write_text(json.dumps(record, indent=2))
    return record
