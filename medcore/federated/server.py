"""The Flower server of a federated X-ray run: aggregates weights (FedAvg or FedProx), records every round.

    python -m medcore.federated.server --port 8080 --rounds 10 --strategy fedavg --sites 3 --out DIR

Rounds 1..N train (fit) and then score the global model on each site's validation films (binned logits:
pooled AUC and, after the last round, calibration). Two more rounds train nothing: round N+1 gathers the
sufficient statistics of the quality gate's reference, round N+2 the binned quality scores that set its
thresholds. Writes to DIR: `progress.jsonl` (one line per round and stage), `weights.npz` (the latest global
weights), `calibration.npz` (pooled validation-logit counts) and `quality.npz`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from medcore.federated import wire  # noqa: E402
from medcore.federated.client import QUALITY_KEYS  # noqa: E402
from medcore.imaging import quality  # noqa: E402

STRATEGIES = ("fedavg", "fedprox")
QUALITY_MARGIN = 1.25  # as central training: each threshold = margin x the 99.5th percentile on validation


def _nbytes(parameters) -> int:
    return int(sum(len(t) for t in parameters.tensors))


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def make_strategy(name: str, rounds: int, n_sites: int, out: Path, initial_weights: list[np.ndarray],
                  local_epochs: int = 1, proximal_mu: float = 0.01, noise_multiplier: float = 0.0,
                  clipping_norm: float = 1.0, variance_indices: tuple[int, ...] = ()):
    """A FedAvg or FedProx strategy that also runs the statistics rounds and writes what it learns to `out`;
    with noise_multiplier > 0, wrapped in Flower's server-side fixed-clipping differential privacy."""
    import flwr
    from flwr.common import EvaluateIns, ndarrays_to_parameters, parameters_to_ndarrays
    from sklearn.metrics import roc_auc_score

    base = {"fedavg": flwr.server.strategy.FedAvg, "fedprox": flwr.server.strategy.FedProx}[name]
    extra = {"proximal_mu": proximal_mu} if name == "fedprox" else {}
    progress = out / "progress.jsonl"

    class RecordingStrategy(base):
        started = time.time()
        reference: dict[str, np.ndarray] = {}

        def configure_fit(self, server_round, parameters, client_manager):
            if server_round > rounds:  # the statistics rounds train nothing
                return []
            self.sent = parameters_to_ndarrays(parameters)
            return super().configure_fit(server_round, parameters, client_manager)

        def _update_norm(self, parameters) -> float:
            """How far a site moved the weights this round: what a privacy clipping norm must be set against."""
            return float(np.sqrt(sum(np.sum((new - old) ** 2) for new, old in
                                     zip(parameters_to_ndarrays(parameters), self.sent))))

        def aggregate_fit(self, server_round, results, failures):
            if failures:
                raise RuntimeError(f"Round {server_round}: {len(failures)} site(s) failed to train; run stopped.")
            parameters, metrics = super().aggregate_fit(server_round, results, failures)
            _append(progress, {"round": server_round, "kind": "fit", "seconds": round(time.time() - self.started, 1),
                               "sites": {r.metrics["site"]: {"loss": r.metrics["loss"], "n": r.num_examples,
                                                             "update_norm": self._update_norm(r.parameters)}
                                         for _, r in results},
                               "bytes_up": sum(_nbytes(r.parameters) for _, r in results),
                               "bytes_down": _nbytes(parameters) * len(results)})
            return parameters, metrics

        def configure_evaluate(self, server_round, parameters, client_manager):
            if server_round <= rounds:  # the global weights after this round (after the privacy noise, if any)
                np.savez(out / "weights.tmp.npz", *parameters_to_ndarrays(parameters))
                os.replace(out / "weights.tmp.npz", out / "weights.npz")
            stage = "validation" if server_round <= rounds else "moments" if server_round == rounds + 1 else "scores"
            # After the last round, sites also score perturbed copies of their validation films (shift calibration).
            config = {"stage": stage, "last": server_round == rounds}
            if stage == "scores":
                config.update({key: wire.to_bytes(self.reference[key]) for key in QUALITY_KEYS})
            clients = client_manager.sample(num_clients=n_sites, min_num_clients=n_sites)
            return [(client, EvaluateIns(parameters, config)) for client in clients]

        def aggregate_evaluate(self, server_round, results, failures):
            if failures:
                raise RuntimeError(f"Round {server_round}: {len(failures)} site(s) failed to evaluate; run stopped.")
            metrics = [r.metrics for _, r in results]
            if server_round <= rounds:
                pooled = sum(wire.from_bytes(m["histogram"]) for m in metrics)
                logits, labels = wire.histogram_samples(pooled)
                shifted = [wire.from_bytes(m["shift_histogram"]) for m in metrics if "shift_histogram" in m]
                np.savez(out / "calibration.npz", histogram=pooled,
                         **({"shift_histogram": sum(shifted)} if len(shifted) == len(metrics) else {}))
                _append(progress, {"round": server_round, "kind": "validation",
                                   "seconds": round(time.time() - self.started, 1),
                                   "global_auc": float(roc_auc_score(labels, logits)),
                                   "sites": {m["site"]: {"auc": m["auc"], "n": r.num_examples}
                                             for (_, r), m in zip(results, metrics)}})
                return float(np.average([r.loss for _, r in results], weights=[r.num_examples for _, r in results])), {}
            if server_round == rounds + 1:
                self.reference = _pooled_reference(metrics, [r.num_examples for _, r in results])
                return 0.0, {}
            reference = dict(self.reference)
            for key, name in (("threshold", "reconstruction"), ("feature_threshold", "distance")):
                pooled = sum(wire.from_bytes(m[name]) for m in metrics)
                reference[key] = np.float32(QUALITY_MARGIN * wire.score_quantile(pooled, 0.995))
            peaks = sum(wire.from_bytes(m["gradcam_peak"]) for m in metrics)
            reference["gradcam_scale"] = np.float32(wire.score_quantile(peaks, 0.95))
            np.savez(out / "quality.npz", **reference)
            _append(progress, {"round": server_round, "kind": "quality", "seconds": round(time.time() - self.started, 1)})
            return 0.0, {}

    strategy = RecordingStrategy(fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=n_sites,
                                 min_evaluate_clients=n_sites, min_available_clients=n_sites, accept_failures=False,
                                 initial_parameters=ndarrays_to_parameters(initial_weights),
                                 on_fit_config_fn=lambda r: {"local_epochs": local_epochs, "rounds": rounds}, **extra)
    if noise_multiplier <= 0:
        return strategy

    class PrivateStrategy(flwr.server.strategy.DifferentialPrivacyServerSideFixedClipping):
        def aggregate_fit(self, server_round, results, failures):
            parameters, metrics = super().aggregate_fit(server_round, results, failures)
            if parameters is None:  # the wrapper returns nothing on a failure: stop, as without privacy
                raise RuntimeError(f"Round {server_round}: a site failed to train; run stopped.")
            # Noise also lands on batch-norm running variances, which must stay positive to be used.
            weights = parameters_to_ndarrays(parameters)
            for i in variance_indices:
                weights[i] = np.maximum(weights[i], 1e-3)
            return ndarrays_to_parameters(weights), metrics

    return PrivateStrategy(strategy, noise_multiplier, clipping_norm, n_sites)


