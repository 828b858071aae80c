"""A federated X-ray run end to end: a Flower server and one client process per hospital on this machine, then
the same artifact as central training (calibration, threshold, quality reference, model card).

The server and the clients are separate processes that talk gRPC over TLS on localhost, as they would across
hospitals; each client reads only its own folder and proves its site with a key made for this run
(medcore.federated.credentials). Sites are known to the server by pseudonyms (site-1, ...) and their declared
number of films; the folder names stay in this process. What the server learns besides weights is aggregate
(medcore.federated.wire), and every update is checked before use (medcore.federated.validation). Calibration and the operating threshold are fitted on the pooled validation-logit
counts with the central recipe's functions; the network, preprocessing and options are the central ones.
A run that fails or is cancelled writes no model folder.
"""

from __future__ import annotations

import json
import logging
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from medcore import config
from medcore.artifacts import command_line
from medcore.federated import credentials, wire
from medcore.federated.privacy import client_level_epsilon
from medcore.imaging import folders
from medcore.training import shift
from medcore.training.options import XrayTrainingOptions
from medcore.training.progress import ProgressFn, Stage, event
from medcore.training.train_xray import calibrate_and_choose_threshold


log = logging.getLogger("medcore")
SERVER_START_TIMEOUT_S = 180.0


def _check_site(site: Path) -> dict[str, int]:
    folder = folders.list_image_folder(site)  # raises a clear error for a folder without NORMAL/ and PNEUMONIA/
    counts = np.bincount(folder.labels, minlength=2)
    if counts.min() < 2:
        raise ValueError(f"{site} needs films of both classes (it has {counts[0]} NORMAL, {counts[1]} PNEUMONIA).")
    return {"NORMAL": int(counts[0]), "PNEUMONIA": int(counts[1])}


def _rows(path: Path, names: dict[str, str]) -> list[dict]:
    """The server's round log, with the pseudonyms it knows sites by turned back into this machine's names."""
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    for row in rows:
        for key in ("sites", "dropped"):
            if isinstance(row.get(key), dict):
                row[key] = {names.get(site, site): value for site, value in row[key].items()}
        if "site" in row:
            row["site"] = names.get(row["site"], row["site"])
    return rows


def _site_names(sites: list[Path]) -> list[str]:
    """Each site's name on this machine (its folder name, made unique); never sent to the server."""
    names: list[str] = []
    for site in sites:
        name, n = site.name, 2
        while name in names:
            name, n = f"{site.name}-{n}", n + 1
        names.append(name)
    return names


def _wait_for_port(server: subprocess.Popen, port_file: Path, timeout_s: float) -> int:
    """The port the server bound (it writes it only once bound, so nobody else can hold it)."""
    deadline = time.time() + timeout_s
    while not port_file.exists():
        if server.poll() is not None:
            raise RuntimeError(f"The Flower server stopped before it was ready (exit {server.returncode}).")
        if time.time() > deadline:
            raise RuntimeError(f"The Flower server was not ready within {timeout_s:.0f} s.")
        time.sleep(0.2)
    return int(port_file.read_text())


def round_event(fit: dict, validation: dict, rounds: int) -> dict:
    """One round as a training-progress event: the global score plus each hospital's (the admin page's curves)."""
    sites = fit["sites"]
    loss = sum(v["loss"] * v["n"] for v in sites.values()) / max(sum(v["n"] for v in sites.values()), 1)
    elapsed = validation["seconds"]
    return event(Stage.EPOCH, epoch=fit["round"], epochs=rounds, loss=loss, val_auc=validation["global_auc"],
                 site_loss={k: v["loss"] for k, v in sites.items()},
                 site_auc={k: v["auc"] for k, v in validation["sites"].items()},
                 bytes=fit["bytes_up"] + fit["bytes_down"], elapsed_s=elapsed,
                 eta_s=round(elapsed / fit["round"] * (rounds - fit["round"]), 1), federated=True)


