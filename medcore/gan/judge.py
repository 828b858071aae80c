"""Judging generated films by numbers, in the eyes of our own X-ray network.

Pretrained Inception weights cannot be downloaded here, and they never saw a radiograph: the feature space
is the production classifier's pooled last-conv features, the same vectors its quality gate reads. Real and
generated films take one path: pixels at the generator's size -> the classifier's preprocessing contract ->
features and the quality gate's verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from medcore.gan import metrics
from medcore.gan.network import GeneratorArtifact, to_gan_range, to_pixels
from medcore.imaging import folders, quality
from medcore.imaging.io import Radiograph, read_radiograph
from medcore.imaging.preprocess import to_model_input
from medcore.imaging.service import LoadedXrayModel

FEATURE_DIMS = 64  # principal axes of the real films' classifier features that the distances are taken in


@dataclass
class Judged:
    """Films seen by the classifier: its features and whether its quality gate accepts each as a chest film."""

    features: np.ndarray
    accepted: np.ndarray


def judge(classifier: LoadedXrayModel, pixels: np.ndarray, batch_size: int = 128) -> Judged:
    """Features and gate verdicts of films given as pixels in [0, 1], (n, s, s)."""
    size = classifier.artifact.image_size
    inputs = np.stack([to_model_input(p, size) for p in pixels]) if len(pixels) else np.zeros((0, size, size, 1))
    _, _, features = classifier.explain_inputs(inputs.astype(np.float32), batch_size)
    reference = classifier.artifact.quality_reference
    accepted = np.array([quality.check(Radiograph(p, "PNG"), x, f, reference).ok
                         for p, x, f in zip(pixels, inputs, features)], bool)
    return Judged(features, accepted)


def class_quality(real_a: Judged, real_b: Judged, generated: Judged, project=lambda f: f, k: int = 3
                  ) -> dict[str, float]:
    """One class's figures: generated against real half B, with real half A against B as the floor.

    project: the map into the space the distances are taken in (metrics.principal_projection of real features).
    """
    a, b, g = project(real_a.features), project(real_b.features), project(generated.features)
    fd, floor = metrics.frechet_distance(g, b), metrics.frechet_distance(a, b)
    precision, recall = metrics.precision_recall(b, g, k)
    return {"fd": fd, "fd_floor": floor, "fd_ratio": fd / floor if floor > 0 else float("inf"),
            "precision": precision, "recall": recall, "gate_accepted": float(generated.accepted.mean()),
            "gate_accepted_real": float(np.concatenate([real_a.accepted, real_b.accepted]).mean()),
            "n": int(len(generated.features))}


def summarise(per_class: dict[str, dict[str, float]]) -> dict:
    """The per-class figures and their means: what a curve, a version listing and the model card show.

    The Fréchet ratio's mean is geometric: the classes' floors differ by a factor of five or more, and an
    arithmetic mean of ratios let one class decide which epoch was kept."""
    mean = {key: float(np.mean([row[key] for row in per_class.values()]))
            for key in ("fd", "fd_floor", "precision", "recall", "gate_accepted", "gate_accepted_real")}
    mean["fd_ratio"] = float(np.exp(np.mean(np.log([row["fd_ratio"] for row in per_class.values()]))))
    return {**mean, "per_class": per_class}


def thumbnails(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """What memorization is measured on: each film as the quality gate's 32 px standardized thumbnail."""
    return np.stack([quality.thumbnail_vector(to_model_input(p, image_size)) for p in pixels])


def real_halves(patients: np.ndarray, labels: np.ndarray, n: int, seed: int) -> dict[int, tuple[np.ndarray, ...]]:
    """Per class, two equal sets of films from disjoint patients (at most n each): the Fréchet floor's halves."""
    rng = np.random.default_rng(seed)
    halves = {}
    for label in np.unique(labels):
        films = np.flatnonzero(labels == label)
        people = rng.permutation(np.unique(patients[films]))
        in_a = np.isin(patients[films], people[: len(people) // 2])
        a, b = rng.permutation(films[in_a]), rng.permutation(films[~in_a])
        size = min(n, len(a), len(b))
        halves[int(label)] = (np.sort(a[:size]), np.sort(b[:size]))
    return halves


@dataclass
class RealReference:
    """Real films of each class, judged once, in two halves of disjoint patients; the space distances live in."""

    classifier: LoadedXrayModel
    class_names: list[str]
    halves: dict[int, tuple[Judged, Judged]]
    project: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def of(cls, classifier: LoadedXrayModel, pixels: np.ndarray, labels: np.ndarray, patients: np.ndarray,
           class_names: list[str], n: int, seed: int) -> "RealReference":
        halves = {c: tuple(judge(classifier, pixels[idx]) for idx in pair)
                  for c, pair in real_halves(patients, labels, n, seed).items()}
        project = metrics.principal_projection(np.concatenate([j.features for pair in halves.values() for j in pair]),
                                               FEATURE_DIMS)
        return cls(classifier, class_names, halves, project)

    def measure(self, sample: Callable[[int, int], np.ndarray]) -> dict:
        """Quality of sample(class index, n) -> pixels, against every class's real halves."""
        return summarise({self.class_names[c]: class_quality(a, b, judge(self.classifier, sample(c, len(b.features))),
                                                              self.project)
                          for c, (a, b) in self.halves.items()})


def folder_pixels(files: list[Path], image_size: int) -> np.ndarray:
    """Films read by the serving path, as the generator sees them, back in pixels: (n, s, s) in [0, 1]."""
    return to_pixels(np.stack([to_gan_range(to_model_input(read_radiograph(f.read_bytes(), f.name).pixels,
                                                            image_size)) for f in files]))


def evaluate_generators(generators: list[GeneratorArtifact], data_dir: Path,
                        classifier: LoadedXrayModel | None = None, n: int = 400, seed: int = 0) -> list[dict]:
    """Each generator's quality against one labelled folder of real films (default eyes: the shipped classifier).

    The folder is read, and its films judged, once per generator image size: generators compared on it are
    measured against the very same real halves.
    """
    from medcore.imaging.service import load_xray_model

    classifier = classifier or load_xray_model()
    folder = folders.list_image_folder(Path(data_dir))
    patients = np.array([folders.patient_id(path) for path in folder.files])
    references: dict[int, RealReference] = {}
    results = []
    for generator in generators:
        size = generator.image_size
        if size not in references:
            references[size] = RealReference.of(classifier, folder_pixels(folder.files, size), folder.labels,
                                                patients, generator.labels, n, seed)
        results.append({**references[size].measure(lambda c, k: generator.sample_index(c, k, seed + 7)),
                        "n": int(len(folder.files)), "feature_model": classifier.version})
    return results


def evaluate_generator(generator: GeneratorArtifact, data_dir: Path, classifier: LoadedXrayModel | None = None,
                       n: int = 400, seed: int = 0) -> dict:
    """One generator's quality against a labelled folder of real films (the task family's `evaluate`)."""
    return evaluate_generators([generator], data_dir, classifier, n, seed)[0]