def _pooled_reference(metrics: list[dict], counts: list[int]) -> dict[str, np.ndarray]:
    """The quality reference from the sites' sums and scatter matrices, as if their films had been pooled."""
    n = float(sum(counts))
    reference = {}
    for prefix in ("thumb", "feature"):
        total = sum(wire.from_bytes(m[f"{prefix}_sum"]) for m in metrics)
        scatter = sum(wire.from_bytes(m[f"{prefix}_scatter"]) for m in metrics)
        mean = total / n
        covariance = (scatter - n * np.outer(mean, mean)) / (n - 1)
        if prefix == "thumb":
            _, vectors = np.linalg.eigh(covariance)  # principal directions = the SVD's right singular vectors
            reference["mean"] = mean.astype(np.float32)
            reference["components"] = vectors[:, ::-1][:, :quality.N_COMPONENTS].T.astype(np.float32)
        else:
            covariance += np.eye(len(covariance)) * 1e-3 * np.trace(covariance) / len(covariance)  # shrinkage
            reference["feature_mean"] = mean.astype(np.float32)
            reference["feature_precision"] = np.linalg.inv(covariance).astype(np.float32)
    return reference


def main() -> None:
    parser = argparse.ArgumentParser(description="Flower server of a federated X-ray run.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--strategy", choices=STRATEGIES, default="fedavg")
    parser.add_argument("--sites", type=int, required=True, help="number of hospitals; every round waits for all")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--proximal-mu", type=float, default=0.01)
    parser.add_argument("--noise-multiplier", type=float, default=0.0, help="differential privacy (0: off)")
    parser.add_argument("--clipping-norm", type=float, default=1.0)
    parser.add_argument("--options", default="{}", help="XrayTrainingOptions fields as JSON (network shape, seed)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import flwr
    import keras
    from flwr.compat.server.app import start_server

    from medcore.imaging.model import build_xray_ensemble
    from medcore.training.options import XrayTrainingOptions

    options = XrayTrainingOptions(**json.loads(args.options))
    keras.utils.set_random_seed(options.seed)
    network, _ = build_xray_ensemble(options.image_size, options.width, options.members)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variance = tuple(i for i, w in enumerate(network.weights) if "moving_variance" in w.path)
    strategy = make_strategy(args.strategy, args.rounds, args.sites, out, network.get_weights(), args.local_epochs,
                             args.proximal_mu, args.noise_multiplier, args.clipping_norm, variance)
    start_server(server_address=f"127.0.0.1:{args.port}",
                 config=flwr.server.ServerConfig(num_rounds=args.rounds + 2), strategy=strategy)


if __name__ == "__main__":
    main()
