"""`medcore federated split | xray`: simulated hospitals, and a Flower run across sites.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medcore import config, tasks
from medcore.cli.common import cli_user, emit, progress_to_stderr
from medcore.training.options import add_cli_flags, from_cli

def cmd_federated_split(args: argparse.Namespace) -> int:
    """`medcore federated split`: three unequal simulated hospitals from one training folder (links, not copies)."""
    from medcore.federated.sites import split_hospitals

    emit(split_hospitals(Path(args.data), Path(args.out), args.seed))
    return 0


def cmd_federated_xray(args: argparse.Namespace) -> int:
    """`medcore federated xray`: a Flower run across --sites; the model is registered as a candidate version."""
    import time

    from medcore import registry
    from medcore.federated.run import run_federated

    options = from_cli(tasks.XRAY.options.resolve(), args)
    out = Path(args.out) if args.out else config.store_dir() / "federated" / time.strftime("%Y%m%d-%H%M%S")
    meta = run_federated([Path(s) for s in args.sites], out, args.rounds, args.strategy, options, args.local_epochs,
                         args.proximal_mu, progress=progress_to_stderr, timeout_s=args.timeout,
                         noise_multiplier=args.noise_multiplier, clipping_norm=args.clipping_norm)
    result = {"model": str(out.resolve()), "version": meta["version"], "validation": meta["metrics"]["validation"],
              "federated": {k: v for k, v in meta["federated"].items() if k != "history"},
              "rounds": [r for r in meta["federated"]["history"] if r["kind"] == "validation"],
              "seconds": meta["training"]["seconds"]}
    if not args.out:
        entry = registry.register("xray", out, cli_user(), origin="federated")
        result.update(model=str(entry.path), status=entry.status)
    if args.json:
        emit(result)
    else:
        print(f"{meta['version']}: pooled validation AUC {meta['metrics']['validation']['auc']:.4f} after "
              f"{args.rounds} rounds ({meta['training']['seconds'] / 60:.1f} min)")
    return 0


def register(commands) -> None:
    federated = commands.add_parser("federated", help="train across hospitals with Flower; no film leaves its site"
                                    ).add_subparsers(dest="task", required=True)
    split = federated.add_parser("split", help="write three unequal simulated hospitals (by patient, as symbolic "
                                               "links) from one NORMAL/ PNEUMONIA/ training folder")
    split.add_argument("--data", required=True)
    split.add_argument("--out", required=True, help="folder for the sites (outside the repository)")
    split.add_argument("--seed", type=int, default=7)
    split.set_defaults(func=cmd_federated_split)
    xray = federated.add_parser("xray", help="a Flower server and one client process per site; the result is "
                                             "registered as a candidate version")
    xray.add_argument("--sites", nargs="+", required=True, help="one NORMAL/ PNEUMONIA/ folder per hospital")
    xray.add_argument("--rounds", type=int, default=10)
    xray.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    xray.add_argument("--local-epochs", type=int, default=1, help="epochs over its own films per site and round")
    xray.add_argument("--proximal-mu", type=float, default=0.01, help="FedProx's proximal term (fedprox only)")
    xray.add_argument("--noise-multiplier", type=float, default=0.0,
                      help="differential privacy: Gaussian noise multiplier on the clipped updates (0: off)")
    xray.add_argument("--clipping-norm", type=float, default=1.0, help="differential privacy: each site's update "
                      "is clipped to this L2 norm (the run's per-round update norms are in its progress)")
    xray.add_argument("--timeout", type=float, default=3600.0, help="seconds before the run is stopped")
    xray.add_argument("--out", help="write the model here instead of registering it")
    xray.add_argument("--json", action="store_true", help="print one JSON object")
    add_cli_flags(xray, tasks.XRAY.options.resolve())
    xray.set_defaults(func=cmd_federated_xray)
