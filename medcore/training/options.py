"""Training options of each model family, declared once: defaults, help, CLI flags and admin-form widgets.

`medcore train` builds its flags from these fields and the admin page builds its form from them,
so a default or a range is written in one place. This module imports nothing heavy: the CLI's
`--help` and the admin page read it without loading TensorFlow.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class OptionSpec:
    help: str
    flag: str | None = None  # CLI flag; default --name-with-dashes. A bool that defaults to True: the flag turns it off
    label: str | None = None  # set: the option is offered on the admin page's form
    choices: tuple | None = None  # the admin form offers these in a select box (the CLI takes any value)
    minimum: float | None = None
    maximum: float | None = None
    path: str | None = None  # "model": the option names a model folder a job reads (checked like its data set)


def option(default: Any, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": OptionSpec(help, **spec)})


@dataclass
class XrayTrainingOptions:
    image_size: int = option(128, "input size in pixels", label="Image size (px)",
                             choices=(64, 96, 128, 160, 192, 224))
    epochs: int = option(12, "training epochs of each ensemble member (its best epoch by validation AUC is kept)",
                         label="Epochs per member", minimum=1, maximum=200)
    members: int = option(3, "networks in the ensemble, each with its own seed; the served logit is their mean",
                          label="Ensemble members", choices=(1, 2, 3, 4, 5))
    batch_size: int = option(32, "images per training step")
    learning_rate: float = option(2e-3, "peak learning rate (warm-up, then cosine decay)")
    width: int = option(16, "filters in the first conv layer")
    val_fraction: float = option(0.15, "share of patients held out for validation, calibration and threshold")
    seed: int = option(42, "seed of the split, the initial weights and the augmentation", label="Seed",
                       minimum=0, maximum=2**31 - 1)
    class_weighting: bool = option(True, "weight the classes by inverse frequency", flag="--no-class-weights",
                                   label="Class weighting")
    augmentation: bool = option(True, "augment the training films (rotation, shift, zoom, exposure, noise)",
                                flag="--no-augmentation", label="Augmentation")
    zoom_in: float = option(0.3, "augmentation zooms into a film by up to this share of its height and width "
                                 "(independently) and out by 0.1: tight framing must not say pneumonia")
    min_sensitivity: float = option(0.95, "the operating threshold keeps at least this validation sensitivity")
    synthetic_generator: str = option("", "a film generator folder (medcore gan train): its films top up the smaller "
                                          "class of the training split to the larger class's size, instead of class "
                                          "weights; validation stays real films only", path="model")
    shift_calibration: bool = option(True, "fit calibration and threshold on the validation films plus perturbed "
                                     "copies that imitate other hospitals' films", flag="--no-shift-calibration",
                                     label="Calibrate for other hospitals' films")
    teacher: str = option("", "a trained X-ray model folder (e.g. the ensemble) to distil: each member learns from "
                              "the teacher's softened outputs on the training films as well as the labels",
                          path="model")
    distill_alpha: float = option(0.5, "with --teacher: the labels' share of the loss (the rest: the teacher's)")
    distill_temperature: float = option(2.0, "with --teacher: both logits are divided by this before they are "
                                              "compared (softer targets carry more of the teacher's ranking)")
    distill_consistent: bool = option(False, "with --teacher: the teacher scores the same augmented film the "
                                             "student sees, at every step (a consistent teacher, Beyer et al. 2022), "
                                             "instead of the unaugmented film once before training",
                                      flag="--distill-consistent")


@dataclass
class NotesTrainingOptions:
    arch: str = option("linear", "linear (logistic regression on TF-IDF n-grams, C chosen by cross-validation on the "
                                 "training notes), mlp (one hidden layer on the same features), bigru (bidirectional "
                                 "GRU over the words) or transformer (a small Transformer encoder over the words); "
                                 "benchmarks/notes_architectures.py compares them by 5-fold cross-validation",
                       label="Architecture", choices=("linear", "mlp", "bigru", "transformer"))
    epochs: int = option(40, "at most this many epochs (early stopping on validation macro-F1)",
                         label="Epochs (at most; early stopping)", minimum=1, maximum=500)
    patience: int = option(8, "epochs without improvement before stopping")
    hidden: int = option(128, "units in the hidden layer", label="Hidden units", choices=(64, 128, 256, 512))
    dropout: float = option(0.5, "dropout after the hidden layer")
    learning_rate: float = option(0.0, "Adam learning rate (0: the architecture's own, chosen by cross-validation: "
                                       "3e-3 for bigru, 1e-3 for mlp and transformer)")
    batch_size: int = option(32, "notes per training step")
    width: int = option(64, "embedding width of the bigru and transformer models", label="Sequence model width",
                        choices=(32, 64, 128))
    word_dropout: float = option(0.1, "share of words replaced by [MASK] in each training epoch (sequence models)")
    max_features: int = option(0, "TF-IDF vocabulary size (0: linear chooses 20,000 or 150,000 by cross-validation; "
                                  "mlp takes 20,000, its hidden layer grows with it)")
    val_fraction: float = option(0.2, "share of notes held out for validation and calibration")
    seed: int = option(42, "seed of the split and the initial weights", label="Seed", minimum=0, maximum=2**31 - 1)
    class_weighting: bool = option(True, "weight the classes by inverse frequency", flag="--no-class-weights",
                                   label="Class weighting")
    refit_all: bool = option(True, "linear only: after choosing C and the vocabulary on the split, refit on every note; "
                                   "calibration and the 'uncertain' threshold then come from 5-fold out-of-fold logits",
                             flag="--no-refit-all")
    min_precision: float = option(0.9, "below the confidence that keeps this share of shown findings correct on "
                                       "validation, a note is called 'uncertain'")


@dataclass
class GanTrainingOptions:
    image_size: int = option(64, "film size in pixels (a power of two)", label="Film size (px)", choices=(32, 64, 128))
    epochs: int = option(60, "at most this many passes over the films (the epoch with the best Fréchet distance is "
                             "kept)", label="Epochs (at most)", minimum=1, maximum=500)
    max_minutes: float = option(55.0, "stop after this many minutes, keeping the best epoch so far",
                                label="Time budget (minutes)", minimum=1, maximum=600)
    batch_size: int = option(64, "films per training step")
    latent_dim: int = option(64, "size of the generator's noise vector")
    width: int = option(32, "filters in the discriminator's first layer (the generator mirrors it)",
                        label="Network width", choices=(16, 32, 64))
    learning_rate: float = option(2e-4, "Adam learning rate of both networks (beta1 0.5, as in DCGAN)")
    eval_every: int = option(5, "measure Fréchet distance, precision and recall every this many epochs",
                             label="Measure every (epochs)", minimum=1, maximum=50)
    eval_films: int = option(400, "films per class in each measurement (real halves and generated alike)")
    seed: int = option(0, "seed of the weights, the noise and the real halves", label="Seed", minimum=0,
                       maximum=2**31 - 1)


def specs(options_class: type) -> list[tuple[str, Any, OptionSpec]]:
    """(name, default, spec) of every option, in declaration order."""
    return [(f.name, None if f.default is MISSING else f.default, f.metadata["spec"])
            for f in fields(options_class)]


def form_specs(options_class: type) -> list[tuple[str, Any, OptionSpec]]:
    """The options an admin sets on the retraining form."""
    return [row for row in specs(options_class) if row[2].label]


def add_cli_flags(parser: argparse.ArgumentParser, options_class: type) -> None:
    for name, default, spec in specs(options_class):
        flag = spec.flag or "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action="store_false" if default else "store_true",
                                help=f"turn off: {spec.help}" if default else spec.help)
        else:
            choices = spec.choices if isinstance(default, str) else None  # numbers stay free on the command line
            parser.add_argument(flag, dest=name, type=type(default), default=default, choices=choices,
                                help=f"{spec.help} (default {default})")


def from_cli(options_class: type, args: argparse.Namespace) -> Any:
    return options_class(**{name: getattr(args, name) for name, _, _ in specs(options_class)})
