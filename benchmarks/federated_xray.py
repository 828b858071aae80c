"""Federated against central against each hospital alone, measured on new patients (the external sample).

    python benchmarks/federated_xray.py --data ../shared/data/chest_xray/train \
        --external ../shared/data/chest_xray/external_sample [--rounds 10] [--runs fedavg fedprox central sites]

Writes three unequal hospitals by patient (`medcore federated split`, seed 7) under --work, then trains, with the
same network (one CNN, --members 1) and the same number of passes over each film (rounds x 1 local epoch =
epochs): FedAvg and FedProx over the three hospitals with Flower, central training on the hospitals' pooled
films, and each hospital alone. Every model is scored on the external sample with 95 % intervals. Results go
to benchmarks/results/federated_xray.json (each finished run is kept: a rerun skips it). About 80 minutes on
2 CPU cores for all of them; one federated run takes about 20. The fedavg-dp run adds differential privacy
(noise multiplier --noise-multiplier, clipping at the FedAvg run's median site update norm) to show its cost.
The README's table is rendered from the results file (`--write-readme` rewrites it without training anything).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medcore.federated.run import run_federated  # noqa: E402
from medcore.federated.sites import split_hospitals  # noqa: E402
from medcore.imaging.service import evaluate_folder, load_xray_model  # noqa: E402
from medcore.model_card import xray_model_card  # noqa: E402
from medcore.training.options import XrayTrainingOptions  # noqa: E402
from medcore.training.train_xray import train_xray  # noqa: E402
from readme_blocks import replace_block  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "federated_xray.json"
FIGURES = ("auc", "sensitivity", "specificity", "accuracy", "ece")
BEGIN, END = "<!-- federated-table: begin -->", "<!-- federated-table: end -->"


def pooled_folder(sites: list[Path], out: Path) -> Path:
    """The hospitals' films in one folder of links: what central training would see if they were pooled."""
    for site in sites:
        for link in site.glob("*/*"):
            target = out / link.parent.name / link.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(link.resolve())
    return out


def folder_name(run: str) -> str:
    return run.replace(" ", "_").replace("(", "").replace(")", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--external", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", nargs="+", default=["fedavg", "fedprox", "central", "sites", "fedavg-dp"])
    parser.add_argument("--work", default="/tmp/medcore_federated")
    parser.add_argument("--noise-multiplier", type=float, default=1.0, help="for the fedavg-dp run")
    parser.add_argument("--clipping-norm", type=float, default=0.0,
                        help="for the fedavg-dp run (0: the median site update norm of the fedavg run)")
    parser.add_argument("--write-readme", action="store_true", help="only rewrite the README's table from the results")
    args = parser.parse_args()
    if args.write_readme:
        write_readme(json.loads(RESULTS.read_text()))
        return
    work = Path(args.work)
    if not (work / "sites" / "split.json").exists():
        split_hospitals(Path(args.data), work / "sites", seed=7)
    sites = sorted(p for p in (work / "sites").iterdir() if p.is_dir())
    options = XrayTrainingOptions(members=1, epochs=args.rounds)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": {}}
    results.update(rounds=args.rounds, split=json.loads((work / "sites" / "split.json").read_text())["sites"],
                   command="python benchmarks/federated_xray.py --data ../shared/data/chest_xray/train --external "
                           "../shared/data/chest_xray/external_sample --rounds " + str(args.rounds))
    plan = []
    for run in args.runs:
        if run in ("fedavg", "fedprox"):
            plan.append((f"federated {run}", lambda out, s=run: run_federated(sites, out, args.rounds, s, options)))
        elif run == "fedavg-dp":
            def private(out):
                norms = results["rows"].get("federated fedavg", {}).get("update_norms") or [1.0]
                clip = args.clipping_norm or float(np.median(norms))
                return run_federated(sites, out, args.rounds, "fedavg", options, noise_multiplier=args.noise_multiplier,
                                     clipping_norm=clip)
            plan.append((f"federated fedavg, differential privacy z = {args.noise_multiplier}", private))
        elif run == "central":
            pooled = pooled_folder(sites, work / "pooled")
            plan.append(("central (pooled films)", lambda out: train_xray(pooled, out, options,
                                                                         cache_dir=work / "cache")))
        elif run == "sites":
            plan += [(f"{site.name} alone", lambda out, s=site: train_xray(s, out, options,
                                                                            cache_dir=work / "cache")) for site in sites]
    for name, train in plan:
        if name in results["rows"]:
            continue
        out = work / "models" / folder_name(name)
        started = time.time()
        meta = train(out)
        figures = evaluate_folder(load_xray_model(out), Path(args.external))
        row = {"seconds": round(time.time() - started, 1), "version": meta["version"],
               **{k: figures[k] for k in FIGURES}, "intervals": {k: figures["intervals"][k] for k in FIGURES},
               "n": figures["n"]}
        if "federated" in meta:
            row.update(federated_details(meta["federated"]))
        results["rows"][name] = row
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
        print(f"{name}: AUC {row['auc']:.4f} sens {row['sensitivity']:.3f} spec {row['specificity']:.3f} "
              f"ECE {row['ece']:.3f} ({row['seconds'] / 60:.1f} min)", flush=True)
    for name, row in results["rows"].items():  # rows from before a field was recorded get it from their model
        meta_file = work / "models" / folder_name(name) / "meta.json"
        if name.startswith("federated") and meta_file.is_file():
            row.update(federated_details(json.loads(meta_file.read_text())["federated"]))
    paired_against_central(results, work, Path(args.external))
    RESULTS.write_text(json.dumps(results, indent=2))
    write_cards(results, work)
    write_readme(results)


