"""`medcore gan train | sample`: a film generator, judged by numbers; marked synthetic films.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medcore.cli.common import cli_user, emit, progress_to_stderr
from medcore.training.options import GanTrainingOptions, add_cli_flags, from_cli

def cmd_gan_train(args: argparse.Namespace) -> int:
    """`medcore gan train`: train, judge and write a film generator; --register makes it a candidate version."""
    from medcore import registry
    from medcore.training.train_gan import train_gan

    out = Path(args.out)
    meta = train_gan(Path(args.data), out, from_cli(GanTrainingOptions, args), progress=progress_to_stderr)
    result = {"model": str(out.resolve()), "version": meta["version"], "quality": meta["metrics"]["validation"],
              "memorization": {k: v for k, v in meta["memorization"].items() if k != "closest"},
              "seconds": meta["training"]["seconds"]}
    if args.register:
        entry = registry.register("xray_gan", out, cli_user())
        result.update(model=str(entry.path), status=entry.status)
    if args.json:
        emit(result)
    else:
        quality = meta["metrics"]["validation"]
        print(f"{meta['version']}: Fréchet ratio {quality['fd_ratio']:.2f}, precision {quality['precision']:.2f}, "
              f"recall {quality['recall']:.2f}, gate accepts {quality['gate_accepted']:.0%} "
              f"({meta['training']['seconds'] / 60:.1f} min) -> {result['model']}")
    return 0


def cmd_gan_sample(args: argparse.Namespace) -> int:
    """`medcore gan sample`: N marked and tagged PNG films of one class (never readable as a patient's film)."""
    from medcore import registry
    from medcore.gan.network import load_generator
    from medcore.imaging.synthetic import mark_synthetic

    if args.model:
        folder = Path(args.model)
    else:
        entry = registry.production("xray_gan")
        if entry is None:
            raise ValueError("No film generator is in production: train one with `medcore gan train --register` "
                             "and promote it, or pass --model DIR.")
        registry.verify(entry)
        folder = entry.path
    generator = load_generator(folder)
    if args.n < 1:
        raise ValueError("--n must be at least 1.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, pixels in enumerate(generator.sample(args.label, args.n, args.seed)):
        path = out / f"synthetic_{args.label}_seed{args.seed}_{i:04d}.png"
        path.write_bytes(mark_synthetic(pixels, generator.version))
        written.append(str(path))
    emit({"generator": generator.version, "label": args.label, "seed": args.seed, "n": len(written),
           "out": str(out.resolve())})
    return 0


def cmd_gan_forget_examples(args: argparse.Namespace) -> int:
    """`medcore gan forget-examples VERSION`: delete the real training films a generator keeps for its check."""
    from medcore.cli.common import operator
    from medcore.gan.retention import delete_training_examples

    delete_training_examples(args.version, operator())
    emit({"generator": args.version, "training_examples": "deleted"})
    return 0


def register(commands) -> None:
    gan = commands.add_parser("gan", help="synthetic chest films from a class-conditional GAN, judged by numbers"
                              ).add_subparsers(dest="action", required=True)
    gan_train = gan.add_parser("train", help="train a generator on a NORMAL/ PNEUMONIA/ folder, measure its quality "
                                             "and check it copies no patient")
    gan_train.add_argument("--data", required=True)
    gan_train.add_argument("--out", required=True, help="folder for the generator")
    gan_train.add_argument("--register", action="store_true", help="register it as a candidate version")
    gan_train.add_argument("--json", action="store_true", help="print one JSON object")

    add_cli_flags(gan_train, GanTrainingOptions)
    gan_train.set_defaults(func=cmd_gan_train)
    sample = gan.add_parser("sample", help="write N synthetic films of one class as marked, tagged PNGs")
    sample.add_argument("--label", required=True, choices=("NORMAL", "PNEUMONIA"))
    sample.add_argument("--n", type=int, default=16)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True)
    sample.add_argument("--model", help="a generator folder (default: the production generator)")
    sample.set_defaults(func=cmd_gan_sample)
    forget = gan.add_parser("forget-examples", help="delete the nearest real training films a generator version keeps "
                                                    "for its memorization check (the version stays usable)")
    forget.add_argument("version")
    forget.set_defaults(func=cmd_gan_forget_examples)