def _new_round_events(rows: list[dict], reported: int, rounds: int) -> list[dict]:
    fits = {r["round"]: r for r in rows if r["kind"] == "fit"}
    done = [r for r in rows if r["kind"] == "validation" and r["round"] in fits]
    return [round_event(fits[r["round"]], r, rounds) for r in done[reported:]]


def run_federated(sites: list[Path], out_dir: Path, rounds: int = 10, strategy: str = "fedavg",
                  options: XrayTrainingOptions | None = None, local_epochs: int = 1, proximal_mu: float = 0.01,
                  progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
                  timeout_s: float = 3600.0, task: str = "xray",
                  client_address: Callable[[int], str] | None = None, noise_multiplier: float = 0.0,
                  clipping_norm: float = 1.0) -> dict:
    """Train across `sites` with Flower and write a model folder to out_dir; return its metadata.

    noise_multiplier > 0 turns on differential privacy (medcore.federated.privacy): each site's update clipped to
    clipping_norm, Gaussian noise on the average.

    client_address: where the clients connect, given the port the server bound (default: the server itself; the
    privacy test puts a recording relay in between).
    """
    import tensorflow as tf

    from medcore.imaging.model import build_xray_ensemble, save_artifact
    from medcore.imaging.preprocess import PREPROCESS_VERSION
    from medcore.model_card import xray_model_card
    from medcore.training import device

    options = options or XrayTrainingOptions(members=1)
    progress = progress or (lambda e: None)
    sites = [Path(s) for s in sites]
    if len(sites) < 2:
        raise ValueError("Federated training needs at least two sites.")
    names = _site_names(sites)
    site_counts = {name: _check_site(site) for name, site in zip(names, sites)}
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="medcore-federated-"))  # 0700: the keys and logs are this user's only
    keys = credentials.create(work / "keys", len(sites))
    pseudonyms = dict(zip(keys.site_ids, names))
    (keys.folder / "sites.json").write_text(json.dumps({site_id: sum(site_counts[name].values())
                                                        for site_id, name in pseudonyms.items()}))
    option_json = json.dumps(asdict(options))
    python, environment = sys.executable, config.child_environment(with_medcore=False)
    logs = {name: open(work / f"{name}.log", "w") for name in ["server", *keys.site_ids]}
    processes = [subprocess.Popen([python, "-m", "medcore.federated.server", "--credentials", str(keys.folder),
                                   "--rounds", str(rounds), "--strategy", strategy, "--local-epochs",
                                   str(local_epochs), "--proximal-mu", str(proximal_mu), "--noise-multiplier",
                                   str(noise_multiplier), "--clipping-norm", str(clipping_norm), "--options", option_json,
                                   "--out", str(work)], stdout=logs["server"], stderr=subprocess.STDOUT,
                                  env=environment)]
    reported = 0

    def report() -> None:
        nonlocal reported
        for round_progress in _new_round_events(_rows(work / "progress.jsonl", pseudonyms), reported, rounds):
            progress(round_progress)
            reported += 1

    try:
        port = _wait_for_port(processes[0], work / "port", SERVER_START_TIMEOUT_S)
        address = client_address(port) if client_address else f"{credentials.SERVER_HOST}:{port}"
        processes += [subprocess.Popen([python, "-m", "medcore.federated.client", "--site", str(site), "--site-id",
                                        site_id, "--key", str(keys.site_key(site_id)), "--ca", str(keys.ca_certificate),
                                        "--server", address, "--options", option_json, "--cache", str(work / f"cache_{i}")],
                                       stdout=logs[site_id], stderr=subprocess.STDOUT, env=environment)
                      for i, (site, site_id) in enumerate(zip(sites, keys.site_ids))]
        while processes[0].poll() is None:
            report()
            if should_stop is not None and should_stop():
                raise RuntimeError("Federated run cancelled.")
            if any(p.poll() not in (None, 0) for p in processes[1:]):
                raise RuntimeError("A hospital's client stopped unexpectedly; see the server log.")
            if time.time() - started > timeout_s:
                raise RuntimeError(f"Federated run exceeded {timeout_s:.0f} s.")
            time.sleep(0.5)
        if processes[0].returncode != 0 or not (work / "quality.npz").exists():
            raise RuntimeError(f"The Flower server failed (exit {processes[0].returncode}); see the server log.")
        for process in processes[1:]:
            process.wait(timeout=60)
        report()
        history = _rows(work / "progress.jsonl", pseudonyms)

        progress(event(Stage.CALIBRATING))
        network, _ = build_xray_ensemble(options.image_size, options.width, options.members)
        with np.load(work / "weights.npz") as stored:
            network.set_weights([stored[f"arr_{i}"] for i in range(len(stored.files))])
        with np.load(work / "calibration.npz") as stored:
            val_logits, y_val = wire.histogram_samples(stored["histogram"])
            shifted = wire.histogram_samples(stored["shift_histogram"]) if "shift_histogram" in stored else None
        with np.load(work / "quality.npz") as stored:
            reference = {key: stored[key] for key in stored.files}
        # As central training: validation films plus (when sites sent them) perturbed copies of them.
        fitted_on = ("the hospitals' pooled counts (0.05-wide bins) of " + (shift.DESCRIPTION if shifted is not None
                     else "their validation logits"))
        calibrated = calibrate_and_choose_threshold(val_logits, y_val, shifted, options.min_sensitivity, fitted_on)
        fit_rows = [r for r in history if r["kind"] == "fit"]
        meta = {
            "task": task,
            "version": time.strftime("xray-fed-%Y%m%d-%H%M%S-") + secrets.token_hex(2),
            "labels": list(folders.XRAY_CLASSES),
            "positive_label": folders.XRAY_CLASSES[1],
            "image_size": options.image_size,
            "calibration": calibrated.calibration,
            "threshold": calibrated.threshold,
            "quality": {"method": "federated: pooled sums and scatter matrices of thumbnails and features; each "
                                  "threshold = 1.25 x the 99.5th percentile of pooled binned validation scores"},
            "threshold_rule": calibrated.threshold_rule,
            "metrics": {"validation": calibrated.metrics},
            "options": asdict(options),
            "federated": {"strategy": strategy, "rounds": rounds, "local_epochs": local_epochs,
                          "proximal_mu": proximal_mu if strategy == "fedprox" else None, "sites": site_counts,
                          "bytes_per_round": int(np.median([r["bytes_up"] + r["bytes_down"] for r in fit_rows])),
                          "history": history, "transport": "Flower gRPC over localhost, one process per site",
                          "privacy": {"noise_multiplier": noise_multiplier, "clipping_norm": clipping_norm,
                                      "delta": 1e-5, "epsilon": client_level_epsilon(noise_multiplier, rounds),
                                      "mechanism": "flwr DifferentialPrivacyServerSideFixedClipping"}
                          if noise_multiplier > 0 else None},
            "data": {"source": "federated: " + ", ".join(site_counts), "fingerprint": "never leaves the sites",
                     "n_train": None, "n_val": int(len(y_val)), "val_counts": np.bincount(y_val, minlength=2).tolist(),
                     "train_counts": [sum(c["NORMAL"] for c in site_counts.values()),
                                      sum(c["PNEUMONIA"] for c in site_counts.values())]},
            "training": {"command": command_line(),
                         "seconds": round(time.time() - started, 1), "device": device.describe(),
                         "best_epoch": rounds, "best_epochs": [rounds], "history": [],
                         "parameters": network.count_params(), "tensorflow": tf.__version__,
                         "python": platform.python_version()},
        }
        save_artifact(Path(out_dir), network, meta, reference,
                      validation=calibrated.validation_arrays(y_val),
                      model_card=xray_model_card({**meta, "preprocess_version": PREPROCESS_VERSION}))
        progress(event(Stage.DONE, version=meta["version"], metrics=calibrated.metrics))
        return meta
    except BaseException:
        for name, handle in logs.items():  # the details go to this process's log (the job's), never to a page
            handle.flush()
            log.error("federated %s log (last lines):\n%s", name, (work / f"{name}.log").read_text()[-4000:])
        raise
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for handle in logs.values():
            handle.close()
        shutil.rmtree(work, ignore_errors=True)