def federated_details(fed: dict) -> dict:
    """What a federated run's rows keep: traffic, privacy, FedProx's mu, each site's update norm (the clipping norm
    of a private run is set against them), how many sites' updates were used and the pooled validation AUC per round."""
    fits = [r for r in fed["history"] if r["kind"] == "fit"]
    return {"bytes_per_round": fed["bytes_per_round"], "privacy": fed.get("privacy"),
            "proximal_mu": fed.get("proximal_mu"),
            "update_norms": [s["update_norm"] for r in fits for s in r["sites"].values()],
            "sites_used_per_round": [len(r["sites"]) for r in fits],
            "validation_auc_per_round": [r["global_auc"] for r in fed["history"] if r["kind"] == "validation"]}


def paired_against_central(results: dict, work: Path, external: Path) -> None:
    """Each model's AUC minus central training's on the same new patients, with a paired bootstrap interval."""
    from sklearn.metrics import roc_auc_score

    from medcore.imaging import folders
    from medcore.imaging.service import score_files
    from medcore.metrics import bootstrap_interval

    central = "central (pooled films)"
    if central not in results["rows"]:
        return
    folder = folders.list_image_folder(external)
    scores = {name: score_files(load_xray_model(work / "models" / folder_name(name)), folder.files)
              for name in results["rows"] if (work / "models" / folder_name(name) / "meta.json").is_file()}
    for name, score in scores.items():
        if name == central or not np.array_equal(score.readable, scores[central].readable):
            continue
        y = folder.labels[score.readable]
        pair = np.stack([scores[central].probabilities, score.probabilities], axis=1)

        def difference(labels, p):
            return roc_auc_score(labels, p[:, 1]) - roc_auc_score(labels, p[:, 0])

        low, high = bootstrap_interval(y, pair, difference, n_resamples=2000)
        results["rows"][name]["auc_vs_central"] = {"difference": float(difference(y, pair)), "interval": [low, high]}


def write_cards(results: dict, work: Path) -> None:
    """The comparison table into each federated model's card; the FedAvg card is kept beside the results."""
    for name in results["rows"]:
        folder = work / "models" / folder_name(name)
        if name.startswith("federated") and (folder / "meta.json").is_file():
            meta = json.loads((folder / "meta.json").read_text())
            card = xray_model_card(meta, federated_comparison=results)
            (folder / "model_card.md").write_text(card)
            if name == "federated fedavg":
                (RESULTS.parent / "federated_model_card.md").write_text(card)


def row_label(name: str, row: dict, split: dict) -> str:
    """The README's name for a run: a hospital with its size and pneumonia share, FedProx with mu, DP with epsilon."""
    if name.endswith(" alone") and name.removesuffix(" alone") in split:
        site = split[name.removesuffix(" alone")]
        return f"{name} ({sum(site['films'].values()):,} films, {100 * site['pneumonia_rate']:.0f} % pneumonia)"
    if row.get("privacy"):
        privacy = row["privacy"]
        return (f"FedAvg, differential privacy z = {privacy['noise_multiplier']:g}, clipping "
                f"{privacy['clipping_norm']:.2f} (epsilon {privacy['epsilon']:.0f})")
    if row.get("proximal_mu"):
        return f"federated FedProx (mu {row['proximal_mu']:g})"
    return {"federated fedavg": "**federated FedAvg**", "federated fedprox": "federated FedProx"}.get(name, name)


def ordered_rows(results: dict) -> list[tuple[str, dict]]:
    """Central first, then each hospital alone, the federated runs, the private run last."""
    def place(item: tuple[str, dict]) -> tuple[bool, bool, bool]:
        name, row = item
        return not name.startswith("central"), not name.endswith(" alone"), bool(row.get("privacy"))

    return sorted(results["rows"].items(), key=place)


def markdown(results: dict) -> str:
    """One row per run, central first: AUC with its interval, the paired difference from central, the rest."""
    lines = ["| model | AUC | AUC − central | sensitivity | specificity | ECE | minutes to train and score | "
             "MB per round |", "|---|---|---|---|---|---|---|---|"]
    for name, row in ordered_rows(results):
        low, high = row["intervals"]["auc"]
        versus = row.get("auc_vs_central")
        paired = "–" if not versus else (f"{versus['difference']:+.3f} ({versus['interval'][0]:+.3f} to "
                                         f"{versus['interval'][1]:+.3f})")
        cells = [row_label(name, row, results["split"]), f"{row['auc']:.3f} ({low:.3f}-{high:.3f})", paired,
                 f"{row['sensitivity']:.1%}", f"{row['specificity']:.1%}", f"{row['ece']:.3f}",
                 f"{row['seconds'] / 60:.1f}",
                 f"{row['bytes_per_round'] / 1e6:.1f}" if row.get("bytes_per_round") else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_block(results: dict) -> str:
    return f"{BEGIN}\n{markdown(results)}\n{END}"


def write_readme(results: dict) -> None:
    replace_block(readme_block(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
